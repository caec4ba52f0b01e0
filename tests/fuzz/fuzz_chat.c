/* tests/fuzz/fuzz_chat.c — libFuzzer target for the chat-to-prompt path of POST /v1/chat/completions,
 * without HTTP: the request body is validated by sp_oai_parse (the server's limits), the messages,
 * tools and chat_template_kwargs become the template context exactly as server/app.c render_chat
 * builds it, a real chat template renders it (sp_tmpl_render, the server's default bounds) and the
 * prompt is tokenized with a real vocabulary as server/app.c tokenize does (BOS added unless the
 * prompt starts with it, special tokens parsed).
 *
 * Input layout: byte 0 picks the (template, vocabulary) pair (ASCII '0'.. '3' pick 0..3), the rest
 * is the request body. The pairs, loaded once in LLVMFuzzerInitialize from $SPARROW_SHARED (else
 * ../shared relative to the working directory):
 *   0  Qwen2.5-7B-Instruct (ChatML with tools)   + qwen2 vocabulary (byte-level BPE, 151k)
 *   1  Llama-3.1-8B-Instruct (tools, ipython)    + llama-bpe vocabulary (byte-level BPE, 128k)
 *   2  Qwen3-0.6B (thinking, enable_thinking)    + qwen2 vocabulary
 *   3  the built-in llama2 template              + llama-spm vocabulary (SentencePiece)
 * A pair that does not load aborts the start (the target would otherwise test nothing).
 *
 * Expected outcomes, not findings: a 4xx from validation, a raise_exception from the template.
 * Findings: crashes, leaks, hangs, sanitizer reports, and broken invariants: an error without a
 * message or with a non-4xx status from validation, a rendered prompt whose length is not its
 * strlen (the server tokenizes strlen bytes), a token count that depends on the buffer size, an id
 * out of the vocabulary, and for the byte-level BPE pairs, token pieces that do not give the
 * prompt back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai.h"
#include "api/tmpl.h"
#include "engine/tok.h"
#include "storage/gguf.h"

typedef struct {
    const char *template_file; /* under templates/, or NULL for a builtin */
    const char *builtin;
    const char *vocab;         /* tokenizers/ggml-vocab-NAME.gguf */
    bool lossless;             /* byte-level BPE: pieces (control text included) give the text back */
    sp_tmpl *tmpl;
    sp_tok *tok;
    char bos_text[64], eos_text[64];
} chat_pair;

static chat_pair pairs[] = {
    {.template_file = "Qwen-Qwen2.5-7B-Instruct.jinja", .vocab = "qwen2", .lossless = true},
    {.template_file = "meta-llama-Llama-3.1-8B-Instruct.jinja", .vocab = "llama-bpe", .lossless = true},
    {.template_file = "Qwen-Qwen3-0.6B.jinja", .vocab = "qwen2", .lossless = true},
    {.builtin = "llama2", .vocab = "llama-spm", .lossless = false},
};
#define N_PAIRS (sizeof pairs / sizeof pairs[0])

static sp_oai_limits limits;
static sp_tmpl_opts render_opts;
static bool verbose; /* $FUZZ_CHAT_VERBOSE: one line per input (what it reached), for seed upkeep */

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_chat: invariant failed: %s\n", what);
        abort();
    }
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, "fuzz_chat: %s: %s\n", what, detail);
    exit(1);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    *len = fread(s, 1, (size_t)n, f);
    s[*len] = 0;
    fclose(f);
    return s;
}

/* server/app.c token_text: the piece of a special token (BOS/EOS) as the template sees it. */
static void token_text(const sp_tok *t, int32_t id, char *out, size_t cap) {
    out[0] = 0;
    if (id < 0) return;
    int32_t n = sp_tok_piece(t, id, true, out, (int32_t)cap - 1);
    if (n < 0 || n >= (int32_t)cap) n = 0;
    out[n] = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *shared = getenv("SPARROW_SHARED");
    if (!shared || !*shared) shared = "../shared";
    for (size_t i = 0; i < N_PAIRS; i++) {
        chat_pair *p = &pairs[i];
        char path[1024], err[512];
        snprintf(path, sizeof path, "%s/tokenizers/ggml-vocab-%s.gguf", shared, p->vocab);
        sp_gguf *g = sp_gguf_open(path, err, sizeof err);
        if (!g) die(path, err);
        p->tok = sp_tok_from_gguf(g, err, sizeof err);
        sp_gguf_close(g);
        if (!p->tok) die(path, err);
        token_text(p->tok, sp_tok_bos(p->tok), p->bos_text, sizeof p->bos_text);
        token_text(p->tok, sp_tok_eos(p->tok), p->eos_text, sizeof p->eos_text);
        char *src;
        size_t len;
        if (p->template_file) {
            snprintf(path, sizeof path, "%s/templates/%s", shared, p->template_file);
            src = read_file(path, &len);
            if (!src) die(path, "cannot read");
        } else {
            src = strdup(sp_tmpl_builtin(p->builtin));
            len = strlen(src);
        }
        p->tmpl = sp_tmpl_parse(src, len, err, sizeof err);
        free(src);
        if (!p->tmpl) die(p->template_file ? p->template_file : p->builtin, err);
    }
    limits = sp_oai_default_limits(); /* what `sparrow serve` uses without limit flags */
    render_opts.fixed_date = "2026-01-15"; /* strftime_now; every other bound the server's default */
    verbose = getenv("FUZZ_CHAT_VERBOSE") != NULL;
    return 0;
}

