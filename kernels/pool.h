/* kernels/pool.h — the compute thread pool: persistent workers created once and woken per
 * operation (spin, then sleep on a condition variable). An operation is a range of n work units
 * (row groups, tokens, heads); every thread, the caller included, claims chunks of it from a shared
 * counter until none are left. So faster cores simply take more chunks (big.LITTLE balances
 * itself), and a worker the OS has descheduled never holds the caller up: its chunks are taken by
 * the others, and the operation ends when every unit is done, whether or not all workers woke. */
#ifndef SP_KERNELS_POOL_H
#define SP_KERNELS_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_pool sp_pool;

/* Process units [begin, end). ith identifies the calling thread (0 = the caller, < pool size): use
 * it to index per-thread scratch. */
typedef void (*sp_pool_fn)(void *arg, int64_t begin, int64_t end, int ith);

/* n_threads in total, the caller included (<= 0: the number of online CPUs). NULL on failure. */
sp_pool *sp_pool_new(int n_threads);
void sp_pool_free(sp_pool *p);
/* Threads in the pool; 1 for a NULL pool. */
int sp_pool_size(const sp_pool *p);
/* Run fn over units [0, n) in chunks of `chunk` units (<= 0: a size giving each thread several
 * chunks) and return when all are done. A NULL pool runs fn(arg, 0, n, 0). One operation at a time
 * per pool; fn must not call sp_pool_for on the same pool. */
void sp_pool_for(sp_pool *p, int64_t n, int64_t chunk, sp_pool_fn fn, void *arg);
/* A scratch buffer of at least `bytes` for the current operation (the pool's own, grown as needed;
 * malloc'd for a NULL pool); give it back with sp_pool_scratch_done. NULL when out of memory. */
void *sp_pool_scratch(sp_pool *p, size_t bytes);
void sp_pool_scratch_done(sp_pool *p, void *buf);
/* Online CPUs (at least 1). */
int sp_cpu_count(void);

#endif
