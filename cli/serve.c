/* cli/serve.c — `sparrow serve`: the OpenAI-compatible server. Settings come from a JSON config file
 * (--config FILE; the same names as the flags, without dashes) and flags, flags winning. With no
 * model named it serves the default tiny random-weight model (made by synth on first use). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "engine/kv.h"
#include "server/app.h"

#define MAX_KEYS 1024
#define MAX_KEY_FILES 8

typedef struct {
    sp_app_config cfg;
    const char *keys[MAX_KEYS];
    char *key_files[MAX_KEY_FILES]; /* --api-key-file contents (the keys point into them) */
    size_t key_file_len[MAX_KEY_FILES];
    int n_key_files;
    int n_keys_file;        /* keys from the config file, replaced when flags give keys */
    bool keys_from_flags;
    char model_buf[1024];
    char *owned[64];        /* the config file's strings, freed when the server stops */
    int n_owned;
} serve_opts;

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: sparrow serve [-m MODEL.gguf] [options]\n"
            "  -m, --model FILE         GGUF model (default: a tiny random-weight model made by synth)\n"
            "  --alias NAME             the model id clients use (default: the file name without .gguf)\n"
            "  --models-dir DIR         serve every *.gguf in DIR (instead of -m; `sparrow pull` fills the\n"
            "                           models folder, $SPARROW_MODELS_DIR): a request's `model` (the file\n"
            "                           name without .gguf) picks one; loaded on first use, one load at a time\n"
            "  --max-models N           with --models-dir: models loaded at once (default 2); the least\n"
            "                           recently used idle one is unloaded to make room (and within --mem-limit)\n"
            "  --keep-alive DURATION    with --models-dir: an idle model stays loaded this long (default 5m;\n"
            "                           e.g. 30s, 1h, -1: until evicted); Ollama requests' keep_alive wins\n"
            "  --host ADDR              address to listen on (default 127.0.0.1; 0.0.0.0 for the LAN)\n"
            "  --port N                 (default 8080)\n"
            "  --api-key KEY            require 'Authorization: Bearer KEY' (repeatable: several keys)\n"
            "  --api-key-file FILE      the same, one key per line ('#' comments); keep it chmod 600\n"
            "  --cors ORIGINS           allow browsers from these origins ('*' or a comma-separated list;\n"
            "                           default: none, no CORS headers)\n"
            "  --tls-cert FILE          serve HTTPS with this PEM certificate (chain) ...\n"
            "  --tls-key FILE           ... and its PEM private key\n"
            "  -c, --ctx N              context length (default: the model's)\n"
            "  -t, --threads N          compute threads (default: one per online CPU)\n"
            "  --max-queue N            waiting generations before 429 (default 64; n choices count n)\n"
            "  --max-n N                most choices ('n') per request (default 4; at most --max-queue)\n"
            "  --parallel N             sequences generated at once, batched (default 4)\n"
            "  --step-tokens N          tokens per batched engine step: decodes, then prompt chunks (default 128)\n"
            "  --kv-mem BYTES           KV cache pool, e.g. 512M or 2G (default: --parallel full contexts,\n"
            "                           at most 1G, at least one full context)\n"
            "  --kv-type f32|q8         KV cache precision (default f32; q8: int8, a quarter of the memory)\n"
            "  --mem-limit BYTES        RAM sparrow may own: KV pool, buffers, locked weights (e.g. 1G);\n"
            "                           the weights stay file-backed (the cache file) and are paged in\n"
            "                           as needed. Refused at start if even that cannot fit\n"
            "  --mlock                  with --mem-limit: lock as many weight bytes as the limit leaves room for\n"
            "  --kv-spill BYTES         keep released KV blocks in a file on flash, up to BYTES (e.g. 2G;\n"
            "                           default 0: off): a conversation's next turn reads them back\n"
            "  --kv-spill-idle S        with --kv-spill: cached blocks idle S seconds leave RAM (default 30)\n"
            "  --no-weight-cache        repack the weights in memory at every start instead of mapping the\n"
            "                           cache file ($SPARROW_CACHE_DIR, else ~/.cache/sparrow)\n"
            "limits (past one: the status in parentheses, with an OpenAI-shaped error):\n"
            "  --max-connections N      open connections served (default 512; past it 503, but /health)\n"
            "  --max-body BYTES         request body, e.g. 16M (default 8M; 413)\n"
            "  --max-header BYTES       request line + headers (default 16K; 431)\n"
            "  --max-json-depth N       nesting of the request JSON (default 64; 400)\n"
            "  --max-prompt-tokens N    prompt tokens (default: the context less one; 400)\n"
            "  --max-tokens N           largest max_tokens, and the cap when a request gives none\n"
            "                           (default 0: the context; 400)\n"
            "  --max-stop N             stop strings per request (default 16; 400)\n"
            "  --max-stop-len BYTES     bytes per stop string (default 256; 400)\n"
            "  --request-timeout S      a generation running longer is ended with finish_reason \"length\"\n"
            "                           (default 600; 0: never)\n"
            "  --read-timeout S         a request (headers and body) must arrive within S seconds of the\n"
            "                           connection opening or of the previous answer, else the\n"
            "                           connection is closed (default 15)\n"
            "  --timeout S              idle connection timeout: no byte moved (default 60)\n"
            "  --shutdown-grace S       on SIGTERM/SIGINT, running generations may go on this long, then end\n"
            "                           with finish_reason \"length\" (default 10; a second signal exits at once)\n"
            "  --chat-template FILE     Jinja chat template to use instead of the model's\n"
            "  --config FILE            JSON file with any of these settings, e.g. {\"port\": 8081, \"api-key\": \"k\"}\n"
            "  -q, --quiet              no per-request log lines\n");
}

