/* engine/tok_impl.h — private to the tokenizer module (engine/tok*.c): the shared vocabulary
 * storage (token texts, scores, types, text → id hash map, special ids) and the hooks each
 * tokenizer model implements. tok.c owns loading, special-token splitting, pieces and streaming
 * decode; tok_spm.c owns the SentencePiece (model "llama") encoder, tok_bpe.c the byte-level BPE
 * one ("gpt2", with the pre-tokenizer regexes of tok_pre.c), tok_wpm.c the WordPiece one ("bert",
 * with the Unicode helpers of tok_unicode.c and the tables of tok_unidata.c). */
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
    bool add_sep;           /* WordPiece: [SEP] after the text with add_special */
    bool wpm_lowercase, wpm_strip_accents; /* WordPiece normalizer (BertNormalizer) */
    struct sp_tok_bpe *bpe; /* byte-level BPE tables (tok_bpe.c); NULL for other kinds */

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

/* ---- byte-level BPE (tok_bpe.c) ---- */

/* Build the merge table and the pre-tokenizer from tokenizer.ggml.merges / tokenizer.ggml.pre
 * (after the map). Sets t->bpe; false with a message in err on failure. `pre_flags` receives the
 * pre-tokenizer's defaults (see sp_tok_pre_flags). */
typedef struct {
    bool ignore_merges; /* a pre-token that is itself a token is taken whole (Llama 3) */
    bool add_bos;       /* default of add_bos_token for this pre-tokenizer */
} sp_tok_pre_flags;
bool sp_tok_bpe_init(sp_tok *t, const sp_gguf *g, sp_tok_pre_flags *pre_flags, char *err, size_t errlen);
void sp_tok_bpe_free(sp_tok *t);
/* Encode one raw-text fragment. False on failure (out of memory, regex engine error). */
bool sp_tok_bpe_encode(const sp_tok *t, const char *text, size_t len, sp_tok_sink *s);
/* The bytes a normal BPE token stands for (byte-level characters mapped back to bytes). */
int32_t sp_tok_bpe_piece(const sp_tok *t, int32_t id, char *buf, int32_t cap);

/* ---- pre-tokenizer regexes (tok_pre.c) ---- */

typedef struct sp_tok_pre sp_tok_pre;
typedef struct {
    size_t off, len;
} sp_tok_span;
/* The pre-tokenizer `name` (tokenizer.ggml.pre; "default" when absent) compiled; NULL with a
 * message for an unknown name or a regex engine failure. */
sp_tok_pre *sp_tok_pre_new(const char *name, size_t name_len, sp_tok_pre_flags *flags, char *err, size_t errlen);
void sp_tok_pre_free(sp_tok_pre *p);
/* Split text[0..len) into pre-tokens: spans in order covering all of it (matches and the text
 * between them, regex after regex). *spans / *cap is a growing buffer the caller frees. Returns
 * the span count, or -1 on failure. */
int64_t sp_tok_pre_split(const sp_tok_pre *p, const char *text, size_t len, sp_tok_span **spans, size_t *cap);

/* ---- WordPiece (tok_wpm.c) ---- */

/* Encode one raw-text fragment: BertNormalizer-style cleanup, whitespace / punctuation split,
 * greedy longest-match with "▁" marking a word start, [UNK] for a word that cannot be matched. */
bool sp_tok_wpm_encode(const sp_tok *t, const char *text, size_t len, sp_tok_sink *s);

/* ---- Unicode helpers (tok_unicode.c; tables generated into tok_unidata.c) ---- */

enum { SP_UCAT_OTHER = 0, SP_UCAT_CONTROL = 1, SP_UCAT_PUNCT = 2, SP_UCAT_MARK = 3 };
typedef struct {
    uint32_t start;
    uint32_t cls; /* SP_UCAT_* from start up to the next range's start */
} sp_tok_uni_range;
typedef struct {
    uint32_t from, to;
} sp_tok_uni_pair;
typedef struct {
    uint32_t first, last, base;
} sp_tok_uni_nfd_range;
extern const sp_tok_uni_range sp_tok_unidata_classes[];
extern const int32_t sp_tok_unidata_n_classes;
extern const sp_tok_uni_pair sp_tok_unidata_lower[];
extern const int32_t sp_tok_unidata_n_lower;
extern const sp_tok_uni_nfd_range sp_tok_unidata_nfd[];
extern const int32_t sp_tok_unidata_n_nfd;

/* Decode the UTF-8 character at s[0..n) (n > 0) into *cp; returns its length. An invalid or
 * truncated sequence is one byte long and decodes to U+FFFD. */
int32_t sp_tok_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encode cp (<= 0x10FFFF) into out (4 bytes room); returns the length. */
int32_t sp_tok_utf8_encode(uint32_t cp, char *out);
int sp_tok_uni_class(uint32_t cp);     /* SP_UCAT_* */
bool sp_tok_uni_is_space(uint32_t cp); /* Unicode White_Space */
uint32_t sp_tok_uni_lower(uint32_t cp);     /* simple lowercase mapping */
uint32_t sp_tok_uni_nfd_base(uint32_t cp);  /* first code point of the NFD decomposition */

#endif
