/* engine/tok_spm.c — the SentencePiece-style encoder (tokenizer.ggml.model "llama"), matching
 * llama.cpp's llm_tokenizer_spm: spaces become "▁" (U+2581), the text is split into UTF-8
 * characters, and the adjacent pair whose concatenation is a vocabulary entry with the highest
 * score is merged (ties: leftmost) until no pair is in the vocabulary. A max-heap of candidate
 * pairs keeps this O(n log n), and the text is first cut where no merge can cross (between two
 * characters that no token contains side by side), so heaps stay small. Pieces that end up
 * outside the vocabulary are split back into the pieces they were merged from, and single
 * characters outside it become <0xNN> byte tokens. */
#include "engine/tok_impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t off, n;     /* text range; n == 0 once merged into the left neighbour */
    int32_t prev, next; /* neighbours in the live chain (-1 at the ends) */
    int32_t node;       /* merge-tree node this symbol currently stands for */
} spm_sym;

typedef struct {
    int32_t off, n;
    int32_t left, right; /* the two nodes merged into this one; -1 for a single character */
} spm_node;

typedef struct {
    float score;
    int32_t left, right; /* symbol indices */
    int32_t size;        /* byte length of the pair when it was queued */
} spm_pair;

typedef struct {
    const sp_tok *t;
    const char *text;
    spm_sym *sym;       /* cap_sym entries */
    spm_node *node;     /* 2 * cap_sym entries: leaves, then one per merge */
    size_t cap_sym;
    int32_t n_node;
    spm_pair *heap;
    int32_t n_heap, cap_heap;
} spm_session;

/* UTF-8 sequence length from the lead byte's high nibble (continuation / invalid bytes: 1). */
static int32_t spm_utf8_len(unsigned char c) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

/* a pops before b: higher score, then the leftmost pair */
static bool spm_pair_before(const spm_pair *a, const spm_pair *b) {
    if (a->score != b->score) return a->score > b->score;
    return a->left < b->left;
}

