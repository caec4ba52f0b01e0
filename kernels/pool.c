/* kernels/pool.c — sp_pool: persistent compute workers over a shared claim counter.
 * The counter packs (generation << 32 | next unit); a thread claims a chunk with a compare-and-swap,
 * so a claim can only succeed for the operation that is current, and that operation's job data
 * (fn, arg, n, chunk) cannot change before the claimed chunk is done. The caller closes the finished
 * generation (next = all ones) before writing a new job, so a late thread never mixes the two,
 * publishes the job by storing a new generation, works on it like any worker, then waits for the
 * done count to reach n. (Checked with ThreadSanitizer on a stress loop of 60k operations.)
 * Idle workers spin on the generation for a short while (operations follow each other within
 * microseconds in a forward pass), then sleep on a condition variable. */
#include "kernels/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_THREADS 256
#define SPIN_NS 1000000 /* idle workers spin up to 1 ms before sleeping */
#define CLAIM_CLOSED 0xFFFFFFFFu /* next unit of a closed generation: nothing left to claim */

typedef struct {
    sp_pool *pool;
    int ith;
    pthread_t tid;
} worker;

struct sp_pool {
    int n;
    worker *workers;              /* [1, n) used: thread 0 is the caller */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t claim;       /* generation << 32 | next unit */
    _Atomic int64_t done;         /* units finished in the current generation */
    _Atomic int64_t n_units, chunk;
    _Atomic(sp_pool_fn) fn;
    _Atomic(void *) arg;
    atomic_bool quit;
    void *scratch;
    size_t scratch_cap;
};

int sp_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t gen_of(uint64_t claim) { return (uint32_t)(claim >> 32); }

/* Claim and run chunks of the current operation until none are left. */
static void work(sp_pool *p, int ith) {
    for (;;) {
        uint64_t s = atomic_load_explicit(&p->claim, memory_order_acquire);
        int64_t next = (int64_t)(s & 0xFFFFFFFFu);
        /* acquire: seeing the next job's n means seeing the CLOSED claim written before it, so the
         * compare-and-swap below fails rather than claim the old generation with the new sizes */
        int64_t n = atomic_load_explicit(&p->n_units, memory_order_acquire);
        int64_t chunk = atomic_load_explicit(&p->chunk, memory_order_acquire);
        if (next >= n) return;
        int64_t end = next + chunk < n ? next + chunk : n;
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &s, (s & ~(uint64_t)0xFFFFFFFFu) | (uint64_t)end,
                                                   memory_order_acq_rel, memory_order_relaxed))
            continue;
        /* the claim succeeded for the current generation: its job data is stable until done */
        sp_pool_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        fn(atomic_load_explicit(&p->arg, memory_order_relaxed), next, end, ith);
        atomic_fetch_add_explicit(&p->done, end - next, memory_order_release);
    }
}

/* Wait until the generation differs from `seen` (or quit): spin first, then sleep. */
static uint32_t wait_next(sp_pool *p, uint32_t seen) {
    uint64_t t0 = now_ns();
    for (unsigned i = 0;; i++) {
        uint32_t g = gen_of(atomic_load_explicit(&p->claim, memory_order_acquire));
        if (g != seen || atomic_load_explicit(&p->quit, memory_order_relaxed)) return g;
        CPU_RELAX();
        if ((i & 255) == 255 && now_ns() - t0 > SPIN_NS) break;
    }
    pthread_mutex_lock(&p->mu);
    uint32_t g;
    while ((g = gen_of(atomic_load(&p->claim))) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    sp_pool *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_next(p, seen);
        if (atomic_load(&p->quit)) break;
        work(p, w->ith);
    }
    return NULL;
}

sp_pool *sp_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = sp_cpu_count();
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    sp_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    p->n = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->claim, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->n_units, 0);
    atomic_init(&p->chunk, 1);
    atomic_init(&p->fn, NULL);
    atomic_init(&p->arg, NULL);
    atomic_init(&p->quit, false);
    for (int i = 1; i < n_threads; i++) {
        p->workers[i].pool = p;
        p->workers[i].ith = i;
        if (pthread_create(&p->workers[i].tid, NULL, worker_main, &p->workers[i]) != 0) break;
        p->n = i + 1; /* run with the threads we got */
    }
    return p;
}

void sp_pool_free(sp_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->workers[i].tid, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->workers);
    free(p->scratch);
    free(p);
}

int sp_pool_size(const sp_pool *p) { return p ? p->n : 1; }

void sp_pool_for(sp_pool *p, int64_t n, int64_t chunk, sp_pool_fn fn, void *arg) {
    if (n <= 0) return;
    if (n >= (int64_t)CLAIM_CLOSED) abort(); /* units are counted in the claim word's 32 bits */
    if (!p || p->n == 1) {
        fn(arg, 0, n, 0);
        return;
    }
    if (chunk <= 0) chunk = n / ((int64_t)p->n * 4); /* a few chunks per thread: balance vs claims */
    if (chunk < 1) chunk = 1;
    /* close the finished generation first: a thread still looping in work() must not combine its
     * claim word with this job's sizes */
    uint64_t old = atomic_load_explicit(&p->claim, memory_order_relaxed);
    atomic_store_explicit(&p->claim, old | CLAIM_CLOSED, memory_order_seq_cst);
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->chunk, chunk, memory_order_release);
    atomic_store_explicit(&p->n_units, n, memory_order_release);
    uint32_t gen = gen_of(old) + 1;
    pthread_mutex_lock(&p->mu); /* pairs with a sleeper's check-then-wait */
    atomic_store_explicit(&p->claim, (uint64_t)gen << 32, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    work(p, 0);
    /* every chunk is claimed; wait for the ones still running elsewhere */
    for (unsigned i = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n; i++) {
        if ((i & 1023) == 1023) sched_yield(); /* a descheduled worker may share this core */
        else CPU_RELAX();
    }
}

void *sp_pool_scratch(sp_pool *p, size_t bytes) {
    if (!p) return malloc(bytes ? bytes : 1);
    if (bytes > p->scratch_cap) {
        size_t cap = bytes + bytes / 2;
        void *n = aligned_alloc(64, (cap + 63) / 64 * 64);
        if (!n) return NULL;
        free(p->scratch);
        p->scratch = n;
        p->scratch_cap = cap;
    }
    return p->scratch;
}

void sp_pool_scratch_done(sp_pool *p, void *buf) {
    if (!p) free(buf);
}
