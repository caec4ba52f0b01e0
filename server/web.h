/* server/web.h — the web chat page's static files, embedded in the binary at build time
 * (cmake/embed.cmake turns server/web/ into a table), served with content types, caching headers
 * and a strict Content-Security-Policy. */
#ifndef SP_SERVER_WEB_H
#define SP_SERVER_WEB_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *path;          /* "/index.html", "/app.js", ... */
    const unsigned char *data;
    size_t len;
} sp_web_file;

extern const sp_web_file sp_web_files[]; /* ends with a NULL path */

/* The file for a request path ("/" means "/index.html"); NULL if none. */
const sp_web_file *sp_web_find(const char *path);
/* Content type from the file name's extension. */
const char *sp_web_content_type(const char *path);

#endif
