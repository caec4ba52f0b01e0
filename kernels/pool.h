/* kernels/pool.h — the compute thread pool: persistent workers created once, woken per operation
 * (spin, then sleep on a condition variable), each running the same function on its share of the
 * work. Shares are split by per-thread speed weights (all equal unless set), so on big.LITTLE the
 * big cores get more rows and every thread finishes together. */
#ifndef SP_KERNELS_POOL_H
#define SP_KERNELS_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_pool sp_pool;

/* fn runs once on every thread: ith in [0, nth), thread 0 is the caller. */
typedef void (*sp_pool_fn)(void *arg, int ith, int nth);

/* n_threads in total, the caller included (<= 0: the number of online CPUs). NULL on failure. */
sp_pool *sp_pool_new(int n_threads);
void sp_pool_free(sp_pool *p);
/* Threads in the pool; 1 for a NULL pool. */
int sp_pool_size(const sp_pool *p);
/* Run fn on every thread and return when all have finished. A NULL pool runs fn(arg, 0, 1). Not
 * reentrant: one run at a time per pool, and fn must not call sp_pool_run on the same pool. */
void sp_pool_run(sp_pool *p, sp_pool_fn fn, void *arg);
/* Relative speed of thread ith (default 1.0); shares follow these weights. */
void sp_pool_set_weight(sp_pool *p, int ith, float weight);
/* Thread ith's share [*begin, *end) of n units, in proportion to the weights. */
void sp_pool_share(const sp_pool *p, int ith, int nth, int64_t n, int64_t *begin, int64_t *end);
/* A scratch buffer of at least `bytes` for the current operation (the pool's own, grown as needed;
 * malloc'd for a NULL pool); give it back with sp_pool_scratch_done. NULL when out of memory. */
void *sp_pool_scratch(sp_pool *p, size_t bytes);
void sp_pool_scratch_done(sp_pool *p, void *buf);
/* Online CPUs (at least 1). */
int sp_cpu_count(void);

#endif
