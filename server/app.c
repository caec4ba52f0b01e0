/* server/app.c — the server application: routes of the OpenAI-compatible API over server/http.h.
 *
 * Threads: the HTTP loop thread runs handlers and pumps and never computes; a small prep pool
 * renders chat templates and tokenizes (CPU work that must stay off the loop); the scheduler's
 * engine thread generates. A completion request goes:
 *   handler (loop): parse + validate JSON -> request context -> prep queue, connection async
 *   prep (pool):    template -> tokens -> length checks -> job -> scheduler; wake the connection
 *   pump (loop):    answer errors, or drain the job's outbox into SSE chunks / one JSON body
 *   closed (loop):  client gone -> cancel the job; unhook the job's notify; release the context
 * Request contexts are reference-counted (connection side + prep side). A request for n choices
 * becomes n sibling jobs (same prompt, seeds seed + i), submitted together (all or none); the pump
 * drains every sibling, interleaving their chunks by choice index, and answers once all finished. */
#include "server/app.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/ollama.h"
#include "api/openai.h"
#include "api/tmpl.h"
#include "conf/conf.h"
#include "engine/model.h"
#include "kernels/types.h"
#include "scheduler/sched.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/web.h"

/* ---------------------------------------------------------------- app ---- */

typedef struct rctx rctx;

/* One choice of a generation: its job and, on the loop thread, what has been answered of it. */
typedef struct {
    sp_job *job;
    bool role_sent;          /* chat stream: the assistant-role chunk went out */
    bool done;               /* finished, and its finish chunk sent / its result collected */
    sp_finish finish;
    char *text;              /* non-stream: accumulated */
    size_t text_len, text_cap;
    sp_oai_logprob *lps;     /* non-stream: accumulated logprobs */
    char **lp_strings;       /* texts the logprobs point at */
    int32_t n_lps, cap_lps, n_lp_strings;
    int32_t n_tokens;        /* tokens drained (events with a token) */
    bool cut;                /* ended by the server (request timeout, shutdown), not by the engine */
} choice;

/* One model the server can serve: a file, its description, and when loaded its engine. In
 * single-model mode (-m) the one slot is loaded at start and never unloaded; with --models-dir every
 * GGUF of the folder is a slot, loaded on first use and unloaded least-recently-used (under smu). */
enum { SLOT_UNLOADED, SLOT_LOADING, SLOT_READY, SLOT_FAILED };

typedef struct {
    char path[4096];
    char id[256];            /* what clients send as `model` */
    /* what the Ollama listings say about the model */
    char ollama_name[300], family[32], quant[16], param_size[16], digest[72];
    uint64_t file_size;
    int64_t file_mtime;
    int32_t ctx_train;       /* the file's context (listings while unloaded) */
    char *tmpl_src;          /* tokenizer.chat_template (NUL-terminated) or NULL */
    /* the engine: set by the load, read by requests that hold the slot (active > 0) */
    sp_model *model;
    sp_sched *sched;
    sp_tmpl *tmpl;
    char bos_text[64], eos_text[64];
    /* how to load */
    sp_load_opts load;
    size_t kv_mem;
    uint64_t est_bytes;      /* RAM the loaded model owns (the --mem-limit plan), 0: unknown */
    /* state (under app->smu in multi-model mode) */
    int state;               /* SLOT_* */
    char load_error[512];
    uint64_t fail_size;      /* the file as it was when the load failed: retried only once it changes */
    int64_t fail_mtime;
    int active;              /* requests holding it */
    double last_used;        /* sp_now() of the last acquire/release */
    double keep_until;       /* unload once idle past this (< 0: never) */
} model_slot;

typedef struct {
    const sp_app_config *cfg;
    sp_http *http;
    sp_metrics metrics;
    int64_t started_at;

    /* single-model mode: set once by the loader thread, then read-only */
    atomic_bool ready;
    atomic_bool load_failed;
    sp_oai_limits limits;
    char cache_dir[4096];

    model_slot *slots;
    int n_slots;
    bool multi;              /* --models-dir */
    int max_models;          /* loaded at once (multi) */
    double keep_alive_s;     /* default keep_alive (multi; < 0: never) */
    pthread_mutex_t smu;     /* slot states, active counts, `loading` */
    pthread_cond_t scv;      /* a load ended, a slot became idle */
    bool loading;            /* one load (with its evictions) at a time */
    bool squit;
    pthread_cond_t jcv;      /* wakes the janitor */
    pthread_t janitor;
    atomic_uint_fast64_t n_loads, n_unloads;

    /* prep pool */
    pthread_mutex_t pmu;
    pthread_cond_t pcv;
    rctx *pq_head, *pq_tail;
    bool pquit;
    pthread_t prep_threads[2];
    atomic_uint_fast64_t next_id;

    /* deadlines and shutdown (loop thread, but `stopping`, set by the signal handler) */
    rctx *live;              /* async requests being answered */
    atomic_int stopping;     /* signals received */
    double stop_t0;          /* when the tick first saw `stopping` (0: not yet) */
    bool grace_cut;          /* the shutdown grace ran out: every generation was cut */
} app_t;

static app_t *g_app; /* for the signal handler */

/* ------------------------------------------------------ request context ---- */

/* Why a generation was ended by the server: the answer is still complete, finish_reason "length". */
enum { CUT_NONE, CUT_TIMEOUT, CUT_SHUTDOWN };

typedef enum { EP_CHAT, EP_COMPLETION, EP_TOKENIZE, EP_DETOKENIZE, EP_APPLY_TEMPLATE, EP_OLLAMA_CHAT, EP_OLLAMA_GENERATE } endpoint;

struct rctx {
    app_t *app;
    atomic_int refs;
    endpoint ep;
    sp_http_conn *conn;      /* valid until closed() */
    pthread_mutex_t mu;
    bool closed;             /* connection finished with: no more wakes */
    rctx *pq_next;
    model_slot *slot;        /* the model the request uses */
    bool holds_slot;         /* acquired (multi-model): released with the context */
    double keep_alive;       /* seconds the model stays loaded after this request (< 0: never) */
    double load_s;           /* seconds spent loading the model for this request (Ollama's load_duration) */

    /* input */
    char *body;
    size_t body_len;
    sp_oai_req req;
    bool ollama;             /* answer in Ollama's shapes (NDJSON) */
    sp_ollama_req oll;

    /* prep output (written by prep before its wake; read by the pump after) */
    bool prep_done;
    sp_oai_error err;
    bool failed;
    char *result;            /* tokenize / detokenize / apply-template: JSON body */
    choice *ch;              /* the generation's choices (n sibling jobs), set under mu */
    int32_t n_ch;

    /* answer state (loop thread only) */
    char id[48];
    int64_t created;
    bool stream_begun, answered;
    double t_first;
    rctx *live_prev, *live_next; /* app->live (loop thread) */
    bool live;
    double deadline;         /* sp_now() past which the generation is cut (0: none) */
    int cut;                 /* CUT_*: set on the loop thread, acted on by the pump */
    int32_t n_prompt;        /* prompt tokens (set by prep before its wake) */
};

static rctx *rctx_new(app_t *a, endpoint ep) {
    rctx *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->app = a;
    atomic_init(&r->refs, 1);
    r->ep = ep;
    pthread_mutex_init(&r->mu, NULL);
    r->created = (int64_t)time(NULL);
    return r;
}

static void choices_free(choice *ch, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        if (ch[i].job) sp_job_unref(ch[i].job);
        free(ch[i].text);
        for (int32_t k = 0; k < ch[i].n_lp_strings; k++) free(ch[i].lp_strings[k]);
        free(ch[i].lp_strings);
        free(ch[i].lps);
    }
    free(ch);
}

static void slot_release(app_t *a, model_slot *s, double keep_alive);

static void rctx_unref(rctx *r) {
    if (atomic_fetch_sub(&r->refs, 1) != 1) return;
    choices_free(r->ch, r->n_ch);
    sp_oai_req_free(&r->req);
    free(r->body);
    free(r->result);
    if (r->holds_slot) slot_release(r->app, r->slot, r->keep_alive);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Wake the connection unless it is gone (any thread). */
static void rctx_wake(void *arg) {
    rctx *r = arg;
    pthread_mutex_lock(&r->mu);
    if (!r->closed) sp_http_wake(r->conn);
    pthread_mutex_unlock(&r->mu);
}

/* ------------------------------------------------------------- replies ---- */

static void reply_json(rctx *r, sp_http_conn *c, int status, const char *json) {
    sp_http_respond(c, status, "application/json", json, strlen(json));
    if (r) r->answered = true;
}

static void reply_error(sp_http_conn *c, const sp_oai_error *e) {
    char *s = sp_oai_error_json(e);
    if (e->status == 503 || e->status == 429) sp_http_add_header(c, "Retry-After", "1");
    sp_http_respond(c, e->status, "application/json", s, strlen(s));
    free(s);
}

/* An error in the shape of the API the request came through: Ollama's {"error": "..."} or OpenAI's. */
static void reply_error_for(bool ollama, sp_http_conn *c, const sp_oai_error *e) {
    if (!ollama) {
        reply_error(c, e);
        return;
    }
    char *s = sp_ollama_error_json(e->message);
    if (e->status == 503) sp_http_add_header(c, "Retry-After", "1");
    sp_http_respond(c, e->status, "application/json", s, strlen(s));
    free(s);
}

static void reply_simple_error(sp_http_conn *c, int status, const char *type, const char *code, const char *param,
                               const char *msg) {
    sp_oai_error e;
    sp_oai_set_error(&e, status, type, code, param, "%s", msg);
    reply_error(c, &e);
}

/* -------------------------------------------------------------- loader ---- */

static void model_id_from_path(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, cap, "%s", base);
    size_t n = strlen(out);
    if (n > 5 && !strcmp(out + n - 5, ".gguf")) out[n - 5] = 0;
}

static void token_text(const sp_model *m, int32_t id, char *out, size_t cap) {
    out[0] = 0;
    if (id < 0) return;
    int32_t n = sp_tok_piece(m->tok, id, true, out, (int32_t)cap - 1);
    if (n < 0 || n >= (int32_t)cap) n = 0;
    out[n] = 0;
}

/* The model's chat template: --chat-template file, else tokenizer.chat_template, else a builtin. */
static sp_tmpl *load_template(app_t *a, model_slot *sl, char *err, size_t errlen) {
    const sp_app_config *cfg = a->cfg;
    char *src = NULL;
    size_t len = 0;
    if (cfg->chat_template_file) {
        FILE *f = fopen(cfg->chat_template_file, "rb");
        if (!f) { snprintf(err, errlen, "cannot read chat template %s", cfg->chat_template_file); return NULL; }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        rewind(f);
        src = malloc((size_t)n + 1);
        len = fread(src, 1, (size_t)n, f);
        fclose(f);
    } else {
        sp_gguf_str s;
        if (sp_gguf_get_str(sl->model->gguf, "tokenizer.chat_template", &s)) {
            src = malloc(s.len + 1);
            memcpy(src, s.ptr, s.len);
            len = s.len;
        } else {
            const char *name = sp_tmpl_builtin_guess(sl->model->hp.arch_name, sl->id);
            fprintf(stderr, "sparrow serve: the model has no chat template; using the built-in '%s'\n", name);
            src = strdup(sp_tmpl_builtin(name));
            len = strlen(src);
        }
    }
    sp_tmpl *t = sp_tmpl_parse(src, len, err, errlen);
    free(src);
    return t;
}

/* Parameter count as Ollama prints it: "260K", "494.0M", "1.2B". */
static void param_size_text(uint64_t n, char *out, size_t cap) {
    if (n >= 1000000000ull) snprintf(out, cap, "%.1fB", n / 1e9);
    else if (n >= 1000000ull) snprintf(out, cap, "%.1fM", n / 1e6);
    else snprintf(out, cap, "%lluK", (unsigned long long)(n / 1000));
}

/* What /api/tags and /api/show report: family, parameter count, the dominant weight type, file
 * identity (size, mtime and a digest of those with the path: an identity, not a content hash). */
