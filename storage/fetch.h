/* storage/fetch.h — downloading a model file over HTTP(S) with libcurl: resumes a partial download
 * with a Range request (and starts over cleanly when the server ignores Range), checks the size and
 * the sha256 when known, verifies the GGUF magic, and only then renames the file into place. */
#ifndef SP_STORAGE_FETCH_H
#define SP_STORAGE_FETCH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *url;
    const char *dest;        /* final path; DEST.partial holds the download until it is complete */
    const char *sha256;      /* expected hex digest, or NULL (then the server's X-Linked-ETag if any) */
    bool progress;           /* draw a progress bar on stderr */
} sp_fetch_opts;

typedef struct {
    unsigned long long bytes;        /* final size */
    unsigned long long resumed_from; /* bytes already there when this run started (0: fresh) */
    bool restarted;                  /* the server ignored Range: the partial file was discarded */
    char sha256[65];
    bool sha256_checked;             /* compared with a known digest */
} sp_fetch_result;

/* 0 on success; -1 with one line in err. A failed download keeps DEST.partial for the next try. */
int sp_fetch(const sp_fetch_opts *o, sp_fetch_result *res, char *err, size_t errlen);

/* Hex sha256 of a whole file into out (65 bytes); false if it cannot be read. */
bool sp_fetch_sha256_file(const char *path, char out[65]);

#endif
