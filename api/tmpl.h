/* api/tmpl.h — the chat-template engine: a Jinja-subset interpreter that renders Hugging Face
 * chat templates (`tokenizer.chat_template`) byte-identically to Python jinja2 as transformers
 * runs it (sandboxed environment, trim_blocks + lstrip_blocks, loop controls, `{% generation %}`,
 * tojson = json.dumps(ensure_ascii=False), raise_exception, strftime_now).
 *
 * Parse once, render many times: a parsed sp_tmpl is immutable and may be rendered concurrently
 * from several threads (each render has its own arena). A render never crashes or hangs on a
 * hostile template: nesting depth, evaluation steps, memory and output size are all bounded and
 * overrunning one is a clean SP_TMPL_ELIMIT error.
 *
 * Value model (what the context JSON becomes): objects -> dicts (key order kept), arrays -> lists,
 * strings -> str, true/false -> bool, null -> None, numbers -> int when integral and within
 * +-2^63 (cJSON keeps no int/float distinction, so a JSON 1.0 becomes the int 1), else float. */
#ifndef SP_API_TMPL_H
#define SP_API_TMPL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct sp_tmpl sp_tmpl;

/* Render outcomes. Every failure comes with one line in err (no trailing newline). */
typedef enum {
    SP_TMPL_OK = 0,
    SP_TMPL_ESYNTAX = -1,  /* parse error:   "template line 12: unexpected end of template ..." */
    SP_TMPL_ERUNTIME = -2, /* render error:  "template line 7: 'x' is undefined" */
    SP_TMPL_ERAISED = -3,  /* the template called raise_exception(msg): err is msg itself */
    SP_TMPL_ELIMIT = -4,   /* a resource bound was hit: "template line 3: too many evaluation steps" */
    SP_TMPL_EINVAL = -5,   /* bad arguments (context not a JSON object, NULL template, ...) */
} sp_tmpl_status;

/* Bounds and knobs for one render; zero fields take the defaults below. */
typedef struct {
    size_t max_output;     /* bytes of rendered text (default 16 MiB) */
    size_t max_memory;     /* bytes the render may allocate (default 256 MiB) */
    uint64_t max_steps;    /* evaluation steps: nodes, loop iterations, element visits (default 50M) */
    int max_depth;         /* nesting of statements/expressions/macro calls (default 600; that
                            * needs about 512 KiB of stack: lower it on small thread stacks) */
    const char *fixed_date; /* "YYYY-MM-DD" for strftime_now; NULL: $SPARROW_FIXED_DATE, else now */
} sp_tmpl_opts;

#define SP_TMPL_DEFAULT_MAX_OUTPUT ((size_t)16 << 20)
#define SP_TMPL_DEFAULT_MAX_MEMORY ((size_t)256 << 20)
#define SP_TMPL_DEFAULT_MAX_STEPS ((uint64_t)50000000)
#define SP_TMPL_DEFAULT_MAX_DEPTH 600

/* Parse template source (UTF-8, need not be NUL-terminated). NULL + message in err on a syntax
 * error ("template line N: ..."). The source is copied; it need not outlive the template. */
sp_tmpl *sp_tmpl_parse(const char *src, size_t len, char *err, size_t errlen);
void sp_tmpl_free(sp_tmpl *t);

/* Render with the variables of `context` (a JSON object: messages, add_generation_prompt,
 * bos_token, eos_token, tools, ...; NULL = no variables). On success *out is a malloc'd,
 * NUL-terminated string of *out_len bytes (caller frees) and SP_TMPL_OK is returned; on failure
 * *out is NULL and err holds the message. opts may be NULL. */
sp_tmpl_status sp_tmpl_render(const sp_tmpl *t, const cJSON *context, const sp_tmpl_opts *opts,
                              char **out, size_t *out_len, char *err, size_t errlen);

/* Built-in fallback templates (Jinja source) for models without tokenizer.chat_template:
 * "chatml", "llama2", "llama3", "mistral", "gemma", "phi3". NULL for an unknown name. */
const char *sp_tmpl_builtin(const char *name);
/* The names above, NULL-terminated. */
const char *const *sp_tmpl_builtin_names(void);
/* The builtin that best fits a GGUF general.architecture and/or model name ("qwen2",
 * "llama", "Meta-Llama-3-8B", "gemma2", "phi3", ...); never NULL ("chatml" when unsure).
 * Either argument may be NULL. */
const char *sp_tmpl_builtin_guess(const char *arch, const char *model_name);

#endif