static void describe_model(model_slot *sl, const sp_gguf *g, const char *arch) {
    uint64_t params = 0, by_type[SP_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < sp_gguf_n_tensors(g); i++) {
        const sp_gguf_tensor *t = sp_gguf_tensor_at(g, i);
        uint64_t n = (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        params += n;
        if (t->n_dims >= 2 && t->type < SP_TYPE_COUNT) by_type[t->type] += t->nbytes;
    }
    int best = 0;
    for (int t = 1; t < SP_TYPE_COUNT; t++) if (by_type[t] > by_type[best]) best = t;
    const sp_type_info *ti = sp_type_get((uint32_t)best);
    snprintf(sl->quant, sizeof sl->quant, "%s", ti ? ti->name : "unknown");
    for (char *p = sl->quant; *p; p++) *p = (char)toupper((unsigned char)*p);
    param_size_text(params, sl->param_size, sizeof sl->param_size);
    snprintf(sl->family, sizeof sl->family, "%s", arch);
    sp_gguf_str tmpl = {0};
    if (!sl->tmpl_src && sp_gguf_get_str(g, "tokenizer.chat_template", &tmpl)) sl->tmpl_src = strndup(tmpl.ptr, tmpl.len);
}

/* The file's identity: size, mtime and a digest of those with the path (an identity, not a content hash). */
static void describe_file(model_slot *sl) {
    snprintf(sl->ollama_name, sizeof sl->ollama_name, "%s:latest", sl->id);
    struct stat st;
    if (stat(sl->path, &st) == 0) {
        sl->file_size = (uint64_t)st.st_size;
        sl->file_mtime = (int64_t)st.st_mtime;
    }
    uint64_t h[4] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull, 0x9E3779B97F4A7C15ull, 0xD1B54A32D192ED03ull};
    for (int k = 0; k < 4; k++) {
        for (const char *p = sl->path; *p; p++) h[k] = (h[k] ^ (uint8_t)*p) * 1099511628211ull;
        h[k] = (h[k] ^ sl->file_size) * 1099511628211ull;
        h[k] = (h[k] ^ (uint64_t)sl->file_mtime) * 1099511628211ull;
    }
    snprintf(sl->digest, sizeof sl->digest, "%016llx%016llx%016llx%016llx", (unsigned long long)h[0],
             (unsigned long long)h[1], (unsigned long long)h[2], (unsigned long long)h[3]);
}

static double mib(uint64_t b) { return (double)b / (1 << 20); }

/* The memory plan under --mem-limit. What sparrow owns must fit the limit: anonymous memory (KV pool,
 * forward buffers, logits, small tensors, tokenizer, a fixed allowance for code, heap and HTTP) plus
 * locked weights. The repacked weights stay file-backed (the cache file), read from flash as needed
 * and prefetched a layer ahead. Sets the KV budget and the bytes to lock; false (+ err) when even one
 * context cannot fit, with what would. */
static bool plan_memory(const sp_app_config *cfg, const char *path, bool quiet, sp_load_opts *lo, size_t *kv_mem,
                        uint64_t *owned, char *err, size_t errlen) {
    sp_hparams hp;
    uint64_t wbytes;
    if (!sp_model_peek(path, &hp, &wbytes, err, errlen)) return false;
    uint64_t limit = cfg->mem_limit;
    int64_t n_ctx = cfg->n_ctx > 0 ? cfg->n_ctx : hp.n_ctx_train;
    sp_kv_type kt = cfg->kv_type == SP_KV_Q8 ? SP_KV_Q8 : SP_KV_F32;
    uint64_t bb = sp_kv_block_bytes(hp.n_layer, hp.n_head_kv, hp.head_dim, kt);
    uint64_t kv_one = (uint64_t)((n_ctx + SP_KV_BLOCK - 1) / SP_KV_BLOCK + 1) * bb;
    int64_t par = cfg->parallel > 0 ? cfg->parallel : 4, T = (cfg->step_tokens > 0 ? cfg->step_tokens : 128) + par;
    int64_t qd = (int64_t)hp.n_head * hp.head_dim, kvd = (int64_t)hp.n_head_kv * hp.head_dim;
    int64_t thr = cfg->threads > 0 ? cfg->threads : sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t scratch = 4ull * (uint64_t)(T * (3 * hp.n_embd + (hp.n_embd > qd ? hp.n_embd : qd) + 2 * qd + 2 * kvd +
                                              2 * (int64_t)hp.n_ff + hp.n_rot)) +
                       4ull * (uint64_t)(thr * n_ctx) + 4ull * (uint64_t)((16 + par + 1) * hp.n_vocab) +
                       40ull * (uint64_t)(T * ((hp.n_ff > hp.n_embd ? hp.n_ff : hp.n_embd) / 32 + 1));
    uint64_t small = 4ull * (uint64_t)(hp.n_layer * (2 * hp.n_embd + 2 * hp.head_dim + qd + 2 * kvd) + hp.n_embd);
    uint64_t fixed = scratch + small + 64ull * (uint64_t)hp.n_vocab + (48ull << 20);
    if (cfg->no_weight_cache) fixed += wbytes; /* repacked in memory: anonymous */
    if (fixed + kv_one > limit) {
        uint64_t kv_tok = bb / SP_KV_BLOCK, kv_tok8 = sp_kv_block_bytes(hp.n_layer, hp.n_head_kv, hp.head_dim, SP_KV_Q8) / SP_KV_BLOCK;
        int64_t fit = fixed + 2 * bb < limit ? (int64_t)((limit - fixed - 2 * bb) / kv_tok) : 0;
        int64_t fit8 = fixed + 2 * bb < limit ? (int64_t)((limit - fixed - 2 * bb) / kv_tok8) : 0;
        snprintf(err, errlen, "--mem-limit %.0f MiB cannot hold one %lld-token context: KV %.0f MiB + buffers %.0f MiB%s = "
                 "%.0f MiB. It would fit %s",
                 mib(limit), (long long)n_ctx, mib(kv_one), mib(fixed), cfg->no_weight_cache ? " (incl. weights repacked in memory: drop --no-weight-cache)" : "",
                 mib(fixed + kv_one), fit >= 256 ? "" : "nothing useful at this limit");
        if (fit >= 256) {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, "--ctx %lld (or --kv-type q8 --ctx %lld), or --mem-limit %.0fM", (long long)fit,
                     (long long)fit8, mib(fixed + kv_one) + 1);
        }
        return false;
    }
    /* --mlock: RAM goes to weights first (a fixed resident part beats paging everything in turn),
     * so the KV pool holds one full context unless --kv-mem says otherwise */
    uint64_t kv = cfg->kv_mem ? cfg->kv_mem : cfg->mlock ? kv_one : (uint64_t)par * kv_one;
    if (!cfg->kv_mem && kv > (512ull << 20)) kv = kv_one > (512ull << 20) ? kv_one : 512ull << 20;
    if (kv > limit - fixed) kv = limit - fixed;
    if (kv < kv_one) kv = kv_one;
    *kv_mem = (size_t)kv;
    lo->lock_bytes = cfg->mlock ? limit - fixed - kv : 0;
    lo->prefetch = true;
    if (owned) *owned = fixed + kv + lo->lock_bytes;
    if (!quiet) fprintf(stderr, "sparrow serve: memory plan for --mem-limit %.0f MiB: KV pool %.0f MiB (%llu positions), buffers ~%.0f MiB, "
                    "weights locked up to %.0f MiB; the rest of the %.0f MiB of weights file-backed, read ahead a layer at a time\n",
            mib(limit), mib(kv), (unsigned long long)(kv / bb * SP_KV_BLOCK), mib(fixed), mib(lo->lock_bytes), mib(wbytes));
    return true;
}

/* Load a slot's model, template and scheduler (no lock held; one load at a time). false + err. */
static bool slot_load(app_t *a, model_slot *sl, char *err, size_t errlen) {
    const sp_app_config *cfg = a->cfg;
    fprintf(stderr, "sparrow serve: loading %s\n", sl->path);
    double t0 = sp_now();
    sp_model *m = sp_model_load_opts(sl->path, &sl->load, err, errlen);
    sp_tmpl *tmpl = NULL;
    sp_sched *sched = NULL;
    sl->model = m;
    if (m && m->wcache_note[0]) fprintf(stderr, "sparrow serve: %s\n", m->wcache_note);
    if (m && m->wcache)
        fprintf(stderr, "sparrow serve: weights %s %s (%.0f MiB%s)\n", m->wcache_state == 1 ? "mapped from" : "repacked into",
                m->wcache_path, mib(m->packed_bytes), m->locked_bytes ? ", part locked in RAM" : "");
    if (m) {
        if (m->synthetic)
            fprintf(stderr, "sparrow serve: NOTE: %s has RANDOM weights (made by `sparrow synth`): its text is "
                            "meaningless, for demos and benchmarks only\n", sl->path);
        if (cfg->threads > 0 && !sp_model_set_threads(m, cfg->threads))
            fprintf(stderr, "sparrow serve: cannot start %d compute threads; using %d\n", cfg->threads, sp_model_threads(m));
        if (!a->multi) { /* a models folder's were described at start (listings read them meanwhile) */
            describe_model(sl, m->gguf, m->hp.arch_name);
            describe_file(sl);
        }
        token_text(m, sp_tok_bos(m->tok), sl->bos_text, sizeof sl->bos_text);
        token_text(m, sp_tok_eos(m->tok), sl->eos_text, sizeof sl->eos_text);
        tmpl = load_template(a, sl, err, errlen);
    }
    if (tmpl) {
        sp_sched_opts so = {.n_ctx = cfg->n_ctx, .max_queue = cfg->max_queue, .max_seqs = cfg->parallel,
                            .step_tokens = cfg->step_tokens, .kv_mem = sl->kv_mem, .kv_type = cfg->kv_type,
                            .kv_spill_dir = cfg->kv_spill && a->cache_dir[0] ? a->cache_dir : NULL,
                            .kv_spill_bytes = cfg->kv_spill, .kv_spill_idle_s = cfg->kv_spill_idle_s};
        sched = sp_sched_new(m, &so, err, errlen);
    }
    if (!sched) {
        fprintf(stderr, "sparrow serve: cannot load %s: %s\n", sl->path, err);
        sp_tmpl_free(tmpl);
        sp_model_free(m);
        sl->model = NULL;
        return false;
    }
    sl->tmpl = tmpl;
    sl->sched = sched;
    atomic_fetch_add(&a->n_loads, 1);
    fprintf(stderr, "sparrow serve: model '%s' ready in %.2f s (%s, %d layers, context %d, kernels %s, %d threads)\n",
            sl->id, sp_now() - t0, m->hp.arch_name, m->hp.n_layer, sp_sched_n_ctx(sched), m->k->name, sp_model_threads(m));
    return true;
}

/* Free a loaded slot's engine (under smu in multi-model mode; nobody holds it). */
static void slot_unload(app_t *a, model_slot *sl, const char *why) {
    sp_sched_free(sl->sched);
    sp_tmpl_free(sl->tmpl);
    sp_model_free(sl->model);
    sl->sched = NULL;
    sl->tmpl = NULL;
    sl->model = NULL;
    sl->state = SLOT_UNLOADED;
    atomic_fetch_add(&a->n_unloads, 1);
    fprintf(stderr, "sparrow serve: unloaded model '%s' (%s)\n", sl->id, why);
}

static bool file_changed(const model_slot *sl) {
    struct stat st;
    if (stat(sl->path, &st) != 0) return true;
    return (uint64_t)st.st_size != sl->fail_size || (int64_t)st.st_mtime != sl->fail_mtime;
}

/* Multi-model mode, on a prep thread: make the request's model loaded and hold it (active + 1).
 * Loaded models are used at once; a model to load waits for any load in progress, then the loader
 * unloads least-recently-used idle models until --max-models and --mem-limit leave room (waiting
 * for a busy one to become idle when every loaded model is in use). false + e (the load's error,
 * or shutdown). */
