/* answer.c -- PromptLayer's template answers: version and id. */
#include "model/answer.h"

#include <jansson.h>

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
