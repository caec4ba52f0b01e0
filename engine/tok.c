/* engine/tok.c — the tokenizer module's common part: loading and validating the vocabulary from
 * GGUF metadata (tokenizer.ggml.*) into shared storage (texts, scores, types, text → id hash map,
 * special ids), splitting special-token text out of the input (llama.cpp's rules), dispatching
 * each raw fragment to the model's encoder (tok_spm.c for "llama", tok_bpe.c for "gpt2",
 * tok_wpm.c for "bert"), token pieces and the streaming UTF-8-safe detokenizer. The tokenizer copies what it needs: the sp_gguf may be closed
 * once sp_tok_from_gguf returns. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "engine/tok_impl.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP_TOK_MAX_VOCAB (1 << 26)

static void tok_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- text → id hash map ---- */

static uint32_t tok_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a, then a final avalanche */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}

int32_t sp_tok_lookup(const sp_tok *t, const char *text, size_t len) {
    for (uint32_t i = tok_hash(text, len) & t->map_mask;; i = (i + 1) & t->map_mask) {
        int32_t id = t->map[i];
        if (id < 0) return -1;
        const sp_tok_entry *e = &t->tokens[id];
        if (e->len == len && memcmp(t->pool + e->off, text, len) == 0) return id;
    }
}

/* Insert every non-empty text; a duplicate text maps to its last id (as llama.cpp does). */
static bool tok_build_map(sp_tok *t) {
    uint32_t size = 64;
    while (size < 2u * (uint32_t)t->n_vocab) size *= 2;
    t->map = malloc((size_t)size * sizeof *t->map);
    if (!t->map) return false;
    memset(t->map, 0xff, (size_t)size * sizeof *t->map);
    t->map_mask = size - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const sp_tok_entry *e = &t->tokens[id];
        if (e->len == 0) continue;
        const char *s = t->pool + e->off;
        uint32_t i = tok_hash(s, e->len) & t->map_mask;
        for (;; i = (i + 1) & t->map_mask) {
            int32_t o = t->map[i];
            if (o < 0 || (t->tokens[o].len == e->len && memcmp(t->pool + t->tokens[o].off, s, e->len) == 0)) break;
        }
        t->map[i] = id;
    }
    return true;
}

/* ---- loading ---- */

/* The vocabulary arrays: texts into the pool, scores, types. */
static bool tok_load_vocab(sp_tok *t, const sp_gguf *g, char *err, size_t errlen) {
    const sp_gguf_value *toks = sp_gguf_get(g, "tokenizer.ggml.tokens");
    if (!toks) return tok_err(err, errlen, "tokenizer: missing tokenizer.ggml.tokens"), false;
    if (toks->type != SP_GGUF_ARRAY || toks->arr.type != SP_GGUF_STRING)
        return tok_err(err, errlen, "tokenizer: tokenizer.ggml.tokens is not a string array"), false;
    uint64_t n = toks->arr.n;
    if (n == 0 || n > SP_TOK_MAX_VOCAB)
        return tok_err(err, errlen, "tokenizer: bad vocabulary size %llu", (unsigned long long)n), false;

    const sp_gguf_value *scores = sp_gguf_get(g, "tokenizer.ggml.scores");
    if (scores) {
        if (scores->type != SP_GGUF_ARRAY || (scores->arr.type != SP_GGUF_F32 && scores->arr.type != SP_GGUF_F64))
            return tok_err(err, errlen, "tokenizer: tokenizer.ggml.scores is not a float array"), false;
        if (scores->arr.n != n)
            return tok_err(err, errlen, "tokenizer: %llu scores for %llu tokens",
                           (unsigned long long)scores->arr.n, (unsigned long long)n), false;
    }
    const sp_gguf_value *types = sp_gguf_get(g, "tokenizer.ggml.token_type");
    if (types) {
        sp_gguf_vtype et = types->arr.type;
        bool int_elems = et == SP_GGUF_I32 || et == SP_GGUF_U32 || et == SP_GGUF_I8 || et == SP_GGUF_U8 ||
                         et == SP_GGUF_I16 || et == SP_GGUF_U16 || et == SP_GGUF_I64 || et == SP_GGUF_U64;
        if (types->type != SP_GGUF_ARRAY || !int_elems)
            return tok_err(err, errlen, "tokenizer: tokenizer.ggml.token_type is not an integer array"), false;
        if (types->arr.n != n)
            return tok_err(err, errlen, "tokenizer: %llu token types for %llu tokens",
                           (unsigned long long)types->arr.n, (unsigned long long)n), false;
    }

    uint64_t pool_size = 0;
    for (uint64_t i = 0; i < n; i++) pool_size += toks->arr.strs[i].len + 1;
    if (pool_size > UINT32_MAX) return tok_err(err, errlen, "tokenizer: token texts too large"), false;

    t->n_vocab = (int32_t)n;
    t->tokens = calloc(n, sizeof *t->tokens);
    t->pool = malloc(pool_size);
    if (!t->tokens || !t->pool) return tok_err(err, errlen, "tokenizer: out of memory"), false;

    uint32_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        sp_gguf_str s = toks->arr.strs[i];
        sp_tok_entry *e = &t->tokens[i];
        e->off = off;
        e->len = (uint32_t)s.len;
        memcpy(t->pool + off, s.ptr, s.len);
        t->pool[off + s.len] = 0;
        off += (uint32_t)s.len + 1;
        if ((int32_t)s.len > t->max_token_len) t->max_token_len = (int32_t)s.len;

        e->type = SP_TOKT_NORMAL;
        if (types) {
            int64_t ty = sp_gguf_arr_i64(types, i);
            if (ty < 0 || ty > SP_TOKT_BYTE)
                return tok_err(err, errlen, "tokenizer: token %llu has unknown type %lld", (unsigned long long)i,
                               (long long)ty), false;
            e->type = (uint8_t)ty;
        }
        if (scores) {
            double sc = sp_gguf_arr_f64(scores, i);
            if (isnan(sc)) return tok_err(err, errlen, "tokenizer: token %llu has a NaN score", (unsigned long long)i), false;
            e->score = (float)sc;
        }
    }
    return true;
}

