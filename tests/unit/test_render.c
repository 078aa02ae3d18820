/* test_render.c -- cached entries rendered as the PromptLayer SDK renders them.
 *
 * Every expected entry below is what render_oracle.py's Python statement of
 * the SDK's render_response gives (its texts through Python's own
 * str.format), computed with it and pasted.
 */
#include "cm.h"

#include <stdlib.h>
#include <string.h>

#include "core/render.h"

typedef struct entry_case {
    const char *entry;
    const char *vars; /* NULL: none */
    render_status status;
    const char *want; /* the entry after, for RENDER_OK */
} entry_case;

/* The compact text render_json gives for the JSON text `json`. */
static char *compact(const char *json)
{
    json_error_t err;
    json_t *v = json_loads(json, 0, &err);
    if (v == NULL)
        fail_msg("bad test JSON %s: %s", json, err.text);
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return s;
}

static void run_table(const entry_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const entry_case *c = &cases[i];
        char *out = NULL;
        size_t outlen = 0;
        render_status st = render_json(c->entry, strlen(c->entry), c->vars,
                                       c->vars != NULL ? strlen(c->vars) : 0, 0, &out, &outlen);
        if (st != c->status)
            fail_msg("%s with %s: status %d, wanted %d", c->entry, c->vars ? c->vars : "NULL", st,
                     c->status);
        if (st == RENDER_OK) {
            char *want = compact(c->want);
            if (strcmp(out, want) != 0)
                fail_msg("%s with %s:\n got    %s\n wanted %s", c->entry,
                         c->vars ? c->vars : "NULL", out, want);
            assert_int_equal(outlen, strlen(want));
            free(want);
        } else {
            assert_null(out);
        }
        free(out);
    }
}

static const entry_case basic_cases[] = {
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {name}\"}]}]}, \"metadata\": {\"x\": \"{name}\"}}",
     NULL, RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {name}\"}]}]}, \"metadata\": {\"x\": \"{name}\"}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {name}\"}]}]}, \"llm_kwargs\": null}",
     "{}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {name}\"}]}]}, \"llm_kwargs\": null}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {name}\"}]}]}, \"llm_kwargs\": {\"model\": \"m\", "
     "\"messages\": [{\"role\": \"user\", \"content\": \"Hi {name}\"}]}}",
     NULL, RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi \"}]}]}, \"llm_kwargs\": {\"model\": \"m\", "
     "\"messages\": [{\"role\": \"user\", \"content\": \"Hi \"}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {name}\"}]}]}, \"llm_kwargs\": {}}",
     NULL, RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi \"}]}]}, \"llm_kwargs\": {}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"name\": "
     "\"{name}\", \"content\": [{\"type\": \"text\", \"text\": \"{name} on {topic}\"}, {\"type\": "
     "\"image_url\", \"image_url\": {\"url\": \"http://x/{name}\"}}, \"{name}\", {\"type\": "
     "\"text\", \"text\": 5}]}]}, \"metadata\": {\"m\": \"{name}\"}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"name\": "
     "\"{name}\", \"content\": [{\"type\": \"text\", \"text\": \"Ada on C\"}, {\"type\": "
     "\"image_url\", \"image_url\": {\"url\": \"http://x/{name}\"}}, \"{name}\", {\"type\": "
     "\"text\", \"text\": 5}]}]}, \"metadata\": {\"m\": \"{name}\"}}"},
    {"{\"prompt_template\": {\"type\": \"completion\", \"content\": [{\"type\": \"text\", "
     "\"text\": \"Say {n:>4}\"}], \"template_format\": \"f-string\"}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"completion\", \"content\": [{\"type\": \"text\", "
     "\"text\": \"Say    3\"}], \"template_format\": \"f-string\"}}"},
    {"{\"prompt_template\": {\"type\": \"other\", \"content\": [{\"type\": \"text\", \"text\": "
     "\"{name}\"}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"other\", \"content\": [{\"type\": \"text\", \"text\": "
     "\"{name}\"}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"{n:d}\"}, {\"type\": \"text\", \"text\": \"{name:d}\"}, "
     "{\"type\": \"text\", \"text\": \"{\"}, {\"type\": \"text\", \"text\": \"{0}\"}, {\"type\": "
     "\"text\", \"text\": \"{name.upper}x{}\"}]}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"3\"}, {\"type\": \"text\", \"text\": \"{name:d}\"}, "
     "{\"type\": \"text\", \"text\": \"{\"}, {\"type\": \"text\", \"text\": \"{0}\"}, {\"type\": "
     "\"text\", \"text\": \"{name.upper}x{}\"}]}]}}"},
};

