/* api/openai.c — see openai.h. Parsing checks the body before cJSON sees it (valid UTF-8, bounded
 * nesting), then reads every known field with its type and range; unknown fields are ignored as
 * OpenAI's clients send extras. Responses are built with cJSON and printed unformatted. */
#include "api/openai.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sp_oai_limits sp_oai_default_limits(void) {
    return (sp_oai_limits){.max_json_depth = 64, .max_tokens = 1 << 20, .max_stop = 16,
                           .max_stop_len = 256, .max_n = 4};
}

void sp_oai_set_error(sp_oai_error *e, int status, const char *type, const char *code, const char *param,
                      const char *fmt, ...) {
    e->status = status;
    e->type = type ? type : "invalid_request_error";
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

char *sp_oai_error_json(const sp_oai_error *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(err, "param", e->param);
    else cJSON_AddNullToObject(err, "param");
    if (e->code) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* ---- checks before parsing ---- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t left) {
    unsigned c = p[0];
    size_t n;
    unsigned min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { n = 2; min = 0x80; c &= 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 3; min = 0x800; c &= 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 4; min = 0x10000; c &= 0x07; }
    else return 0;
    if (n > left) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    return n;
}

static bool valid_utf8(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(p + i, len - i);
        if (!n) return false;
        i += n;
    }
    return true;
}

/* Deepest nesting of [ and { outside strings. */
static size_t json_depth(const char *s, size_t len) {
    size_t depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') in_str = true;
        else if (c == '[' || c == '{') { if (++depth > max) max = depth; }
        else if ((c == ']' || c == '}') && depth) depth--;
    }
    return max;
}

/* ---- field readers: each returns false and fills err when the field is present but wrong ---- */

typedef struct {
    const cJSON *root;
    sp_oai_error *err;
} reader;

static const cJSON *field(reader *r, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static bool bad(reader *r, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool bad(reader *r, const char *param, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sp_oai_set_error(r->err, 400, "invalid_request_error", NULL, param, "%s", msg);
    return false;
}

static bool read_bool(reader *r, const char *name, bool *out) {
    const cJSON *v = field(r, name);
    if (!v) return true;
    if (!cJSON_IsBool(v)) return bad(r, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return true;
}

static bool read_num(reader *r, const char *name, double lo, double hi, float *out) {
    const cJSON *v = field(r, name);
    if (!v) return true;
    if (!cJSON_IsNumber(v)) return bad(r, name, "'%s' must be a number", name);
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi) return bad(r, name, "'%s' must be between %g and %g (got %g)", name, lo, hi, d);
    *out = (float)d;
    return true;
}

static bool is_integer(double d) { return isfinite(d) && d == floor(d); }

static bool read_int(reader *r, const char *name, int64_t lo, int64_t hi, int64_t *out, bool *present) {
    const cJSON *v = field(r, name);
    if (present) *present = v != NULL;
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !is_integer(v->valuedouble)) return bad(r, name, "'%s' must be an integer", name);
    double d = v->valuedouble;
    if (d < (double)lo || d > (double)hi) { /* OpenAI's codes for out-of-range integers */
        bad(r, name, "'%s' must be between %lld and %lld (got %.0f)", name, (long long)lo, (long long)hi, d);
        r->err->code = d > (double)hi ? "integer_above_max_value" : "integer_below_min_value";
        return false;
    }
    *out = (int64_t)d;
    return true;
}

static bool read_str(reader *r, const char *name, char **out) {
    const cJSON *v = field(r, name);
    if (!v) return true;
    if (!cJSON_IsString(v)) return bad(r, name, "'%s' must be a string", name);
    *out = strdup(v->valuestring);
    return true;
}

/* ---- composite fields ---- */

static bool read_stop(reader *r, const sp_oai_limits *lim, sp_oai_req *q) {
    const cJSON *v = field(r, "stop");
    if (!v) return true;
    int n = cJSON_IsString(v) ? 1 : cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 0) return bad(r, "stop", "'stop' must be a string or an array of strings");
    if (n > lim->max_stop) return bad(r, "stop", "at most %d stop sequences are allowed (got %d)", lim->max_stop, n);
    q->stop = calloc((size_t)n + 1, sizeof *q->stop);
    for (int i = 0; i < n; i++) {
        const cJSON *s = cJSON_IsString(v) ? v : cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(s)) return bad(r, "stop", "'stop' must be a string or an array of strings");
        size_t len = strlen(s->valuestring);
        if (len > lim->max_stop_len)
            return bad(r, "stop", "stop sequences are limited to %zu bytes (got %zu)", lim->max_stop_len, len);
        if (len == 0) continue; /* an empty stop string would end every generation at once: ignore */
        q->stop[q->n_stop++] = strdup(s->valuestring);
    }
    return true;
}