/* An optional token id key: absent → dflt (kept only if in range), -1 / 0xFFFFFFFF → none. */
static bool tok_load_id(sp_tok *t, const sp_gguf *g, const char *key, int32_t dflt, int32_t *out, char *err,
                        size_t errlen) {
    *out = dflt < t->n_vocab ? dflt : -1;
    if (!sp_gguf_get(g, key)) return true;
    int64_t v;
    if (!sp_gguf_get_i64(g, key, &v)) return tok_err(err, errlen, "tokenizer: %s is not an integer", key), false;
    if (v == -1 || v == (int64_t)UINT32_MAX) {
        *out = -1;
        return true;
    }
    if (v < 0 || v >= t->n_vocab)
        return tok_err(err, errlen, "tokenizer: %s = %lld is out of range (vocabulary of %d)", key, (long long)v,
                       t->n_vocab), false;
    *out = (int32_t)v;
    return true;
}

static bool tok_load_flag(const sp_gguf *g, const char *key, bool dflt, bool *out, char *err, size_t errlen) {
    *out = dflt;
    if (!sp_gguf_get(g, key)) return true;
    if (!sp_gguf_get_bool(g, key, out)) return tok_err(err, errlen, "tokenizer: %s is not a bool", key), false;
    return true;
}

/* Defaults of the special ids and flags per tokenizer model, as llama.cpp applies them when the
 * keys are absent, except that a byte-level BPE vocabulary without bos / eos keys has none
 * (llama.cpp falls back to id 11, which is "," in GPT-2-like vocabularies). */
typedef struct {
    int32_t bos, eos, unk, sep, pad;
    bool add_bos, add_sep, add_space_prefix;
} tok_defaults;

static tok_defaults tok_model_defaults(sp_tok_kind kind, const sp_tok_pre_flags *pre) {
    switch (kind) {
    case SP_TOK_BPE: return (tok_defaults){-1, -1, -1, -1, -1, pre->add_bos, false, false};
    case SP_TOK_WPM: return (tok_defaults){101, -1, 100, 102, 0, true, true, false};
    default: return (tok_defaults){1, 2, 0, -1, -1, true, false, true};
    }
}

