/* tests/fuzz/fuzz_request.c — libFuzzer target for the request-parsing layer: a raw HTTP body
 * goes through sp_oai_parse as a chat and as a completion request, and through sp_ollama_parse as
 * both; on success the response builders run over what was parsed. Must never crash, leak or trip
 * a sanitizer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/ollama.h"
#include "api/openai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int k = 0; k < 2; k++) {
        sp_oai_req q;
        sp_oai_error e;
        if (sp_oai_parse(k ? SP_OAI_COMPLETION : SP_OAI_CHAT, (const char *)data, size, NULL, &q, &e)) {
            sp_oai_meta m = {q.kind, "id", 0, q.model ? q.model : "m"};
            sp_oai_usage u = {1, 2, 0};
            const char *text = q.prompt ? q.prompt : "";
            char *s = sp_oai_response(&m, text, strlen(text), "stop", NULL, 0, &u);
            free(s);
            sp_oai_req_free(&q);
        } else {
            free(sp_oai_error_json(&e));
        }
    }
    for (int chat = 0; chat < 2; chat++) { /* the Ollama dialect, translated into the same request */
        sp_ollama_req o;
        sp_oai_req q;
        sp_oai_error e;
        if (sp_ollama_parse(chat, (const char *)data, size, NULL, &o, &q, &e)) sp_oai_req_free(&q);
    }
    return 0;
}