static bool num(const char *v, int64_t lo, int64_t hi, int64_t *out, const char *name) {
    if (sp_conf_parse_i64(v, lo, hi, out)) return true;
    fprintf(stderr, "sparrow serve: invalid value '%s' for %s (%lld..%lld)\n", v, name, (long long)lo, (long long)hi);
    return false;
}

static bool size(const char *v, uint64_t lo, uint64_t hi, size_t *out, const char *name) {
    uint64_t n;
    if (sp_conf_parse_size(v, lo, hi, &n) && n <= SIZE_MAX) {
        *out = (size_t)n;
        return true;
    }
    fprintf(stderr, "sparrow serve: invalid value '%s' for %s (bytes, with an optional K, M or G suffix; %llu..%llu)\n",
            v, name, (unsigned long long)lo, (unsigned long long)hi);
    return false;
}

static bool seconds(const char *v, float lo, float hi, double *out, const char *name) {
    float f;
    if (sp_conf_parse_f32(v, lo, hi, &f)) {
        *out = f;
        return true;
    }
    fprintf(stderr, "sparrow serve: invalid value '%s' for %s (seconds, %g..%g)\n", v, name, lo, hi);
    return false;
}

/* "5m", "30s", "1h30m", "90" (seconds); negative: forever (-1). */
static bool duration(const char *v, double *out, const char *name) {
    const char *p = v;
    bool neg = *p == '-';
    if (neg) p++;
    double total = 0;
    bool ok = *p != 0;
    while (ok && *p) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || x < 0) { ok = false; break; }
        p = end;
        if (!strncmp(p, "ms", 2)) x *= 0.001, p += 2;
        else if (*p == 's') p++;
        else if (*p == 'm') x *= 60, p++;
        else if (*p == 'h') x *= 3600, p++;
        else if (*p) { ok = false; break; }
        total += x;
    }
    if (!ok) {
        fprintf(stderr, "sparrow serve: invalid value '%s' for %s (a duration: 30s, 5m, 1h; -1: forever)\n", v, name);
        return false;
    }
    *out = neg ? -1 : total;
    return true;
}