static bool tok_load_specials(sp_tok *t, const sp_gguf *g, const tok_defaults *d, char *err, size_t errlen) {
    int32_t bos = d->bos; /* BERT vocabularies name [CLS] instead of a BOS */
    if (t->kind == SP_TOK_WPM && !sp_gguf_get(g, "tokenizer.ggml.bos_token_id") &&
        !tok_load_id(t, g, "tokenizer.ggml.cls_token_id", d->bos, &bos, err, errlen))
        return false;
    return tok_load_id(t, g, "tokenizer.ggml.bos_token_id", bos, &t->bos, err, errlen) &&
           tok_load_id(t, g, "tokenizer.ggml.eos_token_id", d->eos, &t->eos, err, errlen) &&
           tok_load_id(t, g, "tokenizer.ggml.unknown_token_id", d->unk, &t->unk, err, errlen) &&
           tok_load_id(t, g, "tokenizer.ggml.padding_token_id", d->pad, &t->pad, err, errlen) &&
           tok_load_id(t, g, "tokenizer.ggml.seperator_token_id", d->sep, &t->sep, err, errlen) &&
           tok_load_id(t, g, "tokenizer.ggml.eot_token_id", -1, &t->eot, err, errlen) &&
           tok_load_id(t, g, "tokenizer.ggml.eom_token_id", -1, &t->eom, err, errlen) &&
           tok_load_flag(g, "tokenizer.ggml.add_bos_token", d->add_bos, &t->add_bos, err, errlen) &&
           tok_load_flag(g, "tokenizer.ggml.add_eos_token", false, &t->add_eos, err, errlen) &&
           tok_load_flag(g, "tokenizer.ggml.add_sep_token", d->add_sep, &t->add_sep, err, errlen) &&
           tok_load_flag(g, "tokenizer.ggml.add_space_prefix", d->add_space_prefix, &t->add_space_prefix, err, errlen);
}

/* WordPiece normalizer flags: lowercase (default on) and strip_accents (default: as lowercase). */
static bool tok_load_wpm_flags(sp_tok *t, const sp_gguf *g, char *err, size_t errlen) {
    return tok_load_flag(g, "tokenizer.ggml.normalizer.lowercase", true, &t->wpm_lowercase, err, errlen) &&
           tok_load_flag(g, "tokenizer.ggml.normalizer.strip_accents", t->wpm_lowercase, &t->wpm_strip_accents, err,
                         errlen);
}

/* End-of-turn and fill-in-the-middle texts are control tokens whatever the file says (llama.cpp
 * overrides their type the same way), so they are only parsed with parse_special and decode to
 * nothing by default. */
static void tok_mark_control_texts(sp_tok *t) {
    static const char *const texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
        "<|eom_id|>", "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
        "<SUF>", "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "<|fim_pad|>", "<fim-pad>", "<fim_pad>",
        "<PAD>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t id = sp_tok_lookup(t, texts[i], strlen(texts[i]));
        if (id >= 0) t->tokens[id].type = SP_TOKT_CONTROL;
    }
}

/* Byte fallback: <0xNN>, else the single byte as text, else the unknown token. */
static void tok_build_bytes(sp_tok *t) {
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        char one = (char)b;
        int32_t id = sp_tok_lookup(t, hex, 6);
        if (id < 0) id = sp_tok_lookup(t, &one, 1);
        if (id < 0) id = t->unk;
        t->byte_tok[b] = id;
    }
}

static bool tok_is_special_type(uint8_t type) {
    return type == SP_TOKT_CONTROL || type == SP_TOKT_USER || type == SP_TOKT_UNKNOWN;
}

static int tok_cmp_special(const void *a, const void *b) {
    const int64_t *x = a, *y = b; /* (len << 32 | id) packed; longest first, then lowest id */
    int64_t lx = *x >> 32, ly = *y >> 32;
    if (lx != ly) return lx > ly ? -1 : 1;
    return (*x & 0xffffffff) < (*y & 0xffffffff) ? -1 : 1;
}

/* Special tokens (matched in input text before encoding), longest text first. */
static bool tok_build_specials(sp_tok *t) {
    int32_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (tok_is_special_type(t->tokens[id].type) && t->tokens[id].len > 0) n++;
    int64_t *keys = malloc(((size_t)n + 1) * sizeof *keys);
    t->special = malloc(((size_t)n + 1) * sizeof *t->special);
    if (!keys || !t->special) return free(keys), false;
    n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (tok_is_special_type(t->tokens[id].type) && t->tokens[id].len > 0)
            keys[n++] = (int64_t)t->tokens[id].len << 32 | id;
    qsort(keys, (size_t)n, sizeof *keys, tok_cmp_special);
    for (int32_t i = 0; i < n; i++) t->special[i] = (int32_t)(keys[i] & 0xffffffff);
    t->n_special = n;
    free(keys);
    return true;
}