static void test_prompt_template_texts_render_and_nothing_else(void **state)
{
    (void)state;
    run_table(basic_cases, sizeof(basic_cases) / sizeof(basic_cases[0]));
}

static const entry_case llm_cases[] = {
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {name}\"}]}]}, \"llm_kwargs\": {\"messages\": "
     "[{\"role\": \"user\", \"content\": \"Hi {name}\"}, {\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"a {name}\"}, {\"type\": \"input_text\", \"text\": \"b "
     "{name}\"}, {\"text\": \"c {name}\"}, {\"type\": \"output_text\", \"text\": \"d {name}\"}, "
     "{\"type\": null, \"text\": \"e {name}\"}, {\"type\": \"text\", \"text\": 1}]}, {\"role\": "
     "\"assistant\"}, {\"role\": \"tool\", \"content\": null}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi Ada\"}]}]}, \"llm_kwargs\": {\"messages\": [{\"role\": "
     "\"user\", \"content\": \"Hi Ada\"}, {\"role\": \"user\", \"content\": [{\"type\": \"text\", "
     "\"text\": \"a Ada\"}, {\"type\": \"input_text\", \"text\": \"b Ada\"}, {\"text\": \"c "
     "Ada\"}, {\"type\": \"output_text\", \"text\": \"d {name}\"}, {\"type\": null, \"text\": \"e "
     "{name}\"}, {\"type\": \"text\", \"text\": 1}]}, {\"role\": \"assistant\"}, {\"role\": "
     "\"tool\", \"content\": null}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"input\": [{\"role\": "
     "\"user\", \"content\": [{\"type\": \"input_text\", \"text\": \"{topic}\"}]}, \"{name}\", "
     "{\"type\": \"message\", \"content\": \"{name}\"}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"input\": [{\"role\": "
     "\"user\", \"content\": [{\"type\": \"input_text\", \"text\": \"C\"}]}, \"{name}\", "
     "{\"type\": \"message\", \"content\": \"Ada\"}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"input\": \"{name}\"}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"input\": \"{name}\"}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system\": \"You are {name}\", "
     "\"messages\": []}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system\": \"You are Ada\", "
     "\"messages\": []}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system\": [{\"type\": "
     "\"text\", \"text\": \"You are {name}\", \"cache_control\": {\"type\": \"ephemeral\"}}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system\": [{\"type\": "
     "\"text\", \"text\": \"You are Ada\", \"cache_control\": {\"type\": \"ephemeral\"}}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"contents\": [{\"role\": "
     "\"user\", \"parts\": [{\"text\": \"{name}\"}, {\"inline_data\": {}}, \"{name}\"]}, \"x\"], "
     "\"history\": [{\"role\": \"model\", \"parts\": [{\"text\": \"{topic}\"}]}], "
     "\"system_instruction\": {\"parts\": [{\"text\": \"be {name}\"}]}}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"contents\": [{\"role\": "
     "\"user\", \"parts\": [{\"text\": \"Ada\"}, {\"inline_data\": {}}, \"{name}\"]}, \"x\"], "
     "\"history\": [{\"role\": \"model\", \"parts\": [{\"text\": \"C\"}]}], "
     "\"system_instruction\": {\"parts\": [{\"text\": \"be Ada\"}]}}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system_instruction\": "
     "[{\"text\": \"be {name}\"}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system_instruction\": "
     "[{\"text\": \"be Ada\"}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system_instruction\": null, "
     "\"generation_config\": {\"system_instruction\": {\"parts\": [{\"text\": \"gc {name}\"}]}}}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system_instruction\": null, "
     "\"generation_config\": {\"system_instruction\": {\"parts\": [{\"text\": \"gc Ada\"}]}}}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system_instruction\": "
     "{\"parts\": []}, \"generation_config\": {\"system_instruction\": {\"parts\": [{\"text\": "
     "\"gc {name}\"}]}}}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system_instruction\": "
     "{\"parts\": []}, \"generation_config\": {\"system_instruction\": {\"parts\": [{\"text\": "
     "\"gc {name}\"}]}}}}"},
    {"{\"prompt_template\": {\"type\": \"completion\", \"content\": []}, \"llm_kwargs\": "
     "{\"prompt\": \"Complete {topic}\", \"model\": \"m\", \"temperature\": 0.5}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"completion\", \"content\": []}, \"llm_kwargs\": "
     "{\"prompt\": \"Complete C\", \"model\": \"m\", \"temperature\": 0.5}}"},
};

