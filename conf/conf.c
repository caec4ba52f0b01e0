/* conf/conf.c — see conf.h. */
#include "conf/conf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool mkdir_p(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST) return false;
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}

bool sp_conf_cache_dir(char *buf, size_t cap) {
    const char *e;
    int n;
    if ((e = getenv("SPARROW_CACHE_DIR")) && *e) n = snprintf(buf, cap, "%s", e);
    else if ((e = getenv("XDG_CACHE_HOME")) && *e) n = snprintf(buf, cap, "%s/sparrow", e);
    else if ((e = getenv("HOME")) && *e) n = snprintf(buf, cap, "%s/.cache/sparrow", e);
    else n = snprintf(buf, cap, "/tmp/sparrow");
    if (n < 0 || (size_t)n >= cap) return false;
    return mkdir_p(buf);
}

bool sp_conf_mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return false;
    return mkdir_p(buf);
}

bool sp_conf_models_dir(char *buf, size_t cap) {
    const char *e;
    int n;
    if ((e = getenv("SPARROW_MODELS_DIR")) && *e) n = snprintf(buf, cap, "%s", e);
    else if ((e = getenv("XDG_DATA_HOME")) && *e) n = snprintf(buf, cap, "%s/sparrow/models", e);
    else if ((e = getenv("HOME")) && *e) n = snprintf(buf, cap, "%s/.local/share/sparrow/models", e);
    else n = snprintf(buf, cap, "/tmp/sparrow/models");
    if (n < 0 || (size_t)n >= cap) return false;
    return sp_conf_mkdir_p(buf);
}

bool sp_conf_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool sp_conf_parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

bool sp_conf_parse_size(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return false;
    int shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    case 'b': case 'B': end++; break; /* "1024B" */
    case 0: break;
    default: return false;
    }
    if (shift) {
        end++;
        if (!strcmp(end, "iB") || !strcmp(end, "ib") || !strcmp(end, "B") || !strcmp(end, "b")) end += strlen(end);
    }
    if (*end) return false;
    if (shift && v > (UINT64_MAX >> shift)) return false;
    v <<= shift;
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool sp_conf_parse_f32(const char *s, float lo, float hi, float *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || isnan(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

#include <cjson/cJSON.h>

static bool each_value(const char *key, const cJSON *v, sp_conf_fn fn, void *ud, char *err, size_t errlen) {
    char num[64];
    if (cJSON_IsString(v)) return fn(key, v->valuestring, ud);
    if (cJSON_IsBool(v)) return fn(key, cJSON_IsTrue(v) ? "true" : "false", ud);
    if (cJSON_IsNumber(v)) {
        if (v->valuedouble == (double)(long long)v->valuedouble) snprintf(num, sizeof num, "%lld", (long long)v->valuedouble);
        else snprintf(num, sizeof num, "%.17g", v->valuedouble);
        return fn(key, num, ud);
    }
    if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsString(e)) {
                snprintf(err, errlen, "config key '%s': arrays may hold only strings", key);
                return false;
            }
            if (!fn(key, e->valuestring, ud)) return false;
        }
        return true;
    }
    snprintf(err, errlen, "config key '%s': unsupported value type", key);
    return false;
}

bool sp_conf_file_each(const char *path, sp_conf_fn fn, void *ud, char *err, size_t errlen) {
    err[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
        return false;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (1u << 24)) { fclose(f); free(buf); snprintf(err, errlen, "config file %s is too large", path); return false; }
            buf = realloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    fclose(f);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    if (!cJSON_IsObject(root)) {
        size_t at = end && root == NULL ? (size_t)(end - buf) : 0;
        snprintf(err, errlen, "config file %s: not a JSON object (error near byte %zu)", path, at);
        cJSON_Delete(root);
        free(buf);
        return false;
    }
    bool ok = true;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, root) {
        if (!(ok = each_value(kv->string, kv, fn, ud, err, errlen))) break;
    }
    cJSON_Delete(root);
    free(buf);
    return ok;
}