static void tok_set_attr(sp_tok *t, const char *text, uint8_t attr, bool on) {
    int32_t id = sp_tok_lookup(t, text, strlen(text));
    if (id < 0) return;
    if (on) t->tokens[id].attr |= attr;
    else t->tokens[id].attr &= (uint8_t)~attr;
}

/* Per-model special-token attributes, by general.name as llama.cpp sets them: Phi-3 strips the
 * whitespace after its special tokens (except <unk>, <s>, <|endoftext|>). */
static void tok_model_attrs(sp_tok *t, const sp_gguf *g) {
    sp_gguf_str name;
    if (!sp_gguf_get_str(g, "general.name", &name)) return;
    char low[128];
    size_t n = name.len < sizeof low - 1 ? (size_t)name.len : sizeof low - 1;
    for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)name.ptr[i]);
    low[n] = 0;
    if (strstr(low, "phi-3") || strstr(low, "phi3")) {
        for (int32_t i = 0; i < t->n_special; i++) t->tokens[t->special[i]].attr |= SP_TOKA_RSTRIP;
        tok_set_attr(t, "</s>", SP_TOKA_RSTRIP, true);
        tok_set_attr(t, "<unk>", SP_TOKA_RSTRIP, false);
        tok_set_attr(t, "<s>", SP_TOKA_RSTRIP, false);
        tok_set_attr(t, "<|endoftext|>", SP_TOKA_RSTRIP, false);
    }
}

/* End of generation: eos, eot, eom, plus the end-of-turn texts llama.cpp recognises. */
static bool tok_build_eog(sp_tok *t) {
    static const char *const texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                        "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>"};
    size_t n_texts = sizeof texts / sizeof texts[0];
    t->eog = malloc((3 + n_texts) * sizeof *t->eog);
    if (!t->eog) return false;
    int32_t cand[3 + sizeof texts / sizeof texts[0]];
    int32_t nc = 0;
    cand[nc++] = t->eos;
    cand[nc++] = t->eot;
    cand[nc++] = t->eom;
    for (size_t i = 0; i < n_texts; i++) cand[nc++] = sp_tok_lookup(t, texts[i], strlen(texts[i]));
    for (int32_t i = 0; i < nc; i++) {
        if (cand[i] < 0) continue;
        bool dup = false;
        for (int32_t j = 0; j < t->n_eog; j++) dup |= t->eog[j] == cand[i];
        if (!dup) t->eog[t->n_eog++] = cand[i];
    }
    return true;
}

/* tokenizer.ggml.model → kind; false (with the message) for a model this module does not have */
static bool tok_model_kind(const sp_gguf *g, sp_tok_kind *kind, char *err, size_t errlen) {
    sp_gguf_str model;
    if (!sp_gguf_get(g, "tokenizer.ggml.model")) return tok_err(err, errlen, "tokenizer: missing tokenizer.ggml.model"), false;
    if (!sp_gguf_get_str(g, "tokenizer.ggml.model", &model))
        return tok_err(err, errlen, "tokenizer: tokenizer.ggml.model is not a string"), false;
    if (sp_gguf_str_eq(model, "llama")) *kind = SP_TOK_SPM;
    else if (sp_gguf_str_eq(model, "gpt2")) *kind = SP_TOK_BPE;
    else if (sp_gguf_str_eq(model, "bert")) *kind = SP_TOK_WPM;
    else {
        int n = model.len > 64 ? 64 : (int)model.len;
        return tok_err(err, errlen, "tokenizer model '%.*s' not supported (supported: llama, gpt2, bert)", n,
                       model.ptr), false;
    }
    return true;
}

/* The model-specific tables (after the map): SPM pairs or BPE merges + pre-tokenizer. */
static bool tok_init_model(sp_tok *t, const sp_gguf *g, sp_tok_pre_flags *pre, char *err, size_t errlen) {
    switch (t->kind) {
    case SP_TOK_SPM:
        if (!sp_tok_spm_init(t)) return tok_err(err, errlen, "tokenizer: out of memory"), false;
        return true;
    case SP_TOK_BPE: return sp_tok_bpe_init(t, g, pre, err, errlen);
    case SP_TOK_WPM: return tok_load_wpm_flags(t, g, err, errlen);
    }
    return false;
}