static bool slot_acquire(app_t *a, model_slot *sl, sp_oai_error *e, double *load_s) {
    pthread_mutex_lock(&a->smu);
    for (;;) {
        if (a->squit || atomic_load(&a->stopping)) {
            pthread_mutex_unlock(&a->smu);
            sp_oai_set_error(e, 503, "server_error", "server_stopping", NULL, "the server is stopping");
            return false;
        }
        if (sl->state == SLOT_READY) {
            sl->active++;
            sl->last_used = sp_now();
            pthread_mutex_unlock(&a->smu);
            return true;
        }
        if (sl->state == SLOT_FAILED && !file_changed(sl)) {
            pthread_mutex_unlock(&a->smu);
            sp_oai_set_error(e, 500, "server_error", "model_load_failed", "model", "cannot load model '%s': %s", sl->id,
                             sl->load_error);
            return false;
        }
        if (a->loading) { /* one load at a time */
            pthread_cond_wait(&a->scv, &a->smu);
            continue;
        }
        a->loading = true;
        sl->state = SLOT_LOADING;
        break;
    }
    /* room: at most max_models loaded, their RAM within --mem-limit */
    for (;;) {
        int n_loaded = 0;
        uint64_t bytes = sl->est_bytes;
        model_slot *lru = NULL;
        for (int i = 0; i < a->n_slots; i++) {
            model_slot *o = &a->slots[i];
            if (o == sl || o->state != SLOT_READY) continue;
            n_loaded++;
            bytes += o->est_bytes;
            if (o->active == 0 && (!lru || o->last_used < lru->last_used)) lru = o;
        }
        bool fits = n_loaded < a->max_models && (!a->cfg->mem_limit || bytes <= a->cfg->mem_limit);
        if (fits || n_loaded == 0) break;
        if (lru) {
            char why[300];
            snprintf(why, sizeof why, "least recently used; making room for '%s'", sl->id);
            slot_unload(a, lru, why);
            continue;
        }
        if (a->squit || atomic_load(&a->stopping)) break;
        pthread_cond_wait(&a->scv, &a->smu); /* every loaded model is busy: wait for one to go idle */
    }
    pthread_mutex_unlock(&a->smu);
    char err[512] = "";
    struct stat st;
    bool have_st = stat(sl->path, &st) == 0;
    double t0 = sp_now();
    bool ok = slot_load(a, sl, err, sizeof err);
    *load_s = sp_now() - t0;
    pthread_mutex_lock(&a->smu);
    a->loading = false;
    if (ok) {
        sl->state = SLOT_READY;
        sl->active++;
        sl->last_used = sp_now();
        sl->keep_until = -1;
    } else {
        sl->state = SLOT_FAILED;
        snprintf(sl->load_error, sizeof sl->load_error, "%s", err);
        sl->fail_size = have_st ? (uint64_t)st.st_size : 0;
        sl->fail_mtime = have_st ? (int64_t)st.st_mtime : 0;
        sp_oai_set_error(e, 500, "server_error", "model_load_failed", "model", "cannot load model '%s': %s", sl->id, err);
    }
    pthread_cond_broadcast(&a->scv);
    pthread_mutex_unlock(&a->smu);
    return ok;
}

/* A request is done with its model (any thread): keep it loaded keep_alive seconds more (< 0: until
 * evicted; 0: unloaded as soon as it is idle, by the janitor). */
static void slot_release(app_t *a, model_slot *sl, double keep_alive) {
    pthread_mutex_lock(&a->smu);
    sl->active--;
    double now = sp_now();
    sl->last_used = now;
    sl->keep_until = keep_alive < 0 ? -1 : now + keep_alive;
    pthread_cond_broadcast(&a->scv);
    if (sl->active == 0 && keep_alive >= 0) pthread_cond_signal(&a->jcv);
    pthread_mutex_unlock(&a->smu);
}

/* Multi-model mode: unloads idle models past their keep_alive. */
static void *janitor_main(void *arg) {
    app_t *a = arg;
    pthread_mutex_lock(&a->smu);
    while (!a->squit) {
        double now = sp_now(), next = now + 1.0;
        for (int i = 0; i < a->n_slots; i++) {
            model_slot *sl = &a->slots[i];
            if (sl->state != SLOT_READY || sl->active > 0 || sl->keep_until < 0) continue;
            if (sl->keep_until <= now) slot_unload(a, sl, "keep_alive expired");
            else if (sl->keep_until < next) next = sl->keep_until;
        }
        pthread_cond_broadcast(&a->scv);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double wait = next - now;
        if (wait < 0.01) wait = 0.01;
        ts.tv_sec += (time_t)wait;
        ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&a->jcv, &a->smu, &ts);
    }
    pthread_mutex_unlock(&a->smu);
    return NULL;
}

/* Single-model mode: load the one model at start (/health says 503 until it is ready). */
static void *loader_main(void *arg) {
    app_t *a = arg;
    const sp_app_config *cfg = a->cfg;
    model_slot *sl = &a->slots[0];
    char err[512] = "";
    if (!slot_load(a, sl, err, sizeof err)) {
        snprintf(sl->load_error, sizeof sl->load_error, "%s", err);
        sl->state = SLOT_FAILED;
        atomic_store(&a->load_failed, true);
        sp_http_stop(a->http);
        return NULL;
    }
    sl->state = SLOT_READY;
    sl->keep_until = -1;
    atomic_store(&a->ready, true);
    const char *host = cfg->host && strcmp(cfg->host, "0.0.0.0") && strcmp(cfg->host, "::") ? cfg->host : "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "sparrow serve: try it:\n  curl http://%s%s%s:%d/v1/chat/completions -H 'Content-Type: application/json'%s \\\n"
                    "    -d '{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"Tell me a story\"}], \"max_tokens\": 64}'\n",
            v6 ? "[" : "", host, v6 ? "]" : "", sp_http_port(a->http),
            cfg->n_api_keys ? " -H 'Authorization: Bearer YOUR_KEY'" : "", sl->id);
    return NULL;
}

/* ---------------------------------------------------------------- prep ---- */

/* Render the chat template for the request's messages. */
static char *render_chat(model_slot *a, const sp_oai_req *q, sp_oai_error *e) {
    cJSON *ctx = cJSON_CreateObject();
    cJSON_AddItemReferenceToObject(ctx, "messages", q->messages);
    if (q->tools) cJSON_AddItemReferenceToObject(ctx, "tools", q->tools);
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", true);
    cJSON_AddStringToObject(ctx, "bos_token", a->bos_text);
    cJSON_AddStringToObject(ctx, "eos_token", a->eos_text);
    if (q->template_kwargs) {
        const cJSON *kv;
        cJSON_ArrayForEach(kv, q->template_kwargs) {
            if (!cJSON_GetObjectItemCaseSensitive(ctx, kv->string))
                cJSON_AddItemToObject(ctx, kv->string, cJSON_Duplicate(kv, true));
        }
    }
    char *out = NULL, err[512];
    size_t len;
    sp_tmpl_status st = sp_tmpl_render(a->tmpl, ctx, NULL, &out, &len, err, sizeof err);
    cJSON_Delete(ctx);
    if (st != SP_TMPL_OK) {
        sp_oai_set_error(e, st == SP_TMPL_ERAISED ? 400 : 500, st == SP_TMPL_ERAISED ? "invalid_request_error" : "server_error",
                         NULL, st == SP_TMPL_ERAISED ? "messages" : NULL, "chat template: %s", err);
        return NULL;
    }
    return out;
}

/* Tokenize text; add BOS unless the text already starts with it. */
static int32_t tokenize(model_slot *a, const char *text, bool add_special, bool parse_special, int32_t **out) {
    size_t len = strlen(text);
    bool starts_with_bos = a->bos_text[0] && !strncmp(text, a->bos_text, strlen(a->bos_text));
    add_special = add_special && !(starts_with_bos && parse_special);
    int32_t cap = (int32_t)(len < 1 << 28 ? len : 1 << 28) + 8;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    int32_t n = sp_tok_encode(a->model->tok, text, len, add_special, parse_special, ids, cap);
    if (n > cap) {
        ids = realloc(ids, sizeof(int32_t) * (size_t)n);
        n = sp_tok_encode(a->model->tok, text, len, add_special, parse_special, ids, n);
    }
    if (n < 0) { free(ids); return -1; }
    *out = ids;
    return n;
}

static uint64_t random_seed(app_t *a) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
                 atomic_fetch_add(&a->next_id, 1) * 0xD1B54A32D192ED03ull;
    return x;
}

static void *dup_mem(const void *p, size_t n) {
    void *c = malloc(n ? n : 1);
    if (!c) abort();
    if (n) memcpy(c, p, n);
    return c;
}

/* The n sibling jobs of a request (n = q->n): the same prompt and parameters; seeds seed + i when the
 * request gave one (so choice 0 samples exactly like the same request with n = 1), else independent
 * random seeds. Submitted together: all of them, or none and a 429. Takes ownership of ids. */
static void submit_choices(rctx *r, int32_t *ids, int32_t n) {
    app_t *a = r->app;
    model_slot *sl = r->slot;
    sp_oai_req *q = &r->req;
    int32_t nj = q->n > 1 ? q->n : 1;
    choice *ch = calloc((size_t)nj, sizeof *ch);
    sp_job **jobs = calloc((size_t)nj, sizeof *jobs);
    if (!ch || !jobs) abort();
    for (int32_t i = 0; i < nj; i++) {
        sp_job *j = sp_job_new();
        if (!j) abort();
        bool last = i == nj - 1; /* the last sibling takes the request's own arrays, the others copies */
        j->p.prompt = last ? ids : dup_mem(ids, sizeof(int32_t) * (size_t)n);
        j->p.n_prompt = n;
        /* no max_tokens: up to --max-tokens when set (else until the context is full) */
        j->p.max_tokens = q->max_tokens >= 0 ? q->max_tokens : a->cfg->max_tokens > 0 ? a->cfg->max_tokens : -1;
        j->p.ignore_eos = q->ignore_eos;
        j->p.sampling = q->sampling;
        j->p.sampling.seed = q->has_seed ? q->sampling.seed + (uint64_t)i : random_seed(a);
        j->p.bias = q->n_bias ? (last ? q->bias : dup_mem(q->bias, sizeof *q->bias * (size_t)q->n_bias)) : NULL;
        j->p.sampling.bias = j->p.bias;
        j->p.sampling.n_bias = j->p.bias ? q->n_bias : 0;
        j->p.n_stop = q->n_stop;
        if (q->n_stop && last) j->p.stop = q->stop;
        else if (q->n_stop) {
            j->p.stop = calloc((size_t)q->n_stop, sizeof *j->p.stop);
            if (!j->p.stop) abort();
            for (int32_t k = 0; k < q->n_stop; k++) j->p.stop[k] = strdup(q->stop[k]);
        }
        j->p.top_logprobs = q->top_logprobs;
        sp_job_set_notify(j, rctx_wake, r);
        ch[i].job = j;
        jobs[i] = j;
    }
    if (q->n_bias) { /* moved into the last sibling */
        q->bias = NULL;
        q->n_bias = 0;
        q->sampling.bias = NULL;
        q->sampling.n_bias = 0;
    }
    if (q->n_stop) {
        q->stop = NULL;
        q->n_stop = 0;
    }
    pthread_mutex_lock(&r->mu);
    bool gone = r->closed;
    if (!gone) {
        r->ch = ch;
        r->n_ch = nj;
    }
    pthread_mutex_unlock(&r->mu);
    if (gone) { /* the client left while we prepared */
        choices_free(ch, nj);
        free(jobs);
        return;
    }
    if (sp_sched_submit_many(sl->sched, jobs, nj) != 0) {
        if (r->ollama) /* Ollama itself answers a full queue with 503 "server busy, please try again" */
            sp_oai_set_error(&r->err, 503, "server_error", "server_overloaded", NULL,
                             "the server is busy: %d requests are waiting; retry shortly", a->cfg->max_queue);
        else /* OpenAI's rate-limit answer: 429, type "requests", code "rate_limit_exceeded" (+ Retry-After) */
            sp_oai_set_error(&r->err, 429, "requests", "rate_limit_exceeded", NULL,
                             "Rate limit reached: the server's queue is full (%d waiting generations); retry shortly",
                             a->cfg->max_queue);
        for (int32_t i = 0; i < nj; i++) sp_job_set_notify(jobs[i], NULL, NULL);
        pthread_mutex_lock(&r->mu); /* closed() takes its own job references under mu */
        r->ch = NULL;
        r->n_ch = 0;
        pthread_mutex_unlock(&r->mu);
        choices_free(ch, nj);
        r->failed = true;
    }
    free(jobs);
}

/* Build and submit the jobs of a completion request. */
static void prep_generation(rctx *r) {
    app_t *a = r->app;
    model_slot *sl = r->slot;
    sp_oai_req *q = &r->req;
    int32_t *ids = NULL, n;
    if (q->kind == SP_OAI_CHAT) {
        char *prompt = render_chat(sl, q, &r->err);
        if (!prompt) { r->failed = true; return; }
        n = tokenize(sl, prompt, true, true, &ids);
        free(prompt);
    } else if (q->prompt) {
        n = tokenize(sl, q->prompt, true, true, &ids);
    } else {
        n = q->n_prompt_ids;
        ids = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
        memcpy(ids, q->prompt_ids, sizeof(int32_t) * (size_t)n);
        for (int32_t i = 0; i < n; i++) {
            if (ids[i] >= sl->model->hp.n_vocab) {
                sp_oai_set_error(&r->err, 400, NULL, NULL, "prompt", "token id %d is out of range (vocabulary: %d)", ids[i],
                                 sl->model->hp.n_vocab);
                r->failed = true;
                free(ids);
                return;
            }
        }
    }
    int32_t n_ctx = sp_sched_n_ctx(sl->sched);
    if (n < 0) {
        sp_oai_set_error(&r->err, 400, NULL, NULL, "prompt", "the prompt cannot be tokenized");
    } else if (n == 0) {
        sp_oai_set_error(&r->err, 400, NULL, NULL, "prompt", "the prompt is empty");
    } else if (a->cfg->max_prompt_tokens > 0 && n > a->cfg->max_prompt_tokens) {
        sp_oai_set_error(&r->err, 400, NULL, "context_length_exceeded", q->kind == SP_OAI_CHAT ? "messages" : "prompt",
                         "This server accepts at most %d prompt tokens (--max-prompt-tokens). However, your prompt has "
                         "%d tokens.", a->cfg->max_prompt_tokens, n);
    } else if (n >= n_ctx) {
        sp_oai_set_error(&r->err, 400, NULL, "context_length_exceeded", q->kind == SP_OAI_CHAT ? "messages" : "prompt",
                         "This model's maximum context length is %d tokens. However, your prompt has %d tokens "
                         "(at most %d fit, leaving room for one generated token).", n_ctx, n, n_ctx - 1);
    } else if (q->max_tokens > 0 && (int64_t)n + q->max_tokens > n_ctx) {
        sp_oai_set_error(&r->err, 400, NULL, "context_length_exceeded", "max_tokens",
                         "This model's maximum context length is %d tokens. However, you requested %d tokens "
                         "(%d in the prompt, %d for the completion).", n_ctx, n + q->max_tokens, n, q->max_tokens);
    } else {
        r->n_prompt = n;
        submit_choices(r, ids, n);
        return;
    }
    free(ids);
    r->failed = true;
}

