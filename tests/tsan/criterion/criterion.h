/* tests/tsan/criterion/criterion.h — a stand-in for <criterion/criterion.h>, used only by the
 * ThreadSanitizer build (cmake -DSP_TSAN=ON puts this folder first on the unit tests' include path
 * and does not link libcriterion).
 *
 * Why: Criterion cannot run under TSan. Its runner maps an "inheritable arena" with MAP_FIXED at a
 * random address that TSan's shadow layout mostly reserves (the start aborts with "Could not
 * initialize inheritable arena" about half the time), and its BoxFort sandbox then crashes spawning
 * the test processes (upstream: Snaipe/Criterion issue 274, open since 2018).
 *
 * What: the subset of Criterion's API the tests use (Test, TestSuite with .init/.fini, cr_assert*,
 * cr_expect*, cr_skip_test, cr_log_*) and a main() that runs each selected test in a forked child
 * as Criterion does (init, test, fini; a failed cr_assert ends the test, a failed cr_expect marks it
 * failed and goes on), in name order, one at a time. Options: --filter GLOB ("suite/test", extglob
 * as in Criterion), --list, --verbose; --jobs N and anything else are accepted and ignored. Exit
 * status 1 when a test failed or crashed (a TSan report ends a test with status 66: a failure). */
#ifndef SP_TSAN_CRITERION_H
#define SP_TSAN_CRITERION_H

/* the message argument is optional: "" __VA_ARGS__ makes an empty format when it is absent */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct criterion_test_extra_data {
    void (*init)(void);
    void (*fini)(void);
    double timeout;
    bool disabled;
    const char *description;
    int signal;
    int exit_code;
};

typedef struct crt_test {
    const char *suite, *name;
    void (*fn)(void);
    struct criterion_test_extra_data data;
    struct crt_test *next;
} crt_test;

typedef struct crt_suite {
    const char *name;
    struct criterion_test_extra_data data;
    struct crt_suite *next;
} crt_suite;

static crt_test *crt_tests;
static crt_suite *crt_suites;
static int crt_expect_failed; /* in the test's process */

#define CRT_SKIP_STATUS 77

static inline void crt_register_test(crt_test *t) {
    t->next = crt_tests;
    crt_tests = t;
}
static inline void crt_register_suite(crt_suite *s) {
    s->next = crt_suites;
    crt_suites = s;
}

#define Test(suite, name, ...)                                                                      \
    static void crt_fn_##suite##_##name(void);                                                      \
    static crt_test crt_t_##suite##_##name = {#suite, #name, crt_fn_##suite##_##name, {__VA_ARGS__}, NULL}; \
    __attribute__((constructor)) static void crt_reg_##suite##_##name(void) {                        \
        crt_register_test(&crt_t_##suite##_##name);                                                 \
    }                                                                                               \
    static void crt_fn_##suite##_##name(void)

#define TestSuite(suite, ...)                                                                       \
    static crt_suite crt_s_##suite = {#suite, {__VA_ARGS__}, NULL};                                 \
    __attribute__((constructor)) static void crt_sreg_##suite(void) { crt_register_suite(&crt_s_##suite); }

__attribute__((format(printf, 5, 6))) static inline void crt_fail(bool fatal, const char *file, int line,
                                                                  const char *what, const char *fmt, ...) {
    fprintf(stderr, "[FAIL] %s:%d: %s: %s", file, line, fatal ? "assertion" : "expectation", what);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    if (fatal) {
        fflush(NULL);
        exit(1);
    }
    crt_expect_failed = 1;
}

/* a message argument, when given, is a string literal first (as Criterion requires) */
#define crt_check(fatal, cond, what, ...)                                                            \
    do {                                                                                            \
        if (!(cond)) crt_fail(fatal, __FILE__, __LINE__, what, "" __VA_ARGS__);                      \
    } while (0)

