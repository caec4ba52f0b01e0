/* api/openai.h — OpenAI-compatible request and response shapes: parse and validate a
 * /v1/chat/completions or /v1/completions body into sp_oai_req (every field type- and
 * range-checked, errors in OpenAI's shape naming the parameter), and build the JSON of responses,
 * stream chunks, usage, model lists and errors. Pure JSON work: no sockets, no threads. */
#ifndef SP_API_OPENAI_H
#define SP_API_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "engine/sampler.h"

typedef enum { SP_OAI_CHAT, SP_OAI_COMPLETION } sp_oai_kind;

typedef struct {
    int status;            /* HTTP status: 400, 401, 404, 413, 429, 500, 503 */
    const char *type;      /* "invalid_request_error", "server_error", ... */
    const char *code;      /* NULL or e.g. "context_length_exceeded", "model_not_found" */
    char param[64];        /* "" when no single parameter is to blame */
    char message[512];
} sp_oai_error;

typedef struct {
    size_t max_json_depth;   /* nesting of the request JSON (default 64) */
    int32_t max_tokens;      /* cap on max_tokens (default 1 << 20) */
    int32_t max_stop;        /* number of stop strings (default 16) */
    size_t max_stop_len;    /* bytes per stop string (default 256) */
    int32_t max_n;           /* largest n accepted (default 4; `sparrow serve --max-n`) */
} sp_oai_limits;

typedef struct {
    sp_oai_kind kind;
    char *model;             /* NULL when absent */
    bool stream;
    bool include_usage;      /* stream_options.include_usage */
    /* chat */
    cJSON *messages;         /* normalized copy: content always a string (parts joined) or null */
    cJSON *tools;            /* copy of `tools`, or NULL */
    cJSON *template_kwargs;  /* copy of `chat_template_kwargs` (e.g. enable_thinking), or NULL */
    /* completions */
    char *prompt;            /* text prompt, or NULL when given as token ids */
    int32_t *prompt_ids;
    int32_t n_prompt_ids;
    bool echo;
    /* generation */
    int32_t max_tokens;      /* -1: until end of generation or context full */
    sp_sampler_params sampling; /* .bias points into bias */
    bool has_seed;
    sp_logit_bias *bias;
    int32_t n_bias;
    char **stop;
    int32_t n_stop;
    int32_t top_logprobs;    /* -1: no logprobs; else alternatives per token (0..20) */
    int32_t n;               /* choices: 1..max_n sibling generations of the same prompt */
    bool ignore_eos;
    char *user;
} sp_oai_req;

sp_oai_limits sp_oai_default_limits(void);

/* Parse a request body. false + err (status 400 mostly) when anything is wrong. */
bool sp_oai_parse(sp_oai_kind kind, const char *body, size_t len, const sp_oai_limits *lim,
                  sp_oai_req *out, sp_oai_error *err);
void sp_oai_req_free(sp_oai_req *r);

/* Fill an error. */
void sp_oai_set_error(sp_oai_error *e, int status, const char *type, const char *code, const char *param,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* {"error":{"message":...,"type":...,"param":...,"code":...}} (malloc'd). */
char *sp_oai_error_json(const sp_oai_error *e);

/* ---- responses ---- */

typedef struct {
    int32_t prompt_tokens, completion_tokens, cached_tokens;
} sp_oai_usage;

/* One generated token's log-probability data (the API layer fills the token texts). */
typedef struct {
    const char *token;       /* piece text (may be a partial UTF-8 sequence) */
    size_t token_len;
    float logprob;
    int32_t n_top;
    const char *top_token[20];
    size_t top_len[20];
    float top_logprob[20];
} sp_oai_logprob;

typedef struct {
    sp_oai_kind kind;
    const char *id;          /* "chatcmpl-..." / "cmpl-..." */
    int64_t created;
    const char *model;
} sp_oai_meta;

/* One choice of a non-streamed response. */
typedef struct {
    const char *text;
    size_t len;
    const char *finish;      /* "stop" / "length" */
    const sp_oai_logprob *lp; /* NULL: "logprobs": null */
    int32_t n_lp;
} sp_oai_choice;

/* Non-streamed response: one choice with the whole text. finish: "stop" / "length". */
char *sp_oai_response(const sp_oai_meta *m, const char *text, size_t len, const char *finish,
                      const sp_oai_logprob *lp, int32_t n_lp, const sp_oai_usage *u);
/* The same with n choices, "index" 0..n-1 in order (n = 1 gives sp_oai_response's bytes). */
char *sp_oai_response_n(const sp_oai_meta *m, const sp_oai_choice *choices, int32_t n, const sp_oai_usage *u);
/* Streamed chunk (the JSON only; the caller frames it as "data: ...\n\n"). For chat, `role` adds
 * the assistant role to the delta (first chunk); text may be NULL (no content); finish NULL while
 * running; lp may be NULL. */
char *sp_oai_chunk(const sp_oai_meta *m, bool role, const char *text, size_t len, const char *finish,
                   const sp_oai_logprob *lp, int32_t n_lp);
/* The same for choice `index` of an n > 1 request (index 0 gives sp_oai_chunk's bytes). */
char *sp_oai_chunk_at(const sp_oai_meta *m, int32_t index, bool role, const char *text, size_t len,
                      const char *finish, const sp_oai_logprob *lp, int32_t n_lp);
/* The final usage chunk of a stream (choices: []). */
char *sp_oai_usage_chunk(const sp_oai_meta *m, const sp_oai_usage *u);
/* GET /v1/models: one entry per name. */
char *sp_oai_models(const char *const *names, int n, int64_t created);

/* Append a JSON string of possibly invalid UTF-8 text: invalid bytes become U+FFFD. */
cJSON *sp_oai_string(const char *s, size_t len);

#endif