sp_tok *sp_tok_from_gguf(const sp_gguf *g, char *err, size_t errlen) {
    sp_tok_kind kind;
    if (!tok_model_kind(g, &kind, err, errlen)) return NULL;
    sp_tok *t = calloc(1, sizeof *t);
    if (!t) return tok_err(err, errlen, "tokenizer: out of memory"), NULL;
    t->kind = kind;
    sp_tok_pre_flags pre = {0};
    bool ok = tok_load_vocab(t, g, err, errlen);
    if (ok && !tok_build_map(t)) ok = (tok_err(err, errlen, "tokenizer: out of memory"), false);
    ok = ok && tok_init_model(t, g, &pre, err, errlen);
    tok_defaults d = tok_model_defaults(kind, &pre);
    ok = ok && tok_load_specials(t, g, &d, err, errlen);
    if (ok) tok_mark_control_texts(t);
    if (ok && !(tok_build_specials(t) && tok_build_eog(t))) {
        tok_err(err, errlen, "tokenizer: out of memory");
        ok = false;
    }
    if (!ok) {
        sp_tok_free(t);
        return NULL;
    }
    tok_build_bytes(t);
    tok_model_attrs(t, g);
    return t;
}

void sp_tok_free(sp_tok *t) {
    if (!t) return;
    free(t->tokens);
    free(t->pool);
    free(t->map);
    free(t->special);
    free(t->eog);
    free(t->spm_pairs);
    sp_tok_bpe_free(t);
    free(t);
}

int32_t sp_tok_n_vocab(const sp_tok *t) { return t->n_vocab; }
sp_tok_kind sp_tok_get_kind(const sp_tok *t) { return t->kind; }
int32_t sp_tok_bos(const sp_tok *t) { return t->bos; }
int32_t sp_tok_eos(const sp_tok *t) { return t->eos; }
bool sp_tok_add_bos(const sp_tok *t) { return t->add_bos; }
bool sp_tok_add_space_prefix(const sp_tok *t) { return t->add_space_prefix; }

bool sp_tok_is_eog(const sp_tok *t, int32_t id) {
    if (id < 0) return false;
    for (int32_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

const char *sp_tok_text(const sp_tok *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    return sp_tok_entry_text(t, id);
}

/* ---- encoding ---- */

/* A piece of the input: raw text (id < 0) or a special token matched in it. */
typedef struct {
    int32_t id;
    size_t off, len;
} tok_frag;

typedef struct {
    tok_frag *v;
    size_t n, cap;
} tok_frags;

static bool tok_frags_push(tok_frags *f, int32_t id, size_t off, size_t len) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        tok_frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return false;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (tok_frag){id, off, len};
    return true;
}

static bool tok_is_space(char c) { return isspace((unsigned char)c) != 0; }

/* Split every raw fragment of `in` at occurrences of special token `id` into `out`, stripping
 * the whitespace before / after it when the token has lstrip / rstrip. */
static bool tok_split_special(const sp_tok *t, int32_t id, const char *text, const tok_frags *in, tok_frags *out) {
    const char *stext = sp_tok_entry_text(t, id);
    size_t slen = t->tokens[id].len;
    uint8_t attr = t->tokens[id].attr;
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        tok_frag f = in->v[i];
        if (f.id >= 0) {
            if (!tok_frags_push(out, f.id, 0, 0)) return false;
            continue;
        }
        size_t pos = f.off, end = f.off + f.len;
        const char *m;
        while (pos < end && (m = memmem(text + pos, end - pos, stext, slen)) != NULL) {
            size_t at = (size_t)(m - text), left = at - pos;
            if (attr & SP_TOKA_LSTRIP)
                while (left > 0 && tok_is_space(text[pos + left - 1])) left--;
            if (left > 0 && !tok_frags_push(out, -1, pos, left)) return false;
            if (!tok_frags_push(out, id, 0, 0)) return false;
            pos = at + slen;
            if (attr & SP_TOKA_RSTRIP)
                while (pos < end && tok_is_space(text[pos])) pos++;
        }
        if (pos < end && !tok_frags_push(out, -1, pos, end - pos)) return false;
    }
    return true;
}