static inline bool crt_str_eq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }
#define crt_str_check(fatal, want_eq, a, b, ...)                                                     \
    do {                                                                                            \
        const char *crt_a = (a), *crt_b = (b);                                                      \
        if (crt_str_eq(crt_a, crt_b) != (want_eq)) {                                                \
            fprintf(stderr, "[FAIL]   %s = \"%s\"\n[FAIL]   %s = \"%s\"\n", #a, crt_a ? crt_a : "(null)", #b, \
                    crt_b ? crt_b : "(null)");                                                      \
            crt_fail(fatal, __FILE__, __LINE__, want_eq ? #a " == " #b : #a " != " #b, "" __VA_ARGS__); \
        }                                                                                           \
    } while (0)

#define cr_assert(c, ...) crt_check(true, (c), #c, __VA_ARGS__)
#define cr_expect(c, ...) crt_check(false, (c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...) crt_check(true, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_expect_not(c, ...) crt_check(false, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) crt_check(true, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) crt_check(false, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) crt_check(true, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) crt_check(false, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) crt_check(true, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) crt_check(false, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) crt_check(true, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) crt_check(false, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) crt_check(true, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) crt_check(false, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) crt_check(true, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) crt_check(false, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...) crt_check(true, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_null(p, ...) crt_check(false, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) crt_check(true, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) crt_check(false, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...) crt_check(true, fabs((double)(a) - (double)(b)) <= (eps), #a " ~= " #b, __VA_ARGS__)
#define cr_expect_float_eq(a, b, eps, ...) crt_check(false, fabs((double)(a) - (double)(b)) <= (eps), #a " ~= " #b, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) crt_str_check(true, true, a, b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) crt_str_check(false, true, a, b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) crt_str_check(true, false, a, b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) crt_str_check(false, false, a, b, __VA_ARGS__)
#define cr_assert_fail(...) crt_fail(true, __FILE__, __LINE__, "failed", "" __VA_ARGS__)
#define cr_expect_fail(...) crt_fail(false, __FILE__, __LINE__, "failed", "" __VA_ARGS__)

#define cr_skip_test(...)                                                                           \
    do {                                                                                            \
        fprintf(stderr, "[SKIP] " __VA_ARGS__);                                                     \
        fputc('\n', stderr);                                                                        \
        fflush(NULL);                                                                               \
        exit(CRT_SKIP_STATUS);                                                                      \
    } while (0)

#define crt_log(level, ...)                                                                         \
    do {                                                                                            \
        fprintf(stderr, "[" level "] " __VA_ARGS__);                                                \
        fputc('\n', stderr);                                                                        \
    } while (0)
#define cr_log_info(...) crt_log("INFO", __VA_ARGS__)
#define cr_log_warn(...) crt_log("WARN", __VA_ARGS__)
#define cr_log_error(...) crt_log("ERR ", __VA_ARGS__)

static int crt_cmp(const void *a, const void *b) {
    const crt_test *x = *(crt_test *const *)a, *y = *(crt_test *const *)b;
    int c = strcmp(x->suite, y->suite);
    return c ? c : strcmp(x->name, y->name);
}

static int crt_run(const crt_test *t, const crt_suite *s) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        if (s && s->data.init) s->data.init();
        if (t->data.init) t->data.init();
        t->fn();
        if (t->data.fini) t->data.fini();
        if (s && s->data.fini) s->data.fini();
        fflush(NULL);
        exit(crt_expect_failed ? 1 : 0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {}
    return st;
}

int main(int argc, char **argv) {
    const char *filter = NULL;
    bool list = false, verbose = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
        else if (!strncmp(argv[i], "--filter=", 9)) filter = argv[i] + 9;
        else if (!strcmp(argv[i], "--list")) list = true;
        else if (!strncmp(argv[i], "--verbose", 9)) verbose = true;
        else if ((!strcmp(argv[i], "--jobs") || !strcmp(argv[i], "-j")) && i + 1 < argc) i++;
    }
    size_t n = 0;
    for (crt_test *t = crt_tests; t; t = t->next) n++;
    crt_test **all = malloc((n ? n : 1) * sizeof *all);
    n = 0;
    for (crt_test *t = crt_tests; t; t = t->next) all[n++] = t;
    qsort(all, n, sizeof *all, crt_cmp);
    int tested = 0, passed = 0, failed = 0, crashed = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        const crt_test *t = all[i];
        char id[512];
        snprintf(id, sizeof id, "%s/%s", t->suite, t->name);
        if (filter && fnmatch(filter, id, FNM_EXTMATCH) != 0) continue; /* Criterion: extglob */
        if (list) {
            printf("%s::%s\n", t->suite, t->name);
            continue;
        }
        const crt_suite *s = NULL;
        for (const crt_suite *q = crt_suites; q; q = q->next)
            if (!strcmp(q->name, t->suite)) s = q;
        if (t->data.disabled || (s && s->data.disabled)) {
            skipped++;
            continue;
        }
        if (verbose) fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        int st = crt_run(t, s);
        tested++;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passed++;
            if (verbose) fprintf(stderr, "[PASS] %s::%s\n", t->suite, t->name);
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == CRT_SKIP_STATUS) {
            tested--;
            skipped++;
        } else if (WIFEXITED(st)) {
            failed++;
            fprintf(stderr, "[FAIL] %s::%s (exit status %d)\n", t->suite, t->name, WEXITSTATUS(st));
        } else {
            crashed++;
            fprintf(stderr, "[FAIL] %s::%s: CRASH (signal %d)\n", t->suite, t->name, WTERMSIG(st));
        }
    }
    free(all);
    if (!list)
        fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d | Skipped: %d\n", tested,
                passed, failed, crashed, skipped);
    return failed || crashed ? 1 : 0;
}

#endif
