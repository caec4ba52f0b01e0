/* api/ollama.h — Ollama's API shapes (the dialect Home Assistant, Open WebUI and editor plugins
 * speak): /api/chat and /api/generate requests are translated into the OpenAI request sparrow
 * already validates (so both APIs share one path to the engine), and the newline-delimited JSON
 * responses, final statistics and the model listings are built here. Pure JSON work. */
#ifndef SP_API_OLLAMA_H
#define SP_API_OLLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/openai.h"

typedef struct {
    bool chat;        /* /api/chat (else /api/generate) */
    bool stream;      /* Ollama streams unless "stream": false */
    bool raw;         /* generate: prompt used as is, no template */
    bool load_only;   /* generate with an empty prompt: just (re)load the model */
} sp_ollama_req;

/* Translate an /api/chat or /api/generate body into an OpenAI request (chat for /api/chat and
 * templated generate; completion for raw generate) parsed by sp_oai_parse. false + err otherwise. */
bool sp_ollama_parse(bool chat, const char *body, size_t len, const sp_oai_limits *lim, sp_ollama_req *o,
                     sp_oai_req *out, sp_oai_error *err);

/* {"error": "..."} (malloc'd) */
char *sp_ollama_error_json(const char *message);

typedef struct {
    const char *done_reason; /* "stop", "length", "load" */
    int64_t total_ns, load_ns, prompt_eval_ns, eval_ns;
    int32_t prompt_eval_count, eval_count;
} sp_ollama_stats;

/* One NDJSON object (no newline): a piece of the reply, or with stats the final one. */
char *sp_ollama_chunk(bool chat, const char *model, const char *text, size_t len, const sp_ollama_stats *final);

typedef struct {
    const char *name;        /* "stories260K:latest" */
    const char *family;      /* general.architecture */
    const char *quant;       /* "Q8_0", "F32", ... the most common weight type */
    const char *param_size;  /* "260K", "494M", "1.2B" */
    uint64_t size;           /* file bytes */
    const char *digest;      /* hex */
    int64_t modified;        /* unix seconds */
    int32_t context_length;
    const char *template_src;
} sp_ollama_model;

char *sp_ollama_tags(const sp_ollama_model *m, int n);
char *sp_ollama_ps(const sp_ollama_model *m, int n, int64_t expires);
char *sp_ollama_show(const sp_ollama_model *m);
char *sp_ollama_version(void);
/* RFC 3339 UTC time with nanoseconds as Ollama writes it, into buf. */
void sp_ollama_time(int64_t unix_ns, char *buf, size_t cap);

#endif