static void test_llm_kwargs_render_for_every_provider_shape(void **state)
{
    (void)state;
    run_table(llm_cases, sizeof(llm_cases) / sizeof(llm_cases[0]));
}

static const entry_case jinja_cases[] = {
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {{ name }}\"}], \"template_format\": \"jinja2\"}]}}",
     NULL, RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {{ name }}\"}], \"template_format\": \"jinja2\"}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {{ name }}\"}], \"template_format\": \"jinja2\"}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi Ada\"}], \"template_format\": \"jinja2\"}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi {name}\"}]}, {\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"{{ name }}{% for i in range(n) %}!{% endfor %}\"}], "
     "\"template_format\": \"jinja2\"}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Hi Ada\"}]}, {\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Ada!!!\"}], \"template_format\": \"jinja2\"}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[]}], \"template_format\": \"jinja2\"}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[]}], \"template_format\": \"jinja2\"}}"},
    /* llm_kwargs take the first message's format */
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", "
     "\"template_format\": \"jinja2\", \"content\": []}]}, \"llm_kwargs\": {\"messages\": "
     "[{\"role\": \"user\", \"content\": \"Hi {{ name }} {name}\"}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", "
     "\"template_format\": \"jinja2\", \"content\": []}]}, \"llm_kwargs\": {\"messages\": "
     "[{\"role\": \"user\", \"content\": \"Hi Ada {name}\"}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", "
     "\"template_format\": \"jinja2\", \"content\": []}]}, \"llm_kwargs\": {\"model\": \"m\"}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", "
     "\"template_format\": \"jinja2\", \"content\": []}]}, \"llm_kwargs\": {\"model\": \"m\"}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"{name}\"}], \"template_format\": \"Jinja2\"}, {\"role\": "
     "\"user\", \"content\": [{\"type\": \"text\", \"text\": \"{name}\"}], \"template_format\": "
     "null}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"Ada\"}], \"template_format\": \"Jinja2\"}, {\"role\": "
     "\"user\", \"content\": [{\"type\": \"text\", \"text\": \"Ada\"}], \"template_format\": "
     "null}]}}"},
    /* where jinja2 raises, the text stays as it was */
    {"{\"prompt_template\": {\"type\": \"completion\", \"template_format\": \"jinja2\", "
     "\"content\": [{\"type\": \"text\", \"text\": \"{{ n / 0 }}\"}, {\"type\": \"text\", "
     "\"text\": \"{% if %}\"}, {\"type\": \"text\", \"text\": \"{{ name|upper }}\"}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"completion\", \"template_format\": \"jinja2\", "
     "\"content\": [{\"type\": \"text\", \"text\": \"{{ n / 0 }}\"}, {\"type\": \"text\", "
     "\"text\": \"{% if %}\"}, {\"type\": \"text\", \"text\": \"ADA\"}]}}"},
    /* outside jinja.h's subset: the whole entry is for PromptLayer */
    {"{\"prompt_template\": {\"type\": \"completion\", \"template_format\": \"jinja2\", "
     "\"content\": [{\"type\": \"text\", \"text\": \"{{ name }}\"}, {\"type\": \"text\", "
     "\"text\": \"{% macro m() %}{% endmacro %}\"}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_UNSUPPORTED, NULL},
};

