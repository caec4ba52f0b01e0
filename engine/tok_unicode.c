/* engine/tok_unicode.c — the small Unicode toolkit of the tokenizer module: UTF-8 decoding and
 * encoding (invalid input decodes to U+FFFD one byte at a time, never reads past the end), and
 * look-ups in the generated tables of tok_unidata.c: general-category class, White_Space, simple
 * lowercase, and the first code point of a character's NFD decomposition (what WordPiece's accent
 * stripping keeps, as llama.cpp does). */
#include "engine/tok_impl.h"

int32_t sp_tok_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int32_t len;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if ((size_t)len > n) {
        *cp = 0xFFFD;
        return 1;
    }
    for (int32_t i = 1; i < len; i++) {
        unsigned char b = u[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) {
            *cp = 0xFFFD;
            return 1;
        }
        v = v << 6 | (b & 0x3F);
    }
    *cp = v;
    return len;
}

int32_t sp_tok_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int sp_tok_uni_class(uint32_t cp) {
    /* the last range whose start <= cp */
    int32_t lo = 0, hi = sp_tok_unidata_n_classes - 1;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo + 1) / 2;
        if (sp_tok_unidata_classes[mid].start <= cp) lo = mid;
        else hi = mid - 1;
    }
    return (int)sp_tok_unidata_classes[lo].cls;
}

bool sp_tok_uni_is_space(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

uint32_t sp_tok_uni_lower(uint32_t cp) {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    int32_t lo = 0, hi = sp_tok_unidata_n_lower - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (sp_tok_unidata_lower[mid].from == cp) return sp_tok_unidata_lower[mid].to;
        if (sp_tok_unidata_lower[mid].from < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return cp;
}

uint32_t sp_tok_uni_nfd_base(uint32_t cp) {
    if (cp < 0xC0) return cp;
    int32_t lo = 0, hi = sp_tok_unidata_n_nfd - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        const sp_tok_uni_nfd_range *r = &sp_tok_unidata_nfd[mid];
        if (cp < r->first) hi = mid - 1;
        else if (cp > r->last) lo = mid + 1;
        else return r->base;
    }
    return cp;
}
