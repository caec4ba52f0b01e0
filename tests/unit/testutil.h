/* tests/unit/testutil.h — helpers shared by the criterion unit tests: where ../shared is, reading
 * whole files, temp paths. */
#ifndef SP_TESTUTIL_H
#define SP_TESTUTIL_H

#include <stddef.h>

/* Path under the shared data folder ($SPARROW_SHARED, else the compiled-in ../shared). Returns a
 * static buffer (valid until the next call). */
const char *tu_shared(const char *rel);
/* Read a whole file; NULL on failure. Caller frees. */
void *tu_read_file(const char *path, size_t *size);
/* Write a buffer to a file; 0 on success. */
int tu_write_file(const char *path, const void *data, size_t size);
/* A fresh path in a per-process temp dir: returns a static buffer. */
const char *tu_tmp(const char *name);

#endif
