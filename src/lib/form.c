/* form.c -- cache field names, API URLs, key names and the job shape check. */
#include "lib/form.h"

#include <stdio.h>
#include <string.h>

#include "model/field.h"

/* The field plcache_get's selector arguments name: a label of
 * 1..FORM_MAX_LABEL bytes, a version > 0 (PromptLayer counts from 1). Returns
 * 0, or -1 when an argument is bad. */
static int form_select(plcache_select sel, const char *label, long long version, field *out)
{
    switch (sel) {
    case PLCACHE_SEL_LATEST:
        *out = (field){.kind = FIELD_LATEST};
        return 0;
    case PLCACHE_SEL_LABEL:
        if (label == NULL || label[0] == '\0' ||
            strnlen(label, FORM_MAX_LABEL + 1) > FORM_MAX_LABEL)
            return -1;
        *out = (field){.kind = FIELD_LABEL, .label = label};
        return 0;
    case PLCACHE_SEL_VERSION:
        if (version <= 0)
            return -1;
        *out = (field){.kind = FIELD_VERSION, .version = version};
        return 0;
    default:
        return -1;
    }
}

int form_field(char *out, size_t outlen, plcache_select sel, const char *label, long long version)
{
    field f;
    return form_select(sel, label, version, &f) != 0 ? -1 : field_format(out, outlen, &f);
}

int form_api_url(buf *b, const char *base, const char *name, plcache_select sel, const char *label,
                 long long version, int llm_kwargs)
{
    if (base == NULL || name == NULL || name[0] == '\0')
        return -1;
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    field f;
    if (blen == 0 || form_select(sel, label, version, &f) != 0)
        return -1;
    return field_url(b, base, name, &f, llm_kwargs);
}

int form_key(char *out, size_t outlen, const char *prefix, const char *middle, const char *name,
             const char *field)
{
    int n = field != NULL ? snprintf(out, outlen, "%s%s%s:%s", prefix, middle, name, field)
                          : snprintf(out, outlen, "%s%s%s", prefix, middle, name);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return n;
}

int form_header_safe(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    }
    return 1;
}