static void test_jinja2_texts_render_with_the_jinja_module(void **state)
{
    (void)state;
    run_table(jinja_cases, sizeof(jinja_cases) / sizeof(jinja_cases[0]));
}

static const entry_case shape_cases[] = {
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}], \"content\": null}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}], \"content\": null}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "null}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_UNSUPPORTED, NULL},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "\"{name}\"}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "\"{name}\"}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "{\"type\": \"text\", \"text\": \"{name}\"}}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "{\"type\": \"text\", \"text\": \"{name}\"}}]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": \"x\"}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_NOT_LOCAL, NULL},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": \"\"}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": \"\"}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"messages\": null}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_UNSUPPORTED, NULL},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"messages\": [\"text\", "
     "[\"a\"]]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"messages\": [\"text\", "
     "[\"a\"]]}}"},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"messages\": [\"content\"]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_UNSUPPORTED, NULL},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"messages\": [5]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_UNSUPPORTED, NULL},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"messages\": {\"content\": "
     "1}}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_UNSUPPORTED, NULL},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"system\": [{\"type\": "
     "[\"text\"], \"text\": \"{name}\"}]}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_UNSUPPORTED, NULL},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": {\"contents\": null}}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_UNSUPPORTED, NULL},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": [1]}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_UNSUPPORTED, NULL},
    {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": 0}",
     "{\"name\": \"Ada\", \"topic\": \"C\", \"n\": 3}", RENDER_OK,
     "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", \"content\": "
     "[{\"type\": \"text\", \"text\": \"x\"}]}]}, \"llm_kwargs\": 0}"},
};

static void test_shapes_follow_python_and_sdk_raises_are_unsupported(void **state)
{
    (void)state;
    run_table(shape_cases, sizeof(shape_cases) / sizeof(shape_cases[0]));
}

static void test_locally_renderable_refuses_placeholders_and_variable_tools(void **state)
{
    (void)state;
    static const struct {
        const char *entry;
        int want;
    } cases[] = {
        {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": []}}", 1},
        {"{\"prompt_template\": {\"type\": \"completion\", \"content\": []}}", 1},
        {"{}", 0},
        {"{\"prompt_template\": null}", 0},
        {"{\"prompt_template\": {}}", 0},
        {"{\"prompt_template\": [1]}", 0},
        {"{\"prompt_template\": \"chat\"}", 0},
        {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"placeholder\"}]}}",
         0},
        {"{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\"}, 5]}}", 0},
        {"{\"prompt_template\": {\"type\": \"x\", \"messages\": [{\"role\": \"placeholder\"}]}}",
         1},
        {"{\"prompt_template\": {\"type\": \"chat\", \"tools\": [{\"type\": \"variable\"}]}}", 0},
        {"{\"prompt_template\": {\"type\": \"chat\", \"tools\": [{\"type\": \"function\"}]}}", 1},
        {"{\"prompt_template\": {\"type\": \"chat\", \"tools\": null}}", 1},
        {"{\"prompt_template\": {\"type\": \"chat\", \"tools\": [5]}}", 0},
        {"{\"prompt_template\": {\"type\": \"chat\", \"tools\": true}}", 0},
        {"[]", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_error_t err;
        json_t *e = json_loads(cases[i].entry, JSON_DECODE_ANY, &err);
        assert_non_null(e);
        if (render_locally_renderable(e) != cases[i].want)
            fail_msg("%s: wanted %d", cases[i].entry, cases[i].want);
        if (cases[i].want == 0)
            assert_int_equal(render_entry(e, NULL, 0), RENDER_NOT_LOCAL);
        json_decref(e);
    }
}

static void test_text_jansson_cannot_read_is_unsupported(void **state)
{
    (void)state;
    static const char *const entries[] = {
        "{\"prompt_template\": {\"type\": \"chat\", \"messages\": []}, \"n\": "
        "99999999999999999999}",
        "{\"prompt_template\": {\"type\": \"chat\", \"messages\": []}, \"n\": NaN}",
        "{\"prompt_template\": {\"type\": \"chat\", \"messages\": []}, \"a\\u0000b\": 1}",
        "not json",
    };
    for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
        char *out = NULL;
        assert_int_equal(render_json(entries[i], strlen(entries[i]), NULL, 0, 0, &out, NULL),
                         RENDER_UNSUPPORTED);
        assert_null(out);
    }
    const char *ok = "{\"prompt_template\": {\"type\": \"chat\", \"messages\": []}}";
    char *out = NULL;
    assert_int_equal(render_json(ok, strlen(ok), "[1]", 3, 0, &out, NULL), RENDER_UNSUPPORTED);
    assert_int_equal(render_json(ok, strlen(ok), "{\"a\": 1e999}", 12, 0, &out, NULL),
                     RENDER_UNSUPPORTED);
    assert_null(out);
}