/* server/app.c render_chat: the request's fields as the template's variables. */
static cJSON *chat_context(const chat_pair *p, const sp_oai_req *q) {
    cJSON *ctx = cJSON_CreateObject();
    cJSON_AddItemReferenceToObject(ctx, "messages", q->messages);
    if (q->tools) cJSON_AddItemReferenceToObject(ctx, "tools", q->tools);
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", true);
    cJSON_AddStringToObject(ctx, "bos_token", p->bos_text);
    cJSON_AddStringToObject(ctx, "eos_token", p->eos_text);
    if (q->template_kwargs) {
        const cJSON *kv;
        cJSON_ArrayForEach(kv, q->template_kwargs) {
            if (!cJSON_GetObjectItemCaseSensitive(ctx, kv->string))
                cJSON_AddItemToObject(ctx, kv->string, cJSON_Duplicate(kv, true));
        }
    }
    return ctx;
}

/* server/app.c tokenize, plus the invariants. Returns the token count. */
static int32_t tokenize_prompt(const chat_pair *p, const char *text) {
    size_t len = strlen(text);
    bool parse_special = true;
    bool starts_with_bos = p->bos_text[0] && !strncmp(text, p->bos_text, strlen(p->bos_text));
    bool add_special = !(starts_with_bos && parse_special);
    int32_t cap = (int32_t)(len < 1 << 28 ? len : 1 << 28) + 8;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    check(ids != NULL, "malloc");
    int32_t n = sp_tok_encode(p->tok, text, len, add_special, parse_special, ids, cap);
    check(n >= 0, "a rendered prompt tokenizes");
    if (n > cap) {
        ids = realloc(ids, sizeof(int32_t) * (size_t)n);
        check(ids != NULL, "realloc");
        check(sp_tok_encode(p->tok, text, len, add_special, parse_special, ids, n) == n, "same count twice");
    }
    if (n > 1) check(sp_tok_encode(p->tok, text, len, add_special, parse_special, ids, n / 2) == n,
                     "count with a short buffer");
    int32_t n_vocab = sp_tok_n_vocab(p->tok);
    for (int32_t i = 0; i < n; i++) check(ids[i] >= 0 && ids[i] < n_vocab, "id in the vocabulary");
    if (p->lossless) {
        /* what the model sees is what the template wrote, control tokens included (BOS/EOS the
         * vocabulary adds are not in the text: compare the encoding without them) */
        if (add_special) {
            int32_t n2 = sp_tok_encode(p->tok, text, len, false, parse_special, ids, n);
            check(n2 >= 0 && n2 <= n, "encode without specials: no more tokens");
            n = n2;
        }
        char *back = malloc(len + 1);
        check(back != NULL, "malloc");
        size_t k = 0;
        for (int32_t i = 0; i < n; i++) {
            int32_t w = sp_tok_piece(p->tok, ids[i], true, back + k, (int32_t)(len - k));
            check(w >= 0 && (size_t)w <= len - k, "piece fits in the prompt length");
            k += (size_t)w;
        }
        check(k == len && memcmp(back, text, len) == 0, "token pieces give the prompt back");
        free(back);
    }
    free(ids);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const chat_pair *p = &pairs[data[0] % N_PAIRS];
    const char *body = (const char *)data + 1;
    size_t body_len = size - 1;

    sp_oai_req q;
    sp_oai_error e;
    memset(&e, 0, sizeof e);
    if (!sp_oai_parse(SP_OAI_CHAT, body, body_len, &limits, &q, &e)) {
        check(e.status >= 400 && e.status < 500, "a refused request is a 4xx");
        check(e.message[0] != 0, "a refused request says why");
        char *json = sp_oai_error_json(&e);
        check(json != NULL, "error JSON");
        if (verbose) fprintf(stderr, "fuzz_chat: pair %d: refused: %s\n", data[0] % (int)N_PAIRS, json);
        free(json);
        return 0;
    }
    check(cJSON_IsArray(q.messages) && cJSON_GetArraySize(q.messages) > 0, "messages is a non-empty array");
    const cJSON *m;
    cJSON_ArrayForEach(m, q.messages) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        check(!c || cJSON_IsString(c) || cJSON_IsNull(c), "content normalized to a string or null");
    }

    cJSON *ctx = chat_context(p, &q);
    char *out = NULL, err[512];
    size_t len = 0;
    sp_tmpl_status st = sp_tmpl_render(p->tmpl, ctx, &render_opts, &out, &len, err, sizeof err);
    cJSON_Delete(ctx);
    if (st == SP_TMPL_OK) {
        check(out != NULL && strlen(out) == len, "the prompt is a C string of its length");
        int32_t n = tokenize_prompt(p, out);
        if (verbose) fprintf(stderr, "fuzz_chat: pair %d: %zu bytes of prompt, %d tokens\n", data[0] % (int)N_PAIRS, len, n);
        free(out);
    } else {
        check(out == NULL, "no output on an error");
        check(err[0] != 0 || st == SP_TMPL_ERAISED, "a render error says why");
        if (verbose) fprintf(stderr, "fuzz_chat: pair %d: template error %d: %s\n", data[0] % (int)N_PAIRS, st, err);
    }
    sp_oai_req_free(&q);
    return 0;
}
