/* conf/conf.h — configuration shared by every module: where sparrow keeps its files, and small
 * helpers for reading numeric flags. (Config files and device profiles join here later.) */
#ifndef SP_CONF_H
#define SP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* $SPARROW_CACHE_DIR, else $XDG_CACHE_HOME/sparrow, else $HOME/.cache/sparrow, else /tmp/sparrow.
 * Writes into buf; creates the directory (and parents). Returns false if it cannot be created. */
bool sp_conf_cache_dir(char *buf, size_t cap);

/* Where downloaded models live: $SPARROW_MODELS_DIR, else $XDG_DATA_HOME/sparrow/models, else
 * $HOME/.local/share/sparrow/models. Creates it. `serve --models-dir` and `pull` share the default. */
bool sp_conf_models_dir(char *buf, size_t cap);
/* Create a directory and its parents (mode 0755); true if it exists afterwards. */
bool sp_conf_mkdir_p(const char *path);

/* Strict numeric parsing of a flag value: the whole string must be a number in range. */
bool sp_conf_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
bool sp_conf_parse_f32(const char *s, float lo, float hi, float *out);
bool sp_conf_parse_u64(const char *s, uint64_t *out);
/* A byte count: digits with an optional binary suffix K, M, G or T (case-insensitive, optionally
 * followed by "B" or "iB": "512M", "2GiB", "1048576"), within [lo, hi]. */
bool sp_conf_parse_size(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* Read a JSON config file (an object) and call fn(key, value, ud) for each member, the value given
 * as text: strings as they are, numbers and booleans printed, arrays of strings once per element.
 * fn returns false to reject a member (it prints why). Returns false (+ err) on I/O or JSON errors. */
typedef bool (*sp_conf_fn)(const char *key, const char *value, void *ud);
bool sp_conf_file_each(const char *path, sp_conf_fn fn, void *ud, char *err, size_t errlen);

#endif
