/* field.c -- the cache field: latest | version:N | label:L. */
#include "model/field.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/pturl.h"

/* Digits only, at least one, within long long. */
static int parse_version(const char *s, long long *out)
{
    long long n = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        int d = *s - '0';
        if (n > (LLONG_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *out = n;
    return 0;
}

int field_parse(const char *text, field *out)
{
    if (strcmp(text, "latest") == 0) {
        *out = (field){.kind = FIELD_LATEST};
        return 0;
    }
    if (strncmp(text, "version:", 8) == 0) {
        long long v;
        if (parse_version(text + 8, &v) != 0)
            return -1;
        *out = (field){.kind = FIELD_VERSION, .version = v};
        return 0;
    }
    if (strncmp(text, "label:", 6) == 0 && text[6] != '\0') {
        *out = (field){.kind = FIELD_LABEL, .label = text + 6};
        return 0;
    }
    return -1;
}

int field_format(char *out, size_t outlen, const field *f)
{
    int n = -1;
    switch (f->kind) {
    case FIELD_LATEST:
        n = snprintf(out, outlen, "latest");
        break;
    case FIELD_VERSION:
        if (f->version < 0)
            return -1;
        n = snprintf(out, outlen, "version:%lld", f->version);
        break;
    case FIELD_LABEL:
        if (f->label == NULL || f->label[0] == '\0')
            return -1;
        n = snprintf(out, outlen, "label:%s", f->label);
        break;
    }
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return n;
}

char *field_dup(const field *f)
{
    size_t n = FIELD_SIZE(f->kind == FIELD_LABEL && f->label ? strlen(f->label) : 32);
    char *out = malloc(n);
    if (out != NULL && field_format(out, n, f) < 0) {
        free(out);
        out = NULL;
    }
    return out;
}

int field_url(buf *b, const char *base, const char *name, const field *f, int llm_kwargs)
{
    return pturl_template(b, base, name, f->kind == FIELD_LABEL ? f->label : NULL,
                          f->kind == FIELD_VERSION ? f->version : -1, llm_kwargs);
}
