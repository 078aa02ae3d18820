/* keys.c -- Redis key names. */
#include "core/keys.h"

#include <stdio.h>

int keys_make(char *out, size_t outlen, const char *prefix, const char *name, const char *suffix)
{
    int n = snprintf(out, outlen, "%s%s%s", prefix, name, suffix ? suffix : "");
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return n;
}
