/* engine/tok.h — tokenizers built from GGUF metadata (tokenizer.ggml.*): SentencePiece-style
 * (model "llama": scores, byte fallback, leading space), byte-level BPE (model "gpt2": merges,
 * the pre-tokenizer regexes tokenizer.ggml.pre names) and WordPiece (model "bert"). Decoding is streaming-safe through
 * sp_detok, which holds back an incomplete UTF-8 character until its last byte arrives. */
#ifndef SP_ENGINE_TOK_H
#define SP_ENGINE_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/gguf.h"

typedef enum { SP_TOK_SPM, SP_TOK_BPE, SP_TOK_WPM } sp_tok_kind;

/* token_type values from tokenizer.ggml.token_type */
enum { SP_TOKT_NORMAL = 1, SP_TOKT_UNKNOWN = 2, SP_TOKT_CONTROL = 3, SP_TOKT_USER = 4, SP_TOKT_UNUSED = 5, SP_TOKT_BYTE = 6 };

typedef struct sp_tok sp_tok;

sp_tok *sp_tok_from_gguf(const sp_gguf *g, char *err, size_t errlen);
void sp_tok_free(sp_tok *t);

int32_t sp_tok_n_vocab(const sp_tok *t);
sp_tok_kind sp_tok_get_kind(const sp_tok *t); /* SPM ("llama"), BPE ("gpt2") or WPM ("bert") */
int32_t sp_tok_bos(const sp_tok *t);  /* -1 if none */
int32_t sp_tok_eos(const sp_tok *t);
bool sp_tok_add_bos(const sp_tok *t); /* tokenizer.ggml.add_bos_token (default: SPM, WordPiece [CLS],
                                       * Llama 3 yes; other BPE no). WordPiece adds [SEP] at the end. */
bool sp_tok_add_space_prefix(const sp_tok *t); /* tokenizer.ggml.add_space_prefix (SPM "▁" prefix) */
bool sp_tok_is_eog(const sp_tok *t, int32_t id); /* end of generation (eos, eot, ...) */

/* Encode text. add_special: BOS (and EOS) per the vocab's flags. parse_special: control / user-defined
 * token text in `text` becomes those tokens. Writes up to max ids; returns the count needed (may be
 * > max: call again with a bigger buffer), or -1 on error. */
int32_t sp_tok_encode(const sp_tok *t, const char *text, size_t len, bool add_special,
                      bool parse_special, int32_t *out, int32_t max);

/* The bytes one token stands for (▁ → space, <0xNN> → that byte; byte-level BPE characters → their
 * bytes; user-defined tokens their text as is). Control tokens give "" unless
 * `special`. Returns the byte count (may exceed cap; nothing written past cap); -1 for a bad id. */
int32_t sp_tok_piece(const sp_tok *t, int32_t id, bool special, char *buf, int32_t cap);
/* The token's raw vocabulary text (for inspect / debug). */
const char *sp_tok_text(const sp_tok *t, int32_t id);

/* Streaming detokenizer: feed ids, get only complete UTF-8. */
typedef struct {
    const sp_tok *tok;
    char pending[8];
    int32_t n_pending;
    bool first;         /* strip the leading space of the first piece after BOS (SentencePiece) */
} sp_detok;
void sp_detok_init(sp_detok *d, const sp_tok *t, bool strip_leading_space);
/* Append the text of `id` to out (cap bytes); returns bytes written (always whole UTF-8 chars).
 * -1 (and nothing consumed) for a bad id or when the text does not fit: a buffer of
 * sp_detok_max_bytes(t) bytes always suffices. */
int32_t sp_detok_push(sp_detok *d, int32_t id, char *out, int32_t cap);
int32_t sp_detok_max_bytes(const sp_tok *t); /* most bytes one sp_detok_push can write */
/* Flush what is held back (invalid trailing bytes become U+FFFD; needs cap >= 3, else -1). */
int32_t sp_detok_flush(sp_detok *d, char *out, int32_t cap);

#endif
