/* cli/tokenize.c — `sparrow tokenize`: prints the token ids of a text (one line, separated by single
 * spaces), or with --detok the text of a list of ids. Only the tokenizer is built (from the GGUF
 * metadata); weights are not loaded. Entry point sp_cli_tokenize(argc, argv), argv[0] = "tokenize". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/tok.h"
#include "storage/gguf.h"

typedef struct {
    const char *model;
    const char *text;
    const char *detok;
    bool add_special, parse_special;
} tokenize_opts;

static void tokenize_usage(FILE *f) {
    fputs("usage: sparrow tokenize -m FILE [--add-special] [--parse-special] TEXT\n"
          "       sparrow tokenize -m FILE --detok \"ID ID ...\"\n"
          "  -m, --model FILE  the GGUF file whose tokenizer to use (default: the tiny default model)\n"
          "  --add-special     add BOS / EOS as the vocabulary asks\n"
          "  --parse-special   control-token text in TEXT (e.g. <s>) becomes those tokens\n"
          "  --detok IDS       print the text of the ids instead (space- or comma-separated)\n",
          f);
}

/* 0: parsed; 1: error (reported); -1: --help printed */
static int tokenize_parse(int argc, char **argv, tokenize_opts *o) {
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && a[0] == '-' && a[1]) {
            if (!strcmp(a, "--")) {
                opts_done = true;
            } else if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--detok")) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "sparrow tokenize: %s needs a value\n", a);
                    return 1;
                }
                if (!strcmp(a, "--detok")) o->detok = argv[++i];
                else o->model = argv[++i];
            } else if (!strcmp(a, "--add-special")) {
                o->add_special = true;
            } else if (!strcmp(a, "--parse-special")) {
                o->parse_special = true;
            } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                tokenize_usage(stdout);
                return -1;
            } else {
                fprintf(stderr, "sparrow tokenize: unknown option '%s' (see sparrow tokenize --help)\n", a);
                return 1;
            }
        } else if (o->text) {
            fprintf(stderr, "sparrow tokenize: more than one text given (quote the text)\n");
            return 1;
        } else {
            o->text = a;
        }
    }
    if (o->detok && o->text) {
        fprintf(stderr, "sparrow tokenize: give either a text or --detok IDS, not both\n");
        return 1;
    }
    if (!o->detok && !o->text) {
        fprintf(stderr, "sparrow tokenize: no text given (see sparrow tokenize --help)\n");
        return 1;
    }
    return 0;
}

static int tokenize_encode(const sp_tok *t, const tokenize_opts *o) {
    size_t len = strlen(o->text);
    int32_t n = sp_tok_encode(t, o->text, len, o->add_special, o->parse_special, NULL, 0);
    int32_t *ids = n > 0 ? malloc((size_t)n * sizeof *ids) : NULL;
    if (n < 0 || (n > 0 && !ids) || sp_tok_encode(t, o->text, len, o->add_special, o->parse_special, ids, n) != n) {
        fprintf(stderr, "sparrow tokenize: cannot encode the text\n");
        free(ids);
        return 1;
    }
    for (int32_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    free(ids);
    return 0;
}

static int tokenize_decode(const sp_tok *t, const char *list) {
    sp_detok d;
    sp_detok_init(&d, t, sp_tok_add_space_prefix(t) || sp_tok_get_kind(t) == SP_TOK_WPM); /* WordPiece: "▁word" */
    int32_t cap = sp_detok_max_bytes(t);
    char *buf = malloc((size_t)cap);
    if (!buf) {
        fprintf(stderr, "sparrow tokenize: out of memory\n");
        return 1;
    }
    const char *s = list;
    for (;;) {
        while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || (*end && !strchr(" ,\t\n", *end))) {
            fprintf(stderr, "sparrow tokenize: bad token id '%.*s'\n", (int)strcspn(s, " ,\t\n"), s);
            free(buf);
            return 1;
        }
        if (v < 0 || v >= sp_tok_n_vocab(t)) {
            fprintf(stderr, "sparrow tokenize: token id %ld out of range (vocabulary of %d)\n", v, sp_tok_n_vocab(t));
            free(buf);
            return 1;
        }
        int32_t w = sp_detok_push(&d, (int32_t)v, buf, cap);
        if (w > 0) fwrite(buf, 1, (size_t)w, stdout);
        s = end;
    }
    int32_t w = sp_detok_flush(&d, buf, cap);
    if (w > 0) fwrite(buf, 1, (size_t)w, stdout);
    putchar('\n');
    free(buf);
    return 0;
}

int sp_cli_tokenize(int argc, char **argv) {
    tokenize_opts o = {0};
    int rc = tokenize_parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    char defpath[1024];
    if (!o.model) {
        if (!sp_cli_default_model(defpath, sizeof defpath)) return 1;
        o.model = defpath;
    }
    char err[512];
    sp_gguf *g = sp_gguf_open(o.model, err, sizeof err);
    if (!g) {
        fprintf(stderr, "sparrow tokenize: %s\n", err);
        return 1;
    }
    sp_tok *t = sp_tok_from_gguf(g, err, sizeof err);
    sp_gguf_close(g);
    if (!t) {
        fprintf(stderr, "sparrow tokenize: %s: %s\n", o.model, err);
        return 1;
    }
    rc = o.detok ? tokenize_decode(t, o.detok) : tokenize_encode(t, &o);
    sp_tok_free(t);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "sparrow tokenize: error writing output\n");
        return 1;
    }
    return rc;
}