static void prep_tokenize(rctx *r) {
    model_slot *a = r->slot;
    cJSON *in = cJSON_ParseWithLength(r->body, r->body_len), *out = NULL;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(in, "content");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(in, "add_special");
    const cJSON *parse = cJSON_GetObjectItemCaseSensitive(in, "parse_special");
    const cJSON *pieces = cJSON_GetObjectItemCaseSensitive(in, "with_pieces");
    if (!cJSON_IsObject(in) || !cJSON_IsString(content) || (add && !cJSON_IsBool(add)) || (parse && !cJSON_IsBool(parse)) ||
        (pieces && !cJSON_IsBool(pieces))) {
        sp_oai_set_error(&r->err, 400, NULL, NULL, "content",
                         "expected {\"content\": string, \"add_special\"?: bool, \"parse_special\"?: bool, \"with_pieces\"?: bool}");
        r->failed = true;
    } else {
        int32_t *ids;
        int32_t n = sp_tok_encode(a->model->tok, content->valuestring, strlen(content->valuestring), cJSON_IsTrue(add),
                                  !parse || cJSON_IsTrue(parse), NULL, 0);
        ids = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
        n = sp_tok_encode(a->model->tok, content->valuestring, strlen(content->valuestring), cJSON_IsTrue(add),
                          !parse || cJSON_IsTrue(parse), ids, n > 0 ? n : 1);
        out = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(out, "tokens");
        char piece[512];
        for (int32_t i = 0; i < n; i++) {
            if (!cJSON_IsTrue(pieces)) { cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i])); continue; }
            int32_t len = sp_tok_piece(a->model->tok, ids[i], true, piece, sizeof piece);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "id", ids[i]);
            cJSON_AddItemToObject(e, "piece", sp_oai_string(piece, len > 0 && len <= (int32_t)sizeof piece ? (size_t)len : 0));
            cJSON_AddItemToArray(arr, e);
        }
        free(ids);
        r->result = cJSON_PrintUnformatted(out);
    }
    cJSON_Delete(in);
    cJSON_Delete(out);
}

static void prep_detokenize(rctx *r) {
    model_slot *a = r->slot;
    cJSON *in = cJSON_ParseWithLength(r->body, r->body_len);
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(in, "tokens"), *t;
    bool ok = cJSON_IsArray(tokens);
    cJSON_ArrayForEach(t, tokens) {
        if (!cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble >= a->model->hp.n_vocab ||
            t->valuedouble != floor(t->valuedouble))
            ok = false;
    }
    if (!ok) {
        sp_oai_set_error(&r->err, 400, NULL, NULL, "tokens", "expected {\"tokens\": [token ids within the vocabulary]}");
        r->failed = true;
        cJSON_Delete(in);
        return;
    }
    sp_detok d;
    sp_detok_init(&d, a->model->tok, false);
    int32_t cap = sp_detok_max_bytes(a->model->tok);
    size_t len = 0, size = 256;
    char *text = malloc(size);
    cJSON_ArrayForEach(t, tokens) {
        while (len + (size_t)cap + 16 > size) text = realloc(text, size *= 2);
        int32_t n = sp_detok_push(&d, (int32_t)t->valuedouble, text + len, cap);
        if (n > 0) len += (size_t)n;
    }
    while (len + 16 > size) text = realloc(text, size *= 2);
    int32_t n = sp_detok_flush(&d, text + len, 16);
    if (n > 0) len += (size_t)n;
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "content", sp_oai_string(text, len));
    r->result = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    cJSON_Delete(in);
    free(text);
}

static void prep_apply_template(rctx *r) {
    char *prompt = render_chat(r->slot, &r->req, &r->err);
    if (!prompt) { r->failed = true; return; }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "prompt", prompt);
    r->result = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    free(prompt);
}

static void prep_one(rctx *r) {
    if (r->app->multi && !r->holds_slot) { /* load the model when it is not (one load at a time) */
        if (slot_acquire(r->app, r->slot, &r->err, &r->load_s)) r->holds_slot = true;
        else r->failed = true;
    }
    if (r->failed) {
    } else if (r->ollama && r->oll.load_only) { /* Ollama's "load the model" (keep_alive 0: unload it) */
        sp_ollama_stats st = {.done_reason = r->keep_alive == 0 ? "unload" : "load", .load_ns = (int64_t)(r->load_s * 1e9)};
        r->result = sp_ollama_chunk(false, r->slot->ollama_name, "", 0, &st);
    } else switch (r->ep) {
    case EP_CHAT:
    case EP_COMPLETION:
    case EP_OLLAMA_CHAT:
    case EP_OLLAMA_GENERATE: prep_generation(r); break;
    case EP_TOKENIZE: prep_tokenize(r); break;
    case EP_DETOKENIZE: prep_detokenize(r); break;
    case EP_APPLY_TEMPLATE: prep_apply_template(r); break;
    }
    /* under mu: a pump may run any time (a job's first events, a request timeout's wake) */
    pthread_mutex_lock(&r->mu);
    r->prep_done = true;
    pthread_mutex_unlock(&r->mu);
    rctx_wake(r);
}

static void *prep_main(void *arg) {
    app_t *a = arg;
    for (;;) {
        pthread_mutex_lock(&a->pmu);
        while (!a->pquit && !a->pq_head) pthread_cond_wait(&a->pcv, &a->pmu);
        rctx *r = a->pq_head;
        if (r) {
            a->pq_head = r->pq_next;
            if (!a->pq_head) a->pq_tail = NULL;
        }
        bool quit = a->pquit && !r;
        pthread_mutex_unlock(&a->pmu);
        if (quit) return NULL;
        pthread_mutex_lock(&r->mu);
        bool gone = r->closed;
        pthread_mutex_unlock(&r->mu);
        if (!gone) prep_one(r);
        rctx_unref(r);
    }
}

static void prep_submit(app_t *a, rctx *r) {
    atomic_fetch_add(&r->refs, 1);
    pthread_mutex_lock(&a->pmu);
    r->pq_next = NULL;
    if (a->pq_tail) a->pq_tail->pq_next = r;
    else a->pq_head = r;
    a->pq_tail = r;
    pthread_cond_signal(&a->pcv);
    pthread_mutex_unlock(&a->pmu);
}

/* ---------------------------------------------------------- generation ---- */

static sp_oai_meta meta_of(rctx *r) {
    return (sp_oai_meta){r->req.kind, r->id, r->created, r->slot->id};
}

static void sse_send(sp_http_conn *c, const char *json) {
    sp_http_stream_write(c, "data: ", 6);
    sp_http_stream_write(c, json, strlen(json));
    sp_http_stream_write(c, "\n\n", 2);
}

/* Token texts for the logprobs of one event; kept (in ch) strings live until the answer is built. */
static void fill_lp(rctx *r, choice *ch, const sp_job_event *ev, sp_oai_logprob *lp, bool keep) {
    const sp_tok *tok = r->slot->model->tok;
    memset(lp, 0, sizeof *lp);
    int32_t n_str = 1 + ev->n_top;
    if (keep && ch->n_lp_strings + n_str > 0) {
        ch->lp_strings = realloc(ch->lp_strings, sizeof(char *) * (size_t)(ch->n_lp_strings + n_str));
    }
    for (int32_t k = -1; k < ev->n_top; k++) {
        int32_t id = k < 0 ? ev->token : ev->top[k].token;
        char buf[512];
        int32_t n = sp_tok_piece(tok, id, true, buf, sizeof buf);
        if (n < 0 || n > (int32_t)sizeof buf) n = 0;
        char *s = malloc((size_t)n + 1);
        memcpy(s, buf, (size_t)n);
        s[n] = 0;
        if (k < 0) { lp->token = s; lp->token_len = (size_t)n; lp->logprob = ev->logprob; }
        else { lp->top_token[k] = s; lp->top_len[k] = (size_t)n; lp->top_logprob[k] = ev->top[k].logprob; }
        if (keep) ch->lp_strings[ch->n_lp_strings++] = s;
    }
    lp->n_top = ev->n_top;
}

static void free_lp_strings(sp_oai_logprob *lp) {
    free((char *)lp->token);
    for (int32_t k = 0; k < lp->n_top; k++) free((char *)lp->top_token[k]);
}

static void stream_event(rctx *r, int32_t index, const sp_job_event *ev) {
    bool with_lp = r->req.top_logprobs >= 0 && ev->token >= 0;
    if (ev->len == 0 && !with_lp) return;
    sp_oai_logprob lp;
    if (with_lp) fill_lp(r, &r->ch[index], ev, &lp, false);
    sp_oai_meta m = meta_of(r);
    char *s = sp_oai_chunk_at(&m, index, false, ev->text, ev->len, NULL, with_lp ? &lp : NULL, with_lp ? 1 : 0);
    sse_send(r->conn, s);
    free(s);
    if (with_lp) free_lp_strings(&lp);
}

static void collect_event(rctx *r, choice *ch, const sp_job_event *ev) {
    if (ch->text_len + ev->len + 1 > ch->text_cap) {
        ch->text_cap = (ch->text_len + ev->len + 1) * 2;
        ch->text = realloc(ch->text, ch->text_cap);
    }
    memcpy(ch->text + ch->text_len, ev->text, ev->len);
    ch->text_len += ev->len;
    ch->text[ch->text_len] = 0;
    if (r->req.top_logprobs >= 0 && ev->token >= 0) {
        if (ch->n_lps == ch->cap_lps) {
            ch->cap_lps = ch->cap_lps ? ch->cap_lps * 2 : 64;
            ch->lps = realloc(ch->lps, sizeof *ch->lps * (size_t)ch->cap_lps);
        }
        fill_lp(r, ch, ev, &ch->lps[ch->n_lps++], true);
    }
}

/* Usage of the request over its finished choices: the prompt counted once (as OpenAI does), the
 * completion tokens summed. cached_tokens is the first choice's: the siblings share one prompt, and
 * a later sibling attaching the KV blocks its elder sibling just computed is no cache hit for the
 * request (the max over siblings would count those). */
/* A choice the engine finished: its job's accounting is published (a cut one's job may still run). */
static bool engine_done(const choice *ch) { return ch->done && !ch->cut; }

static sp_oai_usage usage_of(const rctx *r) {
    int32_t first = 0; /* 0 once all finished; after an error, the first finished one (for the log) */
    while (first < r->n_ch - 1 && !engine_done(&r->ch[first])) first++;
    sp_oai_usage u = {r->n_prompt, 0, 0};
    if (first < r->n_ch && engine_done(&r->ch[first])) {
        const sp_job *j0 = r->ch[first].job;
        u = (sp_oai_usage){j0->n_prompt_tokens, 0, j0->n_cached_tokens};
    }
    for (int32_t i = 0; i < r->n_ch; i++) {
        if (engine_done(&r->ch[i])) u.completion_tokens += r->ch[i].job->n_gen_tokens;
        else if (r->ch[i].cut) u.completion_tokens += r->ch[i].n_tokens;
    }
    return u;
}

/* Metrics and the log note, over the finished choices (the accounting of a job is only read after
 * its finish is published). */
