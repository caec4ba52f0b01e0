/* cli/pull.c — `sparrow pull SOURCE [--models-dir DIR] [--name NAME] [--sha256 HEX]`: download a GGUF
 * into the models directory (the same default as `serve --models-dir`). SOURCE is a URL or a Hugging
 * Face `org/repo/file.gguf` shorthand ($HF_ENDPOINT, default https://huggingface.co). Resumes an
 * interrupted download; a progress bar on a terminal, quiet otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "storage/fetch.h"

static void pull_usage(FILE *f) {
    fprintf(f,
            "usage: sparrow pull SOURCE [--models-dir DIR] [--name NAME] [--sha256 HEX] [--quiet]\n"
            "  SOURCE        https://host/path/model.gguf, or a Hugging Face shorthand org/repo/file.gguf\n"
            "  --models-dir  where models live (default $SPARROW_MODELS_DIR, else ~/.local/share/sparrow/models)\n"
            "  --name        file name to save as (default: the last part of SOURCE)\n"
            "  --sha256      expected digest (Hugging Face's is checked automatically when it sends one)\n");
}

static bool is_url(const char *s) { return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8); }

/* org/repo/path/file.gguf -> ENDPOINT/org/repo/resolve/main/path/file.gguf */
static bool resolve_source(const char *src, char *url, size_t cap) {
    if (is_url(src)) return snprintf(url, cap, "%s", src) < (int)cap;
    const char *s1 = strchr(src, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (!s1 || !s2 || s1 == src || s2 == s1 + 1 || !s2[1] || strstr(src, "..")) return false;
    const char *ep = getenv("HF_ENDPOINT");
    if (!ep || !*ep) ep = "https://huggingface.co";
    return snprintf(url, cap, "%s/%.*s/resolve/main/%s", ep, (int)(s2 - src), src, s2 + 1) < (int)cap;
}

/* The file name: the last path segment, without a query string. */
static bool default_name(const char *url, char *name, size_t cap) {
    const char *q = strchr(url, '?');
    size_t end = q ? (size_t)(q - url) : strlen(url);
    size_t start = end;
    while (start > 0 && url[start - 1] != '/') start--;
    size_t len = end - start;
    if (len == 0 || len >= cap) return false;
    memcpy(name, url + start, len);
    name[len] = 0;
    return strcmp(name, ".") && strcmp(name, "..");
}

int sp_cli_pull(int argc, char **argv) {
    const char *src = NULL, *dir = NULL, *name = NULL, *sha = NULL;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { pull_usage(stdout); return 0; }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { quiet = true; continue; }
        if (a[0] == '-') {
            if (!v) { fprintf(stderr, "sparrow pull: %s needs a value\n", a); return 2; }
            if (!strcmp(a, "--models-dir")) dir = v;
            else if (!strcmp(a, "--name")) name = v;
            else if (!strcmp(a, "--sha256")) sha = v;
            else { fprintf(stderr, "sparrow pull: unknown option '%s'\n", a); return 2; }
            i++;
        } else if (!src) src = a;
        else { fprintf(stderr, "sparrow pull: unexpected argument '%s'\n", a); return 2; }
    }
    if (!src) { pull_usage(stderr); return 2; }
    char url[4096], dirbuf[4096], namebuf[512], dest[8192];
    if (!resolve_source(src, url, sizeof url)) {
        fprintf(stderr, "sparrow pull: '%s' is neither a URL nor org/repo/file.gguf\n", src);
        return 2;
    }
    if (!name) {
        if (!default_name(url, namebuf, sizeof namebuf)) { fprintf(stderr, "sparrow pull: cannot tell a file name from %s (use --name)\n", url); return 2; }
        name = namebuf;
    }
    if (strchr(name, '/') || !strcmp(name, "..")) { fprintf(stderr, "sparrow pull: --name must be a plain file name\n"); return 2; }
    if (dir) {
        if (!sp_conf_mkdir_p(dir)) { fprintf(stderr, "sparrow pull: cannot create %s\n", dir); return 1; }
    } else if (!sp_conf_models_dir(dirbuf, sizeof dirbuf)) {
        fprintf(stderr, "sparrow pull: cannot create the models directory (set --models-dir)\n");
        return 1;
    } else dir = dirbuf;
    snprintf(dest, sizeof dest, "%s/%s", dir, name);
    bool tty = isatty(2) && !quiet;
    if (tty) fprintf(stderr, "sparrow pull: %s -> %s\n", url, dest);
    sp_fetch_opts fo = {.url = url, .dest = dest, .sha256 = sha, .progress = tty};
    sp_fetch_result res;
    char err[1024];
    if (sp_fetch(&fo, &res, err, sizeof err) != 0) {
        fprintf(stderr, "sparrow pull: %s\n", err);
        return 1;
    }
    printf("%s\n", dest);
    if (!quiet)
        fprintf(stderr, "sparrow pull: %llu bytes%s%s, sha256 %s%s\n", res.bytes,
                res.resumed_from && !res.restarted ? " (resumed)" : "", res.restarted ? " (server ignored Range: restarted)" : "",
                res.sha256, res.sha256_checked ? " (verified)" : "");
    return 0;
}
