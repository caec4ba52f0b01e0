/* tests/unit/test_sched.c — the scheduler: stop strings across token boundaries, the engine thread
 * producing exactly `sparrow run`'s greedy text through a job outbox, prefix reuse, cancellation,
 * queue limits and prompt-length errors. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scheduler/sched.h"
#include "scheduler/stop.h"
#include "testutil.h"

/* ---- stop strings ---- */

static char *feed_all(sp_stop *st, const char *const *pieces, int n, bool *matched) {
    static char acc[1024];
    acc[0] = 0;
    *matched = false;
    for (int i = 0; i < n && !*matched; i++) {
        char *out;
        size_t len;
        *matched = sp_stop_feed(st, pieces[i], strlen(pieces[i]), &out, &len);
        strncat(acc, out, len);
        free(out);
    }
    if (!*matched) {
        char *out;
        size_t len;
        sp_stop_flush(st, &out, &len);
        strncat(acc, out, len);
        free(out);
    }
    return acc;
}

Test(stop, matches_across_pieces_and_is_not_emitted) {
    char *stops[] = {"\nUser:", "END"};
    sp_stop st;
    sp_stop_init(&st, stops, 2);
    const char *pieces[] = {"Hello", " there\n", "Us", "er:", " more"};
    bool matched;
    char *text = feed_all(&st, pieces, 5, &matched);
    cr_expect(matched);
    cr_expect_str_eq(text, "Hello there");
    sp_stop_free(&st);
}

Test(stop, partial_match_is_released_when_it_fails) {
    char *stops[] = {"END"};
    sp_stop st;
    sp_stop_init(&st, stops, 1);
    const char *pieces[] = {"the E", "N", "D", "ING"};
    bool matched;
    char *out;
    size_t len;
    cr_expect(!sp_stop_feed(&st, pieces[0], 5, &out, &len));
    cr_expect_str_eq(out, "the "); /* "E" held back */
    free(out);
    cr_expect(!sp_stop_feed(&st, "Nx", 2, &out, &len));
    cr_expect_str_eq(out, "ENx");
    free(out);
    sp_stop_free(&st);
    sp_stop_init(&st, stops, 1);
    const char *p2[] = {"a", "EN"};
    char *text = feed_all(&st, p2, 2, &matched);
    cr_expect(!matched);
    cr_expect_str_eq(text, "aEN"); /* flushed at the end */
    sp_stop_free(&st);
}

Test(stop, earliest_stop_wins_and_no_stops_passes_through) {
    char *stops[] = {"cd", "b"};
    sp_stop st;
    sp_stop_init(&st, stops, 2);
    const char *pieces[] = {"abcd"};
    bool matched;
    cr_expect_str_eq(feed_all(&st, pieces, 1, &matched), "a");
    cr_expect(matched);
    sp_stop_free(&st);
    sp_stop_init(&st, NULL, 0);
    const char *p2[] = {"x", "yz"};
    cr_expect_str_eq(feed_all(&st, p2, 2, &matched), "xyz");
    sp_stop_free(&st);
}

/* ---- engine thread ---- */

static sp_model *model;
static void setup(void) {
    char err[256];
    model = sp_model_load(tu_shared("models/stories260K.gguf"), err, sizeof err);
    cr_assert_not_null(model, "%s", err);
}
static void teardown(void) { sp_model_free(model); }

static sp_job *make_job(const int32_t *ids, int n, int max_tokens) {
    sp_job *j = sp_job_new();
    j->p.prompt = malloc(sizeof(int32_t) * (size_t)n);
    memcpy(j->p.prompt, ids, sizeof(int32_t) * (size_t)n);
    j->p.n_prompt = n;
    j->p.max_tokens = max_tokens;
    j->p.sampling.temperature = 0;
    return j;
}

static int32_t last_tokens[1024]; /* the tokens of the last collect() */
static int n_last_tokens;

/* Drain until finished; returns the text (static buffer). */
static const char *collect(sp_job *j, sp_finish *f, int *n_events) {
    static char text[1 << 20];
    size_t used = 0;
    *n_events = 0;
    n_last_tokens = 0;
    for (;;) {
        sp_job_event ev[16];
        bool started;
        size_t n = sp_job_drain(j, ev, 16, f, &started);
        for (size_t i = 0; i < n; i++) {
            cr_assert_lt(used + ev[i].len, sizeof text);
            memcpy(text + used, ev[i].text, ev[i].len);
            if (ev[i].token >= 0 && n_last_tokens < 1024) last_tokens[n_last_tokens++] = ev[i].token;
            used += ev[i].len;
            free(ev[i].text);
            (*n_events)++;
        }
        if (*f != SP_FINISH_NONE) break;
        usleep(1000);
    }
    text[used] = 0;
    return text;
}

static const int32_t once[] = {1, 403, 407, 261, 378}; /* BOS "Once upon a time" */