static bool read_logit_bias(reader *r, sp_oai_req *q) {
    const cJSON *v = field(r, "logit_bias");
    if (!v) return true;
    if (!cJSON_IsObject(v)) return bad(r, "logit_bias", "'logit_bias' must be an object of token id to bias");
    int n = cJSON_GetArraySize(v);
    q->bias = calloc((size_t)n + 1, sizeof *q->bias);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        char *end;
        long id = strtol(e->string, &end, 10);
        if (!*e->string || *end || id < 0 || id > INT32_MAX)
            return bad(r, "logit_bias", "logit_bias keys must be token ids (got '%.40s')", e->string);
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble < -100 || e->valuedouble > 100)
            return bad(r, "logit_bias", "logit_bias values must be numbers between -100 and 100");
        /* -100 bans the token, as OpenAI documents */
        float b = e->valuedouble <= -100 ? -INFINITY : (float)e->valuedouble;
        q->bias[q->n_bias++] = (sp_logit_bias){(int32_t)id, b};
    }
    return true;
}

static bool read_logprobs(reader *r, sp_oai_req *q) {
    q->top_logprobs = -1;
    if (q->kind == SP_OAI_CHAT) {
        bool want = false;
        int64_t top = 0;
        bool has_top;
        if (!read_bool(r, "logprobs", &want) || !read_int(r, "top_logprobs", 0, 20, &top, &has_top)) return false;
        if (has_top && !want) return bad(r, "top_logprobs", "'top_logprobs' requires 'logprobs': true");
        if (want) q->top_logprobs = (int32_t)top;
    } else {
        int64_t n = 0;
        bool has;
        if (!read_int(r, "logprobs", 0, 20, &n, &has)) return false;
        if (has) q->top_logprobs = (int32_t)n;
    }
    return true;
}

static bool read_response_format(reader *r) {
    const cJSON *v = field(r, "response_format");
    if (!v) return true;
    const cJSON *t = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "type") : NULL;
    if (!cJSON_IsString(t)) return bad(r, "response_format", "'response_format' must be an object with a 'type'");
    if (strcmp(t->valuestring, "text") != 0)
        return bad(r, "response_format", "response_format type '%.40s' is not supported yet (only 'text')", t->valuestring);
    return true;
}

/* Join the text parts of an array-of-parts content into one string. */
static bool join_parts(reader *r, const cJSON *parts, char **out) {
    size_t len = 0, cap = 64;
    char *s = malloc(cap);
    s[0] = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, parts) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(type)) { free(s); return bad(r, "messages", "each content part needs a 'type'"); }
        if (strcmp(type->valuestring, "text") != 0) {
            free(s);
            return bad(r, "messages", "content parts of type '%.40s' are not supported (text only)", type->valuestring);
        }
        if (!cJSON_IsString(text)) { free(s); return bad(r, "messages", "a text content part needs a 'text' string"); }
        size_t n = strlen(text->valuestring);
        while (len + n + 1 > cap) s = realloc(s, cap *= 2);
        memcpy(s + len, text->valuestring, n + 1);
        len += n;
    }
    *out = s;
    return true;
}

static bool valid_role(const char *role) {
    static const char *roles[] = {"system", "developer", "user", "assistant", "tool", "function"};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (!strcmp(role, roles[i])) return true;
    return false;
}

