/* engine/tok_pre.c — the byte-level BPE pre-tokenizers: the table from tokenizer.ggml.pre names
 * to lists of split regexes (the names and lists llama.cpp recognises, with the regexes written
 * in the form the Hugging Face tokenizer.json files give them), their compilation with PCRE2 (UTF,
 * Unicode properties, JIT), and the split itself. A list is applied regex after regex: each regex
 * cuts every current piece into its matches and the text between them, and a piece is matched on
 * its own (look-arounds and \z stop at its ends), as llama.cpp's unicode_regex_split does.
 * \s is spelled out as the Unicode White_Space set (PCRE2's \s lacks U+0085). Invalid UTF-8 is
 * matched by nothing (PCRE2_MATCH_INVALID_UTF), so its bytes land in the between-match pieces. */
#include "engine/tok_impl.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* White_Space, as a character-class body; \s and \S spelled with it */
#define WS "\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}"
#define SP "[" WS "]"
#define NSP "[^" WS "]"
#define CONTRACTIONS_I "(?i:'s|'t|'re|'ve|'m|'ll|'d)"

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|" SP "+(?!" NSP ")|" SP "+"
#define RE_LLAMA3                                                                                                   \
    CONTRACTIONS_I "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" SP "*[\\r\\n]+|" SP \
                   "+(?!" NSP ")|" SP "+"
#define RE_QWEN2                                                                                                  \
    CONTRACTIONS_I "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" SP "*[\\r\\n]+|" SP \
                   "+(?!" NSP ")|" SP "+"
#define RE_SEED_CODER                                                                                                \
    CONTRACTIONS_I "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^" WS "\\p{L}\\p{N}\\r\\n]+|" SP "*[\\r\\n]+|" SP \
                   "+(?!" NSP ")|" SP "+"
#define RE_BAILING                                                                                              \
    "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]++[\\r\\n]*|" SP "*[\\r\\n]|" SP \
    "+(?!" NSP ")|" SP "+"
#define UPPERISH "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]"
#define LOWERISH "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
#define RE_GPT4O                                                                                                       \
    "[^\\r\\n\\p{L}\\p{N}]?" UPPERISH "*" LOWERISH "+" CONTRACTIONS_I "?|[^\\r\\n\\p{L}\\p{N}]?" UPPERISH "+" LOWERISH \
    "*" CONTRACTIONS_I "?|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*|" SP "*[\\r\\n]+|" SP "+(?!" NSP ")|" SP "+"
#define RE_TEKKEN                                                                                                  \
    "[^\\r\\n\\p{L}\\p{N}]?" UPPERISH "*" LOWERISH "+|[^\\r\\n\\p{L}\\p{N}]?" UPPERISH "+" LOWERISH                 \
    "*|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*|" SP "*[\\r\\n]+|" SP "+(?!" NSP ")|" SP "+"
#define RE_DEEPSEEK3                                                                                                \
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "          \
    "?[\\p{P}\\p{S}]+[\\r\\n]*|" SP "*[\\r\\n]+|" SP "+(?!" NSP ")|" SP "+"
#define RE_BLOOM " ?[^(" WS "|.,!?…。，、।۔،)]+"
#define RE_CJK "[一-龥ࠀ-一가-퟿]+"
/* the cased-letter class of the DeepSeek LLM tokenizer.json */
#define RE_DEEPSEEK_LETTERS                                                                                       \
    SP "?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}ᾀ-ᾴᾶ-ᾼ\\x{1FBE}ῂ-" \
       "ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\\x{2126}ℨ\\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-"   \
       "𐳲𑢠-𑣟𞤀-𞥃]+"

#define PRE_MAX_RE 6

typedef struct {
    const char *names; /* '|'-separated tokenizer.ggml.pre values */
    const char *re[PRE_MAX_RE];
    sp_tok_pre_flags flags;
} pre_def;

static const pre_def pre_defs[] = {
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, {0}},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano", {RE_LLAMA3}, {true, true}},
    {"dbrx|smaug-bpe", {RE_LLAMA3}, {0}},
    {"glm4|chatglm-bpe", {RE_LLAMA3}, {0}},
    {"gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|modern-bert|jina-v1-en|jina-v2-code|"
     "roberta-bpe|mpt|olmo|jais|trillion|granite-docling|exaone4",
     {RE_GPT2},
     {0}},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2", {"\\p{N}", RE_GPT2}, {0}},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, {0}},
    {"qwen2|deepseek-r1-qwen|kormo|f2llmv2|stablelm2|hunyuan|megrez|solar-open|grok-2", {RE_QWEN2}, {0}},
    {"deepseek-llm",
     {"[\\r\\n]", RE_DEEPSEEK_LETTERS, SP "?[!-/:-~！-／：-～‘-‟　-。]+", SP "+\\z", RE_CJK, "\\p{N}+"},
     {0}},
    {"deepseek-coder", {"[\\r\\n]", SP "?\\p{L}+", SP "?\\p{P}+", RE_CJK, "\\p{N}"}, {0}},
    {"deepseek-v3|hunyuan-dense", {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", RE_DEEPSEEK3}, {0}},
    {"poro-chat|bloom|gpt3-finnish", {RE_BLOOM}, {0}},
    {"viking", {RE_BLOOM, "\\p{N}"}, {0}},
    {"tekken", {RE_TEKKEN}, {true, true}},
    {"gpt-4o|llama4", {RE_GPT4O}, {0}},
    {"seed-coder", {RE_SEED_CODER}, {0}},
    {"bailingmoe|bailingmoe2|llada-moe", {RE_BAILING}, {0}},
};

struct sp_tok_pre {
    int n_re;
    pcre2_code *re[PRE_MAX_RE];
};

static void pre_err(char *err, size_t errlen, const char *msg, const char *detail) {
    if (err && errlen) snprintf(err, errlen, "%s%s", msg, detail ? detail : "");
}

/* Is `name` one of the '|'-separated names? */
static bool pre_name_in(const char *names, const char *name, size_t name_len) {
    for (const char *p = names;;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == name_len && memcmp(p, name, n) == 0) return true;
        if (!bar) return false;
        p = bar + 1;
    }
}

