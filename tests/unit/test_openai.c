/* tests/unit/test_openai.c — request parsing and validation (every field, every error with its
 * parameter name and status) and the exact JSON of responses, chunks, usage, models and errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai.h"

static bool parse(sp_oai_kind k, const char *body, sp_oai_req *q, sp_oai_error *e) {
    return sp_oai_parse(k, body, strlen(body), NULL, q, e);
}

static void expect_error(sp_oai_kind k, const char *body, const char *param, const char *phrase) {
    sp_oai_req q;
    sp_oai_error e;
    cr_expect(!parse(k, body, &q, &e), "accepted: %s", body);
    cr_expect_eq(e.status, 400, "%s", body);
    cr_expect_str_eq(e.param, param, "%s -> %s", body, e.message);
    cr_expect(strstr(e.message, phrase) != NULL, "'%s' not in '%s'", phrase, e.message);
}

Test(openai, chat_request_all_fields) {
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],"
        "\"max_tokens\":12,\"temperature\":0.5,\"top_p\":0.9,\"top_k\":7,\"min_p\":0.1,\"seed\":42,"
        "\"stop\":[\"x\",\"yz\"],\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"repeat_penalty\":1.1,"
        "\"logit_bias\":{\"13\":5,\"7\":-100},\"logprobs\":true,\"top_logprobs\":3,\"n\":1,\"user\":\"u\","
        "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"ignore_eos\":true,"
        "\"response_format\":{\"type\":\"text\"},\"tools\":[{\"type\":\"function\"}],\"extra\":1}";
    sp_oai_req q;
    sp_oai_error e;
    cr_assert(parse(SP_OAI_CHAT, body, &q, &e), "%s", e.message);
    cr_expect_str_eq(q.model, "m");
    cr_expect_eq(q.max_tokens, 12);
    cr_expect_float_eq(q.sampling.temperature, 0.5f, 1e-6);
    cr_expect_float_eq(q.sampling.top_p, 0.9f, 1e-6);
    cr_expect_eq(q.sampling.top_k, 7);
    cr_expect_float_eq(q.sampling.min_p, 0.1f, 1e-6);
    cr_expect(q.has_seed);
    cr_expect_eq(q.sampling.seed, 42);
    cr_expect_eq(q.n_stop, 2);
    cr_expect_str_eq(q.stop[1], "yz");
    cr_expect_float_eq(q.sampling.presence_penalty, 0.5f, 1e-6);
    cr_expect_float_eq(q.sampling.frequency_penalty, -0.5f, 1e-6);
    cr_expect_float_eq(q.sampling.repeat_penalty, 1.1f, 1e-6);
    cr_expect_eq(q.n_bias, 2);
    cr_expect_eq(q.sampling.n_bias, 2);
    cr_expect_eq(q.bias[0].token, 13);
    cr_expect_float_eq(q.bias[0].bias, 5.0f, 1e-6);
    cr_expect(isinf(q.bias[1].bias) && q.bias[1].bias < 0);
    cr_expect_eq(q.top_logprobs, 3);
    cr_expect(q.stream && q.include_usage && q.ignore_eos);
    cr_expect_str_eq(q.user, "u");
    cr_expect_eq(cJSON_GetArraySize(q.messages), 2);
    cJSON *m1 = cJSON_GetArrayItem(q.messages, 1);
    cr_expect_str_eq(cJSON_GetObjectItem(m1, "content")->valuestring, "ab");
    cr_expect_not_null(q.tools);
    sp_oai_req_free(&q);
}

Test(openai, defaults) {
    sp_oai_req q;
    sp_oai_error e;
    cr_assert(parse(SP_OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &q, &e));
    cr_expect_null(q.model);
    cr_expect_eq(q.max_tokens, -1);
    cr_expect_eq(q.top_logprobs, -1);
    cr_expect(!q.stream && !q.has_seed);
    cr_expect_eq(q.n, 1);
    cr_expect_float_eq(q.sampling.temperature, 0.8f, 1e-6);
    sp_oai_req_free(&q);
}

Test(openai, completion_prompts) {
    sp_oai_req q;
    sp_oai_error e;
    cr_assert(parse(SP_OAI_COMPLETION, "{\"prompt\":\"Once\",\"max_completion_tokens\":3,\"logprobs\":2}", &q, &e));
    cr_expect_str_eq(q.prompt, "Once");
    cr_expect_eq(q.max_tokens, 3);
    cr_expect_eq(q.top_logprobs, 2);
    sp_oai_req_free(&q);
    cr_assert(parse(SP_OAI_COMPLETION, "{\"prompt\":[1,403,407]}", &q, &e));
    cr_expect_null(q.prompt);
    cr_expect_eq(q.n_prompt_ids, 3);
    cr_expect_eq(q.prompt_ids[2], 407);
    sp_oai_req_free(&q);
    cr_assert(parse(SP_OAI_COMPLETION, "{\"prompt\":[\"one\"],\"stop\":\"\\n\"}", &q, &e));
    cr_expect_str_eq(q.prompt, "one");
    cr_expect_eq(q.n_stop, 1);
    cr_expect_str_eq(q.stop[0], "\n");
    sp_oai_req_free(&q);
}

Test(openai, malformed_bodies) {
    expect_error(SP_OAI_CHAT, "{\"messages\":[", "", "not valid JSON");
    expect_error(SP_OAI_CHAT, "[1,2]", "", "must be a JSON object");
    expect_error(SP_OAI_CHAT, "{\"messages\":\"\xff\"}", "", "not valid UTF-8");
    expect_error(SP_OAI_CHAT, "{\"messages\":\"\xed\xa0\x80\"}", "", "not valid UTF-8"); /* surrogate */
    char deep[400] = "{\"a\":";
    for (int i = 0; i < 100; i++) strcat(deep, "[");
    expect_error(SP_OAI_CHAT, deep, "", "nests deeper");
}