static bool read_messages(reader *r, sp_oai_req *q) {
    const cJSON *v = field(r, "messages");
    if (!v) return bad(r, "messages", "'messages' is required");
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) return bad(r, "messages", "'messages' must be a non-empty array");
    q->messages = cJSON_CreateArray();
    const cJSON *m;
    int i = 0;
    cJSON_ArrayForEach(m, v) {
        if (!cJSON_IsObject(m)) return bad(r, "messages", "messages[%d] must be an object", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role) || !valid_role(role->valuestring))
            return bad(r, "messages", "messages[%d].role must be one of system, developer, user, assistant, tool", i);
        cJSON *copy = cJSON_Duplicate(m, true);
        cJSON_AddItemToArray(q->messages, copy);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsArray(content)) {
            char *joined = NULL;
            if (!join_parts(r, content, &joined)) return false;
            cJSON_ReplaceItemInObjectCaseSensitive(copy, "content", cJSON_CreateString(joined));
            free(joined);
        } else if (content && !cJSON_IsString(content) && !cJSON_IsNull(content)) {
            return bad(r, "messages", "messages[%d].content must be a string, an array of parts or null", i);
        } else if (!content && strcmp(role->valuestring, "assistant") != 0) {
            return bad(r, "messages", "messages[%d].content is required", i);
        }
        i++;
    }
    const cJSON *tools = field(r, "tools");
    if (tools) {
        if (!cJSON_IsArray(tools)) return bad(r, "tools", "'tools' must be an array");
        q->tools = cJSON_Duplicate(tools, true);
    }
    const cJSON *kw = field(r, "chat_template_kwargs");
    if (kw) {
        if (!cJSON_IsObject(kw)) return bad(r, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
        q->template_kwargs = cJSON_Duplicate(kw, true);
    }
    return true;
}

static bool read_prompt(reader *r, sp_oai_req *q) {
    const cJSON *v = field(r, "prompt");
    if (!v) return bad(r, "prompt", "'prompt' is required");
    if (cJSON_IsString(v)) {
        q->prompt = strdup(v->valuestring);
        return true;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
        return bad(r, "prompt", "'prompt' must be a string, an array of token ids, or an array of one string");
    const cJSON *first = cJSON_GetArrayItem(v, 0);
    int n = cJSON_GetArraySize(v);
    if (cJSON_IsString(first)) {
        if (n > 1) return bad(r, "prompt", "several prompts in one request are not supported yet: send one per request");
        q->prompt = strdup(first->valuestring);
        return true;
    }
    if (cJSON_IsArray(first)) return bad(r, "prompt", "several prompts in one request are not supported yet: send one per request");
    q->prompt_ids = malloc(sizeof(int32_t) * (size_t)n);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsNumber(e) || !is_integer(e->valuedouble) || e->valuedouble < 0 || e->valuedouble > INT32_MAX)
            return bad(r, "prompt", "'prompt' token ids must be non-negative integers");
        q->prompt_ids[q->n_prompt_ids++] = (int32_t)e->valuedouble;
    }
    return true;
}

static bool read_sampling(reader *r, sp_oai_req *q) {
    sp_sampler_params *sp = &q->sampling;
    int64_t top_k = sp->top_k, seed = 0;
    if (!read_num(r, "temperature", 0, 100, &sp->temperature) || !read_num(r, "top_p", 0, 1, &sp->top_p) ||
        !read_num(r, "min_p", 0, 1, &sp->min_p) || !read_num(r, "presence_penalty", -2, 2, &sp->presence_penalty) ||
        !read_num(r, "frequency_penalty", -2, 2, &sp->frequency_penalty) ||
        !read_num(r, "repeat_penalty", 0, 10, &sp->repeat_penalty) ||
        !read_int(r, "top_k", 0, INT32_MAX, &top_k, NULL) ||
        !read_int(r, "seed", INT64_MIN, INT64_MAX, &seed, &q->has_seed))
        return false;
    sp->top_k = (int32_t)top_k;
    sp->seed = (uint64_t)seed;
    return true;
}

