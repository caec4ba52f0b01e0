/* engine/tok_bpe.c — the byte-level BPE encoder (tokenizer.ggml.model "gpt2"), matching
 * llama.cpp's llm_tokenizer_bpe: the text is cut into pre-tokens by the regexes of tok_pre.c,
 * each byte of a pre-token becomes the character GPT-2's bytes_to_unicode maps it to, and adjacent
 * symbols are merged by the lowest merge rank (tokenizer.ggml.merges, ties: leftmost) until no
 * ranked pair is left. Merges are a hash map keyed by (left id, right id) giving (rank, merged
 * id); texts that occur in merges but not in the vocabulary get ids past the vocabulary, so the
 * map stays exact. A min-heap of candidate pairs keeps each pre-token O(n log n). Also owns the
 * reverse mapping used to turn a token's text back into bytes. */
#include "engine/tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BPE_EMPTY UINT64_MAX

typedef struct {
    int32_t rank;
    int32_t id; /* the merged symbol's id */
} bpe_merge;

struct sp_tok_bpe {
    sp_tok_pre *pre;
    bool ignore_merges;
    uint64_t *keys; /* (left id << 32 | right id); BPE_EMPTY marks a free slot */
    bpe_merge *vals;
    uint64_t mask;
    int32_t byte_sym[256];   /* byte → id of its byte-level character (-1: none) */
    char byte_chr[256][2];   /* byte → its byte-level character, UTF-8 */
    uint8_t byte_chr_len[256];
    int16_t chr_byte[324];   /* byte-level character (code point < 324) → byte, or -1 */
};

/* ---- GPT-2's bytes_to_unicode ---- */

static bool bpe_byte_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

static void bpe_build_byte_map(struct sp_tok_bpe *m) {
    for (int c = 0; c < 324; c++) m->chr_byte[c] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = bpe_byte_is_printable(b) ? (uint32_t)b : (uint32_t)(256 + extra++);
        m->byte_chr_len[b] = (uint8_t)sp_tok_utf8_encode(cp, m->byte_chr[b]);
        m->chr_byte[cp] = (int16_t)b;
    }
}

/* ---- the text → id interner used while loading merges ---- */

/* Texts that occur in merges but not in the vocabulary, with ids n_vocab, n_vocab + 1, ... */
typedef struct {
    char *pool;
    size_t pool_len, pool_cap;
    size_t *off;  /* per extra id: offset into pool */
    uint32_t *len;
    int32_t n, cap;
    int32_t *map; /* open addressing: extra index or -1 */
    uint32_t map_mask;
} bpe_extra;

static uint32_t bpe_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h ^ h >> 16;
}

static bool bpe_extra_grow_map(bpe_extra *x) {
    uint32_t size = x->map ? (x->map_mask + 1) * 2 : 1024;
    int32_t *map = malloc((size_t)size * sizeof *map);
    if (!map) return false;
    memset(map, 0xff, (size_t)size * sizeof *map);
    for (int32_t k = 0; k < x->n; k++) {
        uint32_t i = bpe_hash(x->pool + x->off[k], x->len[k]) & (size - 1);
        while (map[i] >= 0) i = (i + 1) & (size - 1);
        map[i] = k;
    }
    free(x->map);
    x->map = map;
    x->map_mask = size - 1;
    return true;
}

static void bpe_extra_free(bpe_extra *x) {
    free(x->pool);
    free(x->off);
    free(x->len);
    free(x->map);
}

/* The id of text: its vocabulary id, else its extra id (created when `add`); -1 when absent
 * (or -2 when out of memory). */
