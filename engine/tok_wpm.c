/* engine/tok_wpm.c — the WordPiece encoder (tokenizer.ggml.model "bert"), matching llama.cpp's
 * llm_tokenizer_wpm: the text is normalized like Hugging Face's BertNormalizer (NFD base character
 * and no marks when stripping accents, lowercase, control characters dropped), split at
 * whitespace, and every punctuation character, ASCII symbol and CJK ideograph becomes a word of
 * its own. Each word, prefixed with "▁" (the GGUF vocabulary marks word-initial pieces that way
 * and drops BERT's "##"), is covered greedily by the longest vocabulary entries from the left; a
 * word that cannot be covered becomes one unknown token. */
#include "engine/tok_impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *buf; /* "▁" + the current word */
    size_t len, cap;
} wpm_word;

static bool wpm_append(wpm_word *w, const char *s, size_t n) {
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        while (cap < w->len + n) cap *= 2;
        char *b = realloc(w->buf, cap);
        if (!b) return false;
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    return true;
}

static bool wpm_is_chinese(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static bool wpm_is_ascii_symbol(uint32_t cp) { return cp != 0 && cp < 0x7F && strchr("$+<=>^`|~", (int)cp); }

/* Cover word w[0..n) greedily with the longest vocabulary entries; [UNK] if it cannot be done. */
static void wpm_emit_word(const sp_tok *t, const char *w, size_t n, sp_tok_sink *s) {
    int64_t start = s->n;
    size_t max_len = (size_t)t->max_token_len;
    for (size_t i = 0; i < n;) {
        size_t j = n - i > max_len ? i + max_len : n;
        int32_t id = -1;
        for (; j > i; j--)
            if ((id = sp_tok_lookup(t, w + i, j - i)) >= 0) break;
        if (id < 0) {
            s->n = start; /* discard the partial cover */
            break;
        }
        sp_tok_sink_push(s, id);
        i = j;
    }
    if (s->n == start && t->unk >= 0) sp_tok_sink_push(s, t->unk);
}

/* Emit the current word (if any) and start a new one. */
static void wpm_flush(const sp_tok *t, wpm_word *w, sp_tok_sink *s) {
    if (w->len > 3) wpm_emit_word(t, w->buf, w->len, s);
    w->len = 3; /* keep the "▁" */
}

bool sp_tok_wpm_encode(const sp_tok *t, const char *text, size_t len, sp_tok_sink *s) {
    wpm_word w = {0};
    bool ok = wpm_append(&w, "\xE2\x96\x81", 3);
    for (size_t i = 0; ok && i < len;) {
        uint32_t cp;
        i += (size_t)sp_tok_utf8_decode(text + i, len - i, &cp);
        if (t->wpm_strip_accents) cp = sp_tok_uni_nfd_base(cp);
        if (sp_tok_uni_is_space(cp)) {
            wpm_flush(t, &w, s);
            continue;
        }
        int cls = sp_tok_uni_class(cp);
        if (cp == 0 || cp == 0xFFFD || cls == SP_UCAT_CONTROL) continue;
        if (t->wpm_strip_accents && cls == SP_UCAT_MARK) continue;
        bool alone = cls == SP_UCAT_PUNCT || wpm_is_ascii_symbol(cp) || wpm_is_chinese(cp);
        char enc[4];
        int32_t k = sp_tok_utf8_encode(t->wpm_lowercase ? sp_tok_uni_lower(cp) : cp, enc);
        if (alone) wpm_flush(t, &w, s);
        ok = wpm_append(&w, enc, (size_t)k);
        if (alone) wpm_flush(t, &w, s);
    }
    if (ok) wpm_flush(t, &w, s);
    free(w.buf);
    return ok;
}
