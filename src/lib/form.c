/* form.c -- cache field names, API URLs, key names and the job shape check. */
#include "lib/form.h"

#include <stdio.h>
#include <string.h>

#include "core/pturl.h"

int form_field(char *out, size_t outlen, plcache_select sel, const char *label, long long version)
{
    int n = -1;
    switch (sel) {
    case PLCACHE_SEL_LATEST:
        n = snprintf(out, outlen, "latest");
        break;
    case PLCACHE_SEL_LABEL:
        if (label == NULL || label[0] == '\0' ||
            strnlen(label, FORM_MAX_LABEL + 1) > FORM_MAX_LABEL)
            return -1;
        n = snprintf(out, outlen, "label:%s", label);
        break;
    case PLCACHE_SEL_VERSION:
        if (version <= 0)
            return -1;
        n = snprintf(out, outlen, "version:%lld", version);
        break;
    default:
        return -1;
    }
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return n;
}

int form_api_url(buf *b, const char *base, const char *name, plcache_select sel, const char *label,
                 long long version, int llm_kwargs)
{
    if (base == NULL || name == NULL || name[0] == '\0')
        return -1;
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    if (blen == 0)
        return -1;
    switch (sel) {
    case PLCACHE_SEL_LATEST:
        return pturl_template(b, base, name, NULL, -1, llm_kwargs);
    case PLCACHE_SEL_LABEL:
        if (label == NULL || label[0] == '\0')
            return -1;
        return pturl_template(b, base, name, label, -1, llm_kwargs);
    case PLCACHE_SEL_VERSION:
        if (version <= 0)
            return -1;
        return pturl_template(b, base, name, NULL, version, llm_kwargs);
    default:
        return -1;
    }
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