/* n: OpenAI's own wording and codes for an integer out of range ("Invalid 'n': integer above maximum
 * value. Expected a value <= 128, but got 129 instead.", code "integer_above_max_value"), with this
 * server's limit (`--max-n`) in place of OpenAI's 128. */
static bool read_n(reader *r, const sp_oai_limits *lim, int32_t *out) {
    const cJSON *v = field(r, "n");
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !is_integer(v->valuedouble)) return bad(r, "n", "'n' must be an integer");
    double d = v->valuedouble;
    int32_t max = lim->max_n > 1 ? lim->max_n : 1;
    if (d < 1) {
        bad(r, "n", "Invalid 'n': integer below minimum value. Expected a value >= 1, but got %.0f instead.", d);
        r->err->code = "integer_below_min_value";
        return false;
    }
    if (d > max) {
        bad(r, "n", "Invalid 'n': integer above maximum value. Expected a value <= %d, but got %.0f instead. "
                    "(this server's limit; see `sparrow serve --max-n`)", max, d);
        r->err->code = "integer_above_max_value";
        return false;
    }
    *out = (int32_t)d;
    return true;
}

static bool parse_fields(reader *r, const sp_oai_limits *lim, sp_oai_req *q) {
    int64_t max_tokens = -1, mct = -1;
    bool has_mt, has_mct;
    const cJSON *so;
    if (!read_str(r, "model", &q->model) || !read_bool(r, "stream", &q->stream) || !read_str(r, "user", &q->user) ||
        !read_bool(r, "ignore_eos", &q->ignore_eos) || !read_bool(r, "echo", &q->echo) ||
        !read_int(r, "max_tokens", 1, lim->max_tokens, &max_tokens, &has_mt) ||
        !read_int(r, "max_completion_tokens", 1, lim->max_tokens, &mct, &has_mct) ||
        !read_n(r, lim, &q->n) || !read_sampling(r, q) || !read_stop(r, lim, q) ||
        !read_logit_bias(r, q) || !read_logprobs(r, q) || !read_response_format(r))
        return false;
    q->max_tokens = (int32_t)(has_mct ? mct : max_tokens);
    if ((so = field(r, "stream_options"))) {
        if (!cJSON_IsObject(so)) return bad(r, "stream_options", "'stream_options' must be an object");
        const cJSON *iu = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
        if (iu && !cJSON_IsBool(iu)) return bad(r, "stream_options", "'stream_options.include_usage' must be a boolean");
        q->include_usage = cJSON_IsTrue(iu);
    }
    if (q->kind == SP_OAI_CHAT) return read_messages(r, q);
    if (q->echo && q->stream) return bad(r, "echo", "'echo' with 'stream' is not supported");
    return read_prompt(r, q);
}

bool sp_oai_parse(sp_oai_kind kind, const char *body, size_t len, const sp_oai_limits *lim,
                  sp_oai_req *out, sp_oai_error *err) {
    sp_oai_limits def = sp_oai_default_limits();
    if (!lim) lim = &def;
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->n = 1;
    out->max_tokens = -1;
    out->top_logprobs = -1;
    out->sampling = sp_sampler_default_params();
    if (!valid_utf8(body, len)) {
        sp_oai_set_error(err, 400, "invalid_request_error", NULL, NULL, "the request body is not valid UTF-8");
        return false;
    }
    if (json_depth(body, len) > lim->max_json_depth) {
        sp_oai_set_error(err, 400, "invalid_request_error", "json_too_deep", NULL,
                         "the request JSON nests deeper than %zu levels", lim->max_json_depth);
        return false;
    }
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) {
        sp_oai_set_error(err, 400, "invalid_request_error", NULL, NULL, "the request body is not valid JSON");
        return false;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        sp_oai_set_error(err, 400, "invalid_request_error", NULL, NULL, "the request body must be a JSON object");
        return false;
    }
    reader r = {root, err};
    bool ok = parse_fields(&r, lim, out);
    cJSON_Delete(root);
    if (!ok) {
        sp_oai_req_free(out);
        return false;
    }
    out->sampling.bias = out->bias;
    out->sampling.n_bias = out->n_bias;
    return true;
}