static int32_t bpe_intern(const sp_tok *t, bpe_extra *x, const char *s, size_t n, bool add) {
    int32_t id = sp_tok_lookup(t, s, n);
    if (id >= 0) return id;
    if (!x->map && !bpe_extra_grow_map(x)) return -2;
    uint32_t i = bpe_hash(s, n) & x->map_mask;
    for (; x->map[i] >= 0; i = (i + 1) & x->map_mask) {
        int32_t k = x->map[i];
        if (x->len[k] == n && memcmp(x->pool + x->off[k], s, n) == 0) return t->n_vocab + k;
    }
    if (!add) return -1;
    if (x->n == INT32_MAX - t->n_vocab) return -2;
    if (x->n == x->cap) {
        int32_t cap = x->cap ? x->cap * 2 : 64;
        size_t *off = realloc(x->off, (size_t)cap * sizeof *off);
        if (!off) return -2;
        x->off = off;
        uint32_t *len = realloc(x->len, (size_t)cap * sizeof *len);
        if (!len) return -2;
        x->len = len;
        x->cap = cap;
    }
    if (x->pool_len + n > x->pool_cap) {
        size_t cap = x->pool_cap ? x->pool_cap : 4096;
        while (cap < x->pool_len + n) cap *= 2;
        char *pool = realloc(x->pool, cap);
        if (!pool) return -2;
        x->pool = pool;
        x->pool_cap = cap;
    }
    if (n) memcpy(x->pool + x->pool_len, s, n);
    x->off[x->n] = x->pool_len;
    x->len[x->n] = (uint32_t)n;
    x->pool_len += n;
    x->map[i] = x->n;
    int32_t k = x->n++;
    if ((uint32_t)x->n * 2 > x->map_mask && !bpe_extra_grow_map(x)) return -2;
    return t->n_vocab + k;
}

/* ---- the merge map ---- */

/* ids are >= 0, so no key is BPE_EMPTY */
static uint64_t bpe_key(int32_t l, int32_t r) { return (uint64_t)(uint32_t)l << 32 | (uint32_t)r; }

static uint64_t bpe_key_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

static const bpe_merge *bpe_find(const struct sp_tok_bpe *m, int32_t l, int32_t r) {
    uint64_t k = bpe_key(l, r);
    for (uint64_t i = bpe_key_hash(k) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == k) return &m->vals[i];
        if (m->keys[i] == BPE_EMPTY) return NULL;
    }
}

/* Insert unless present (the first rank of a repeated pair wins, as in llama.cpp). */
static void bpe_insert(struct sp_tok_bpe *m, int32_t l, int32_t r, bpe_merge v) {
    uint64_t k = bpe_key(l, r);
    uint64_t i = bpe_key_hash(k) & m->mask;
    for (; m->keys[i] != BPE_EMPTY; i = (i + 1) & m->mask)
        if (m->keys[i] == k) return;
    m->keys[i] = k;
    m->vals[i] = v;
}

/* One merge line "LEFT RIGHT" (split at the first space after the first byte) into the map. */
static bool bpe_add_merge(const sp_tok *t, struct sp_tok_bpe *m, bpe_extra *x, sp_gguf_str line, int32_t rank,
                          char **cat, size_t *cat_cap) {
    const char *sp = line.len > 1 ? memchr(line.ptr + 1, ' ', line.len - 1) : NULL;
    if (!sp) return true; /* not a pair: never matches */
    size_t nl = (size_t)(sp - line.ptr), nr = line.len - nl - 1;
    if (nl + nr > *cat_cap) {
        char *c = realloc(*cat, nl + nr);
        if (!c) return false;
        *cat = c;
        *cat_cap = nl + nr;
    }
    memcpy(*cat, line.ptr, nl);
    memcpy(*cat + nl, sp + 1, nr);
    int32_t l = bpe_intern(t, x, line.ptr, nl, true);
    int32_t r = bpe_intern(t, x, sp + 1, nr, true);
    int32_t res = bpe_intern(t, x, *cat, nl + nr, true);
    if (l < 0 || r < 0 || res < 0) return false;
    bpe_insert(m, l, r, (bpe_merge){rank, res});
    return true;
}

static bool bpe_load_merges(sp_tok *t, struct sp_tok_bpe *m, const sp_gguf *g, char *err, size_t errlen) {
    const sp_gguf_value *merges = sp_gguf_get(g, "tokenizer.ggml.merges");
    if (!merges) return snprintf(err, errlen, "tokenizer: missing tokenizer.ggml.merges"), false;
    if (merges->type != SP_GGUF_ARRAY || merges->arr.type != SP_GGUF_STRING)
        return snprintf(err, errlen, "tokenizer: tokenizer.ggml.merges is not a string array"), false;
    uint64_t n = merges->arr.n;
    if (n > (uint64_t)1 << 28) return snprintf(err, errlen, "tokenizer: too many merges (%llu)", (unsigned long long)n), false;
    uint64_t size = 1024;
    while (size < 2 * n) size *= 2;
    m->keys = malloc(size * sizeof *m->keys);
    m->vals = malloc(size * sizeof *m->vals);
    if (!m->keys || !m->vals) return snprintf(err, errlen, "tokenizer: out of memory"), false;
    memset(m->keys, 0xff, size * sizeof *m->keys);
    m->mask = size - 1;

    bpe_extra x = {0};
    char *cat = NULL;
    size_t cat_cap = 0;
    bool ok = true;
    for (uint64_t i = 0; ok && i < n; i++) ok = bpe_add_merge(t, m, &x, merges->arr.strs[i], (int32_t)i, &cat, &cat_cap);
    for (int b = 0; ok && b < 256; b++) {
        int32_t id = bpe_intern(t, &x, m->byte_chr[b], m->byte_chr_len[b], false);
        m->byte_sym[b] = id < 0 ? -1 : id;
    }
    free(cat);
    bpe_extra_free(&x);
    if (!ok) snprintf(err, errlen, "tokenizer: out of memory");
    return ok;
}