Test(openai, wrong_types_and_ranges_name_the_parameter) {
    const char *u = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[512];
#define E(extra, param, phrase) (snprintf(b, sizeof b, "{%s,%s}", u, extra), expect_error(SP_OAI_CHAT, b, param, phrase))
    E("\"temperature\":\"hot\"", "temperature", "must be a number");
    E("\"temperature\":-1", "temperature", "between 0 and 100");
    E("\"top_p\":1.5", "top_p", "between 0 and 1");
    E("\"max_tokens\":0", "max_tokens", "between 1 and");
    E("\"max_tokens\":1e300", "max_tokens", "between 1 and");
    E("\"max_tokens\":2.5", "max_tokens", "must be an integer");
    E("\"top_k\":-3", "top_k", "between 0 and");
    E("\"seed\":1e30", "seed", "between");
    E("\"stream\":1", "stream", "must be a boolean");
    E("\"stop\":5", "stop", "string or an array");
    E("\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]", "stop", "at most 16");
    E("\"logit_bias\":{\"x\":1}", "logit_bias", "token ids");
    E("\"logit_bias\":{\"5\":101}", "logit_bias", "between -100 and 100");
    E("\"top_logprobs\":2", "top_logprobs", "requires 'logprobs'");
    E("\"logprobs\":true,\"top_logprobs\":21", "top_logprobs", "between 0 and 20");
    E("\"n\":5", "n", "Expected a value <= 4, but got 5 instead");
    E("\"response_format\":{\"type\":\"json_object\"}", "response_format", "not supported yet");
    E("\"model\":7", "model", "must be a string");
    E("\"stream_options\":{\"include_usage\":\"yes\"}", "stream_options", "must be a boolean");
#undef E
    expect_error(SP_OAI_CHAT, "{}", "messages", "is required");
    expect_error(SP_OAI_CHAT, "{\"messages\":[]}", "messages", "non-empty array");
    expect_error(SP_OAI_CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages", "role must be");
    expect_error(SP_OAI_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "messages", "content is required");
    expect_error(SP_OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages",
                 "'image_url' are not supported");
    expect_error(SP_OAI_COMPLETION, "{}", "prompt", "is required");
    expect_error(SP_OAI_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", "prompt", "several prompts");
    expect_error(SP_OAI_COMPLETION, "{\"prompt\":[1,-2]}", "prompt", "non-negative integers");
}

Test(openai, error_json_shape) {
    sp_oai_error e;
    sp_oai_set_error(&e, 404, "invalid_request_error", "model_not_found", "model", "The model 'x' does not exist");
    char *s = sp_oai_error_json(&e);
    cr_expect_str_eq(s, "{\"error\":{\"message\":\"The model 'x' does not exist\",\"type\":\"invalid_request_error\","
                        "\"param\":\"model\",\"code\":\"model_not_found\"}}");
    free(s);
    sp_oai_set_error(&e, 400, NULL, NULL, NULL, "bad");
    s = sp_oai_error_json(&e);
    cr_expect_str_eq(s, "{\"error\":{\"message\":\"bad\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}");
    free(s);
}

Test(openai, response_shapes) {
    sp_oai_meta m = {SP_OAI_CHAT, "chatcmpl-1", 1700000000, "stories"};
    sp_oai_usage u = {5, 3, 4};
    char *s = sp_oai_response(&m, "Hi!", 3, "stop", NULL, 0, &u);
    cr_expect_str_eq(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"stories\","
                        "\"system_fingerprint\":\"sparrow\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                        "\"content\":\"Hi!\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                        "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8,"
                        "\"prompt_tokens_details\":{\"cached_tokens\":4}}}");
    free(s);
    s = sp_oai_chunk(&m, true, "", 0, NULL, NULL, 0);
    cr_expect_str_eq(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
                        "\"stories\",\"system_fingerprint\":\"sparrow\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                        "\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}");
    free(s);
    s = sp_oai_chunk(&m, false, NULL, 0, "length", NULL, 0);
    cr_expect(strstr(s, "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"") != NULL, "%s", s);
    free(s);
    s = sp_oai_usage_chunk(&m, &u);
    cr_expect(strstr(s, "\"choices\":[],\"usage\":{\"prompt_tokens\":5,") != NULL, "%s", s);
    free(s);
    sp_oai_meta c = {SP_OAI_COMPLETION, "cmpl-1", 1, "stories"};
    s = sp_oai_response(&c, "x", 1, "length", NULL, 0, &u);
    cr_expect(strstr(s, "\"object\":\"text_completion\"") && strstr(s, "\"choices\":[{\"index\":0,\"text\":\"x\",\"logprobs\":null,\"finish_reason\":\"length\"}]"), "%s", s);
    free(s);
}

Test(openai, invalid_utf8_text_is_replaced_and_logprobs_shape) {
    sp_oai_meta m = {SP_OAI_CHAT, "c", 1, "m"};
    sp_oai_logprob lp = {.token = "\xE2\x80", .token_len = 2, .logprob = -0.5f, .n_top = 1,
                         .top_token = {"a"}, .top_len = {1}, .top_logprob = {-0.25f}};
    char *s = sp_oai_chunk(&m, false, "ok\xff", 3, NULL, &lp, 1);
    cr_expect(strstr(s, "\"content\":\"ok\xEF\xBF\xBD\"") != NULL, "%s", s);
    cr_expect(strstr(s, "\"logprobs\":{\"content\":[{\"token\":\"\xEF\xBF\xBD\xEF\xBF\xBD\",\"logprob\":-0.5,"
                        "\"bytes\":[226,128],\"top_logprobs\":[{\"token\":\"a\",\"logprob\":-0.25,\"bytes\":[97]}]}],"
                        "\"refusal\":null}") != NULL, "%s", s);
    free(s);
    sp_oai_meta c = {SP_OAI_COMPLETION, "c", 1, "m"};
    sp_oai_logprob l2[2] = {{.token = "ab", .token_len = 2, .logprob = -1, .n_top = 0},
                            {.token = "c", .token_len = 1, .logprob = -2, .n_top = 0}};
    s = sp_oai_chunk(&c, false, "abc", 3, NULL, l2, 2);
    cr_expect(strstr(s, "\"logprobs\":{\"tokens\":[\"ab\",\"c\"],\"token_logprobs\":[-1,-2],\"top_logprobs\":[{},{}],"
                        "\"text_offset\":[0,2]}") != NULL, "%s", s);
    free(s);
}

Test(openai, models_list) {
    const char *names[] = {"a", "b"};
    char *s = sp_oai_models(names, 2, 5);
    cr_expect_str_eq(s, "{\"object\":\"list\",\"data\":[{\"id\":\"a\",\"object\":\"model\",\"created\":5,\"owned_by\":"
                        "\"sparrow\"},{\"id\":\"b\",\"object\":\"model\",\"created\":5,\"owned_by\":\"sparrow\"}]}");
    free(s);
}

/* n: 1..max_n (default 4), OpenAI's wording and codes when out of range, the limit configurable. */
Test(openai, n_choices) {
    const char *u = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[256];
    sp_oai_req q;
    sp_oai_error e;
    cr_expect_eq(sp_oai_default_limits().max_n, 4);
    for (int n = 1; n <= 4; n++) {
        snprintf(b, sizeof b, "{%s,\"n\":%d}", u, n);
        cr_assert(parse(SP_OAI_CHAT, b, &q, &e), "%s: %s", b, e.message);
        cr_expect_eq(q.n, n);
        sp_oai_req_free(&q);
    }
    snprintf(b, sizeof b, "{%s,\"n\":null}", u); /* null: the default */
    cr_assert(parse(SP_OAI_CHAT, b, &q, &e));
    cr_expect_eq(q.n, 1);
    sp_oai_req_free(&q);
    cr_assert(parse(SP_OAI_COMPLETION, "{\"prompt\":\"x\",\"n\":3,\"stream\":true}", &q, &e));
    cr_expect_eq(q.n, 3);
    sp_oai_req_free(&q);

    struct { const char *v, *code, *phrase; } bad[] = {
        {"5", "integer_above_max_value", "Invalid 'n': integer above maximum value. Expected a value <= 4, but got 5 instead."},
        {"129", "integer_above_max_value", "Expected a value <= 4, but got 129 instead."},
        {"1e300", "integer_above_max_value", "Expected a value <= 4"},
        {"0", "integer_below_min_value", "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead."},
        {"-2", "integer_below_min_value", "but got -2 instead."},
        {"2.5", NULL, "'n' must be an integer"},
        {"\"2\"", NULL, "'n' must be an integer"},
        {"true", NULL, "'n' must be an integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int k = 0; k < 2; k++) {
            if (k == 0) snprintf(b, sizeof b, "{%s,\"n\":%s}", u, bad[i].v);
            else snprintf(b, sizeof b, "{\"prompt\":\"x\",\"n\":%s}", bad[i].v);
            cr_expect(!parse(k == 0 ? SP_OAI_CHAT : SP_OAI_COMPLETION, b, &q, &e), "accepted: %s", b);
            cr_expect_eq(e.status, 400, "%s", b);
            cr_expect_str_eq(e.type, "invalid_request_error", "%s", b);
            cr_expect_str_eq(e.param, "n", "%s", b);
            if (bad[i].code) cr_expect_str_eq(e.code, bad[i].code, "%s", b);
            else cr_expect_null(e.code, "%s", b);
            cr_expect(strstr(e.message, bad[i].phrase) != NULL, "'%s' not in '%s'", bad[i].phrase, e.message);
        }
    }
    /* the limit is configurable (sparrow serve --max-n), and 1 means no choices beyond the first */
    sp_oai_limits lim = sp_oai_default_limits();
    lim.max_n = 8;
    const char *b8 = "{\"prompt\":\"x\",\"n\":8}";
    cr_assert(sp_oai_parse(SP_OAI_COMPLETION, b8, strlen(b8), &lim, &q, &e), "%s", e.message);
    cr_expect_eq(q.n, 8);
    sp_oai_req_free(&q);
    const char *b9 = "{\"prompt\":\"x\",\"n\":9}";
    cr_expect(!sp_oai_parse(SP_OAI_COMPLETION, b9, strlen(b9), &lim, &q, &e));
    cr_expect(strstr(e.message, "Expected a value <= 8, but got 9") != NULL, "%s", e.message);
    lim.max_n = 1;
    const char *b2 = "{\"prompt\":\"x\",\"n\":2}";
    cr_expect(!sp_oai_parse(SP_OAI_COMPLETION, b2, strlen(b2), &lim, &q, &e));
    cr_expect_str_eq(e.code, "integer_above_max_value");
    const char *b1 = "{\"prompt\":\"x\",\"n\":1}";
    cr_assert(sp_oai_parse(SP_OAI_COMPLETION, b1, strlen(b1), &lim, &q, &e));
    sp_oai_req_free(&q);
}

/* The error of a full queue: OpenAI's rate-limit shape (type "requests", code "rate_limit_exceeded"). */
Test(openai, rate_limit_error_shape) {
    sp_oai_error e;
    sp_oai_set_error(&e, 429, "requests", "rate_limit_exceeded", NULL, "Rate limit reached");
    char *s = sp_oai_error_json(&e);
    cr_expect_str_eq(s, "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"param\":null,"
                        "\"code\":\"rate_limit_exceeded\"}}");
    free(s);
}

/* n choices: index 0..n-1 in order, each with its own text, finish reason and logprobs; one usage;
 * one choice gives exactly sp_oai_response's bytes. Chunks carry their choice index. */
Test(openai, n_choice_shapes) {
    sp_oai_meta m = {SP_OAI_CHAT, "chatcmpl-1", 1700000000, "stories"};
    sp_oai_usage u = {5, 7, 4};
    sp_oai_logprob lp = {.token = "b", .token_len = 1, .logprob = -0.5f};
    sp_oai_choice cs[3] = {{"a", 1, "stop", NULL, 0}, {"b", 1, "length", &lp, 1}, {"", 0, "stop", NULL, 0}};
    char *s = sp_oai_response_n(&m, cs, 3, &u);
    cr_expect_str_eq(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"stories\","
                        "\"system_fingerprint\":\"sparrow\",\"choices\":["
                        "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"a\",\"refusal\":null},"
                        "\"logprobs\":null,\"finish_reason\":\"stop\"},"
                        "{\"index\":1,\"message\":{\"role\":\"assistant\",\"content\":\"b\",\"refusal\":null},"
                        "\"logprobs\":{\"content\":[{\"token\":\"b\",\"logprob\":-0.5,\"bytes\":[98],\"top_logprobs\":[]}],"
                        "\"refusal\":null},\"finish_reason\":\"length\"},"
                        "{\"index\":2,\"message\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
                        "\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                        "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12,"
                        "\"prompt_tokens_details\":{\"cached_tokens\":4}}}");
    free(s);
    char *one = sp_oai_response_n(&m, cs, 1, &u), *single = sp_oai_response(&m, "a", 1, "stop", NULL, 0, &u);
    cr_expect_str_eq(one, single);
    free(one);
    free(single);
    sp_oai_meta c = {SP_OAI_COMPLETION, "cmpl-1", 1, "stories"};
    s = sp_oai_response_n(&c, cs, 2, &u);
    cr_expect(strstr(s, "\"choices\":[{\"index\":0,\"text\":\"a\",\"logprobs\":null,\"finish_reason\":\"stop\"},"
                        "{\"index\":1,\"text\":\"b\",\"logprobs\":{\"tokens\":[\"b\"],\"token_logprobs\":[-0.5],"
                        "\"top_logprobs\":[{}],\"text_offset\":[0]},\"finish_reason\":\"length\"}]") != NULL, "%s", s);
    free(s);
    s = sp_oai_chunk_at(&m, 2, true, "", 0, NULL, NULL, 0);
    cr_expect(strstr(s, "\"choices\":[{\"index\":2,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                        "\"finish_reason\":null}]}") != NULL, "%s", s);
    free(s);
    s = sp_oai_chunk_at(&c, 3, false, NULL, 0, "length", NULL, 0);
    cr_expect(strstr(s, "\"choices\":[{\"index\":3,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"length\"}]}") != NULL,
              "%s", s);
    free(s);
    char *a0 = sp_oai_chunk_at(&m, 0, false, "x", 1, NULL, NULL, 0), *b0 = sp_oai_chunk(&m, false, "x", 1, NULL, NULL, 0);
    cr_expect_str_eq(a0, b0);
    free(a0);
    free(b0);
}