/* The input as fragments, special tokens taken out longest first (llama.cpp's partition).
 * User-defined tokens are always taken out; control and unknown ones only with parse_special. */
static bool tok_partition(const sp_tok *t, const char *text, size_t len, bool parse_special, tok_frags *frags) {
    frags->n = 0;
    if (len == 0) return true;
    if (!tok_frags_push(frags, -1, 0, len)) return false;
    tok_frags tmp = {0};
    bool ok = true;
    for (int32_t i = 0; ok && i < t->n_special; i++) {
        int32_t id = t->special[i];
        uint8_t ty = t->tokens[id].type;
        if (!parse_special && (ty == SP_TOKT_CONTROL || ty == SP_TOKT_UNKNOWN)) continue;
        if (!memmem(text, len, sp_tok_entry_text(t, id), t->tokens[id].len)) continue; /* fast reject */
        ok = tok_split_special(t, id, text, frags, &tmp);
        if (ok) {
            tok_frags swap = *frags;
            *frags = tmp;
            tmp = swap;
        }
    }
    free(tmp.v);
    return ok;
}

int32_t sp_tok_encode(const sp_tok *t, const char *text, size_t len, bool add_special, bool parse_special,
                      int32_t *out, int32_t max) {
    if (!t || (!text && len > 0) || max < 0 || (!out && max > 0)) return -1;
    sp_tok_sink sink = {out, max, 0};
    tok_frags frags = {0};
    bool ok = tok_partition(t, text, len, parse_special, &frags);

    /* SentencePiece: "▁" goes before the first raw fragment and before any raw fragment that
     * follows a special token (llama.cpp's is_prev_special rule). */
    bool prev_special = true;
    if (ok && add_special && t->add_bos && t->bos >= 0) sp_tok_sink_push(&sink, t->bos);
    for (size_t i = 0; ok && i < frags.n; i++) {
        const tok_frag *f = &frags.v[i];
        if (f->id >= 0) {
            sp_tok_sink_push(&sink, f->id);
            prev_special = true;
            continue;
        }
        switch (t->kind) {
        case SP_TOK_SPM:
            ok = sp_tok_spm_encode(t, text + f->off, f->len, t->add_space_prefix && prev_special, &sink);
            break;
        case SP_TOK_BPE: ok = sp_tok_bpe_encode(t, text + f->off, f->len, &sink); break;
        case SP_TOK_WPM: ok = sp_tok_wpm_encode(t, text + f->off, f->len, &sink); break;
        }
        prev_special = false;
    }
    if (ok && add_special && t->add_eos && t->eos >= 0) sp_tok_sink_push(&sink, t->eos);
    if (ok && add_special && t->add_sep && t->sep >= 0) sp_tok_sink_push(&sink, t->sep);
    free(frags.v);
    if (!ok || sink.n > INT32_MAX) return -1;
    return (int32_t)sink.n;
}

