/* api/ollama.c — see ollama.h. The request translation builds an OpenAI-shaped JSON object and
 * hands it to sp_oai_parse, so validation and limits are the same for both APIs. */
#include "api/ollama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPARROW_VERSION "0.1.0"

static bool fail(sp_oai_error *e, const char *param, const char *msg) {
    sp_oai_set_error(e, 400, "invalid_request_error", NULL, param, "%s", msg);
    return false;
}

/* options.NAME -> OpenAI field */
static const struct { const char *ollama, *openai; } option_map[] = {
    {"temperature", "temperature"}, {"top_p", "top_p"}, {"top_k", "top_k"}, {"min_p", "min_p"},
    {"seed", "seed"}, {"stop", "stop"}, {"repeat_penalty", "repeat_penalty"},
    {"presence_penalty", "presence_penalty"}, {"frequency_penalty", "frequency_penalty"},
};

static bool map_options(const cJSON *opts, cJSON *out, sp_oai_error *e) {
    if (!opts || cJSON_IsNull(opts)) return true;
    if (!cJSON_IsObject(opts)) return fail(e, "options", "'options' must be an object");
    for (size_t i = 0; i < sizeof option_map / sizeof option_map[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(opts, option_map[i].ollama);
        if (v && !cJSON_IsNull(v)) cJSON_AddItemToObject(out, option_map[i].openai, cJSON_Duplicate(v, true));
    }
    const cJSON *np = cJSON_GetObjectItemCaseSensitive(opts, "num_predict");
    if (np && !cJSON_IsNumber(np)) return fail(e, "options", "'options.num_predict' must be a number");
    if (np && np->valuedouble > 0) cJSON_AddNumberToObject(out, "max_tokens", np->valuedouble);
    /* num_ctx, num_thread, keep_alive and the like are server settings here: accepted, not applied */
    return true;
}

static char *model_name(const cJSON *m) {
    char *s = strdup(m->valuestring);
    size_t n = strlen(s);
    if (n > 7 && !strcmp(s + n - 7, ":latest")) s[n - 7] = 0;
    return s;
}

/* The messages of a templated /api/generate: optional system, then the prompt as the user's turn. */
static cJSON *generate_messages(const cJSON *system, const cJSON *prompt) {
    cJSON *msgs = cJSON_CreateArray();
    if (cJSON_IsString(system) && system->valuestring[0]) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "role", "system");
        cJSON_AddStringToObject(s, "content", system->valuestring);
        cJSON_AddItemToArray(msgs, s);
    }
    cJSON *u = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", prompt->valuestring);
    cJSON_AddItemToArray(msgs, u);
    return msgs;
}

/* Chat messages: Ollama's {role, content, images?, tool_calls?}; images are refused. */
static bool chat_messages(const cJSON *in, cJSON *out, sp_oai_error *e) {
    if (!cJSON_IsArray(in)) return fail(e, "messages", "'messages' must be an array");
    const cJSON *m;
    cJSON_ArrayForEach(m, in) {
        const cJSON *images = cJSON_GetObjectItemCaseSensitive(m, "images");
        if (cJSON_IsArray(images) && cJSON_GetArraySize(images) > 0)
            return fail(e, "messages", "images are not supported by this model server");
    }
    cJSON_AddItemToObject(out, "messages", cJSON_Duplicate(in, true));
    return true;
}

static bool translate(bool chat, const cJSON *in, sp_ollama_req *o, cJSON *out, sp_oai_error *e) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(in, "model");
    if (!cJSON_IsString(model) || !model->valuestring[0]) return fail(e, "model", "'model' is required");
    char *name = model_name(model);
    cJSON_AddStringToObject(out, "model", name);
    free(name);
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(in, "stream");
    if (stream && !cJSON_IsBool(stream) && !cJSON_IsNull(stream)) return fail(e, "stream", "'stream' must be a boolean");
    o->stream = !cJSON_IsFalse(stream);
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(in, "format");
    if (format && !cJSON_IsNull(format) && !(cJSON_IsString(format) && !format->valuestring[0]))
        return fail(e, "format", "'format' (structured output) is not supported yet");
    if (!map_options(cJSON_GetObjectItemCaseSensitive(in, "options"), out, e)) return false;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(in, "tools");
    if (cJSON_IsArray(tools)) cJSON_AddItemToObject(out, "tools", cJSON_Duplicate(tools, true));
    const cJSON *think = cJSON_GetObjectItemCaseSensitive(in, "think");
    if (cJSON_IsBool(think)) {
        cJSON *kw = cJSON_AddObjectToObject(out, "chat_template_kwargs");
        cJSON_AddBoolToObject(kw, "enable_thinking", cJSON_IsTrue(think));
    }
    if (chat) return chat_messages(cJSON_GetObjectItemCaseSensitive(in, "messages"), out, e);

    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(in, "prompt");
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(in, "raw");
    if (prompt && !cJSON_IsString(prompt) && !cJSON_IsNull(prompt)) return fail(e, "prompt", "'prompt' must be a string");
    if (cJSON_GetObjectItemCaseSensitive(in, "images")) return fail(e, "images", "images are not supported by this model server");
    o->raw = cJSON_IsTrue(raw);
    if (!cJSON_IsString(prompt) || !prompt->valuestring[0]) {
        o->load_only = true; /* Ollama's way to preload a model */
        cJSON_AddStringToObject(out, "prompt", "");
        return true;
    }
    if (o->raw) cJSON_AddStringToObject(out, "prompt", prompt->valuestring);
    else cJSON_AddItemToObject(out, "messages", generate_messages(cJSON_GetObjectItemCaseSensitive(in, "system"), prompt));
    return true;
}