void sp_oai_req_free(sp_oai_req *r) {
    free(r->model);
    cJSON_Delete(r->messages);
    cJSON_Delete(r->tools);
    cJSON_Delete(r->template_kwargs);
    free(r->prompt);
    free(r->prompt_ids);
    free(r->bias);
    for (int32_t i = 0; r->stop && i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->user);
    memset(r, 0, sizeof *r);
}

/* ---- responses ---- */

cJSON *sp_oai_string(const char *s, size_t len) {
    if (valid_utf8(s, len)) {
        char *c = malloc(len + 1);
        memcpy(c, s, len);
        c[len] = 0;
        cJSON *j = cJSON_CreateString(c);
        free(c);
        return j;
    }
    char *c = malloc(len * 3 + 1); /* each invalid byte -> U+FFFD (3 bytes) */
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(p + i, len - i);
        if (n) { memcpy(c + o, p + i, n); o += n; i += n; }
        else { memcpy(c + o, "\xEF\xBF\xBD", 3); o += 3; i++; }
    }
    c[o] = 0;
    cJSON *j = cJSON_CreateString(c);
    free(c);
    return j;
}

static cJSON *bytes_array(const char *s, size_t len) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < len; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)s[i]));
    return a;
}

/* Chat: {"content":[{"token","logprob","bytes","top_logprobs":[...]}]} */
static cJSON *chat_logprobs(const sp_oai_logprob *lp, int32_t n) {
    cJSON *o = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(o, "content");
    for (int32_t i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToObject(e, "token", sp_oai_string(lp[i].token, lp[i].token_len));
        cJSON_AddNumberToObject(e, "logprob", lp[i].logprob);
        cJSON_AddItemToObject(e, "bytes", bytes_array(lp[i].token, lp[i].token_len));
        cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int32_t k = 0; k < lp[i].n_top; k++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddItemToObject(t, "token", sp_oai_string(lp[i].top_token[k], lp[i].top_len[k]));
            cJSON_AddNumberToObject(t, "logprob", lp[i].top_logprob[k]);
            cJSON_AddItemToObject(t, "bytes", bytes_array(lp[i].top_token[k], lp[i].top_len[k]));
            cJSON_AddItemToArray(top, t);
        }
        cJSON_AddItemToArray(content, e);
    }
    cJSON_AddNullToObject(o, "refusal");
    return o;
}

/* Completions: {"tokens":[...],"token_logprobs":[...],"top_logprobs":[{tok:lp}],"text_offset":[...]} */
static cJSON *completion_logprobs(const sp_oai_logprob *lp, int32_t n, size_t offset0) {
    cJSON *o = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens"), *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs"), *offs = cJSON_AddArrayToObject(o, "text_offset");
    size_t off = offset0;
    for (int32_t i = 0; i < n; i++) {
        cJSON_AddItemToArray(tokens, sp_oai_string(lp[i].token, lp[i].token_len));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(lp[i].logprob));
        cJSON *t = cJSON_CreateObject();
        for (int32_t k = 0; k < lp[i].n_top; k++) {
            cJSON *key = sp_oai_string(lp[i].top_token[k], lp[i].top_len[k]);
            if (!cJSON_GetObjectItemCaseSensitive(t, key->valuestring))
                cJSON_AddNumberToObject(t, key->valuestring, lp[i].top_logprob[k]);
            cJSON_Delete(key);
        }
        cJSON_AddItemToArray(tops, t);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += lp[i].token_len;
    }
    return o;
}

static cJSON *usage_json(const sp_oai_usage *u) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "prompt_tokens", u->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", u->completion_tokens);
    cJSON_AddNumberToObject(o, "total_tokens", u->prompt_tokens + u->completion_tokens);
    cJSON *d = cJSON_AddObjectToObject(o, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", u->cached_tokens);
    return o;
}