static pcre2_code *pre_compile(const char *pattern, char *err, size_t errlen) {
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        pre_err(err, errlen, "tokenizer: pre-tokenizer regex does not compile: ", (const char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT the interpreter runs it */
    return re;
}

sp_tok_pre *sp_tok_pre_new(const char *name, size_t name_len, sp_tok_pre_flags *flags, char *err, size_t errlen) {
    const pre_def *def = NULL;
    for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0] && !def; i++)
        if (pre_name_in(pre_defs[i].names, name, name_len)) def = &pre_defs[i];
    if (!def) {
        if (err && errlen) {
            int n = name_len > 64 ? 64 : (int)name_len;
            snprintf(err, errlen, "tokenizer: unknown pre-tokenizer '%.*s' (tokenizer.ggml.pre)", n, name);
        }
        return NULL;
    }
    sp_tok_pre *p = calloc(1, sizeof *p);
    if (!p) return pre_err(err, errlen, "tokenizer: out of memory", NULL), NULL;
    for (int i = 0; i < PRE_MAX_RE && def->re[i]; i++) {
        p->re[i] = pre_compile(def->re[i], err, errlen);
        if (!p->re[i]) {
            sp_tok_pre_free(p);
            return NULL;
        }
        p->n_re = i + 1;
    }
    if (flags) *flags = def->flags;
    return p;
}

void sp_tok_pre_free(sp_tok_pre *p) {
    if (!p) return;
    for (int i = 0; i < p->n_re; i++) pcre2_code_free(p->re[i]);
    free(p);
}

typedef struct {
    sp_tok_span *v;
    size_t n, cap;
} pre_spans;

static bool pre_push(pre_spans *s, size_t off, size_t len) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        sp_tok_span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (sp_tok_span){off, len};
    return true;
}

/* The next match of re in subject[0..len) at or after pos: 1 (match in *ms..*me), 0 (none), -1 (error). */
static int pre_match(const pcre2_code *re, pcre2_match_data *md, const char *subject, size_t len, size_t pos,
                     size_t *ms, size_t *me) {
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, len, pos, 0, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = pcre2_match(re, (PCRE2_SPTR)subject, len, pos, PCRE2_NO_JIT, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return -1;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

/* Cut one piece text[off..off+len) by re into out: matches and the text between them. */
static bool pre_cut(const pcre2_code *re, pcre2_match_data *md, const char *text, size_t off, size_t len,
                    pre_spans *out) {
    const char *s = text + off;
    size_t pos = 0, gap = 0, ms, me;
    while (pos < len) {
        int r = pre_match(re, md, s, len, pos, &ms, &me);
        if (r < 0) return false;
        if (r == 0) break;
        if (me == ms) { /* an empty match cuts nothing: step over one character */
            uint32_t cp;
            pos = ms + (size_t)sp_tok_utf8_decode(s + ms, len - ms, &cp);
            continue;
        }
        if (ms > gap && !pre_push(out, off + gap, ms - gap)) return false;
        if (!pre_push(out, off + ms, me - ms)) return false;
        gap = pos = me;
    }
    return gap >= len || pre_push(out, off + gap, len - gap);
}

int64_t sp_tok_pre_split(const sp_tok_pre *p, const char *text, size_t len, sp_tok_span **spans, size_t *cap) {
    pre_spans cur = {*spans, 0, *cap}, next = {0};
    if (len == 0) return 0;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    bool ok = md && pre_push(&cur, 0, len);
    for (int r = 0; ok && r < p->n_re; r++) {
        next.n = 0;
        for (size_t i = 0; ok && i < cur.n; i++) ok = pre_cut(p->re[r], md, text, cur.v[i].off, cur.v[i].len, &next);
        pre_spans swap = cur;
        cur = next;
        next = swap;
    }
    pcre2_match_data_free(md);
    free(next.v);
    *spans = cur.v;
    *cap = cur.cap;
    return ok ? (int64_t)cur.n : -1;
}