TestSuite(sched, .init = setup, .fini = teardown);

Test(sched, greedy_text_equals_run_and_prefix_is_reused) {
    char err[256];
    sp_sched_opts o = {.n_ctx = 0, .max_queue = 4};
    sp_sched *s = sp_sched_new(model, &o, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    sp_job *j = make_job(once, 5, 64);
    cr_assert_eq(sp_sched_submit(s, j), 0);
    sp_finish f;
    int n_events;
    const char *text = collect(j, &f, &n_events);
    cr_expect_eq(f, SP_FINISH_LENGTH);
    cr_expect_str_eq(text, ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
                           "big, red ball. She wanted to play with it, but it was too high.\nLily's mom said");
    cr_expect_eq(j->n_gen_tokens, 64);
    cr_expect_eq(j->n_cached_tokens, 0);
    sp_job_unref(j);

    /* KV blocks (16 positions) are shared by content: a 37-token prompt (the 5 above + 32 generated
     * tokens) finds its first 2 blocks cached by the first request (whose K/V went up to position 68),
     * and continues the same story */
    int32_t p37[37];
    memcpy(p37, once, sizeof once);
    memcpy(p37 + 5, last_tokens, 32 * sizeof(int32_t));
    j = make_job(p37, 37, 8);
    sp_sched_submit(s, j);
    collect(j, &f, &n_events);
    cr_expect_eq(j->n_cached_tokens, 32);
    cr_expect_eq(j->n_gen_tokens, 8);
    sp_job_unref(j);

    /* exactly 2 full blocks, all cached: the last position is recomputed in a copy of block 2 */
    j = make_job(p37, 32, 4);
    sp_sched_submit(s, j);
    text = collect(j, &f, &n_events);
    cr_expect_eq(j->n_cached_tokens, 31);
    sp_job_unref(j);
    j = make_job(once, 5, 37);
    sp_sched_submit(s, j);
    const char *again = collect(j, &f, &n_events);
    cr_expect_eq(j->n_cached_tokens, 0, "a prompt shorter than a block is computed");
    cr_expect_str_eq(again, ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
                            "big, red");
    sp_job_unref(j);

    sp_sched_stats st;
    sp_sched_get_stats(s, &st);
    cr_expect_eq(st.completed, 4);
    cr_expect_eq(st.generated_tokens, 64 + 8 + 4 + 37);
    cr_expect_eq(st.cached_tokens, 63);
    cr_expect_eq(st.prefix_hit_tokens, 63);
    cr_expect_eq(st.kv_blocks_used, 0, "every sequence released its blocks");
    cr_expect_gt(st.kv_blocks_cached, 0);
    sp_sched_free(s);
}

/* Jobs submitted together with the same prompt (a request's n choices) run as forks of one prefill:
 * the siblings compute no prompt token, share its blocks, and at temperature 0 give the same text as
 * a lone run; running them next to an unrelated job changes nothing either. */
Test(sched, siblings_fork_one_prefill_and_batching_changes_no_token) {
    char err[256];
    sp_sched_opts o = {.max_queue = 8, .max_seqs = 8};
    sp_sched *s = sp_sched_new(model, &o, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    sp_job *alone = make_job(once, 5, 40);
    cr_assert_eq(sp_sched_submit(s, alone), 0);
    sp_finish f;
    int n_events;
    char want[4096];
    snprintf(want, sizeof want, "%s", collect(alone, &f, &n_events));
    sp_job_unref(alone);
    static const int32_t other[] = {1, 403, 407, 261, 378, 263, 317}; /* a different prompt */
    static const int32_t bad[] = {1, 403, 512};                          /* an id past the vocabulary */
    sp_job *jobs[6];
    for (int i = 0; i < 4; i++) jobs[i] = make_job(once, 5, 40);
    jobs[4] = make_job(other, 7, 40);
    jobs[5] = make_job(bad, 3, 40);
    cr_assert_eq(sp_sched_submit_many(s, jobs, 6), 0);
    for (int i = 0; i < 4; i++) {
        cr_expect_str_eq(collect(jobs[i], &f, &n_events), want, "sibling %d (finish %d: %s)", i, f, jobs[i]->error);
        cr_expect_eq(jobs[i]->n_gen_tokens, 40);
    }
    collect(jobs[4], &f, &n_events);
    cr_expect_eq(f, SP_FINISH_LENGTH);
    collect(jobs[5], &f, &n_events);
    cr_expect_eq(f, SP_FINISH_ERROR, "a bad token id is refused alone");
    cr_expect_str_eq(jobs[5]->error, "prompt token 2: id 512 is out of range [0, 512)");
    cr_expect_eq(jobs[5]->error_status, 400);
    cr_expect_eq(jobs[0]->n_cached_tokens, 0);
    for (int i = 1; i < 4; i++) cr_expect_eq(jobs[i]->n_cached_tokens, 5, "sibling %d computed no prompt token", i);
    sp_sched_stats st;
    sp_sched_get_stats(s, &st);
    cr_expect_eq(st.completed, 6);
    cr_expect_eq(st.failed, 1);
    cr_expect_gt(st.step_seqs, st.steps, "steps carried several sequences (%llu over %llu steps)",
                 (unsigned long long)st.step_seqs, (unsigned long long)st.steps);
    cr_expect_eq(st.kv_blocks_used, 0);
    for (int i = 0; i < 6; i++) sp_job_unref(jobs[i]);
    sp_sched_free(s);
}

Test(sched, stop_string_ends_generation) {
    char err[256];
    sp_sched_opts o = {.max_queue = 4};
    sp_sched *s = sp_sched_new(model, &o, err, sizeof err);
    sp_job *j = make_job(once, 5, 64);
    j->p.stop = malloc(sizeof(char *));
    j->p.stop[0] = strdup(" Lily");
    j->p.n_stop = 1;
    sp_sched_submit(s, j);
    sp_finish f;
    int n;
    cr_expect_str_eq(collect(j, &f, &n), ", there was a little girl named");
    cr_expect_eq(f, SP_FINISH_STOP);
    sp_job_unref(j);
    sp_sched_free(s);
}

Test(sched, cancel_stops_within_a_step) {
    char err[256];
    sp_sched_opts o = {.max_queue = 4};
    sp_sched *s = sp_sched_new(model, &o, err, sizeof err);
    sp_job *j = make_job(once, 5, -1);
    j->p.ignore_eos = true;
    sp_sched_submit(s, j);
    sp_job_event ev[4];
    sp_finish f = SP_FINISH_NONE;
    bool started;
    size_t got = 0;
    while (got == 0) {
        size_t n = sp_job_drain(j, ev, 4, &f, &started);
        for (size_t i = 0; i < n; i++) free(ev[i].text);
        got += n;
        usleep(100);
    }
    sp_job_cancel(j);
    int n_events;
    collect(j, &f, &n_events);
    cr_expect_eq(f, SP_FINISH_CANCELLED);
    sp_sched_stats st;
    sp_sched_get_stats(s, &st);
    cr_expect_eq(st.cancelled, 1);
    cr_expect_eq(st.running, 0);
    sp_job_unref(j);
    sp_sched_free(s);
}

Test(sched, prompt_longer_than_context_is_an_error) {
    char err[256];
    sp_sched_opts o = {.n_ctx = 16, .max_queue = 4};
    sp_sched *s = sp_sched_new(model, &o, err, sizeof err);
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = 300 + i;
    sp_job *j = make_job(ids, 16, 4);
    sp_sched_submit(s, j);
    sp_finish f;
    int n;
    collect(j, &f, &n);
    cr_expect_eq(f, SP_FINISH_ERROR);
    cr_expect_eq(j->error_status, 400);
    cr_expect(strstr(j->error, "16 tokens") && strstr(j->error, "holds 16"), "%s", j->error);
    sp_job_unref(j);
    sp_sched_free(s);
}

Test(sched, full_queue_refuses_and_free_cancels_waiting_jobs) {
    char err[256];
    /* a context far longer than the time the test takes to generate into it, so job 0 is still
     * running while the others are submitted, however fast the kernels are */
    sp_sched_opts o = {.n_ctx = 1 << 16, .max_queue = 2, .max_seqs = 1};
    sp_sched *s = sp_sched_new(model, &o, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    sp_job *jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = make_job(once, 5, -1);
        jobs[i]->p.ignore_eos = true;
    }
    cr_assert_eq(sp_sched_submit(s, jobs[0]), 0);
    for (bool started = false; !started;) { /* wait until job 0 runs (it left the queue) */
        sp_job_event ev[8];
        sp_finish f;
        size_t n = sp_job_drain(jobs[0], ev, 8, &f, &started);
        for (size_t k = 0; k < n; k++) free(ev[k].text);
        usleep(1000);
    }
    cr_expect_eq(sp_sched_submit(s, jobs[1]), 0);
    cr_expect_eq(sp_sched_submit(s, jobs[2]), 0);
    cr_expect_eq(sp_sched_submit(s, jobs[3]), -1); /* 1 running + 2 waiting: full */
    sp_sched_stats st;
    sp_sched_get_stats(s, &st);
    cr_expect_eq(st.rejected, 1);
    cr_expect_eq(st.queue_depth, 2);
    cr_expect_eq(st.running, 1);
    sp_sched_free(s); /* cancels the running job and the waiting ones */
    for (int i = 0; i < 3; i++) {
        sp_finish f;
        int n;
        collect(jobs[i], &f, &n);
        cr_expect_eq(f, SP_FINISH_CANCELLED, "job %d: %d", i, f);
    }
    for (int i = 0; i < 4; i++) sp_job_unref(jobs[i]);
}
