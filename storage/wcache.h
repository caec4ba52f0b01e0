/* storage/wcache.h — the packed-weight cache file: the weights as the kernels want them (repacked
 * once, kernels/pack.h), written beside nothing else of the model, so a later load maps them
 * instead of repacking. The file is keyed by the model file's identity and the kernel layout; its
 * header, table and every blob carry checksums, so a stale, truncated or corrupt file is detected and
 * rebuilt, never trusted. Written to a temporary name and renamed into place (a crash leaves no
 * half-written cache). Blobs are page-aligned: file-backed, reclaimable, prefetchable per matrix.
 *
 * Writing streams: the caller produces one blob at a time (e.g. packs one matrix, appends it, frees
 * it), so building the cache never holds the whole packed model in memory. */
#ifndef SP_STORAGE_WCACHE_H
#define SP_STORAGE_WCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the cache must hold for each entry: checked against the file on open. */
typedef struct {
    uint32_t fmt;        /* the packed layout (SP_PACK_*) */
    uint32_t type;       /* the source tensor type */
    int64_t n_in, n_out;
    uint64_t bytes;
    const void *data;    /* set by sp_wcache_open: the blob in the mapping */
} sp_wcache_entry;

typedef struct sp_wcache sp_wcache;
typedef struct sp_wcache_writer sp_wcache_writer;

/* The cache key of a model file for a kernel layout: its path, device/inode, size and mtime, plus
 * `layout` (the kernel table and packing version). Writes a NUL-terminated string into key. */
bool sp_wcache_key(const char *model_path, const char *layout, char *key, size_t cap);
/* The cache file for a key inside dir: dir/weights-<16 hex digits of the key's hash>.spw */
void sp_wcache_path(const char *dir, const char *key, char *out, size_t cap);

/* Map path and check it: key, entry count and every entry's fmt/type/shape/bytes as given, and all
 * checksums. On success fills e[i].data and returns the open cache (keep it open while the data is
 * used). NULL with err set when missing (err starts with "missing"), stale or corrupt. */
sp_wcache *sp_wcache_open(const char *path, const char *key, sp_wcache_entry *e, int n, char *err, size_t errlen);
void sp_wcache_close(sp_wcache *c);
/* Ask the kernel to read blob i ahead (asynchronous; a no-op when already resident). */
void sp_wcache_prefetch(const sp_wcache *c, int i);
/* Lock blob i in memory (mlock); false when refused (RLIMIT_MEMLOCK). */
bool sp_wcache_lock(const sp_wcache *c, int i);
/* Total bytes of the mapping. */
uint64_t sp_wcache_size(const sp_wcache *c);

/* Remove cache files in dir whose model file is gone or changed, and temporary files of processes
 * that no longer run (so the directory holds one cache per live model and layout). */
void sp_wcache_prune(const char *dir);

/* Write a new cache for key with n entries: append each entry's blob in order, then commit (fsync,
 * rename over path). Abort removes the temporary file. */
sp_wcache_writer *sp_wcache_begin(const char *path, const char *key, int n, char *err, size_t errlen);
bool sp_wcache_append(sp_wcache_writer *w, const sp_wcache_entry *e, const void *blob, char *err, size_t errlen);
bool sp_wcache_commit(sp_wcache_writer *w, char *err, size_t errlen);
void sp_wcache_abort(sp_wcache_writer *w);

#endif
