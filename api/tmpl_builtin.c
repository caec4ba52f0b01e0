/* api/tmpl_builtin.c — built-in fallback chat templates (Jinja source, rendered by the same
 * engine) for models whose GGUF has no tokenizer.chat_template, and a guess of which one fits a
 * model from its architecture and name. Each follows its family's published prompt format. */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "api/tmpl.h"

/* <|im_start|>role\ncontent<|im_end|>\n ... (Qwen, SmolLM, Hermes, ...). */
static const char chatml[] =
    "{%- for message in messages %}\n"
    "    {{- '<|im_start|>' + message['role'] + '\\n' }}\n"
    "    {%- if message['content'] is string %}{{- message['content'] }}{%- endif %}\n"
    "    {{- '<|im_end|>\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n";

/* Llama 2 chat: <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] ... */
static const char llama2[] =
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "    {%- set system_message = messages[0]['content'] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "    {%- set system_message = false %}\n"
    "{%- endif %}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\n"
    "    {%- endif %}\n"
    "    {%- if loop.index0 == 0 and system_message != false %}\n"
    "        {%- set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}\n"
    "    {%- else %}\n"
    "        {%- set content = message['content'] %}\n"
    "    {%- endif %}\n"
    "    {%- if message['role'] == 'user' %}\n"
    "        {{- bos_token + '[INST] ' + content.strip() + ' [/INST]' }}\n"
    "    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + content.strip() + ' ' + eos_token }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";

/* Llama 3 / 3.1 / 3.2 instruct (without tools). */
static const char llama3[] =
    "{{- bos_token }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}\n"
    "    {%- if message['content'] is string %}{{- message['content'] | trim }}{%- endif %}\n"
    "    {{- '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n";

/* Mistral instruct: <s>[INST] sys\n\nuser [/INST]answer</s>[INST] ... */
static const char mistral[] =
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n"
    "    {%- endif %}\n"
    "    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.first and system_message is defined %}\n"
    "            {{- '[INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n"
    "            {{- '[INST] ' + message['content'] + ' [/INST]' }}\n"
    "        {%- endif %}\n"
    "    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- message['content'] + eos_token }}\n"
    "    {%- else %}\n"
    "        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";

/* Gemma: <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n; a system message is
 * folded into the first user turn (as Gemma 3 does). */
static const char gemma[] =
    "{{- bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set first_user_prefix = '' %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\n"
    "    {%- endif %}\n"
    "    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}\n"
    "    {{- '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}\n"
    "    {{- message['content'] | trim }}\n"
    "    {{- '<end_of_turn>\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<start_of_turn>model\\n' }}\n"
    "{%- endif %}\n";

/* Phi-3: <|system|>\n...<|end|>\n<|user|>\n...<|end|>\n<|assistant|>\n */
static const char phi3[] =
    "{%- for message in messages %}\n"
    "    {%- if message['role'] in ['system', 'user', 'assistant'] %}\n"
    "        {{- '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|assistant|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- eos_token }}\n"
    "{%- endif %}\n";

static const struct {
    const char *name, *src;
} builtins[] = {
    {"chatml", chatml}, {"llama2", llama2}, {"llama3", llama3},
    {"mistral", mistral}, {"gemma", gemma}, {"phi3", phi3},
};

#define N_BUILTINS (sizeof builtins / sizeof builtins[0])

const char *sp_tmpl_builtin(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < N_BUILTINS; i++)
        if (!strcmp(name, builtins[i].name)) return builtins[i].src;
    return NULL;
}

const char *const *sp_tmpl_builtin_names(void) {
    static const char *const names[] = {"chatml", "llama2", "llama3", "mistral", "gemma", "phi3", NULL};
    return names;
}

/* Case-insensitive substring test. */
static bool has(const char *s, const char *needle) {
    if (!s) return false;
    size_t n = strlen(needle);
    for (; *s; s++) {
        size_t i = 0;
        while (i < n && s[i] && tolower((unsigned char)s[i]) == needle[i]) i++;
        if (i == n) return true;
    }
    return false;
}

const char *sp_tmpl_builtin_guess(const char *arch, const char *model_name) {
    const char *srcs[2] = {model_name, arch};
    for (int k = 0; k < 2; k++) {
        const char *s = srcs[k];
        if (!s) continue;
        if (has(s, "llama-3") || has(s, "llama3") || has(s, "llama_3")) return "llama3";
        if (has(s, "llama-2") || has(s, "llama2") || has(s, "llama_2")) return "llama2";
        if (has(s, "mistral") || has(s, "mixtral")) return "mistral";
        if (has(s, "gemma")) return "gemma";
        if (has(s, "phi3") || has(s, "phi-3") || has(s, "phi_3")) return "phi3";
        if (has(s, "qwen") || has(s, "smollm") || has(s, "hermes") || has(s, "chatml")) return "chatml";
    }
    return "chatml";
}
