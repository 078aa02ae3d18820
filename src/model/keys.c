/* keys.c -- Redis key names. */
#include "model/keys.h"

#include <stdio.h>
#include <string.h>

int keys_make(char *out, size_t outlen, const char *prefix, const char *name, const char *suffix)
{
    int n = snprintf(out, outlen, "%s%s%s", prefix, name, suffix ? suffix : "");
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return n;
}

int keys_match(char *out, size_t outlen, const char *prefix, const char *name)
{
    size_t m = 0;
    const char *parts[] = {prefix, name};
    for (int i = 0; i < 2; i++)
        for (const char *p = parts[i]; *p; p++) {
            int esc = strchr("*?[]\\", *p) != NULL;
            if (m + (size_t)esc + 1 + 2 > outlen) /* the char, then '*' and NUL */
                return -1;
            if (esc)
                out[m++] = '\\';
            out[m++] = *p;
        }
    if (m + 2 > outlen)
        return -1;
    out[m++] = '*';
    out[m] = '\0';
    return (int)m;
}