static void record_generation(rctx *r) {
    sp_oai_usage u = usage_of(r);
    double first = -1, end = 0;
    for (int32_t i = 0; i < r->n_ch; i++) {
        const sp_job *j = r->ch[i].job;
        if (!engine_done(&r->ch[i])) continue;
        if (j->n_gen_tokens > 0 && (first < 0 || j->t_first_token < first)) first = j->t_first_token;
        if (j->t_end > end) end = j->t_end;
    }
    double ttft = first >= 0 ? first - r->t_first : -1;
    sp_metrics_generation(&r->app->metrics, u.prompt_tokens, u.cached_tokens, u.completion_tokens, ttft,
                          first >= 0 ? end - first : 0, r->ch[0].finish == SP_FINISH_CANCELLED);
    if (r->cut == CUT_TIMEOUT) sp_metrics_timed_out(&r->app->metrics);
    char note[160];
    int len = snprintf(note, sizeof note, "tokens %d+%d (cached %d) %s%s", u.prompt_tokens, u.completion_tokens,
                       u.cached_tokens, sp_finish_name(r->ch[0].finish),
                       r->cut == CUT_TIMEOUT ? " (request timeout)" : r->cut == CUT_SHUTDOWN ? " (shutdown)" : "");
    if (r->n_ch > 1) { /* "n=3 length,stop,length" */
        len += snprintf(note + len, sizeof note - (size_t)len, " n=%d ", r->n_ch);
        for (int32_t i = 0; i < r->n_ch && len < (int)sizeof note; i++)
            len += snprintf(note + len, sizeof note - (size_t)len, "%s%s", i ? "," : "",
                            r->ch[i].done ? sp_finish_name(r->ch[i].finish) : "-");
    }
    sp_http_log_note(r->conn, note);
}

static void cancel_unfinished(rctx *r) {
    for (int32_t i = 0; i < r->n_ch; i++)
        if (!r->ch[i].done) sp_job_cancel(r->ch[i].job);
}

static const char *finish_reason(sp_finish f) { return f == SP_FINISH_LENGTH ? "length" : "stop"; }

/* A choice failed (engine error): the whole request fails; the other choices are cancelled. */
static void fail_generation(rctx *r, sp_http_conn *c, const sp_job *j) {
    cancel_unfinished(r);
    if (r->req.stream) {
        sp_oai_error e;
        sp_oai_set_error(&e, 500, "server_error", NULL, NULL, "%s", j->error);
        char *s = sp_oai_error_json(&e);
        sse_send(c, s);
        free(s);
        sp_http_stream_write(c, "data: [DONE]\n\n", 14);
        sp_http_stream_end(c);
    } else {
        reply_simple_error(c, j->error_status ? j->error_status : 500,
                           j->error_status == 400 ? "invalid_request_error" : "server_error", NULL, NULL, j->error);
    }
    r->answered = true;
}

static void finish_stream(rctx *r, sp_http_conn *c) {
    if (r->req.include_usage) {
        sp_oai_meta m = meta_of(r);
        sp_oai_usage u = usage_of(r);
        char *s = sp_oai_usage_chunk(&m, &u);
        sse_send(c, s);
        free(s);
    }
    sp_http_stream_write(c, "data: [DONE]\n\n", 14);
    sp_http_stream_end(c);
    r->answered = true;
}

static void finish_whole(rctx *r, sp_http_conn *c) {
    sp_oai_meta m = meta_of(r);
    sp_oai_usage u = usage_of(r);
    size_t nc = r->n_ch > 0 ? (size_t)r->n_ch : 1;
    sp_oai_choice *cs = calloc(nc, sizeof *cs);
    char **echoed = calloc(nc, sizeof *echoed);
    if (!cs || !echoed) abort();
    for (int32_t i = 0; i < r->n_ch; i++) {
        choice *ch = &r->ch[i];
        const char *text = ch->text ? ch->text : "";
        size_t len = ch->text_len;
        if (r->req.echo && r->req.prompt) {
            size_t pl = strlen(r->req.prompt);
            echoed[i] = malloc(pl + len + 1);
            memcpy(echoed[i], r->req.prompt, pl);
            memcpy(echoed[i] + pl, text, len + 1);
            text = echoed[i];
            len += pl;
        }
        cs[i] = (sp_oai_choice){text, len, finish_reason(ch->finish), r->req.top_logprobs >= 0 ? ch->lps : NULL,
                                ch->n_lps};
    }
    char *s = sp_oai_response_n(&m, cs, r->n_ch, &u);
    reply_json(r, c, 200, s);
    free(s);
    for (int32_t i = 0; i < r->n_ch; i++) free(echoed[i]);
    free(echoed);
    free(cs);
}

/* ---- Ollama: newline-delimited JSON, final statistics in nanoseconds ---- */

static sp_ollama_stats ollama_stats(const rctx *r, sp_finish f) {
    const sp_job *j = r->ch[0].job;
    if (r->ch[0].cut) /* the job may still be running: nothing of its accounting is read */
        return (sp_ollama_stats){.done_reason = "length", .total_ns = (int64_t)((sp_now() - r->t_first) * 1e9),
                                 .prompt_eval_count = r->n_prompt, .eval_count = r->ch[0].n_tokens};
    double first = j->n_gen_tokens > 0 ? j->t_first_token : j->t_end;
    sp_ollama_stats st = {
        .done_reason = f == SP_FINISH_LENGTH ? "length" : "stop",
        .total_ns = (int64_t)((sp_now() - r->t_first) * 1e9),
        .load_ns = (int64_t)(r->load_s * 1e9), /* 0 unless this request loaded the model (--models-dir) */
        .prompt_eval_ns = (int64_t)((first - j->t_start) * 1e9),
        .eval_ns = (int64_t)((j->t_end - first) * 1e9),
        .prompt_eval_count = j->n_prompt_tokens - j->n_cached_tokens,
        .eval_count = j->n_gen_tokens,
    };
    return st;
}

static void ndjson_send(sp_http_conn *c, char *json) {
    sp_http_stream_write(c, json, strlen(json));
    sp_http_stream_write(c, "\n", 1);
    free(json);
}

/* Ollama requests have one choice (the translation never sets n). */
static void pump_ollama(rctx *r, sp_http_conn *c) {
    choice *ch = &r->ch[0];
    sp_job_event ev[32];
    sp_finish f;
    bool started, chat = r->oll.chat;
    size_t n;
    do {
        n = sp_job_drain(ch->job, ev, 32, &f, &started);
        if (r->oll.stream && !r->stream_begun) {
            sp_http_stream_begin(c, 200, "application/x-ndjson");
            r->stream_begun = true;
        }
        for (size_t i = 0; i < n; i++) {
            if (ev[i].token >= 0) ch->n_tokens++;
            if (!r->oll.stream) collect_event(r, ch, &ev[i]);
            else if (ev[i].len) ndjson_send(c, sp_ollama_chunk(chat, r->slot->ollama_name, ev[i].text, ev[i].len, NULL));
            free(ev[i].text);
        }
    } while (n == 32);
    if (r->cut && (f == SP_FINISH_NONE || f == SP_FINISH_CANCELLED)) { /* request timeout or shutdown */
        sp_job_cancel(ch->job);
        ch->cut = true;
        f = SP_FINISH_LENGTH;
    }
    if (f == SP_FINISH_NONE) return;
    ch->done = true;
    ch->finish = f;
    record_generation(r);
    sp_ollama_stats st = ollama_stats(r, f);
    if (f == SP_FINISH_ERROR) {
        if (r->oll.stream) {
            ndjson_send(c, sp_ollama_error_json(ch->job->error));
            sp_http_stream_end(c);
        } else {
            sp_oai_error e;
            sp_oai_set_error(&e, ch->job->error_status ? ch->job->error_status : 500, NULL, NULL, NULL, "%s",
                             ch->job->error);
            reply_error_for(true, c, &e);
        }
    } else if (r->oll.stream) {
        ndjson_send(c, sp_ollama_chunk(chat, r->slot->ollama_name, "", 0, &st));
        sp_http_stream_end(c);
    } else {
        char *s = sp_ollama_chunk(chat, r->slot->ollama_name, ch->text ? ch->text : "", ch->text_len, &st);
        reply_json(r, c, 200, s);
        free(s);
    }
    r->answered = true;
}

/* Drain every unfinished choice in index order: stream its chunks (each with its choice index) or
 * collect them; a finished choice gets its own finish chunk. Once all are finished: the usage chunk
 * and [DONE], or the whole response with the choices in index order. With n = 1 the bytes are those
 * of a single-choice stream. */
static void pump_generation(rctx *r, sp_http_conn *c) {
    if (r->ollama) {
        pump_ollama(r, c);
        return;
    }
    bool stream = r->req.stream, all_done = true;
    if (stream && !r->stream_begun) {
        sp_http_add_header(c, "Cache-Control", "no-cache");
        sp_http_add_header(c, "X-Accel-Buffering", "no");
        sp_http_stream_begin(c, 200, "text/event-stream");
        r->stream_begun = true;
    }
    for (int32_t i = 0; i < r->n_ch; i++) {
        choice *ch = &r->ch[i];
        if (ch->done) continue;
        sp_job_event ev[32];
        sp_finish f;
        bool started;
        size_t n;
        do {
            n = sp_job_drain(ch->job, ev, 32, &f, &started);
            if (stream && r->req.kind == SP_OAI_CHAT && !ch->role_sent && (started || n > 0 || r->cut)) {
                sp_oai_meta m = meta_of(r);
                char *s = sp_oai_chunk_at(&m, i, true, "", 0, NULL, NULL, 0);
                sse_send(c, s);
                free(s);
                ch->role_sent = true;
            }
            for (size_t k = 0; k < n; k++) {
                if (ev[k].token >= 0) ch->n_tokens++;
                if (stream) stream_event(r, i, &ev[k]);
                else collect_event(r, ch, &ev[k]);
                free(ev[k].text);
            }
        } while (n == 32);
        if (r->cut && (f == SP_FINISH_NONE || f == SP_FINISH_CANCELLED)) {
            /* request timeout or shutdown: the choice ends here, as if max_tokens were reached; the
             * engine drops the cancelled job within a step (or when it leaves the queue) */
            sp_job_cancel(ch->job);
            ch->cut = true;
            f = SP_FINISH_LENGTH;
        }
        if (f == SP_FINISH_NONE) {
            all_done = false;
            continue;
        }
        ch->done = true;
        ch->finish = f;
        if (f == SP_FINISH_ERROR) {
            record_generation(r);
            fail_generation(r, c, ch->job);
            return;
        }
        if (stream) {
            sp_oai_meta m = meta_of(r);
            char *s = sp_oai_chunk_at(&m, i, false, NULL, 0, finish_reason(f), NULL, 0);
            sse_send(c, s);
            free(s);
        }
    }
    if (!all_done) return;
    record_generation(r);
    if (stream) finish_stream(r, c);
    else finish_whole(r, c);
}

/* --------------------------------------------------- connection events ---- */

static void rctx_pump(void *arg, sp_http_conn *c) {
    rctx *r = arg;
    pthread_mutex_lock(&r->mu);
    bool ready = r->prep_done;
    pthread_mutex_unlock(&r->mu);
    if (!ready || r->answered) return;
    if (r->failed) {
        reply_error_for(r->ollama, c, &r->err);
        r->answered = true;
    } else if (r->result) {
        reply_json(r, c, 200, r->result);
    } else if (r->n_ch > 0) {
        pump_generation(r, c);
    }
}

static void live_remove(rctx *r) {
    if (!r->live) return;
    if (r->live_prev) r->live_prev->live_next = r->live_next;
    else r->app->live = r->live_next;
    if (r->live_next) r->live_next->live_prev = r->live_prev;
    r->live = false;
}

static void rctx_closed(void *arg, bool client_gone) {
    rctx *r = arg;
    (void)client_gone;
    live_remove(r);
    /* the jobs, each with a reference of ours: prep may drop them (queue full) while we work */
    sp_job *one, **jobs = &one;
    pthread_mutex_lock(&r->mu);
    r->closed = true;
    int32_t n = r->n_ch;
    if (n > 1) {
        jobs = malloc(sizeof *jobs * (size_t)n);
        if (!jobs) abort();
    }
    for (int32_t i = 0; i < n; i++) {
        jobs[i] = r->ch[i].job;
        sp_job_ref(jobs[i]);
    }
    pthread_mutex_unlock(&r->mu);
    bool cancelled = false;
    for (int32_t i = 0; i < n; i++) {
        sp_job_set_notify(jobs[i], NULL, NULL); /* from here on no engine callback touches r */
        if (sp_job_state(jobs[i]) == SP_FINISH_NONE) {
            sp_job_cancel(jobs[i]); /* the engine stops it within one step (every sibling) */
            cancelled = true;
        }
        sp_job_unref(jobs[i]);
    }
    if (jobs != &one) free(jobs);
    if (cancelled && !r->answered) { /* the client went away: one cancelled generation per request */
        sp_metrics_generation(&r->app->metrics, 0, 0, 0, -1, 0, 1);
        char note[96];
        snprintf(note, sizeof note, "generation cancelled");
        sp_http_log_note(r->conn, note); /* the connection is valid until closed() returns */
    }
    rctx_unref(r);
}

