/* tests/unit/test_ollama.c — Ollama request translation (options, names, raw vs templated
 * generate, load-only) and the exact NDJSON objects and listings. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "api/ollama.h"

static bool parse(bool chat, const char *body, sp_ollama_req *o, sp_oai_req *q, sp_oai_error *e) {
    return sp_ollama_parse(chat, body, strlen(body), NULL, o, q, e);
}

Test(ollama, chat_options_map_to_sampling) {
    sp_ollama_req o;
    sp_oai_req q;
    sp_oai_error e;
    cr_assert(parse(true, "{\"model\":\"m:latest\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                          "\"options\":{\"temperature\":0.25,\"top_k\":5,\"top_p\":0.5,\"min_p\":0.1,\"seed\":9,"
                          "\"num_predict\":7,\"stop\":[\"x\"],\"repeat_penalty\":1.2,\"num_ctx\":4096}}", &o, &q, &e),
              "%s", e.message);
    cr_expect(o.chat && o.stream && !o.raw && !o.load_only);
    cr_expect_str_eq(q.model, "m");
    cr_expect_eq(q.kind, SP_OAI_CHAT);
    cr_expect_float_eq(q.sampling.temperature, 0.25f, 1e-6);
    cr_expect_eq(q.sampling.top_k, 5);
    cr_expect_float_eq(q.sampling.top_p, 0.5f, 1e-6);
    cr_expect_eq(q.sampling.seed, 9);
    cr_expect(q.has_seed);
    cr_expect_eq(q.max_tokens, 7);
    cr_expect_eq(q.n_stop, 1);
    cr_expect_float_eq(q.sampling.repeat_penalty, 1.2f, 1e-6);
    sp_oai_req_free(&q);
}

Test(ollama, generate_raw_templated_and_load) {
    sp_ollama_req o;
    sp_oai_req q;
    sp_oai_error e;
    cr_assert(parse(false, "{\"model\":\"m\",\"prompt\":\"Once\",\"raw\":true,\"stream\":false,\"options\":{\"num_predict\":-1}}", &o, &q, &e));
    cr_expect(o.raw && !o.stream);
    cr_expect_eq(q.kind, SP_OAI_COMPLETION);
    cr_expect_str_eq(q.prompt, "Once");
    cr_expect_eq(q.max_tokens, -1);
    sp_oai_req_free(&q);
    cr_assert(parse(false, "{\"model\":\"m\",\"prompt\":\"Once\",\"system\":\"Be kind\"}", &o, &q, &e));
    cr_expect_eq(q.kind, SP_OAI_CHAT);
    cr_expect_eq(cJSON_GetArraySize(q.messages), 2);
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(q.messages, 0), "role")->valuestring, "system");
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(q.messages, 1), "content")->valuestring, "Once");
    sp_oai_req_free(&q);
    cr_assert(parse(false, "{\"model\":\"m\"}", &o, &q, &e));
    cr_expect(o.load_only);
    sp_oai_req_free(&q);
}

Test(ollama, refusals) {
    sp_ollama_req o;
    sp_oai_req q;
    sp_oai_error e;
    cr_expect(!parse(true, "{\"messages\":[]}", &o, &q, &e));
    cr_expect_str_eq(e.param, "model");
    cr_expect(!parse(false, "{\"model\":\"m\",\"prompt\":\"x\",\"format\":\"json\"}", &o, &q, &e));
    cr_expect(strstr(e.message, "not supported") != NULL);
    cr_expect(!parse(true, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":[\"AAA\"]}]}", &o, &q, &e));
    cr_expect(strstr(e.message, "images") != NULL);
    cr_expect(!parse(false, "{\"model\":\"m\",\"prompt\":\"x\",\"stream\":\"yes\"}", &o, &q, &e));
    cr_expect(!parse(false, "[1]", &o, &q, &e));
    cr_expect_eq(e.status, 400);
    char *s = sp_ollama_error_json("model 'x' not found");
    cr_expect_str_eq(s, "{\"error\":\"model 'x' not found\"}");
    free(s);
}

Test(ollama, chunks_and_stats) {
    char *s = sp_ollama_chunk(true, "m:latest", "Hi", 2, NULL);
    cr_expect(strstr(s, "\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}") != NULL, "%s", s);
    free(s);
    sp_ollama_stats st = {"stop", 5000, 0, 1000, 3000, 4, 2};
    s = sp_ollama_chunk(false, "m:latest", "", 0, &st);
    cr_expect(strstr(s, "\"response\":\"\",\"done_reason\":\"stop\",\"done\":true,\"total_duration\":5000,\"load_duration\":0,"
                        "\"prompt_eval_count\":4,\"prompt_eval_duration\":1000,\"eval_count\":2,\"eval_duration\":3000}") != NULL, "%s", s);
    free(s);
    char t[48];
    sp_ollama_time(1700000000123456789LL, t, sizeof t);
    cr_expect_str_eq(t, "2023-11-14T22:13:20.123456789Z");
}

Test(ollama, listings) {
    sp_ollama_model m = {"m:latest", "qwen2", "Q4_0", "494.0M", 350, "ab", 0, 4096, "{{x}}"};
    char *s = sp_ollama_tags(&m, 1);
    cr_expect_str_eq(s, "{\"models\":[{\"name\":\"m:latest\",\"model\":\"m:latest\",\"modified_at\":\"1970-01-01T00:00:00.000000000Z\","
                        "\"size\":350,\"digest\":\"ab\",\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"qwen2\","
                        "\"families\":[\"qwen2\"],\"parameter_size\":\"494.0M\",\"quantization_level\":\"Q4_0\"}}]}");
    free(s);
    s = sp_ollama_show(&m);
    cr_expect(strstr(s, "\"template\":\"{{x}}\"") && strstr(s, "\"qwen2.context_length\":4096"), "%s", s);
    free(s);
}