bool sp_ollama_parse(bool chat, const char *body, size_t len, const sp_oai_limits *lim, sp_ollama_req *o,
                     sp_oai_req *out, sp_oai_error *err) {
    memset(o, 0, sizeof *o);
    o->chat = chat;
    cJSON *in = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        /* let the OpenAI parser name the exact problem (UTF-8, nesting, syntax) */
        if (!sp_oai_parse(SP_OAI_CHAT, body, len, lim, out, err)) return false;
        sp_oai_req_free(out);
        return fail(err, NULL, "the request body must be a JSON object");
    }
    cJSON *oai = cJSON_CreateObject();
    bool ok = translate(chat, in, o, oai, err);
    cJSON_Delete(in);
    if (ok && o->load_only) {
        memset(out, 0, sizeof *out);
        cJSON *m = cJSON_GetObjectItemCaseSensitive(oai, "model");
        out->model = strdup(m->valuestring);
        out->kind = SP_OAI_COMPLETION;
    } else if (ok) {
        char *s = cJSON_PrintUnformatted(oai);
        bool as_chat = chat || !o->raw;
        ok = sp_oai_parse(as_chat ? SP_OAI_CHAT : SP_OAI_COMPLETION, s, strlen(s), lim, out, err);
        free(s);
    }
    cJSON_Delete(oai);
    return ok;
}

char *sp_ollama_error_json(const char *message) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", message);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

void sp_ollama_time(int64_t unix_ns, char *buf, size_t cap) {
    time_t secs = (time_t)(unix_ns / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%09lldZ", date, (long long)(unix_ns % 1000000000));
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

char *sp_ollama_chunk(bool chat, const char *model, const char *text, size_t len, const sp_ollama_stats *final) {
    char t[48];
    sp_ollama_time(now_ns(), t, sizeof t);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "created_at", t);
    if (chat) {
        cJSON *m = cJSON_AddObjectToObject(o, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddItemToObject(m, "content", sp_oai_string(text ? text : "", text ? len : 0));
    } else {
        cJSON_AddItemToObject(o, "response", sp_oai_string(text ? text : "", text ? len : 0));
    }
    if (final) {
        cJSON_AddStringToObject(o, "done_reason", final->done_reason);
        cJSON_AddBoolToObject(o, "done", true);
        cJSON_AddNumberToObject(o, "total_duration", (double)final->total_ns);
        cJSON_AddNumberToObject(o, "load_duration", (double)final->load_ns);
        cJSON_AddNumberToObject(o, "prompt_eval_count", final->prompt_eval_count);
        cJSON_AddNumberToObject(o, "prompt_eval_duration", (double)final->prompt_eval_ns);
        cJSON_AddNumberToObject(o, "eval_count", final->eval_count);
        cJSON_AddNumberToObject(o, "eval_duration", (double)final->eval_ns);
    } else {
        cJSON_AddBoolToObject(o, "done", false);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static cJSON *details(const sp_ollama_model *m) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "parent_model", "");
    cJSON_AddStringToObject(d, "format", "gguf");
    cJSON_AddStringToObject(d, "family", m->family);
    cJSON *fams = cJSON_AddArrayToObject(d, "families");
    cJSON_AddItemToArray(fams, cJSON_CreateString(m->family));
    cJSON_AddStringToObject(d, "parameter_size", m->param_size);
    cJSON_AddStringToObject(d, "quantization_level", m->quant);
    return d;
}

static cJSON *model_entry(const sp_ollama_model *m) {
    char t[48];
    sp_ollama_time(m->modified * 1000000000, t, sizeof t);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", m->name);
    cJSON_AddStringToObject(e, "model", m->name);
    cJSON_AddStringToObject(e, "modified_at", t);
    cJSON_AddNumberToObject(e, "size", (double)m->size);
    cJSON_AddStringToObject(e, "digest", m->digest);
    cJSON_AddItemToObject(e, "details", details(m));
    return e;
}

static char *models_list(const sp_ollama_model *m, int n, int64_t expires, bool ps) {
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "models");
    for (int i = 0; i < n; i++) {
        cJSON *e = model_entry(&m[i]);
        if (ps) {
            char t[48];
            sp_ollama_time(expires * 1000000000, t, sizeof t);
            cJSON_DeleteItemFromObject(e, "modified_at");
            cJSON_AddStringToObject(e, "expires_at", t);
            cJSON_AddNumberToObject(e, "size_vram", 0);
        }
        cJSON_AddItemToArray(arr, e);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

char *sp_ollama_tags(const sp_ollama_model *m, int n) { return models_list(m, n, 0, false); }
char *sp_ollama_ps(const sp_ollama_model *m, int n, int64_t expires) { return models_list(m, n, expires, true); }

char *sp_ollama_show(const sp_ollama_model *m) {
    char t[48], key[96];
    sp_ollama_time(m->modified * 1000000000, t, sizeof t);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "license", "");
    cJSON_AddStringToObject(o, "modelfile", "");
    cJSON_AddStringToObject(o, "parameters", "");
    cJSON_AddStringToObject(o, "template", m->template_src ? m->template_src : "");
    cJSON_AddItemToObject(o, "details", details(m));
    cJSON *info = cJSON_AddObjectToObject(o, "model_info");
    cJSON_AddStringToObject(info, "general.architecture", m->family);
    snprintf(key, sizeof key, "%s.context_length", m->family);
    cJSON_AddNumberToObject(info, key, m->context_length);
    cJSON *caps = cJSON_AddArrayToObject(o, "capabilities");
    cJSON_AddItemToArray(caps, cJSON_CreateString("completion"));
    cJSON_AddStringToObject(o, "modified_at", t);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

char *sp_ollama_version(void) { return strdup("{\"version\":\"" SPARROW_VERSION "\"}"); }