/* ------------------------------------------------------------- routing ---- */

static bool json_content_type(const char *ct) {
    if (!ct) return true;
    return !strncasecmp(ct, "application/json", 16) || !strncasecmp(ct, "text/plain", 10);
}

static bool is_generation(endpoint ep) {
    return ep == EP_CHAT || ep == EP_COMPLETION || ep == EP_OLLAMA_CHAT || ep == EP_OLLAMA_GENERATE;
}

/* Deepest nesting of [ and { outside strings (as api/openai.c checks for the completion bodies). */
static size_t json_depth(const char *s, size_t len) {
    size_t depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\') i++;
            else if (ch == '"') in_str = false;
        } else if (ch == '"') in_str = true;
        else if (ch == '[' || ch == '{') { if (++depth > max) max = depth; }
        else if ((ch == ']' || ch == '}') && depth) depth--;
    }
    return max;
}

/* Every JSON body is checked before cJSON sees it (cJSON's own limit is 1000 levels, recursively). */
static bool too_deep(app_t *a, bool ollama, sp_http_conn *c, const sp_http_request *req) {
    if (json_depth(req->body, req->body_len) <= a->limits.max_json_depth) return false;
    sp_oai_error e;
    sp_oai_set_error(&e, 400, "invalid_request_error", "json_too_deep", NULL,
                     "the request JSON nests deeper than %zu levels", a->limits.max_json_depth);
    reply_error_for(ollama, c, &e);
    return true;
}

static void handle_health(app_t *a, sp_http_conn *c) {
    if (atomic_load(&a->ready)) reply_json(NULL, c, 200, "{\"status\":\"ok\"}");
    else {
        sp_http_add_header(c, "Retry-After", "1");
        reply_json(NULL, c, 503, "{\"status\":\"loading\"}");
    }
}

/* The slot a request's `model` names: the id, or (multi-model) Ollama's "id:latest"; NULL: none. */
static model_slot *find_slot(app_t *a, const char *name) {
    for (int i = 0; i < a->n_slots; i++) {
        model_slot *sl = &a->slots[i];
        if (!strcmp(name, sl->id)) return sl;
        size_t n = strlen(sl->id);
        if (a->multi && !strncmp(name, sl->id, n) && !strcmp(name + n, ":latest")) return sl;
    }
    return NULL;
}

static void handle_models(app_t *a, sp_http_conn *c) {
    const char **names = calloc((size_t)a->n_slots, sizeof *names);
    if (!names) abort();
    for (int i = 0; i < a->n_slots; i++) names[i] = a->slots[i].id;
    char *s = sp_oai_models(names, a->n_slots, a->started_at);
    free(names);
    reply_json(NULL, c, 200, s);
    free(s);
}

static void handle_metrics(app_t *a, sp_http_conn *c) {
    sp_sched_stats st = {0};
    bool ready = atomic_load(&a->ready);
    int n_loaded = 0;
    if (!a->multi) {
        if (ready) sp_sched_get_stats(a->slots[0].sched, &st);
    } else { /* the loaded models' schedulers, summed */
        pthread_mutex_lock(&a->smu);
        for (int i = 0; i < a->n_slots; i++) {
            if (a->slots[i].state != SLOT_READY) continue;
            sp_sched_stats o;
            sp_sched_get_stats(a->slots[i].sched, &o);
            n_loaded++;
            st.submitted += o.submitted; st.completed += o.completed; st.cancelled += o.cancelled;
            st.failed += o.failed; st.rejected += o.rejected; st.prompt_tokens += o.prompt_tokens;
            st.cached_tokens += o.cached_tokens; st.generated_tokens += o.generated_tokens;
            st.queue_depth += o.queue_depth; st.running += o.running; st.kv_blocks_total += o.kv_blocks_total;
            st.kv_blocks_used += o.kv_blocks_used; st.kv_blocks_cached += o.kv_blocks_cached;
            st.kv_blocks_free += o.kv_blocks_free; st.kv_blocks_spilled += o.kv_blocks_spilled;
            st.prefix_hit_tokens += o.prefix_hit_tokens; st.steps += o.steps; st.step_seqs += o.step_seqs;
            st.step_tokens += o.step_tokens; st.last_step_seqs += o.last_step_seqs; st.last_step_tokens += o.last_step_tokens;
        }
        pthread_mutex_unlock(&a->smu);
    }
    sp_http_stats hs;
    sp_http_get_stats(a->http, &hs);
    sp_metrics_http mh = {hs.connections, hs.requests, hs.refused, hs.read_timeouts};
    char *s = sp_metrics_render(&a->metrics, &st, &mh, ready);
    if (a->multi) {
        char extra[600];
        int n = snprintf(extra, sizeof extra,
                         "# HELP sparrow_models_loaded Models loaded now (--models-dir).\n# TYPE sparrow_models_loaded gauge\n"
                         "sparrow_models_loaded %d\n"
                         "# HELP sparrow_model_loads_total Model loads.\n# TYPE sparrow_model_loads_total counter\n"
                         "sparrow_model_loads_total %llu\n"
                         "# HELP sparrow_model_unloads_total Model unloads (least recently used, or keep_alive).\n"
                         "# TYPE sparrow_model_unloads_total counter\nsparrow_model_unloads_total %llu\n",
                         n_loaded, (unsigned long long)atomic_load(&a->n_loads), (unsigned long long)atomic_load(&a->n_unloads));
        size_t len = strlen(s);
        s = realloc(s, len + (size_t)n + 1);
        memcpy(s + len, extra, (size_t)n + 1);
    }
    sp_http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", s, strlen(s));
    free(s);
}

/* Ollama's keep_alive: a duration ("5m", "30s", "1h30m", "-1m") or a number of seconds; negative:
 * forever (-1). false when it is neither. */
static bool parse_keep_alive(const cJSON *k, double *out) {
    if (cJSON_IsNumber(k)) {
        *out = k->valuedouble < 0 ? -1 : k->valuedouble;
        return true;
    }
    if (!cJSON_IsString(k)) return false;
    const char *p = k->valuestring;
    bool neg = *p == '-';
    if (neg) p++;
    if (!*p) return false;
    double total = 0;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0) return false;
        p = end;
        double mul = 1;
        if (!strncmp(p, "ms", 2)) mul = 0.001, p += 2;
        else if (*p == 's') p++;
        else if (*p == 'm') mul = 60, p++;
        else if (*p == 'h') mul = 3600, p++;
        else if (*p) return false;
        total += v * mul;
    }
    *out = neg ? -1 : total;
    return true;
}

/* POST endpoints that need the model: parse what can be parsed here, the rest goes to prep. */
/* /api/chat and /api/generate: translated into the OpenAI request; false when answered already. */
static bool parse_ollama(app_t *a, rctx *r, sp_http_conn *c, const sp_http_request *req) {
    r->ollama = true;
    if (!sp_ollama_parse(r->ep == EP_OLLAMA_CHAT, req->body, req->body_len, &a->limits, &r->oll, &r->req, &r->err)) {
        reply_error_for(true, c, &r->err);
        return false;
    }
    r->slot = r->req.model ? find_slot(a, r->req.model) : NULL;
    if (r->req.model && !r->slot) {
        sp_oai_error e;
        sp_oai_set_error(&e, 404, NULL, NULL, "model", "model '%.100s' not found", r->req.model);
        reply_error_for(true, c, &e);
        return false;
    }
    r->req.n = 1; /* Ollama's API has no choices */
    if (a->multi) {
        cJSON *in = cJSON_ParseWithLength(req->body, req->body_len);
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(in, "keep_alive");
        bool ok = !k || cJSON_IsNull(k) || parse_keep_alive(k, &r->keep_alive);
        cJSON_Delete(in);
        if (!ok) {
            sp_oai_error e;
            sp_oai_set_error(&e, 400, NULL, NULL, "keep_alive", "invalid keep_alive: a duration (\"5m\", \"30s\") or seconds");
            reply_error_for(true, c, &e);
            return false;
        }
        return true; /* load_only: prep loads (or with keep_alive 0 releases) the model */
    }
    if (r->oll.load_only) { /* "load the model": it is always loaded here */
        sp_ollama_stats st = {.done_reason = "load"};
        char *s = sp_ollama_chunk(false, r->slot->ollama_name, "", 0, &st);
        reply_json(NULL, c, 200, s);
        free(s);
        return false;
    }
    return true;
}

/* Multi-model mode: the request names no model (OpenAI) and the server has one: it; else a 400. */
static bool default_slot(app_t *a, rctx *r, sp_http_conn *c, bool ollama) {
    if (r->slot) return true;
    if (!a->multi || a->n_slots == 1) {
        r->slot = &a->slots[0];
        return true;
    }
    sp_oai_error e;
    sp_oai_set_error(&e, 400, "invalid_request_error", "model_required", "model",
                     "'model' is required: this server serves %d models (GET /v1/models lists them)", a->n_slots);
    reply_error_for(ollama, c, &e);
    return false;
}

static void handle_model_post(app_t *a, sp_http_conn *c, const sp_http_request *req, endpoint ep) {
    bool ollama = ep == EP_OLLAMA_CHAT || ep == EP_OLLAMA_GENERATE;
    if (!ollama && !json_content_type(req->content_type)) { /* Ollama's own docs post with curl -d: any type */
        reply_simple_error(c, 415, NULL, "unsupported_media_type", NULL,
                           "send the request body as JSON with 'Content-Type: application/json'");
        return;
    }
    if (!atomic_load(&a->ready)) {
        sp_oai_error e;
        sp_oai_set_error(&e, 503, "server_error", "model_loading", NULL, "the model is still loading; retry shortly");
        reply_error_for(ollama, c, &e);
        return;
    }
    if (too_deep(a, ollama, c, req)) return;
    rctx *r = rctx_new(a, ep);
    r->t_first = sp_now();
    r->keep_alive = a->keep_alive_s;
    if (ollama) {
        if (!parse_ollama(a, r, c, req)) {
            rctx_unref(r);
            return;
        }
    } else if (ep == EP_CHAT || ep == EP_COMPLETION || ep == EP_APPLY_TEMPLATE) {
        sp_oai_kind kind = ep == EP_COMPLETION ? SP_OAI_COMPLETION : SP_OAI_CHAT;
        if (!sp_oai_parse(kind, req->body, req->body_len, &a->limits, &r->req, &r->err)) {
            reply_error(c, &r->err);
            rctx_unref(r);
            return;
        }
        if ((a->multi || ep != EP_APPLY_TEMPLATE) && r->req.model && !(r->slot = find_slot(a, r->req.model))) {
            sp_oai_error e;
            if (a->multi)
                sp_oai_set_error(&e, 404, "invalid_request_error", "model_not_found", "model",
                                 "The model '%.100s' does not exist (GET /v1/models lists the %d served)", r->req.model,
                                 a->n_slots);
            else
                sp_oai_set_error(&e, 404, "invalid_request_error", "model_not_found", "model",
                                 "The model '%.100s' does not exist; this server serves '%s'", r->req.model, a->slots[0].id);
            reply_error(c, &e);
            rctx_unref(r);
            return;
        }
        if (ep == EP_COMPLETION && r->req.echo && !r->req.prompt) {
            reply_simple_error(c, 400, NULL, NULL, "echo", "'echo' needs a text prompt");
            rctx_unref(r);
            return;
        }
    } else {
        r->body = malloc(req->body_len + 1);
        memcpy(r->body, req->body, req->body_len);
        r->body[req->body_len] = 0;
        r->body_len = req->body_len;
        if (a->multi) { /* tokenize / detokenize: {"model": ...} picks the model */
            cJSON *in = cJSON_ParseWithLength(req->body, req->body_len);
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(in, "model");
            bool unknown = cJSON_IsString(m) && !(r->slot = find_slot(a, m->valuestring));
            if (unknown) {
                sp_oai_error e;
                sp_oai_set_error(&e, 404, "invalid_request_error", "model_not_found", "model",
                                 "The model '%.100s' does not exist (GET /v1/models lists the %d served)", m->valuestring,
                                 a->n_slots);
                reply_error(c, &e);
            }
            cJSON_Delete(in);
            if (unknown) {
                rctx_unref(r);
                return;
            }
        }
    }
    if (!default_slot(a, r, c, ollama)) {
        rctx_unref(r);
        return;
    }
    snprintf(r->id, sizeof r->id, "%s-%llx%06llx", ep == EP_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)r->created, (unsigned long long)atomic_fetch_add(&a->next_id, 1));
    r->conn = c;
    sp_http_set_async(c, rctx_pump, rctx_closed, r);
    if (is_generation(ep) && a->cfg->request_timeout_s > 0) r->deadline = r->t_first + a->cfg->request_timeout_s;
    r->live = true;
    r->live_next = a->live;
    if (a->live) a->live->live_prev = r;
    a->live = r;
    prep_submit(a, r);
}

