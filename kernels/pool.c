/* kernels/pool.c — sp_pool: persistent compute workers. A run bumps a generation counter; workers
 * spin on it for a short while (an operation follows the previous one within microseconds during a
 * forward pass) and then sleep on a condition variable, so an idle pool costs no CPU. The caller is
 * thread 0 and waits for the others on an atomic countdown. */
#include "kernels/pool.h"

#include <pthread.h>
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
#define SPIN_NS 2000000 /* spin up to 2 ms before sleeping */

typedef struct {
    sp_pool *pool;
    int ith;
    pthread_t tid;
} worker;

struct sp_pool {
    int n;
    worker *workers;          /* n - 1 of them (thread 0 is the caller) */
    float *weights;           /* n */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;          /* bumped per run */
    atomic_int pending;       /* workers still running the current job */
    atomic_bool quit;
    sp_pool_fn fn;
    void *arg;
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

/* Wait until the generation moves past `seen` (or quit): spin first, then sleep. */
static unsigned wait_next(sp_pool *p, unsigned seen) {
    uint64_t t0 = now_ns();
    for (unsigned i = 0;; i++) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen || atomic_load(&p->quit)) return g;
        CPU_RELAX();
        if ((i & 255) == 255 && now_ns() - t0 > SPIN_NS) break;
    }
    pthread_mutex_lock(&p->mu);
    unsigned g;
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    sp_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_next(p, seen);
        if (atomic_load(&p->quit)) break;
        p->fn(p->arg, w->ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

sp_pool *sp_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = sp_cpu_count();
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    sp_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    p->weights = malloc((size_t)n_threads * sizeof *p->weights);
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->weights || !p->workers) {
        free(p->weights); free(p->workers); free(p);
        return NULL;
    }
    for (int i = 0; i < n_threads; i++) p->weights[i] = 1.0f;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->quit, false);
    for (int i = 1; i < n_threads; i++) {
        p->workers[i].pool = p;
        p->workers[i].ith = i;
        if (pthread_create(&p->workers[i].tid, NULL, worker_main, &p->workers[i]) != 0) {
            p->n = i; /* run with the threads we got */
            break;
        }
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
    free(p->weights);
    free(p->scratch);
    free(p);
}

int sp_pool_size(const sp_pool *p) { return p ? p->n : 1; }

void sp_pool_run(sp_pool *p, sp_pool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu); /* pairs with a sleeper's check-then-wait */
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) CPU_RELAX();
}

void sp_pool_set_weight(sp_pool *p, int ith, float weight) {
    if (p && ith >= 0 && ith < p->n && weight > 0) p->weights[ith] = weight;
}

void sp_pool_share(const sp_pool *p, int ith, int nth, int64_t n, int64_t *begin, int64_t *end) {
    if (!p || nth != p->n) { /* plain even split */
        *begin = n * ith / nth;
        *end = n * (ith + 1) / nth;
        return;
    }
    double total = 0, before = 0;
    for (int i = 0; i < nth; i++) total += p->weights[i];
    for (int i = 0; i < ith; i++) before += p->weights[i];
    *begin = (int64_t)((double)n * before / total + 0.5);
    *end = ith == nth - 1 ? n : (int64_t)((double)n * (before + p->weights[ith]) / total + 0.5);
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
