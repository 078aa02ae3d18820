/* jsonw.c -- compact JSON writer with Python's number text. */
#include "core/jsonw.h"

#include <stdio.h>
#include <string.h>

#include "core/canon.h"

static int put_string(buf *out, const char *s, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    if (buf_putc(out, '"') != 0)
        return -1;
    size_t run = 0; /* start of the bytes written as they are */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        switch (ch) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (ch < 0x20) {
                memcpy(u, "\\u00", 4);
                u[4] = hexd[ch >> 4];
                u[5] = hexd[ch & 15];
                u[6] = '\0';
                esc = u;
            }
        }
        if (esc == NULL)
            continue;
        if (buf_append(out, s + run, i - run) != 0 || buf_puts(out, esc) != 0)
            return -1;
        run = i + 1;
    }
    return buf_append(out, s + run, n - run) != 0 || buf_putc(out, '"') != 0 ? -1 : 0;
}

static int put_value(buf *out, const json_t *v, int depth)
{
    if (depth > JSONW_MAX_DEPTH)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *m;
        int first = 1;
        if (buf_putc(out, '{') != 0)
            return -1;
        json_object_foreach((json_t *)v, k, m)
        {
            if ((!first && buf_putc(out, ',') != 0) || put_string(out, k, strlen(k)) != 0 ||
                buf_putc(out, ':') != 0 || put_value(out, m, depth + 1) != 0)
                return -1;
            first = 0;
        }
        return buf_putc(out, '}');
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *m;
        if (buf_putc(out, '[') != 0)
            return -1;
        json_array_foreach(v, i, m)
        {
            if ((i > 0 && buf_putc(out, ',') != 0) || put_value(out, m, depth + 1) != 0)
                return -1;
        }
        return buf_putc(out, ']');
    }
    case JSON_STRING:
        return put_string(out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return buf_printf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL: {
        char num[CANON_FLOAT_REPR_MAX];
        size_t n = canon_float_repr(json_real_value(v), num, sizeof(num));
        return n == 0 ? -1 : buf_append(out, num, n);
    }
    case JSON_TRUE:
        return buf_puts(out, "true");
    case JSON_FALSE:
        return buf_puts(out, "false");
    case JSON_NULL:
        return buf_puts(out, "null");
    }
    return -1;
}

int jsonw_compact(buf *out, const json_t *v)
{
    size_t start = out->len;
    if (v == NULL || put_value(out, v, 0) != 0) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
        return -1;
    }
    return 0;
}

char *jsonw_dump(const json_t *v, size_t max, size_t *n)
{
    buf b;
    buf_init(&b, max);
    size_t len = 0;
    char *out = jsonw_compact(&b, v) == 0 ? buf_steal(&b, &len) : NULL;
    buf_free(&b);
    if (out != NULL && n != NULL)
        *n = len;
    return out;
}
