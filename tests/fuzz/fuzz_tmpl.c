/* tests/fuzz/fuzz_tmpl.c — libFuzzer target for the chat-template engine (api/tmpl): the input is
 * template source, optionally followed by a NUL byte and a JSON context (a fixed conversation
 * when absent or not a JSON object). Parses and renders with tight limits; errors are expected
 * and ignored, crashes, hangs, leaks and sanitizer reports are findings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/tmpl.h"

static const char DEFAULT_CTX[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \"hi \\u00e9\"},"
    " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\":"
    " {\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": [true, 2.5, \"x\"]}}}]},"
    " {\"role\": \"tool\", \"content\": \"ok\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t src_len = nul ? (size_t)(nul - data) : size;
    cJSON *ctx = NULL;
    if (nul) ctx = cJSON_ParseWithLength((const char *)nul + 1, size - src_len - 1);
    if (!ctx || !cJSON_IsObject(ctx)) {
        cJSON_Delete(ctx);
        ctx = cJSON_Parse(DEFAULT_CTX);
    }
    char err[256];
    sp_tmpl *t = sp_tmpl_parse(src, src_len, err, sizeof err);
    if (t) {
        sp_tmpl_opts o = {0};
        o.max_output = 1 << 20;
        o.max_memory = 64 << 20;
        o.max_steps = 200000;
        o.fixed_date = "2026-01-15";
        char *out = NULL;
        size_t len = 0;
        sp_tmpl_status st = sp_tmpl_render(t, ctx, &o, &out, &len, err, sizeof err);
        if (st == SP_TMPL_OK && (!out || strlen(out) > len)) abort();
        if (st != SP_TMPL_OK && out) abort();
        free(out);
        sp_tmpl_free(t);
    }
    cJSON_Delete(ctx);
    return 0;
}
