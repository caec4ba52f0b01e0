/* server/app.h — the sparrow server application: the model, its scheduler and chat template, the
 * HTTP routes of the OpenAI-compatible API, and the metrics. `sparrow serve` (cli/serve.c) fills
 * sp_app_config and calls sp_app_run. One model (-m): it loads on a background thread while the
 * server already answers (/health says 503 until it is ready). A models folder (--models-dir): every
 * GGUF in it is served, each loaded on first use and unloaded least-recently-used or after its
 * keep_alive; /health says 200 at once. */
#ifndef SP_SERVER_APP_H
#define SP_SERVER_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *model_path;
    const char *model_alias;   /* the id clients send as `model` (default: file name without .gguf) */
    const char *models_dir;    /* serve every *.gguf here (instead of model_path), loaded on first use */
    int32_t max_models;        /* models_dir: loaded at once (<= 0: 2) */
    double keep_alive_s;       /* models_dir: an idle model stays loaded this long (< 0: until evicted) */
    bool keep_alive_set;       /* keep_alive_s given (else 300 s) */
    const char *host;
    int port;
    const char *const *api_keys;
    int n_api_keys;
    const char *cors_origins;
    int32_t n_ctx;             /* <= 0: the model's */
    int32_t threads;           /* compute threads (<= 0: one per online CPU) */
    int32_t max_queue;         /* waiting sequences before 429 (a request with n choices needs n) */
    int32_t max_n;             /* largest `n` (choices per request) accepted (<= 0: 4) */
    int32_t parallel;          /* sequences generated at once (sp_sched_opts.max_seqs; <= 0: 4) */
    int32_t step_tokens;       /* tokens per batched engine step (<= 0: the scheduler's 128) */
    size_t kv_mem;             /* bytes for the KV block pool (0: the scheduler's choice) */
    int kv_type;               /* sp_kv_type: 0 f32, 1 q8 */
    bool no_weight_cache;      /* repack in memory instead of mapping the cache file */
    size_t mem_limit;          /* bytes of RAM sparrow may own (anonymous memory + locked weights); 0: no limit */
    bool mlock;                /* lock as many weight bytes in RAM as mem_limit leaves room for */
    size_t kv_spill;           /* bytes of flash for released KV blocks (0: no spill) */
    double kv_spill_idle_s;    /* cached KV blocks idle this long go to flash */
    size_t max_body;           /* request body bytes */
    size_t max_header;         /* request line + headers bytes (0: the HTTP layer's 16 KiB) */
    unsigned max_connections;
    unsigned idle_timeout_s;
    unsigned read_timeout_s;   /* a request must arrive within this (0: the HTTP layer's 15 s) */
    double request_timeout_s;  /* a generation is cut (finish_reason "length") past this; 0: never */
    double shutdown_grace_s;   /* SIGTERM: running generations may go on this long, then are cut */
    int32_t max_json_depth;    /* request JSON nesting (<= 0: 64) */
    int32_t max_prompt_tokens; /* <= 0: the context less one */
    int32_t max_tokens;        /* largest max_tokens, and the cap when a request gives none (<= 0: the context) */
    int32_t max_stop;          /* stop strings per request (<= 0: 16) */
    int32_t max_stop_len;      /* bytes per stop string (<= 0: 256) */
    const char *tls_cert_file; /* both set: HTTPS */
    const char *tls_key_file;
    const char *chat_template_file; /* overrides the model's template */
    bool quiet;                /* no per-request log lines */
} sp_app_config;

/* Runs until SIGINT/SIGTERM; returns the exit status. The first signal stops accepting connections
 * and lets running requests finish (up to shutdown_grace_s, then cuts them with a proper end) and
 * returns 0; a second one ends the process at once (killed by that signal). */
int sp_app_run(const sp_app_config *cfg);

#endif
