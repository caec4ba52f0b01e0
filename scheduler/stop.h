/* scheduler/stop.h — stop strings matched across token boundaries. Generated text goes in piece by
 * piece; what comes out is the text that can no longer be part of a stop string. On a match the
 * text before the stop string is released and the stop string itself is never emitted. */
#ifndef SP_SCHED_STOP_H
#define SP_SCHED_STOP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *const *stop;  /* not owned */
    int n_stop;
    size_t max_len;     /* longest stop string */
    char *held;         /* text held back: could still begin a stop string */
    size_t n_held, cap_held;
} sp_stop;

void sp_stop_init(sp_stop *s, char *const *stop, int n_stop);
void sp_stop_free(sp_stop *s);
/* Feed a piece. *out (malloc'd, caller frees) receives the text now safe to emit, *out_len its
 * length. Returns true when a stop string matched (then *out is everything before it). */
bool sp_stop_feed(sp_stop *s, const char *text, size_t len, char **out, size_t *out_len);
/* The end: everything still held back (no stop string can match any more). */
void sp_stop_flush(sp_stop *s, char **out, size_t *out_len);

#endif
