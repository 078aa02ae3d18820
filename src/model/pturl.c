/* pturl.c -- the PromptLayer API URL of a template. */
#include "model/pturl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/wipe.h"

/* RFC 3986 unreserved characters pass as they are; every other byte is %XX. */
static int put_encoded(buf *b, const char *s)
{
    static const char hexd[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        if (plain) {
            if (buf_putc(b, (char)*p) != 0)
                return -1;
        } else {
            char e[3] = {'%', hexd[*p >> 4], hexd[*p & 15]};
            if (buf_append(b, e, 3) != 0)
                return -1;
        }
    }
    return 0;
}

int pturl_template(buf *b, const char *base, const char *name, const char *label, long long version,
                   int llm_kwargs)
{
    size_t start = b->len;
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    int rc = buf_append(b, base, blen) != 0 || buf_puts(b, "/prompt-templates/") != 0 ||
             put_encoded(b, name) != 0;
    if (rc == 0 && label != NULL)
        rc = buf_puts(b, "?label=") != 0 || put_encoded(b, label) != 0;
    else if (rc == 0 && version >= 0)
        rc = buf_printf(b, "?version=%lld", version) != 0;
    if (rc == 0 && llm_kwargs)
        rc = buf_puts(b, label != NULL || version >= 0 ? "&" : "?") != 0 ||
             buf_puts(b, "include_llm_kwargs=true") != 0;
    if (rc != 0) {
        b->len = start;
        if (b->data)
            b->data[start] = '\0';
        return -1;
    }
    return 0;
}

int pturl_labels(buf *b, const char *base, const char *name)
{
    size_t start = b->len;
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    if (buf_append(b, base, blen) != 0 || buf_puts(b, "/prompt-templates/") != 0 ||
        put_encoded(b, name) != 0 || buf_puts(b, "/labels") != 0) {
        b->len = start;
        if (b->data)
            b->data[start] = '\0';
        return -1;
    }
    return 0;
}

int pturl_flag_refused(long status)
{
    return status >= 400 && status < 500 && status != 401 && status != 403 && status != 404 &&
           status != 408 && status != 429;
}

char *pturl_key_header(const char *key)
{
    size_t n = strlen(key) + sizeof("X-API-KEY: ");
    char *h = malloc(n);
    if (h != NULL)
        snprintf(h, n, "X-API-KEY: %s", key);
    return h;
}

int pturl_swap_key_header(char **slot, const char *key)
{
    char *h = pturl_key_header(key);
    if (h == NULL)
        return -1;
    wipe_free(*slot);
    *slot = h;
    return 0;
}
