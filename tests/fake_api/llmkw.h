/* llmkw.h -- provider-ready llm_kwargs built from a prompt template.
 *
 * PromptLayer answers include_llm_kwargs=true (GET) and a `provider` (POST)
 * with the arguments of the provider's own client call, unrendered. The docs
 * show no literal shape ("provider-specific and may change"), so the shapes
 * here are the fake's guess, kept to where the SDKs' local renderers look for
 * text: messages[].content (a string or a list of text parts), system,
 * prompt. See README.md for each provider's shape. Pure memory.
 */
#ifndef PLCACHE_FAKE_LLMKW_H
#define PLCACHE_FAKE_LLMKW_H

#include <jansson.h>

/* 1 when llmkw_build knows `provider` ("openai", "openai.azure",
 * "anthropic"), else 0. NULL is not known. */
int llmkw_supported(const char *provider);

/* Builds the llm_kwargs of prompt_template `pt` (a valid chat or completion
 * template) for `provider`, with model name `model` (NULL: left out) and the
 * model `params` (an object merged at the top level, or NULL). Returns a new
 * object the caller owns, or NULL when the provider is not supported or
 * memory runs out. */
json_t *llmkw_build(const json_t *pt, const char *provider, const char *model,
                    const json_t *params);

#endif