/* ---- Ollama listings ---- */

static sp_ollama_model ollama_model(app_t *a, const model_slot *sl) {
    int32_t ctx = sl->state == SLOT_READY && sl->sched ? sp_sched_n_ctx(sl->sched) : a->cfg->n_ctx > 0 ? a->cfg->n_ctx : sl->ctx_train;
    return (sp_ollama_model){sl->ollama_name, sl->family, sl->quant, sl->param_size, sl->file_size, sl->digest,
                             sl->file_mtime, ctx, sl->tmpl_src};
}

static void handle_ollama_get(app_t *a, sp_http_conn *c, const char *p) {
    char *s;
    if (!strcmp(p, "/api/version")) s = sp_ollama_version();
    else if (!atomic_load(&a->ready)) s = strdup("{\"models\":[]}");
    else if (!a->multi) {
        sp_ollama_model m = ollama_model(a, &a->slots[0]);
        s = !strcmp(p, "/api/tags") ? sp_ollama_tags(&m, 1) : sp_ollama_ps(&m, 1, (int64_t)time(NULL) + 86400 * 365);
    } else if (!strcmp(p, "/api/tags")) {
        sp_ollama_model *ms = calloc((size_t)a->n_slots, sizeof *ms);
        if (!ms) abort();
        pthread_mutex_lock(&a->smu);
        for (int i = 0; i < a->n_slots; i++) ms[i] = ollama_model(a, &a->slots[i]);
        s = sp_ollama_tags(ms, a->n_slots);
        pthread_mutex_unlock(&a->smu);
        free(ms);
    } else { /* /api/ps: the loaded models, each with when it unloads */
        cJSON *out = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(out, "models");
        pthread_mutex_lock(&a->smu);
        double now = sp_now();
        for (int i = 0; i < a->n_slots; i++) {
            const model_slot *sl = &a->slots[i];
            if (sl->state != SLOT_READY) continue;
            double left = sl->active > 0 ? (a->keep_alive_s < 0 ? -1 : a->keep_alive_s)
                                         : sl->keep_until < 0 ? -1 : sl->keep_until - now;
            int64_t expires = (int64_t)time(NULL) + (left < 0 ? 86400 * 365 : (int64_t)ceil(left));
            sp_ollama_model m = ollama_model(a, sl);
            char *one = sp_ollama_ps(&m, 1, expires);
            cJSON *o = cJSON_Parse(one);
            free(one);
            cJSON *e = cJSON_DetachItemFromArray(cJSON_GetObjectItemCaseSensitive(o, "models"), 0);
            if (e) cJSON_AddItemToArray(arr, e);
            cJSON_Delete(o);
        }
        pthread_mutex_unlock(&a->smu);
        s = cJSON_PrintUnformatted(out);
        cJSON_Delete(out);
    }
    reply_json(NULL, c, 200, s);
    free(s);
}

static void handle_ollama_show(app_t *a, sp_http_conn *c, const sp_http_request *req) {
    if (too_deep(a, true, c, req)) return;
    cJSON *in = cJSON_ParseWithLength(req->body, req->body_len);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(in, "model");
    if (!cJSON_IsString(m)) m = cJSON_GetObjectItemCaseSensitive(in, "name");
    sp_oai_error e;
    model_slot *sl = NULL;
    if (!cJSON_IsString(m)) {
        sp_oai_set_error(&e, 400, NULL, NULL, "model", "'model' is required");
        reply_error_for(true, c, &e);
    } else if (!atomic_load(&a->ready)) {
        sp_oai_set_error(&e, 503, NULL, NULL, NULL, "the model is still loading; retry shortly");
        reply_error_for(true, c, &e);
    } else if (!(sl = find_slot(a, m->valuestring)) && !(!a->multi && !strcmp(m->valuestring, a->slots[0].ollama_name))) {
        sp_oai_set_error(&e, 404, NULL, NULL, "model", "model '%.100s' not found", m->valuestring);
        reply_error_for(true, c, &e);
    } else {
        if (!sl) sl = &a->slots[0];
        if (a->multi) pthread_mutex_lock(&a->smu);
        sp_ollama_model om = ollama_model(a, sl);
        char *s = sp_ollama_show(&om);
        if (a->multi) pthread_mutex_unlock(&a->smu);
        reply_json(NULL, c, 200, s);
        free(s);
    }
    cJSON_Delete(in);
}

/* The embedded web chat page: strict CSP, no inline code, cached briefly (index never). */
static bool handle_web(sp_http_conn *c, const char *path) {
    const sp_web_file *f = sp_web_find(path);
    if (!f) return false;
    bool index = !strcmp(path, "/") || !strcmp(path, "/index.html");
    sp_http_add_header(c, "Content-Security-Policy",
                       "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                       "img-src 'self' data:; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
                       "frame-ancestors 'none'");
    sp_http_add_header(c, "X-Content-Type-Options", "nosniff");
    sp_http_add_header(c, "Referrer-Policy", "no-referrer");
    sp_http_add_header(c, "Cache-Control", index ? "no-cache" : "public, max-age=300");
    sp_http_respond(c, 200, sp_web_content_type(f->path), (const char *)f->data, f->len);
    return true;
}

/* Every API path (aliases folded into their canonical name), for 405 answers and metrics. */
typedef struct {
    const char *path, *alias, *methods;
} route;

static const route routes[] = {
    {"/health", NULL, "GET"}, {"/v1/models", "/models", "GET"}, {"/metrics", NULL, "GET"},
    {"/v1/chat/completions", "/chat/completions", "POST"}, {"/v1/completions", "/completions", "POST"},
    {"/tokenize", NULL, "POST"}, {"/detokenize", NULL, "POST"}, {"/apply-template", NULL, "POST"},
    {"/api/chat", NULL, "POST"}, {"/api/generate", NULL, "POST"}, {"/api/show", NULL, "POST"},
    {"/api/tags", NULL, "GET"}, {"/api/ps", NULL, "GET"}, {"/api/version", NULL, "GET"},
};

static const route *find_route(const char *path) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(path, routes[i].path) || (routes[i].alias && !strcmp(path, routes[i].alias))) return &routes[i];
    return NULL;
}

static void handler(void *ud, sp_http_conn *c, const sp_http_request *req) {
    app_t *a = ud;
    const char *p = req->path;
    bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD"), post = !strcmp(req->method, "POST");
    if (get && !strcmp(p, "/health")) handle_health(a, c);
    else if (get && (!strcmp(p, "/v1/models") || !strcmp(p, "/models"))) handle_models(a, c);
    else if (get && !strcmp(p, "/metrics")) handle_metrics(a, c);
    else if (get && handle_web(c, p)) return;
    else if (post && (!strcmp(p, "/v1/chat/completions") || !strcmp(p, "/chat/completions")))
        handle_model_post(a, c, req, EP_CHAT);
    else if (post && (!strcmp(p, "/v1/completions") || !strcmp(p, "/completions")))
        handle_model_post(a, c, req, EP_COMPLETION);
    else if (post && !strcmp(p, "/tokenize")) handle_model_post(a, c, req, EP_TOKENIZE);
    else if (post && !strcmp(p, "/detokenize")) handle_model_post(a, c, req, EP_DETOKENIZE);
    else if (post && !strcmp(p, "/apply-template")) handle_model_post(a, c, req, EP_APPLY_TEMPLATE);
    else if (post && !strcmp(p, "/api/chat")) handle_model_post(a, c, req, EP_OLLAMA_CHAT);
    else if (post && !strcmp(p, "/api/generate")) handle_model_post(a, c, req, EP_OLLAMA_GENERATE);
    else if (post && !strcmp(p, "/api/show")) handle_ollama_show(a, c, req);
    else if (get && (!strcmp(p, "/api/tags") || !strcmp(p, "/api/ps") || !strcmp(p, "/api/version")))
        handle_ollama_get(a, c, p);
    else {
        const route *rt = find_route(p);
        char msg[300];
        snprintf(msg, sizeof msg, rt ? "method %s is not allowed on %.200s" : "no route for %s %.200s", req->method, p);
        if (rt) sp_http_add_header(c, "Allow", rt->methods);
        reply_simple_error(c, rt ? 405 : 404, NULL, rt ? "method_not_allowed" : "not_found", NULL, msg);
    }
}

/* Count every finished request by endpoint (aliases folded) and status class. */
static void on_done(void *ud, const char *method, const char *path, int status) {
    app_t *a = ud;
    const route *rt = find_route(path);
    (void)method;
    sp_metrics_request(&a->metrics, rt ? rt->path : "other", status ? status : 499);
}

/* ----------------------------------------------------------------- run ---- */

/* ---- request deadlines and graceful shutdown (the HTTP layer's tick, loop thread) ---- */

#define STOP_LINGER_S 5.0 /* after the grace: time for the cut answers to reach slow readers */

static void cut_request(rctx *r, int why) {
    if (r->cut || r->answered) return;
    r->cut = why;
    sp_http_wake(r->conn); /* the pump ends every unfinished choice with finish_reason "length" */
}

static void app_tick(void *ud) {
    app_t *a = ud;
    double now = sp_now();
    bool stopping = atomic_load(&a->stopping) > 0;
    if (stopping && a->stop_t0 == 0) a->stop_t0 = now;
    bool grace_over = stopping && now >= a->stop_t0 + a->cfg->shutdown_grace_s;
    int n_cut = 0;
    for (rctx *r = a->live; r; r = r->live_next) {
        if (!is_generation(r->ep) || r->cut || r->answered) continue;
        if (grace_over) cut_request(r, CUT_SHUTDOWN), n_cut++;
        else if (r->deadline > 0 && now >= r->deadline) cut_request(r, CUT_TIMEOUT);
    }
    if (grace_over && !a->grace_cut) {
        a->grace_cut = true;
        if (n_cut)
            fprintf(stderr, "sparrow serve: shutdown grace period over: ending %d request(s) (finish_reason \"length\")\n",
                    n_cut);
    }
    if (stopping && now >= a->stop_t0 + a->cfg->shutdown_grace_s + STOP_LINGER_S) {
        sp_http_stats hs;
        sp_http_get_stats(a->http, &hs);
        fprintf(stderr, "sparrow serve: closing %u connection(s) still open\n", hs.connections);
        sp_http_stop(a->http);
    }
}

/* SIGINT and SIGTERM are blocked in every thread and taken here with sigwait, so the first one can do
 * ordinary work (print, start the drain) and none lands inside the teardown. */
static pthread_mutex_t g_sig_mu = PTHREAD_MUTEX_INITIALIZER; /* guards g_app for this thread */
static sigset_t g_sigs;

static void *signal_main(void *arg) {
    (void)arg;
    for (;;) {
        int sig = 0;
        if (sigwait(&g_sigs, &sig) != 0) continue;
        pthread_mutex_lock(&g_sig_mu);
        app_t *a = g_app;
        if (!a || atomic_fetch_add(&a->stopping, 1) > 0) { /* die of the signal, at once */
            fprintf(stderr, "sparrow serve: %s again: exiting now\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
            signal(sig, SIG_DFL);
            sigset_t one;
            sigemptyset(&one);
            sigaddset(&one, sig);
            pthread_sigmask(SIG_UNBLOCK, &one, NULL);
            raise(sig);
            _exit(128 + sig);
        }
        fprintf(stderr, "sparrow serve: %s: stopping: no new connections; running requests may finish within %g s, "
                        "then end with finish_reason \"length\" (a second signal exits at once)\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM", a->cfg->shutdown_grace_s);
        sp_http_drain(a->http);
        pthread_mutex_unlock(&g_sig_mu);
    }
    return NULL;
}

/* Before any thread starts (they inherit the mask). */
static void install_signals(void) {
    sigemptyset(&g_sigs);
    sigaddset(&g_sigs, SIGINT);
    sigaddset(&g_sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &g_sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t th;
    if (pthread_create(&th, NULL, signal_main, NULL) == 0) pthread_detach(th);
}

/* 500 connections need 500 descriptors: raise the soft limit toward the hard one when it is short. */
static void raise_fd_limit(unsigned max_connections) {
    unsigned reserve = max_connections / 8 > 8 ? max_connections / 8 : 8;
    rlim_t want = (rlim_t)max_connections + reserve + 64;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) return;
    rlim_t to = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
    if (to > rl.rlim_cur) {
        rl.rlim_cur = to;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (to < want)
        fprintf(stderr, "sparrow serve: WARNING: the open-file limit (%llu) is below what --max-connections %u needs "
                        "(%llu): raise it (ulimit -n) or lower --max-connections\n",
                (unsigned long long)to, max_connections, (unsigned long long)want);
}

/* A PEM file (certificate or key), NUL-terminated; NULL + err. */
static char *read_pem(const char *what, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read the TLS %s %s", what, path);
        return NULL;
    }
    size_t cap = 1 << 20, n;
    char *buf = malloc(cap + 1);
    n = buf ? fread(buf, 1, cap, f) : 0;
    bool more = buf && fgetc(f) != EOF;
    fclose(f);
    if (buf) buf[n] = 0;
    if (!buf || n == 0 || more || !strstr(buf, "-----BEGIN ")) {
        snprintf(err, errlen, "the TLS %s %s is %s", what, path, !buf ? "too big for memory" : more ? "over 1 MiB" :
                 "not PEM (-----BEGIN ...)");
        free(buf);
        return NULL;
    }
    return buf;
}

static void free_secret(char *s) {
    if (!s) return;
    volatile char *v = s;
    for (size_t i = 0; v[i]; i++) v[i] = 0;
    free(s);
}

static bool is_loopback(const char *host) {
    return !strcmp(host, "localhost") || !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "[::1]");
}