static void test_text_past_max_text_is_an_error(void **state)
{
    (void)state;
    const char *e =
        "{\"prompt_template\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\", "
        "\"content\": [{\"type\": \"text\", \"text\": \"{a}{a}\"}]}]}}";
    const char *v = "{\"a\": \"0123456789\"}";
    char *out = NULL;
    size_t outlen = 0;
    assert_int_equal(render_json(e, strlen(e), v, strlen(v), 20, &out, &outlen), RENDER_OK);
    assert_non_null(strstr(out, "\"01234567890123456789\""));
    free(out);
    out = NULL;
    assert_int_equal(render_json(e, strlen(e), v, strlen(v), 19, &out, &outlen), RENDER_ERROR);
    assert_null(out);
}

static void test_render_entry_works_in_place_on_the_callers_copy(void **state)
{
    (void)state;
    json_error_t err;
    json_t *cached = json_loads("{\"prompt_template\": {\"type\": \"completion\", \"content\": "
                                "[{\"type\": \"text\", \"text\": \"Hi {name}\"}]}}",
                                0, &err);
    json_t *vars = json_loads("{\"name\": \"Ada\"}", 0, &err);
    json_t *copy = json_deep_copy(cached);
    assert_int_equal(render_entry(copy, vars, 0), RENDER_OK);
    json_t *text = json_object_get(
        json_array_get(json_object_get(json_object_get(copy, "prompt_template"), "content"), 0),
        "text");
    assert_string_equal(json_string_value(text), "Hi Ada");
    text = json_object_get(
        json_array_get(json_object_get(json_object_get(cached, "prompt_template"), "content"), 0),
        "text");
    assert_string_equal(json_string_value(text), "Hi {name}");
    json_t *arr = json_array();
    assert_int_equal(render_entry(copy, arr, 0), RENDER_UNSUPPORTED);
    json_decref(arr);
    json_decref(copy);
    json_decref(vars);
    json_decref(cached);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_template_texts_render_and_nothing_else),
        cmocka_unit_test(test_llm_kwargs_render_for_every_provider_shape),
        cmocka_unit_test(test_jinja2_texts_render_with_the_jinja_module),
        cmocka_unit_test(test_shapes_follow_python_and_sdk_raises_are_unsupported),
        cmocka_unit_test(test_locally_renderable_refuses_placeholders_and_variable_tools),
        cmocka_unit_test(test_text_jansson_cannot_read_is_unsupported),
        cmocka_unit_test(test_text_past_max_text_is_an_error),
        cmocka_unit_test(test_render_entry_works_in_place_on_the_callers_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
