/* answer.c -- PromptLayer's template answers: version and id. */
#include "model/answer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int answer_template(const char *body, size_t len, long long *version, long long *id)
{
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    int rc = -1;
    if (json_is_object(o)) {
        json_t *n = json_object_get(o, "version");
        json_t *i = json_object_get(o, "id");
        if (json_is_integer(n) && json_integer_value(n) >= 0) {
            if (version)
                *version = json_integer_value(n);
            if (id)
                *id = json_is_integer(i) && json_integer_value(i) >= 0 ? json_integer_value(i) : -1;
            rc = 0;
        }
    }
    json_decref(o);
    return rc;
}

char *answer_name(const char *body, size_t len)
{
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    json_t *n = json_object_get(o, "prompt_name");
    char *out = NULL;
    if (json_is_string(n) && json_string_length(n) > 0 &&
        strlen(json_string_value(n)) == json_string_length(n))
        out = strdup(json_string_value(n));
    json_decref(o);
    return out;
}

int answer_labels(const char *body, size_t len, answer_label_fn fn, void *arg)
{
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    json_t *list = json_object_get(o, "release_labels");
    int rc = json_is_array(list) ? 0 : -1;
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        json_t *label = json_object_get(it, "release_label");
        json_t *v = json_object_get(it, "prompt_version_number");
        if (rc != 0)
            break;
        if (json_is_string(label) && json_string_length(label) > 0 &&
            strlen(json_string_value(label)) == json_string_length(label) && json_is_integer(v) &&
            json_integer_value(v) >= 1)
            rc = fn(json_string_value(label), json_integer_value(v), arg);
    }
    json_decref(o);
    return rc;
}
