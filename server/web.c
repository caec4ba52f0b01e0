/* server/web.c — lookups over the embedded web files (see web.h). */
#include "server/web.h"

#include <string.h>

const sp_web_file *sp_web_find(const char *path) {
    if (!strcmp(path, "/")) path = "/index.html";
    for (const sp_web_file *f = sp_web_files; f->path; f++)
        if (!strcmp(f->path, path)) return f;
    return NULL;
}

const char *sp_web_content_type(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".svg")) return "image/svg+xml";
    if (!strcmp(dot, ".png")) return "image/png";
    if (!strcmp(dot, ".ico")) return "image/x-icon";
    if (!strcmp(dot, ".json") || !strcmp(dot, ".webmanifest")) return "application/json";
    return "application/octet-stream";
}