bool sp_tok_bpe_init(sp_tok *t, const sp_gguf *g, sp_tok_pre_flags *pre_flags, char *err, size_t errlen) {
    struct sp_tok_bpe *m = calloc(1, sizeof *m);
    if (!m) return snprintf(err, errlen, "tokenizer: out of memory"), false;
    t->bpe = m;
    bpe_build_byte_map(m);
    sp_gguf_str pre = {"default", 7};
    if (sp_gguf_get(g, "tokenizer.ggml.pre") && !sp_gguf_get_str(g, "tokenizer.ggml.pre", &pre))
        return snprintf(err, errlen, "tokenizer: tokenizer.ggml.pre is not a string"), false;
    m->pre = sp_tok_pre_new(pre.ptr, pre.len, pre_flags, err, errlen);
    if (!m->pre) return false;
    m->ignore_merges = pre_flags->ignore_merges;
    return bpe_load_merges(t, m, g, err, errlen);
}

void sp_tok_bpe_free(sp_tok *t) {
    struct sp_tok_bpe *m = t->bpe;
    if (!m) return;
    sp_tok_pre_free(m->pre);
    free(m->keys);
    free(m->vals);
    free(m);
    t->bpe = NULL;
}

/* ---- encoding ---- */

typedef struct {
    int32_t id;         /* vocabulary or extra id; -1 for a byte with no character token */
    int32_t off, n;     /* byte range in the pre-token; n == 0 once merged into the left one */
    int32_t prev, next; /* neighbours in the live chain (-1 at the ends) */
} bpe_sym;

typedef struct {
    int32_t rank, left, right;
    int32_t lid, rid; /* the symbols' ids when queued: stale once either changed */
} bpe_pair;

typedef struct {
    bpe_sym *sym;
    size_t cap_sym;
    bpe_pair *heap;
    size_t n_heap, cap_heap;
    char *enc;     /* a pre-token as byte-level text (ignore_merges look-ups, fallback) */
    size_t cap_enc;
    sp_tok_span *spans;
    size_t cap_spans;
} bpe_session;