static cJSON *envelope(const sp_oai_meta *m, bool chunk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    const char *obj = m->kind == SP_OAI_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    cJSON_AddStringToObject(o, "object", obj);
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON_AddStringToObject(o, "model", m->model);
    cJSON_AddStringToObject(o, "system_fingerprint", "sparrow");
    return o;
}

static char *print_and_free(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static cJSON *choice_json(const sp_oai_meta *m, int32_t index, const sp_oai_choice *ch) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    if (m->kind == SP_OAI_CHAT) {
        cJSON *msg = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        cJSON_AddItemToObject(msg, "content", sp_oai_string(ch->text, ch->len));
        cJSON_AddNullToObject(msg, "refusal");
        if (ch->lp) cJSON_AddItemToObject(c, "logprobs", chat_logprobs(ch->lp, ch->n_lp));
        else cJSON_AddNullToObject(c, "logprobs");
    } else {
        cJSON_AddItemToObject(c, "text", sp_oai_string(ch->text, ch->len));
        if (ch->lp) cJSON_AddItemToObject(c, "logprobs", completion_logprobs(ch->lp, ch->n_lp, 0));
        else cJSON_AddNullToObject(c, "logprobs");
    }
    cJSON_AddStringToObject(c, "finish_reason", ch->finish);
    return c;
}

char *sp_oai_response_n(const sp_oai_meta *m, const sp_oai_choice *choices, int32_t n, const sp_oai_usage *u) {
    cJSON *o = envelope(m, false), *arr = cJSON_AddArrayToObject(o, "choices");
    for (int32_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, choice_json(m, i, &choices[i]));
    cJSON_AddItemToObject(o, "usage", usage_json(u));
    return print_and_free(o);
}

char *sp_oai_response(const sp_oai_meta *m, const char *text, size_t len, const char *finish,
                      const sp_oai_logprob *lp, int32_t n_lp, const sp_oai_usage *u) {
    sp_oai_choice c = {text, len, finish, lp, n_lp};
    return sp_oai_response_n(m, &c, 1, u);
}

char *sp_oai_chunk_at(const sp_oai_meta *m, int32_t index, bool role, const char *text, size_t len,
                      const char *finish, const sp_oai_logprob *lp, int32_t n_lp) {
    cJSON *o = envelope(m, true), *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    if (m->kind == SP_OAI_CHAT) {
        cJSON *delta = cJSON_AddObjectToObject(c, "delta");
        if (role) cJSON_AddStringToObject(delta, "role", "assistant");
        if (text) cJSON_AddItemToObject(delta, "content", sp_oai_string(text, len));
        if (lp) cJSON_AddItemToObject(c, "logprobs", chat_logprobs(lp, n_lp));
        else cJSON_AddNullToObject(c, "logprobs");
    } else {
        cJSON_AddItemToObject(c, "text", sp_oai_string(text ? text : "", text ? len : 0));
        if (lp) cJSON_AddItemToObject(c, "logprobs", completion_logprobs(lp, n_lp, 0));
        else cJSON_AddNullToObject(c, "logprobs");
    }
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(choices, c);
    return print_and_free(o);
}

char *sp_oai_chunk(const sp_oai_meta *m, bool role, const char *text, size_t len, const char *finish,
                   const sp_oai_logprob *lp, int32_t n_lp) {
    return sp_oai_chunk_at(m, 0, role, text, len, finish, lp, n_lp);
}

char *sp_oai_usage_chunk(const sp_oai_meta *m, const sp_oai_usage *u) {
    cJSON *o = envelope(m, true);
    cJSON_AddArrayToObject(o, "choices");
    cJSON_AddItemToObject(o, "usage", usage_json(u));
    return print_and_free(o);
}

char *sp_oai_models(const char *const *names, int n, int64_t created) {
    cJSON *o = cJSON_CreateObject(), *data;
    cJSON_AddStringToObject(o, "object", "list");
    data = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", names[i]);
        cJSON_AddStringToObject(e, "object", "model");
        cJSON_AddNumberToObject(e, "created", (double)created);
        cJSON_AddStringToObject(e, "owned_by", "sparrow");
        cJSON_AddItemToArray(data, e);
    }
    return print_and_free(o);
}