static bool spm_heap_push(spm_session *s, spm_pair p) {
    if (s->n_heap == s->cap_heap) {
        int32_t cap = s->cap_heap ? s->cap_heap * 2 : 64;
        spm_pair *h = realloc(s->heap, (size_t)cap * sizeof *h);
        if (!h) return false;
        s->heap = h;
        s->cap_heap = cap;
    }
    int32_t i = s->n_heap++;
    while (i > 0) {
        int32_t parent = (i - 1) / 2;
        if (!spm_pair_before(&p, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = p;
    return true;
}

static spm_pair spm_heap_pop(spm_session *s) {
    spm_pair top = s->heap[0];
    spm_pair last = s->heap[--s->n_heap];
    int32_t n = s->n_heap, i = 0;
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && spm_pair_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!spm_pair_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

/* Queue the pair (left, right) if its concatenation is a vocabulary entry. */
static bool spm_try_pair(spm_session *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    const spm_sym *l = &s->sym[left], *r = &s->sym[right];
    int32_t id = sp_tok_lookup(s->t, s->text + l->off, (size_t)l->n + (size_t)r->n);
    if (id < 0) return true;
    spm_pair p = {s->t->tokens[id].score, left, right, l->n + r->n};
    return spm_heap_push(s, p);
}

/* Emit the tokens for one node: itself if it is in the vocabulary, else its two halves, else (a
 * single character outside the vocabulary) one byte token per byte. */
static bool spm_emit(spm_session *s, int32_t node, sp_tok_sink *out) {
    const spm_node *nd = &s->node[node];
    int32_t id = sp_tok_lookup(s->t, s->text + nd->off, (size_t)nd->n);
    if (id >= 0) {
        sp_tok_sink_push(out, id);
        return true;
    }
    if (nd->left >= 0) return spm_emit(s, nd->left, out) && spm_emit(s, nd->right, out);
    for (int32_t i = 0; i < nd->n; i++) {
        int32_t b = s->t->byte_tok[(unsigned char)s->text[nd->off + i]];
        if (b < 0) return false;
        sp_tok_sink_push(out, b);
    }
    return true;
}

/* Copy the fragment with every ' ' replaced by "▁" (and a leading "▁" if add_prefix). */
static char *spm_escape(const char *text, size_t len, bool add_prefix, size_t *out_len) {
    char *buf = malloc(3 * len + 3);
    if (!buf) return NULL;
    size_t n = 0;
    if (add_prefix) {
        memcpy(buf, "\xE2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + n, "\xE2\x96\x81", 3);
            n += 3;
        } else {
            buf[n++] = text[i];
        }
    }
    *out_len = n;
    return buf;
}

/* ---- cutting the text between characters no token contains ---- */

/* Bytes of one character (1..4) packed little-endian; distinct characters pack differently. */
static uint64_t spm_pack(const char *c, int32_t n) {
    uint64_t v = 0;
    for (int32_t i = 0; i < n; i++) v |= (uint64_t)(unsigned char)c[i] << (8 * i);
    return v;
}

static uint32_t spm_pair_slot(uint64_t key, uint32_t mask) {
    key ^= key >> 29;
    key *= 0xbf58476d1ce4e5b9ull;
    key ^= key >> 32;
    return (uint32_t)key & mask;
}

static void spm_pair_insert(sp_tok *t, uint64_t key) {
    if (key == 0) {
        t->spm_pair_zero = true;
        return;
    }
    uint32_t i = spm_pair_slot(key, t->spm_pairs_mask);
    while (t->spm_pairs[i] != 0 && t->spm_pairs[i] != key) i = (i + 1) & t->spm_pairs_mask;
    t->spm_pairs[i] = key;
}

/* Does some token text contain character a followed by character b? */
static bool spm_pair_in_vocab(const sp_tok *t, uint64_t key) {
    if (key == 0) return t->spm_pair_zero;
    for (uint32_t i = spm_pair_slot(key, t->spm_pairs_mask);; i = (i + 1) & t->spm_pairs_mask) {
        if (t->spm_pairs[i] == key) return true;
        if (t->spm_pairs[i] == 0) return false;
    }
}

/* Character length at s (n bytes left), split exactly as the encoder splits text. */
static int32_t spm_char_len(const char *s, size_t n) {
    size_t k = (size_t)spm_utf8_len((unsigned char)*s);
    return (int32_t)(k < n ? k : n);
}

bool sp_tok_spm_init(sp_tok *t) {
    uint64_t n_pairs = 0; /* upper bound: one per byte of token text */
    for (int32_t id = 0; id < t->n_vocab; id++) n_pairs += t->tokens[id].len;
    uint64_t size = 64;
    while (size < 2 * n_pairs) size *= 2;
    if (size > ((uint64_t)1 << 31)) return false;
    t->spm_pairs = calloc((size_t)size, sizeof *t->spm_pairs);
    if (!t->spm_pairs) return false;
    t->spm_pairs_mask = (uint32_t)(size - 1);
    /* every token that can be looked up: the map holds all non-empty texts */
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = sp_tok_entry_text(t, id);
        size_t len = t->tokens[id].len;
        int32_t prev = spm_char_len(s, len);
        for (size_t off = (size_t)prev; off < len;) {
            int32_t cur = spm_char_len(s + off, len - off);
            spm_pair_insert(t, spm_pack(s + off - (size_t)prev, prev) | spm_pack(s + off, cur) << 32);
            off += (size_t)cur;
            prev = cur;
        }
    }
    return true;
}

/* ---- the merge loop over one piece of text ---- */

static bool spm_reserve(spm_session *s, size_t n_chars) {
    if (n_chars <= s->cap_sym) return true;
    size_t cap = s->cap_sym ? s->cap_sym : 64;
    while (cap < n_chars) cap *= 2;
    spm_sym *sym = realloc(s->sym, cap * sizeof *sym);
    if (sym) s->sym = sym;
    spm_node *node = realloc(s->node, 2 * cap * sizeof *node);
    if (node) s->node = node;
    if (!sym || !node) return false;
    s->cap_sym = cap;
    return true;
}

/* Encode text[off, off + len): one symbol (and leaf node) per character, merge, emit. */
static bool spm_run(spm_session *s, int32_t off, int32_t len, sp_tok_sink *out) {
    if (!spm_reserve(s, (size_t)len)) return false;
    int32_t n_sym = 0;
    for (int32_t end = off + len; off < end; n_sym++) {
        int32_t n = spm_char_len(s->text + off, (size_t)(end - off));
        s->sym[n_sym] = (spm_sym){off, n, n_sym - 1, -1, n_sym};
        s->node[n_sym] = (spm_node){off, n, -1, -1};
        if (n_sym > 0) s->sym[n_sym - 1].next = n_sym;
        off += n;
    }
    s->n_node = n_sym;
    s->n_heap = 0;
    if (n_sym == 0) return true;

    for (int32_t i = 1; i < n_sym; i++)
        if (!spm_try_pair(s, i - 1, i)) return false;

    while (s->n_heap > 0) {
        spm_pair p = spm_heap_pop(s);
        spm_sym *l = &s->sym[p.left], *r = &s->sym[p.right];
        /* stale: one side was merged away or grew since the pair was queued */
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size) continue;

        int32_t nd = s->n_node++;
        s->node[nd] = (spm_node){l->off, p.size, l->node, r->node};
        l->n = p.size;
        l->node = nd;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = p.left;

        if (!spm_try_pair(s, l->prev, p.left) || !spm_try_pair(s, p.left, l->next)) return false;
    }

    for (int32_t i = 0; i >= 0; i = s->sym[i].next)
        if (!spm_emit(s, s->sym[i].node, out)) return false;
    return true;
}

bool sp_tok_spm_encode(const sp_tok *t, const char *text, size_t len, bool add_prefix, sp_tok_sink *out) {
    if (len > (size_t)(INT32_MAX / 16)) return false; /* offsets and heap sizes are int32 */
    size_t n;
    char *buf = spm_escape(text, len, add_prefix, &n);
    if (!buf) return false;
    spm_session s = {.t = t, .text = buf};
    bool ok = true;
    /* cut between characters a, b where no token contains "ab"; encode each piece on its own */
    int32_t start = 0, prev = 0, end = (int32_t)n;
    for (int32_t off = 0; ok && off < end;) {
        int32_t cur = spm_char_len(buf + off, (size_t)(end - off));
        if (off > 0 && !spm_pair_in_vocab(t, spm_pack(buf + off - prev, prev) | spm_pack(buf + off, cur) << 32)) {
            ok = spm_run(&s, start, off - start, out);
            start = off;
        }
        off += cur;
        prev = cur;
    }
    if (ok && start < end) ok = spm_run(&s, start, end - start, out);
    free(s.heap);
    free(s.node);
    free(s.sym);
    free(buf);
    return ok;
}
