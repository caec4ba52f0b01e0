/* engine/tok_impl.h — private to the tokenizer module (engine/tok*.c): the shared vocabulary
 * storage (token texts, scores, types, text → id hash map, special ids) and the hooks each
 * tokenizer model implements. tok.c owns loading, special-token splitting, pieces and streaming
 * decode; tok_spm.c owns the SentencePiece (model "llama") encoder. Byte-level BPE ("gpt2") and
 * WordPiece ("bert") encoders slot in as further sp_tok_encode_fragment cases. */
#ifndef SP_ENGINE_TOK_IMPL_H
#define SP_ENGINE_TOK_IMPL_H

#include "engine/tok.h"

/* per-token attributes beyond token_type (llama.cpp's lstrip / rstrip of special tokens) */
enum { SP_TOKA_LSTRIP = 1, SP_TOKA_RSTRIP = 2 };

typedef struct {
    uint32_t off;   /* text offset in sp_tok.pool (NUL-terminated there) */
    uint32_t len;   /* text length in bytes */
    float score;
    uint8_t type;   /* SP_TOKT_* (0 = undefined) */
    uint8_t attr;   /* SP_TOKA_* */
} sp_tok_entry;

struct sp_tok {
    sp_tok_kind kind;
    int32_t n_vocab;
    sp_tok_entry *tokens;
    char *pool;

    /* open-addressing hash map text → id; slots hold id or -1; size is a power of two */
    int32_t *map;
    uint32_t map_mask;

    int32_t bos, eos, unk, pad, sep, eot, eom; /* -1 if none */
    bool add_bos, add_eos, add_space_prefix;

    int32_t byte_tok[256];  /* byte → its fallback token (-1 if the vocab has none) */
    int32_t *special;       /* control / user-defined / unknown ids, longest text first */
    int32_t n_special;
    int32_t *eog;           /* end-of-generation ids */
    int32_t n_eog;
    int32_t max_token_len;

    /* SPM: the set of adjacent character pairs that occur inside some token text (key: the two
     * characters' bytes packed into 32 bits each; 0 marks an empty slot, pair_zero the 0 key).
     * Text is cut between two characters that no token contains, and the pieces are encoded
     * separately: no merge can cross such a cut, so the result is the same, with small heaps. */
    uint64_t *spm_pairs;
    uint32_t spm_pairs_mask;
    bool spm_pair_zero;
};

/* Output sink for encoders: stores up to max ids, counts all of them. */
typedef struct {
    int32_t *out;
    int32_t max;
    int64_t n;
} sp_tok_sink;

static inline void sp_tok_sink_push(sp_tok_sink *s, int32_t id) {
    if (s->n < s->max) s->out[s->n] = id;
    s->n++;
}

/* The id of the token whose text is exactly text[0..len), or -1. */
int32_t sp_tok_lookup(const sp_tok *t, const char *text, size_t len);
static inline const char *sp_tok_entry_text(const sp_tok *t, int32_t id) {
    return t->pool + t->tokens[id].off;
}

/* SentencePiece: build the model's tables (after the map); false when out of memory. */
bool sp_tok_spm_init(sp_tok *t);
/* SentencePiece: encode one raw-text fragment (already split from special tokens). add_prefix
 * prepends the "▁" of add_space_prefix. Returns false on failure (out of memory, or a byte with
 * no fallback token). */
bool sp_tok_spm_encode(const sp_tok *t, const char *text, size_t len, bool add_prefix, sp_tok_sink *s);

#endif