static void slot_fail_now(model_slot *sl, const char *err) {
    sl->state = SLOT_FAILED;
    snprintf(sl->load_error, sizeof sl->load_error, "%s", err);
    struct stat st;
    if (stat(sl->path, &st) == 0) {
        sl->fail_size = (uint64_t)st.st_size;
        sl->fail_mtime = (int64_t)st.st_mtime;
    }
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

/* --models-dir: one slot per *.gguf (sorted by name), described from its header; none loaded. A file
 * that cannot be read is listed and fails cleanly when asked for. */
static bool scan_models_dir(app_t *a, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "sparrow serve: cannot open the models folder %s\n", dir);
        return false;
    }
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len <= 5 || strcmp(de->d_name + len - 5, ".gguf") || de->d_name[0] == '.') continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = realloc(names, sizeof *names * (size_t)cap);
            if (!names) abort();
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "sparrow serve: no .gguf file in the models folder %s\n", dir);
        free(names);
        return false;
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    a->slots = calloc((size_t)n, sizeof *a->slots);
    if (!a->slots) abort();
    a->n_slots = n;
    for (int i = 0; i < n; i++) {
        model_slot *sl = &a->slots[i];
        snprintf(sl->path, sizeof sl->path, "%s/%s", dir, names[i]);
        model_id_from_path(names[i], sl->id, sizeof sl->id);
        free(names[i]);
        describe_file(sl);
        char err[512] = "";
        sp_gguf *g = sp_gguf_open(sl->path, err, sizeof err);
        sp_hparams hp;
        uint64_t wbytes;
        if (g && sp_model_peek(sl->path, &hp, &wbytes, err, sizeof err)) {
            sp_gguf_str arch = {0};
            char archs[32] = "unknown";
            if (sp_gguf_get_str(g, "general.architecture", &arch))
                snprintf(archs, sizeof archs, "%.*s", (int)arch.len, arch.ptr);
            describe_model(sl, g, archs);
            sl->ctx_train = hp.n_ctx_train;
            fprintf(stderr, "sparrow serve: model '%s': %s\n", sl->id, sl->path);
        } else {
            fprintf(stderr, "sparrow serve: model '%s' (%s) is not usable: %s\n", sl->id, sl->path, err);
            slot_fail_now(sl, err);
        }
        if (g) sp_gguf_close(g);
    }
    free(names);
    return true;
}

int sp_app_run(const sp_app_config *cfg) {
    app_t *a = calloc(1, sizeof *a);
    a->cfg = cfg;
    a->started_at = (int64_t)time(NULL);
    a->limits = sp_oai_default_limits();
    if (cfg->max_n > 0) a->limits.max_n = cfg->max_n;
    if (cfg->max_json_depth > 0) a->limits.max_json_depth = (size_t)cfg->max_json_depth;
    if (cfg->max_tokens > 0) a->limits.max_tokens = cfg->max_tokens;
    if (cfg->max_stop > 0) a->limits.max_stop = cfg->max_stop;
    if (cfg->max_stop_len > 0) a->limits.max_stop_len = (size_t)cfg->max_stop_len;
    /* the n siblings of a request wait in the queue together: more than it holds could never start */
    if (cfg->max_queue > 0 && a->limits.max_n > cfg->max_queue) a->limits.max_n = cfg->max_queue;
    sp_metrics_init(&a->metrics);
    pthread_mutex_init(&a->pmu, NULL);
    pthread_cond_init(&a->pcv, NULL);
    pthread_mutex_init(&a->smu, NULL);
    pthread_cond_init(&a->scv, NULL);
    pthread_cond_init(&a->jcv, NULL);
    a->multi = cfg->models_dir != NULL;
    a->max_models = cfg->max_models > 0 ? cfg->max_models : 2;
    a->keep_alive_s = !a->multi ? -1 : !cfg->keep_alive_set ? 300 : cfg->keep_alive_s < 0 ? -1 : cfg->keep_alive_s;
    bool use_cache = (!cfg->no_weight_cache || cfg->kv_spill) && sp_conf_cache_dir(a->cache_dir, sizeof a->cache_dir) &&
                     !cfg->no_weight_cache;
    if (!a->multi) {
        a->slots = calloc(1, sizeof *a->slots);
        if (!a->slots) abort();
        a->n_slots = 1;
        snprintf(a->slots[0].path, sizeof a->slots[0].path, "%s", cfg->model_path);
        if (cfg->model_alias) snprintf(a->slots[0].id, sizeof a->slots[0].id, "%s", cfg->model_alias);
        else model_id_from_path(cfg->model_path, a->slots[0].id, sizeof a->slots[0].id);
    } else if (!scan_models_dir(a, cfg->models_dir)) {
        free(a);
        return 1;
    }
    for (int i = 0; i < a->n_slots; i++) {
        model_slot *sl = &a->slots[i];
        sl->load.progress = !a->multi;
        sl->kv_mem = cfg->kv_mem;
        sl->keep_until = -1;
        if (use_cache) sl->load.cache_dir = a->cache_dir;
        if (cfg->mem_limit && sl->state != SLOT_FAILED) { /* refuse what cannot fit before listening or loading anything */
            char perr[512] = "";
            if (!plan_memory(cfg, sl->path, a->multi, &sl->load, &sl->kv_mem, &sl->est_bytes, perr, sizeof perr)) {
                if (!a->multi) {
                    fprintf(stderr, "sparrow serve: %s\n", perr);
                    free(a->slots);
                    free(a);
                    return 1;
                }
                fprintf(stderr, "sparrow serve: model '%s' will not be served: %s\n", sl->id, perr);
                slot_fail_now(sl, perr);
            }
            if (a->multi && sl->state != SLOT_FAILED) { /* several models: nothing locked */
                sl->est_bytes -= sl->load.lock_bytes;
                sl->load.lock_bytes = 0;
                fprintf(stderr, "sparrow serve: model '%s' owns about %.0f MiB loaded (of --mem-limit %.0f MiB)\n", sl->id,
                        mib(sl->est_bytes), mib(cfg->mem_limit));
            }
        }
    }

    /* the page itself is public (it asks for the key); the API behind it is not */
    static const char *open_paths[] = {"/health", "/", "/index.html", "/app.js", "/style.css", "/favicon.svg"};
    sp_http_opts ho = {
        .host = cfg->host, .port = cfg->port, .max_connections = cfg->max_connections, .max_body = cfg->max_body,
        .max_header = cfg->max_header, .idle_timeout_s = cfg->idle_timeout_s, .read_timeout_s = cfg->read_timeout_s,
        .api_keys = cfg->api_keys, .n_api_keys = cfg->n_api_keys,
        .open_paths = open_paths, .n_open_paths = (int)(sizeof open_paths / sizeof open_paths[0]), .cors_origins = cfg->cors_origins, .log_requests = !cfg->quiet,
        .handler = handler, .on_done = on_done, .on_tick = app_tick, .ud = a,
    };
    char err[512] = "";
    char *cert = NULL, *key = NULL;
    if ((cfg->tls_cert_file != NULL) != (cfg->tls_key_file != NULL)) {
        snprintf(err, sizeof err, "HTTPS needs both --tls-cert and --tls-key");
    } else if (cfg->tls_cert_file) {
        cert = read_pem("certificate", cfg->tls_cert_file, err, sizeof err);
        if (cert) key = read_pem("key", cfg->tls_key_file, err, sizeof err);
        ho.tls_cert_pem = cert;
        ho.tls_key_pem = key;
    }
    raise_fd_limit(cfg->max_connections ? cfg->max_connections : 512);
    install_signals(); /* before the first thread: every thread inherits the blocked signals */
    if (!err[0]) a->http = sp_http_new(&ho, err, sizeof err);
    free(cert);
    free_secret(key);
    if (!a->http) {
        fprintf(stderr, "sparrow serve: %s\n", err);
        free(a);
        return 1;
    }
    pthread_mutex_lock(&g_sig_mu);
    g_app = a;
    pthread_mutex_unlock(&g_sig_mu);
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL, tls = cfg->tls_cert_file != NULL;
    if (!a->multi)
        fprintf(stderr, "sparrow serve: listening on %s://%s%s%s:%d (model id '%s')\n", tls ? "https" : "http", v6 ? "[" : "",
                host, v6 ? "]" : "", sp_http_port(a->http), a->slots[0].id);
    else
        fprintf(stderr, "sparrow serve: listening on %s://%s%s%s:%d (%d models from %s, loaded on first use, at most %d "
                        "at once)\n", tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", sp_http_port(a->http),
                a->n_slots, cfg->models_dir, a->max_models);
    bool any = !strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "[::]");
    if (any && cfg->n_api_keys == 0)
        fprintf(stderr,
                "sparrow serve: WARNING: ***********************************************************************\n"
                "sparrow serve: WARNING: listening on ALL network interfaces (%s) WITHOUT an API key.\n"
                "sparrow serve: WARNING: Anyone who can reach this machine can use the model.\n"
                "sparrow serve: WARNING: Set --api-key KEY or --api-key-file FILE, or listen on --host 127.0.0.1.\n"
                "sparrow serve: WARNING: ***********************************************************************\n",
                host);
    else if (!is_loopback(host) && cfg->n_api_keys == 0)
        fprintf(stderr, "sparrow serve: WARNING: listening on %s WITHOUT an API key: anyone who can reach this "
                        "address can use the model (set --api-key or --api-key-file)\n", host);
    if (!is_loopback(host) && cfg->n_api_keys > 0 && !tls)
        fprintf(stderr, "sparrow serve: note: plain HTTP: API keys and prompts cross the network unencrypted "
                        "(--tls-cert and --tls-key serve HTTPS)\n");

    pthread_t loader;
    if (a->multi) {
        atomic_store(&a->ready, true);
        pthread_create(&a->janitor, NULL, janitor_main, a);
    } else {
        pthread_create(&loader, NULL, loader_main, a);
    }
    for (int i = 0; i < 2; i++) pthread_create(&a->prep_threads[i], NULL, prep_main, a);

    sp_http_run(a->http);

    if (!a->multi) pthread_join(loader, NULL);
    pthread_mutex_lock(&a->smu); /* prep threads waiting for a load give up */
    a->squit = true;
    pthread_cond_broadcast(&a->scv);
    pthread_cond_broadcast(&a->jcv);
    pthread_mutex_unlock(&a->smu);
    pthread_mutex_lock(&a->pmu);
    a->pquit = true;
    pthread_cond_broadcast(&a->pcv);
    pthread_mutex_unlock(&a->pmu);
    for (int i = 0; i < 2; i++) pthread_join(a->prep_threads[i], NULL);
    if (a->multi) pthread_join(a->janitor, NULL);
    int rc = atomic_load(&a->load_failed) ? 1 : 0;
    pthread_mutex_lock(&g_sig_mu); /* a signal from here on exits at once */
    g_app = NULL;
    pthread_mutex_unlock(&g_sig_mu);
    sp_http_free(a->http);
    for (int i = 0; i < a->n_slots; i++) {
        model_slot *sl = &a->slots[i];
        sp_sched_free(sl->sched);
        sp_tmpl_free(sl->tmpl);
        sp_model_free(sl->model);
        free(sl->tmpl_src);
    }
    free(a->slots);
    sp_metrics_destroy(&a->metrics);
    pthread_mutex_destroy(&a->pmu);
    pthread_cond_destroy(&a->pcv);
    pthread_mutex_destroy(&a->smu);
    pthread_cond_destroy(&a->scv);
    pthread_cond_destroy(&a->jcv);
    free(a);
    fprintf(stderr, "sparrow serve: stopped\n");
    return rc;
}
