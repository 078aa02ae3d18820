/* text.c -- numbers, UTF-8, query strings and log lines for the fake API. */
#include "text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/http.h>

int text_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    if (!(*s == '-' || (*s >= '0' && *s <= '9')))
        return -1;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    if (v < min || v > max)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int text_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_seq_len(p + i, n - i);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

json_t *text_json_string(const char *s, size_t n)
{
    if (text_utf8_valid(s, n))
        return json_stringn(s, n);

    /* Every invalid byte becomes U+FFFD (3 bytes): at most 3n bytes. */
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    char *buf = malloc(3 * n + 1);
    if (buf == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    size_t o = 0;
    while (i < n) {
        size_t len = utf8_seq_len(p + i, n - i);
        if (len == 0) {
            buf[o++] = (char)0xEF;
            buf[o++] = (char)0xBF;
            buf[o++] = (char)0xBD;
            i++;
        } else {
            memcpy(buf + o, p + i, len);
            o += len;
            i += len;
        }
    }
    json_t *str = json_stringn(buf, o);
    free(buf);
    return str;
}

/* Percent-decodes s[0..n); returns a malloc'd copy or NULL (NUL byte inside,
 * out of memory). `plus` turns '+' into a space. *out_len gets the length. */
static char *decode_part(const char *s, size_t n, int plus, size_t *out_len)
{
    char *raw = malloc(n + 1);
    if (raw == NULL)
        return NULL;
    memcpy(raw, s, n);
    raw[n] = '\0';
    size_t len = 0;
    char *dec = evhttp_uridecode(raw, plus, &len);
    free(raw);
    if (dec == NULL)
        return NULL;
    if (strlen(dec) != len) {
        free(dec);
        return NULL;
    }
    *out_len = len;
    return dec;
}

int text_query_get(const char *query, const char *key, char **value)
{
    *value = NULL;
    if (query == NULL)
        return 0;
    const char *p = query;
    char *found = NULL;
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        size_t plen = (amp != NULL) ? (size_t)(amp - p) : strlen(p);
        if (plen > 0) {
            const char *eq = memchr(p, '=', plen);
            size_t klen = (eq != NULL) ? (size_t)(eq - p) : plen;
            size_t dklen = 0;
            char *dkey = decode_part(p, klen, 1, &dklen);
            if (dkey == NULL)
                goto err;
            int match = (strcmp(dkey, key) == 0);
            free(dkey);
            if (match) {
                const char *v = (eq != NULL) ? eq + 1 : p + plen;
                size_t vlen = (size_t)(p + plen - v);
                size_t dvlen = 0;
                char *dval = decode_part(v, vlen, 1, &dvlen);
                if (dval == NULL)
                    goto err;
                free(found);
                found = dval;
            }
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    if (found == NULL)
        return 0;
    *value = found;
    return 1;
err:
    free(found);
    return -1;
}

char *text_decode_segment(const char *seg, size_t n)
{
    size_t len = 0;
    char *dec = decode_part(seg, n, 0, &len);
    if (dec == NULL)
        return NULL;
    if (!text_utf8_valid(dec, len)) {
        free(dec);
        return NULL;
    }
    return dec;
}

/* Appends `v` to buf at *pos as a logfmt value; truncates silently. */
static void put_value(char *buf, size_t cap, size_t *pos, const char *v)
{
    int quote = (*v == '\0');
    for (const char *q = v; *q != '\0' && !quote; q++) {
        unsigned char c = (unsigned char)*q;
        if (c <= ' ' || c == '"' || c == '=' || c >= 0x7f)
            quote = 1;
    }
    if (quote && *pos + 1 < cap)
        buf[(*pos)++] = '"';
    for (const char *q = v; *q != '\0'; q++) {
        unsigned char c = (unsigned char)*q;
        char esc[8];
        size_t elen;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < ' ' || c >= 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            elen = 4;
        } else {
            esc[0] = (char)c;
            elen = 1;
        }
        if (*pos + elen + 1 >= cap)
            break;
        memcpy(buf + *pos, esc, elen);
        *pos += elen;
    }
    if (quote && *pos + 1 < cap)
        buf[(*pos)++] = '"';
}

static void put_raw(char *buf, size_t cap, size_t *pos, const char *s)
{
    size_t n = strlen(s);
    if (*pos + n + 1 >= cap)
        n = (cap > *pos + 1) ? cap - *pos - 1 : 0;
    memcpy(buf + *pos, s, n);
    *pos += n;
}

void text_log(const char *level, const char *msg, ...)
{
    char line[2048];
    size_t pos = 0;
    put_raw(line, sizeof(line), &pos, "level=");
    put_raw(line, sizeof(line), &pos, level);
    put_raw(line, sizeof(line), &pos, " msg=");
    put_value(line, sizeof(line), &pos, msg);

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (k == NULL)
            break;
        const char *v = va_arg(ap, const char *);
        put_raw(line, sizeof(line), &pos, " ");
        put_raw(line, sizeof(line), &pos, k);
        put_raw(line, sizeof(line), &pos, "=");
        put_value(line, sizeof(line), &pos, (v != NULL) ? v : "");
    }
    va_end(ap);
    line[pos++] = '\n';
    fwrite(line, 1, pos, stderr);
}

int64_t text_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void text_iso_now(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000));
}

int text_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on", "t", "y", NULL};
    static const char *const no[] = {"false", "0", "no", "off", "f", "n", NULL};
    for (size_t i = 0; yes[i] != NULL; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}