static bool add_key(serve_opts *o, const char *v, bool from_file) {
    sp_app_config *c = &o->cfg;
    if (!from_file && !o->keys_from_flags) { c->n_api_keys = 0; o->keys_from_flags = true; }
    if (c->n_api_keys >= MAX_KEYS) { fprintf(stderr, "sparrow serve: at most %d API keys\n", MAX_KEYS); return false; }
    if (!*v) { fprintf(stderr, "sparrow serve: an API key may not be empty\n"); return false; }
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            fprintf(stderr, "sparrow serve: an API key may not contain spaces or control characters\n");
            return false;
        }
    o->keys[c->n_api_keys++] = v;
    return true;
}

/* --api-key-file: one key per line; blank lines and lines starting with '#' are skipped; spaces
 * around a key are trimmed. The file should be readable by its owner only (a warning otherwise). */
static bool add_key_file(serve_opts *o, const char *path, bool from_file) {
    if (o->n_key_files == MAX_KEY_FILES) { fprintf(stderr, "sparrow serve: at most %d key files\n", MAX_KEY_FILES); return false; }
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20)) {
        fprintf(stderr, "sparrow serve: cannot read the API key file %s%s\n", path,
                f && st.st_size > (1 << 20) ? " (over 1 MiB)" : "");
        if (f) fclose(f);
        return false;
    }
    if (st.st_mode & 077)
        fprintf(stderr, "sparrow serve: WARNING: the API key file %s can be read by other users (chmod 600 %s)\n", path, path);
    char *buf = calloc((size_t)st.st_size + 1, 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf) return false;
    buf[n] = 0;
    o->key_file_len[o->n_key_files] = n;
    o->key_files[o->n_key_files++] = buf;
    int added = 0;
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        while (*line == ' ' || *line == '\t') line++;
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len || line[0] == '#') continue;
        if (!add_key(o, line, from_file)) return false;
        added++;
    }
    if (!added) {
        fprintf(stderr, "sparrow serve: the API key file %s holds no key\n", path);
        return false;
    }
    return true;
}

