/* tests/unit/test_wcache.c — the packed-weight cache file (storage/wcache.c): what is written is
 * mapped back byte for byte; a stale key, a flipped byte anywhere, a truncated file or other tensors
 * are refused (never trusted); pruning removes caches of models that are gone or changed. And the
 * model loader end to end: the first load builds the cache, the second maps it, both give the same
 * logits as repacking in memory. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/model.h"
#include "storage/wcache.h"
#include "testutil.h"

static char dir[256];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/sp-wcache-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(wcache, .init = setup, .fini = teardown);

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* Two blobs of 5000 and 300 bytes, written for model file `model`. */
static void make_cache(const char *model, char *key, char *path, sp_wcache_entry *e, uint8_t *b0, uint8_t *b1) {
    cr_assert(sp_wcache_key(model, "test/pack1", key, 2048));
    sp_wcache_path(dir, key, path, 4096);
    for (int i = 0; i < 5000; i++) b0[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 300; i++) b1[i] = (uint8_t)(i * 13 + 1);
    e[0] = (sp_wcache_entry){2, 8, 64, 100, 5000, NULL};
    e[1] = (sp_wcache_entry){1, 2, 32, 9, 300, NULL};
    char err[256] = "";
    sp_wcache_writer *w = sp_wcache_begin(path, key, 2, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert(sp_wcache_append(w, &e[0], b0, err, sizeof err), "%s", err);
    cr_assert(sp_wcache_append(w, &e[1], b1, err, sizeof err), "%s", err);
    cr_assert(sp_wcache_commit(w, err, sizeof err), "%s", err);
}

static void expect_refused(const char *path, const char *key, sp_wcache_entry *e, const char *why) {
    char err[512] = "";
    sp_wcache *c = sp_wcache_open(path, key, e, 2, err, sizeof err);
    cr_expect_null(c, "opened a cache that should be refused (%s)", why);
    cr_expect(strstr(err, why) != NULL, "error '%s' should say '%s'", err, why);
    sp_wcache_close(c);
}

Test(wcache, round_trip_and_every_kind_of_damage) {
    char model[300], key[2048], path[4096], err[512] = "";
    snprintf(model, sizeof model, "%s/model.gguf", dir);
    write_file(model, "not really a model");
    sp_wcache_entry e[2];
    static uint8_t b0[5000], b1[300];
    make_cache(model, key, path, e, b0, b1);
    sp_wcache *c = sp_wcache_open(path, key, e, 2, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    cr_expect(!memcmp(e[0].data, b0, 5000) && !memcmp(e[1].data, b1, 300));
    cr_expect_eq((uintptr_t)e[0].data % 4096, 0, "blobs are page-aligned");
    cr_expect_eq(sp_wcache_size(c), 4096 * 5, "header page, table page, blobs of 2 pages and 1");
    sp_wcache_prefetch(c, 1);
    sp_wcache_close(c);

    /* other tensors than the file holds */
    e[1].bytes = 301;
    expect_refused(path, key, e, "holds other tensors");
    e[1].bytes = 300;
    /* a flipped byte in a blob */
    int fd = open(path, O_RDWR);
    uint8_t x;
    cr_assert_eq(pread(fd, &x, 1, 4096 * 2 + 1234), 1);
    x ^= 0x10;
    cr_assert_eq(pwrite(fd, &x, 1, 4096 * 2 + 1234), 1);
    expect_refused(path, key, e, "data is corrupt");
    x ^= 0x10;
    cr_assert_eq(pwrite(fd, &x, 1, 4096 * 2 + 1234), 1);
    /* a flipped byte in the table */
    cr_assert_eq(pread(fd, &x, 1, 4096 + 20), 1);
    x ^= 1;
    cr_assert_eq(pwrite(fd, &x, 1, 4096 + 20), 1);
    expect_refused(path, key, e, "table is corrupt");
    x ^= 1;
    cr_assert_eq(pwrite(fd, &x, 1, 4096 + 20), 1);
    /* truncated */
    cr_assert_eq(ftruncate(fd, 4096 * 3), 0);
    close(fd);
    expect_refused(path, key, e, "truncated");
    /* stale: the model file changed since (size) */
    make_cache(model, key, path, e, b0, b1);
    write_file(model, "a different model now");
    char key2[2048];
    cr_assert(sp_wcache_key(model, "test/pack1", key2, sizeof key2));
    cr_expect_str_neq(key, key2);
    expect_refused(path, key2, e, "stale");
    /* missing */
    char nowhere[4200];
    snprintf(nowhere, sizeof nowhere, "%s/none.spw", dir);
    expect_refused(nowhere, key, e, "missing");
}

Test(wcache, prune_keeps_live_models_only) {
    char m1[300], m2[300], k1[2048], k2[2048], p1[4096], p2[4096];
    snprintf(m1, sizeof m1, "%s/a.gguf", dir);
    snprintf(m2, sizeof m2, "%s/b.gguf", dir);
    write_file(m1, "model a");
    write_file(m2, "model b");
    sp_wcache_entry e[2];
    static uint8_t b0[5000], b1[300];
    make_cache(m1, k1, p1, e, b0, b1);
    make_cache(m2, k2, p2, e, b0, b1);
    char junk[4200];
    snprintf(junk, sizeof junk, "%s.999999.tmp", p1); /* a dead process's temporary file */
    write_file(junk, "partial");
    cr_assert_eq(unlink(m2), 0);
    sp_wcache_prune(dir);
    cr_expect_eq(access(p1, F_OK), 0, "the cache of a live model stays");
    cr_expect_neq(access(p2, F_OK), 0, "the cache of a deleted model goes");
    cr_expect_neq(access(junk, F_OK), 0, "a dead writer's temporary file goes");
}

Test(wcache, model_builds_then_maps_the_cache_with_identical_logits) {
    const char *file = tu_shared("models/synthetic/tiny-qwen2-q4_0.gguf");
    const sp_kernels *k = sp_kernels_select(NULL);
    if (!k->pack) { /* the reference table never packs: nothing to cache */
        cr_log_info("no packing kernel table on this CPU");
        return;
    }
    char err[256] = "";
    float logits[3][512];
    int32_t ids[6] = {1, 30, 40, 50, 60, 70};
    for (int run = 0; run < 3; run++) {
        sp_load_opts o = {.kernels = k, .cache_dir = run < 2 ? dir : NULL};
        sp_model *m = sp_model_load_opts(file, &o, err, sizeof err);
        cr_assert_not_null(m, "%s", err);
        if (run < 2) cr_expect_eq(m->wcache_state, run == 0 ? 2 : 1, "run %d: state %d, note %s, path %s", run, m->wcache_state, m->wcache_note, m->wcache_path);
        else cr_expect_null(m->wcache);
        cr_expect_gt(m->packed_bytes, 0);
        sp_ctx *c = sp_ctx_new(m, 64, err, sizeof err);
        cr_assert_eq(sp_ctx_eval(c, ids, 6, logits[run], false, err, sizeof err), 0, "%s", err);
        sp_ctx_free(c);
        sp_model_free(m);
    }
    cr_expect(!memcmp(logits[0], logits[1], sizeof logits[0]), "built vs mapped");
    cr_expect(!memcmp(logits[0], logits[2], sizeof logits[0]), "cache vs in memory");
}