/* ---- pieces and decoding ---- */

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xNN>" token text, or -1. */
static int tok_byte_value(const char *s, uint32_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int32_t tok_copy(const char *src, int32_t n, char *buf, int32_t cap) {
    if (buf && cap > 0) memcpy(buf, src, (size_t)(n < cap ? n : cap));
    return n;
}

int32_t sp_tok_piece(const sp_tok *t, int32_t id, bool special, char *buf, int32_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    const sp_tok_entry *e = &t->tokens[id];
    const char *s = sp_tok_entry_text(t, id);
    switch (e->type) {
    case SP_TOKT_CONTROL:
        return special ? tok_copy(s, (int32_t)e->len, buf, cap) : 0;
    case SP_TOKT_UNKNOWN:
    case SP_TOKT_USER:
        return tok_copy(s, (int32_t)e->len, buf, cap);
    case SP_TOKT_BYTE: {
        int b = tok_byte_value(s, e->len);
        if (b < 0) return tok_copy(s, (int32_t)e->len, buf, cap);
        char c = (char)b;
        return tok_copy(&c, 1, buf, cap);
    }
    case SP_TOKT_NORMAL: {
        if (t->kind == SP_TOK_BPE) return sp_tok_bpe_piece(t, id, buf, cap);
        int32_t n = 0; /* "▁" → ' ' */
        for (uint32_t i = 0; i < e->len;) {
            char c = s[i];
            if (i + 3 <= e->len && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                c = ' ';
                i += 3;
            } else {
                i++;
            }
            if (buf && n < cap) buf[n] = c;
            n++;
        }
        return n;
    }
    default: /* unused / undefined: nothing, like control tokens */
        return 0;
    }
}

/* held-back bytes (one U+FFFD) + every piece byte as U+FFFD in the worst case */
int32_t sp_detok_max_bytes(const sp_tok *t) { return 3 + 3 * (t->max_token_len + 1); }

void sp_detok_init(sp_detok *d, const sp_tok *t, bool strip_leading_space) {
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->first = strip_leading_space;
}

/* Incremental UTF-8 validation. The state is the bytes of an incomplete character (at most 3).
 * Complete valid characters go to out; an invalid byte or a truncated sequence becomes U+FFFD
 * (one per maximal invalid subpart, like WHATWG / Python's "replace"). */
typedef struct {
    char *out;
    int32_t cap, n;
} tok_utf8_out;

static void utf8_emit(tok_utf8_out *o, const char *s, int32_t n) {
    for (int32_t i = 0; i < n; i++, o->n++)
        if (o->n < o->cap) o->out[o->n] = s[i];
}

static void utf8_emit_fffd(tok_utf8_out *o) { utf8_emit(o, "\xEF\xBF\xBD", 3); }

static int32_t utf8_need(unsigned char lead) {
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0; /* ASCII is handled separately; 0x80-0xC1 and 0xF5-0xFF never start a character */
}

/* Is b acceptable as continuation byte number `pos` (1-based) after lead? */
static bool utf8_cont_ok(unsigned char lead, int32_t pos, unsigned char b) {
    unsigned char lo = 0x80, hi = 0xBF;
    if (pos == 1) {
        if (lead == 0xE0) lo = 0xA0;      /* no overlong 3-byte forms */
        else if (lead == 0xED) hi = 0x9F; /* no surrogates */
        else if (lead == 0xF0) lo = 0x90; /* no overlong 4-byte forms */
        else if (lead == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    }
    return b >= lo && b <= hi;
}

static void utf8_feed(char *pend, int32_t *npend, const char *in, int32_t n, tok_utf8_out *o) {
    for (int32_t i = 0; i < n;) {
        unsigned char b = (unsigned char)in[i];
        if (*npend == 0) {
            if (b < 0x80) utf8_emit(o, (const char *)&in[i], 1);
            else if (utf8_need(b)) pend[(*npend)++] = (char)b;
            else utf8_emit_fffd(o);
            i++;
            continue;
        }
        unsigned char lead = (unsigned char)pend[0];
        if (!utf8_cont_ok(lead, *npend, b)) { /* truncated: replace it, then re-read b */
            utf8_emit_fffd(o);
            *npend = 0;
            continue;
        }
        pend[(*npend)++] = (char)b;
        i++;
        if (*npend == utf8_need(lead)) {
            utf8_emit(o, pend, *npend);
            *npend = 0;
        }
    }
}

int32_t sp_detok_push(sp_detok *d, int32_t id, char *out, int32_t cap) {
    char small[256], *piece = small;
    int32_t n = sp_tok_piece(d->tok, id, false, small, (int32_t)sizeof small);
    if (n < 0) return -1;
    if (n > (int32_t)sizeof small) {
        piece = malloc((size_t)n);
        if (!piece) return -1;
        sp_tok_piece(d->tok, id, false, piece, n);
    }
    const char *p = piece;
    bool first = d->first;
    if (first && n > 0) {
        if (p[0] == ' ') p++, n--;
        first = false;
    }
    /* run on a copy of the state; commit only if the output fits */
    char pend[sizeof d->pending];
    memcpy(pend, d->pending, sizeof pend);
    int32_t npend = d->n_pending;
    tok_utf8_out o = {out, out ? cap : 0, 0};
    utf8_feed(pend, &npend, p, n, &o);
    if (piece != small) free(piece);
    if (o.n > o.cap) return -1;
    memcpy(d->pending, pend, sizeof pend);
    d->n_pending = npend;
    d->first = first;
    return o.n;
}

int32_t sp_detok_flush(sp_detok *d, char *out, int32_t cap) {
    if (d->n_pending == 0) return 0;
    if (!out || cap < 3) return -1;
    memcpy(out, "\xEF\xBF\xBD", 3);
    d->n_pending = 0;
    return 3;
}