/* One setting by name (flag without dashes, or config key). from_file: the config file. */
static bool set_option(serve_opts *o, const char *name, const char *v, bool from_file) {
    sp_app_config *c = &o->cfg;
    int64_t n;
    if (!strcmp(name, "model") || !strcmp(name, "m")) c->model_path = v;
    else if (!strcmp(name, "alias")) c->model_alias = v;
    else if (!strcmp(name, "models-dir")) c->models_dir = v;
    else if (!strcmp(name, "max-models")) { if (!num(v, 1, 1024, &n, name)) return false; c->max_models = (int32_t)n; }
    else if (!strcmp(name, "keep-alive")) { if (!duration(v, &c->keep_alive_s, name)) return false; c->keep_alive_set = true; }
    else if (!strcmp(name, "host")) c->host = v;
    else if (!strcmp(name, "port")) { if (!num(v, 0, 65535, &n, name)) return false; c->port = (int)n; }
    else if (!strcmp(name, "api-key") || !strcmp(name, "api_key") || !strcmp(name, "api-keys")) {
        if (!add_key(o, v, from_file)) return false;
    }
    else if (!strcmp(name, "api-key-file")) { if (!add_key_file(o, v, from_file)) return false; }
    else if (!strcmp(name, "tls-cert")) c->tls_cert_file = v;
    else if (!strcmp(name, "tls-key")) c->tls_key_file = v;
    else if (!strcmp(name, "cors")) c->cors_origins = v;
    else if (!strcmp(name, "ctx") || !strcmp(name, "c")) { if (!num(v, 0, 1 << 24, &n, name)) return false; c->n_ctx = (int32_t)n; }
    else if (!strcmp(name, "threads") || !strcmp(name, "t")) { if (!num(v, 1, 1024, &n, name)) return false; c->threads = (int32_t)n; }
    else if (!strcmp(name, "max-queue")) { if (!num(v, 1, 1 << 20, &n, name)) return false; c->max_queue = (int32_t)n; }
    else if (!strcmp(name, "max-n")) { if (!num(v, 1, 128, &n, name)) return false; c->max_n = (int32_t)n; }
    else if (!strcmp(name, "parallel")) { if (!num(v, 1, 1024, &n, name)) return false; c->parallel = (int32_t)n; }
    else if (!strcmp(name, "step-tokens")) { if (!num(v, 1, 1 << 20, &n, name)) return false; c->step_tokens = (int32_t)n; }
    else if (!strcmp(name, "kv-mem")) { if (!size(v, 1024, (uint64_t)1 << 40, &c->kv_mem, name)) return false; }
    else if (!strcmp(name, "kv-type")) {
        if (!strcmp(v, "f32")) c->kv_type = SP_KV_F32;
        else if (!strcmp(v, "q8")) c->kv_type = SP_KV_Q8;
        else { fprintf(stderr, "sparrow serve: invalid value '%s' for kv-type (f32 or q8)\n", v); return false; }
    }
    else if (!strcmp(name, "mem-limit")) { if (!size(v, 1 << 20, (uint64_t)1 << 44, &c->mem_limit, name)) return false; }
    else if (!strcmp(name, "mlock")) c->mlock = !strcmp(v, "true");
    else if (!strcmp(name, "kv-spill")) { if (!size(v, 0, (uint64_t)1 << 44, &c->kv_spill, name)) return false; }
    else if (!strcmp(name, "kv-spill-idle")) { if (!num(v, 0, 86400 * 365, &n, name)) return false; c->kv_spill_idle_s = (double)n; }
    else if (!strcmp(name, "no-weight-cache")) c->no_weight_cache = !strcmp(v, "true");
    else if (!strcmp(name, "max-body")) { if (!size(v, 1024, (uint64_t)1 << 32, &c->max_body, name)) return false; }
    else if (!strcmp(name, "max-connections")) { if (!num(v, 1, 100000, &n, name)) return false; c->max_connections = (unsigned)n; }
    else if (!strcmp(name, "timeout")) { if (!num(v, 1, 86400, &n, name)) return false; c->idle_timeout_s = (unsigned)n; }
    else if (!strcmp(name, "read-timeout")) { if (!num(v, 1, 86400, &n, name)) return false; c->read_timeout_s = (unsigned)n; }
    else if (!strcmp(name, "request-timeout")) { if (!seconds(v, 0, 604800, &c->request_timeout_s, name)) return false; }
    else if (!strcmp(name, "shutdown-grace")) { if (!seconds(v, 0, 86400, &c->shutdown_grace_s, name)) return false; }
    else if (!strcmp(name, "max-header")) { if (!size(v, 1024, 1 << 20, &c->max_header, name)) return false; }
    else if (!strcmp(name, "max-json-depth")) { if (!num(v, 2, 1000, &n, name)) return false; c->max_json_depth = (int32_t)n; }
    else if (!strcmp(name, "max-prompt-tokens")) { if (!num(v, 0, 1 << 24, &n, name)) return false; c->max_prompt_tokens = (int32_t)n; }
    else if (!strcmp(name, "max-tokens")) { if (!num(v, 0, 1 << 24, &n, name)) return false; c->max_tokens = (int32_t)n; }
    else if (!strcmp(name, "max-stop")) { if (!num(v, 0, 1024, &n, name)) return false; c->max_stop = (int32_t)n; }
    else if (!strcmp(name, "max-stop-len")) { if (!num(v, 1, 1 << 16, &n, name)) return false; c->max_stop_len = (int32_t)n; }
    else if (!strcmp(name, "chat-template")) c->chat_template_file = v;
    else if (!strcmp(name, "quiet") || !strcmp(name, "q")) c->quiet = !strcmp(v, "true");
    else {
        fprintf(stderr, "sparrow serve: unknown %s '%s' (see --help)\n", from_file ? "config key" : "option", name);
        return false;
    }
    return true;
}