static bool bpe_pair_before(const bpe_pair *a, const bpe_pair *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static bool bpe_heap_push(bpe_session *s, bpe_pair p) {
    if (s->n_heap == s->cap_heap) {
        size_t cap = s->cap_heap ? s->cap_heap * 2 : 64;
        bpe_pair *h = realloc(s->heap, cap * sizeof *h);
        if (!h) return false;
        s->heap = h;
        s->cap_heap = cap;
    }
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bpe_pair_before(&p, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = p;
    return true;
}

static bpe_pair bpe_heap_pop(bpe_session *s) {
    bpe_pair top = s->heap[0], last = s->heap[--s->n_heap];
    size_t n = s->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bpe_pair_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!bpe_pair_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* Queue the pair (left, right) if the merge table ranks it. */
static bool bpe_try_pair(const struct sp_tok_bpe *m, bpe_session *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0 || s->sym[left].id < 0 || s->sym[right].id < 0) return true;
    const bpe_merge *mg = bpe_find(m, s->sym[left].id, s->sym[right].id);
    if (!mg) return true;
    return bpe_heap_push(s, (bpe_pair){mg->rank, left, right, s->sym[left].id, s->sym[right].id});
}

/* The byte-level text of raw bytes p[0..n) into s->enc; returns its length, or -1 (no memory). */
static int64_t bpe_encode_bytes(const struct sp_tok_bpe *m, bpe_session *s, const unsigned char *p, size_t n) {
    if (2 * n > s->cap_enc) {
        char *e = realloc(s->enc, 2 * n);
        if (!e) return -1;
        s->enc = e;
        s->cap_enc = 2 * n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(s->enc + k, m->byte_chr[p[i]], m->byte_chr_len[p[i]]);
        k += m->byte_chr_len[p[i]];
    }
    return (int64_t)k;
}

/* A symbol outside the vocabulary: each byte of its byte-level text that is a token by itself
 * (llama.cpp's fallback; a byte-level vocabulary has every byte character, so this is rare). */
static bool bpe_emit_fallback(const sp_tok *t, bpe_session *s, const unsigned char *p, size_t n, sp_tok_sink *out) {
    int64_t k = bpe_encode_bytes(t->bpe, s, p, n);
    if (k < 0) return false;
    for (int64_t i = 0; i < k; i++) {
        int32_t id = sp_tok_lookup(t, s->enc + i, 1);
        if (id >= 0) sp_tok_sink_push(out, id);
    }
    return true;
}

/* Merge the symbols of one pre-token p[0..n) and emit their ids. */
static bool bpe_word(const sp_tok *t, bpe_session *s, const unsigned char *p, size_t n, sp_tok_sink *out) {
    const struct sp_tok_bpe *m = t->bpe;
    if (m->ignore_merges) {
        int64_t k = bpe_encode_bytes(m, s, p, n);
        if (k < 0) return false;
        int32_t id = sp_tok_lookup(t, s->enc, (size_t)k);
        if (id >= 0) return sp_tok_sink_push(out, id), true;
    }
    if (n > s->cap_sym) {
        bpe_sym *sym = realloc(s->sym, n * sizeof *sym);
        if (!sym) return false;
        s->sym = sym;
        s->cap_sym = n;
    }
    for (size_t i = 0; i < n; i++)
        s->sym[i] = (bpe_sym){m->byte_sym[p[i]], (int32_t)i, 1, (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    s->n_heap = 0;
    for (size_t i = 1; i < n; i++)
        if (!bpe_try_pair(m, s, (int32_t)i - 1, (int32_t)i)) return false;

    while (s->n_heap > 0) {
        bpe_pair pr = bpe_heap_pop(s);
        bpe_sym *l = &s->sym[pr.left], *r = &s->sym[pr.right];
        if (l->n == 0 || r->n == 0 || l->next != pr.right || l->id != pr.lid || r->id != pr.rid) continue;
        l->id = bpe_find(m, pr.lid, pr.rid)->id;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = pr.left;
        if (!bpe_try_pair(m, s, l->prev, pr.left) || !bpe_try_pair(m, s, pr.left, l->next)) return false;
    }

    for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
        const bpe_sym *y = &s->sym[i];
        if (y->id >= 0 && y->id < t->n_vocab) sp_tok_sink_push(out, y->id);
        else if (!bpe_emit_fallback(t, s, p + y->off, (size_t)y->n, out)) return false;
    }
    return true;
}

bool sp_tok_bpe_encode(const sp_tok *t, const char *text, size_t len, sp_tok_sink *out) {
    bpe_session s = {0};
    int64_t n = sp_tok_pre_split(t->bpe->pre, text, len, &s.spans, &s.cap_spans);
    bool ok = n >= 0;
    for (int64_t i = 0; ok && i < n; i++)
        ok = bpe_word(t, &s, (const unsigned char *)text + s.spans[i].off, s.spans[i].len, out);
    free(s.sym);
    free(s.heap);
    free(s.enc);
    free(s.spans);
    return ok;
}

/* ---- decoding ---- */

int32_t sp_tok_bpe_piece(const sp_tok *t, int32_t id, char *buf, int32_t cap) {
    const struct sp_tok_bpe *m = t->bpe;
    const char *s = sp_tok_entry_text(t, id);
    size_t len = t->tokens[id].len;
    int32_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int32_t k = sp_tok_utf8_decode(s + i, len - i, &cp);
        if (cp < 324 && m->chr_byte[cp] >= 0) {
            if (buf && n < cap) buf[n] = (char)m->chr_byte[cp];
            n++;
        } else { /* not a byte-level character: its own bytes */
            for (int32_t j = 0; j < k; j++, n++)
                if (buf && n < cap) buf[n] = s[i + (size_t)j];
        }
        i += (size_t)k;
    }
    return n;
}
