/* cli/template.c — `sparrow template`: render a chat template with a conversation and print
 * exactly the prompt text to stdout (nothing added). The template comes from a file (--file), a
 * GGUF model's tokenizer.chat_template (-m; bos/eos token text from its vocabulary unless the
 * context gives them; a builtin is guessed when the model has no template) or a builtin
 * (--builtin). The context is a JSON object of template variables (messages,
 * add_generation_prompt, tools, ...). strftime_now honours SPARROW_FIXED_DATE=YYYY-MM-DD.
 * Entry point sp_cli_template(argc, argv), argv[0] being "template". */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api/tmpl.h"
#include "cli/cli.h"
#include "storage/gguf.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: sparrow template (--file TEMPLATE.jinja | -m MODEL.gguf | --builtin NAME)\n"
            "                        [--context CONTEXT.json]\n"
            "\n"
            "Renders a chat template and prints the prompt to stdout, byte for byte.\n"
            "  --file PATH       Jinja template source\n"
            "  -m, --model PATH  a GGUF model: its tokenizer.chat_template, bos/eos token text\n"
            "  --builtin NAME    a built-in template: chatml, llama2, llama3, mistral, gemma, phi3\n"
            "  --context PATH    JSON object of variables (messages, add_generation_prompt, tools,\n"
            "                    bos_token, ...); '-' reads stdin; default {}\n"
            "  --source          print the template source instead of rendering it\n"
            "SPARROW_FIXED_DATE=YYYY-MM-DD fixes the date strftime_now() sees.\n");
}

/* Read a whole file ("-" = stdin) into a NUL-terminated malloc'd buffer. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n < cap - 1) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool failed = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || failed) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The text of token `key_id` (e.g. tokenizer.ggml.bos_token_id) from the vocabulary; NULL if
 * the model doesn't say. Returns a malloc'd string. */
static char *token_text(const sp_gguf *g, const char *key_id) {
    uint32_t id;
    if (!sp_gguf_get_u32(g, key_id, &id)) return NULL;
    const sp_gguf_value *toks = sp_gguf_get(g, "tokenizer.ggml.tokens");
    if (!toks || toks->type != SP_GGUF_ARRAY || toks->arr.type != SP_GGUF_STRING || id >= toks->arr.n)
        return NULL;
    sp_gguf_str s = toks->arr.strs[id];
    char *out = malloc(s.len + 1);
    if (!out) return NULL;
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
    return out;
}

static char *gguf_string(const sp_gguf *g, const char *key) {
    sp_gguf_str s;
    if (!sp_gguf_get_str(g, key, &s)) return NULL;
    char *out = malloc(s.len + 1);
    if (!out) return NULL;
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
    return out;
}

/* Template source and bos/eos text from a GGUF model. */
static char *model_template(const char *path, cJSON *ctx) {
    char err[512];
    sp_gguf *g = sp_gguf_open(path, err, sizeof err);
    if (!g) {
        fprintf(stderr, "sparrow template: %s\n", err);
        return NULL;
    }
    char *src = gguf_string(g, "tokenizer.chat_template");
    if (!src) {
        char *arch = gguf_string(g, "general.architecture");
        char *name = gguf_string(g, "general.name");
        const char *guess = sp_tmpl_builtin_guess(arch, name);
        fprintf(stderr, "sparrow template: %s has no chat template; using the builtin '%s'\n", path, guess);
        src = strdup(sp_tmpl_builtin(guess));
        free(arch);
        free(name);
    }
    static const struct { const char *var, *key; } special[] = {
        {"bos_token", "tokenizer.ggml.bos_token_id"}, {"eos_token", "tokenizer.ggml.eos_token_id"}};
    for (size_t i = 0; i < 2; i++) {
        if (cJSON_GetObjectItemCaseSensitive(ctx, special[i].var)) continue;
        char *text = token_text(g, special[i].key);
        if (text) cJSON_AddStringToObject(ctx, special[i].var, text);
        free(text);
    }
    sp_gguf_close(g);
    return src;
}

int sp_cli_template(int argc, char **argv) {
    const char *file = NULL, *model = NULL, *builtin = NULL, *context = NULL;
    bool show_source = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--file") && has_val) {
            file = argv[++i];
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_val) {
            model = argv[++i];
        } else if (!strcmp(a, "--builtin") && has_val) {
            builtin = argv[++i];
        } else if (!strcmp(a, "--source")) {
            show_source = true;
        } else if (!strcmp(a, "--context") && has_val) {
            context = argv[++i];
        } else {
            fprintf(stderr, "sparrow template: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if ((file != NULL) + (model != NULL) + (builtin != NULL) != 1) {
        fprintf(stderr, "sparrow template: give exactly one of --file, -m or --builtin\n");
        usage(stderr);
        return 2;
    }

    cJSON *ctx = NULL;
    if (context) {
        size_t len;
        char *text = read_all(context, &len);
        if (!text) {
            fprintf(stderr, "sparrow template: cannot read %s: %s\n", context, strerror(errno));
            return 1;
        }
        ctx = cJSON_ParseWithLength(text, len);
        free(text);
        if (!ctx || !cJSON_IsObject(ctx)) {
            fprintf(stderr, "sparrow template: %s is not a JSON object\n", context);
            cJSON_Delete(ctx);
            return 1;
        }
    } else {
        ctx = cJSON_CreateObject();
    }

    char *src = NULL;
    size_t src_len = 0;
    if (file) {
        src = read_all(file, &src_len);
        if (!src) fprintf(stderr, "sparrow template: cannot read %s: %s\n", file, strerror(errno));
    } else if (model) {
        src = model_template(model, ctx);
        if (src) src_len = strlen(src);
    } else {
        const char *b = sp_tmpl_builtin(builtin);
        if (!b) fprintf(stderr, "sparrow template: no builtin template '%s'\n", builtin);
        else src = strdup(b), src_len = strlen(b);
    }
    if (!src) {
        cJSON_Delete(ctx);
        return 1;
    }

    if (show_source) {
        int ok = fwrite(src, 1, src_len, stdout) == src_len && fflush(stdout) == 0;
        free(src);
        cJSON_Delete(ctx);
        return ok ? 0 : 1;
    }

    char err[1024];
    int rc = 1;
    sp_tmpl *t = sp_tmpl_parse(src, src_len, err, sizeof err);
    if (!t) {
        fprintf(stderr, "sparrow template: %s\n", err);
    } else {
        char *out = NULL;
        size_t out_len = 0;
        sp_tmpl_status st = sp_tmpl_render(t, ctx, NULL, &out, &out_len, err, sizeof err);
        if (st == SP_TMPL_OK) {
            rc = fwrite(out, 1, out_len, stdout) == out_len && fflush(stdout) == 0 ? 0 : 1;
        } else {
            fprintf(stderr, "sparrow template: %s\n", err);
        }
        free(out);
        sp_tmpl_free(t);
    }
    free(src);
    cJSON_Delete(ctx);
    return rc;
}