static bool from_file(const char *key, const char *value, void *ud) {
    serve_opts *o = ud;
    if (o->n_owned == (int)(sizeof o->owned / sizeof o->owned[0])) {
        fprintf(stderr, "sparrow serve: too many settings in the config file\n");
        return false;
    }
    char *copy = strdup(value); /* the settings point at it until the server stops */
    o->owned[o->n_owned++] = copy;
    return set_option(o, key, copy, true);
}

static int release(serve_opts *o, int rc) {
    for (int i = 0; i < o->n_owned; i++) free(o->owned[i]);
    for (int i = 0; i < o->n_key_files; i++) { /* secrets: not left in freed memory */
        explicit_bzero(o->key_files[i], o->key_file_len[i]);
        free(o->key_files[i]);
    }
    return rc;
}

static const char *flag_name(const char *a) {
    if (a[0] != '-') return NULL;
    return a[1] == '-' ? a + 2 : a + 1;
}

int sp_cli_serve(int argc, char **argv) {
    serve_opts o;
    memset(&o, 0, sizeof o);
    o.cfg.host = "127.0.0.1";
    o.cfg.port = 8080;
    o.cfg.max_queue = 64;
    o.cfg.max_n = 4;
    o.cfg.parallel = 4; /* as llama-server's and Ollama's defaults; small boxes have few cores */
    o.cfg.kv_spill_idle_s = 30;
    o.cfg.max_body = 8u << 20;
    o.cfg.max_connections = 512;
    o.cfg.idle_timeout_s = 60;
    o.cfg.read_timeout_s = 15;
    o.cfg.max_header = 16u << 10;
    o.cfg.request_timeout_s = 600;
    o.cfg.shutdown_grace_s = 10;
    o.cfg.api_keys = o.keys;
    for (int i = 1; i < argc; i++) { /* the config file first, so flags win */
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            static char buf[16384]; /* one write: `serve --help | grep -q` sees all of it, no SIGPIPE */
            setvbuf(stdout, buf, _IOFBF, sizeof buf);
            serve_usage(stdout);
            fflush(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) { fprintf(stderr, "sparrow serve: --config needs a file\n"); return 2; }
            char err[512];
            if (!sp_conf_file_each(argv[i + 1], from_file, &o, err, sizeof err)) {
                if (err[0]) fprintf(stderr, "sparrow serve: %s\n", err);
                return release(&o, 2);
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *name = flag_name(argv[i]);
        if (!name) { fprintf(stderr, "sparrow serve: unexpected argument '%s'\n", argv[i]); return release(&o, 2); }
        if (!strcmp(name, "config")) { i++; continue; }
        if (!strcmp(name, "quiet") || !strcmp(name, "q")) { o.cfg.quiet = true; continue; }
        if (!strcmp(name, "mlock")) { o.cfg.mlock = true; continue; }
        if (!strcmp(name, "no-weight-cache")) { o.cfg.no_weight_cache = true; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "sparrow serve: %s needs a value\n", argv[i]); return release(&o, 2); }
        if (!set_option(&o, name, argv[++i], false)) return release(&o, 2);
    }
    if (o.cfg.models_dir && o.cfg.model_path) {
        fprintf(stderr, "sparrow serve: give -m FILE or --models-dir DIR, not both\n");
        return release(&o, 2);
    }
    if (!o.cfg.model_path && !o.cfg.models_dir) {
        if (!sp_cli_default_model(o.model_buf, sizeof o.model_buf)) return release(&o, 1);
        o.cfg.model_path = o.model_buf;
        if (!o.cfg.model_alias) o.cfg.model_alias = "sparrow-tiny-random";
    }
    return release(&o, sp_app_run(&o.cfg));
}
