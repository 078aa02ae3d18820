/* render_filter.c -- pyfmt, fstr, jinja and render over framed records, for
 * render_oracle.py and jinja_oracle.py.
 *
 * Each input record is a 4-byte big-endian length and that many bytes: one
 * operation byte, then fields, each a 4-byte big-endian length and its bytes.
 *
 *   'r' JSON              pyfmt_repr         's' JSON   pyfmt_str
 *   'a' JSON              pyfmt_ascii        'p' BITS   pyfmt_float_repr
 *   'f' JSON SPEC         pyfmt_format       'd' BITS SPEC  pyfmt_format_float
 *   't' TEXT VARS         fstr_render        'e' ENTRY VARS render_json
 *   'j' TEXT VARS         jinja_render
 *
 * JSON is one JSON value (any type; \u0000 allowed); BITS the 8 bytes of a
 * double, big-endian; VARS a JSON object, or empty for none. For each record
 * it writes one byte, the result code plus '0' ('/' for -1), then a 4-byte
 * big-endian length and the output text (empty unless the code is 0). A
 * record it cannot read is answered with code 'x'. It stops at end of input
 * (exit 0) and exits 1 on a truncated record or an I/O error.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/fstr.h"
#include "core/jinja.h"
#include "core/pyfmt.h"
#include "core/render.h"

#define OUT_MAX ((size_t)64 << 20)

typedef struct field {
    const char *p;
    size_t n;
} field;

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Splits rec[1..n) into up to max fields; returns how many, -1 if malformed. */
static int split(const unsigned char *rec, size_t n, field *f, int max)
{
    size_t i = 1;
    int k = 0;
    while (i < n) {
        if (k == max || n - i < 4)
            return -1;
        uint32_t len = be32(rec + i);
        i += 4;
        if (len > n - i)
            return -1;
        f[k].p = (const char *)rec + i;
        f[k].n = len;
        k++;
        i += len;
    }
    return k;
}

static double to_double(const field *f)
{
    uint64_t bits = 0;
    double d = 0;
    for (size_t k = 0; k < 8 && k < f->n; k++)
        bits = bits << 8 | (unsigned char)f->p[k];
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static int write_record(char tag, const char *s, size_t n)
{
    unsigned char h[5];
    h[0] = (unsigned char)tag;
    h[1] = (unsigned char)(n >> 24);
    h[2] = (unsigned char)(n >> 16);
    h[3] = (unsigned char)(n >> 8);
    h[4] = (unsigned char)n;
    if (fwrite(h, 1, 5, stdout) != 5 || (n > 0 && fwrite(s, 1, n, stdout) != n))
        return -1;
    return 0;
}

/* Runs one record; the answer goes to out, the code is returned ('x': bad). */
static char run(const unsigned char *rec, size_t n, buf *out)
{
    field f[2];
    int nf = split(rec, n, f, 2);
    json_t *v = NULL; /* owned */
    json_error_t err;
    int rc = 0;
    if (n == 0 || nf < 1)
        return 'x';
    char op = (char)rec[0];
    switch (op) {
    case 'r':
    case 's':
    case 'a':
    case 'f':
        v = json_loadb(f[0].p, f[0].n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (v == NULL || (op == 'f' && nf != 2))
            rc = 'x' - '0';
        else if (op == 'r')
            rc = pyfmt_repr(out, v);
        else if (op == 's')
            rc = pyfmt_str(out, v);
        else if (op == 'a')
            rc = pyfmt_ascii(out, v);
        else
            rc = pyfmt_format(out, v, f[1].p, f[1].n);
        break;
    case 'p':
        rc = pyfmt_float_repr(out, to_double(&f[0]));
        break;
    case 'd':
        rc = nf == 2 ? pyfmt_format_float(out, to_double(&f[0]), f[1].p, f[1].n) : 'x' - '0';
        break;
    case 't':
    case 'j':
        if (nf == 2 && f[1].n > 0) {
            v = json_loadb(f[1].p, f[1].n, JSON_ALLOW_NUL, &err);
            if (v == NULL) {
                rc = 'x' - '0';
                break;
            }
        }
        rc = op == 't' ? fstr_render(out, f[0].p, f[0].n, v) : jinja_render(out, f[0].p, f[0].n, v);
        break;
    case 'e': {
        char *txt = NULL; /* owned */
        size_t len = 0;
        rc = render_json(f[0].p, f[0].n, nf == 2 && f[1].n > 0 ? f[1].p : NULL,
                         nf == 2 ? f[1].n : 0, 0, &txt, &len);
        if (rc == RENDER_OK && buf_append(out, txt, len) != 0)
            rc = RENDER_ERROR;
        free(txt);
        break;
    }
    default:
        rc = 'x' - '0';
        break;
    }
    json_decref(v);
    return (char)('0' + rc);
}

int main(void)
{
    unsigned char *rec = NULL; /* owned: the current record */
    buf out;
    int rc = 1;
    buf_init(&out, OUT_MAX);
    for (;;) {
        unsigned char h[4];
        size_t got = fread(h, 1, 4, stdin);
        if (got == 0 && feof(stdin))
            break;
        if (got != 4) {
            fprintf(stderr, "render_filter: truncated record\n");
            goto done;
        }
        uint32_t len = be32(h);
        free(rec);
        rec = malloc(len > 0 ? len : 1);
        if (rec == NULL || fread(rec, 1, len, stdin) != len) {
            fprintf(stderr, "render_filter: short record\n");
            goto done;
        }
        buf_reset(&out);
        char code = run(rec, len, &out);
        int w = write_record(code, out.data, code == '0' ? out.len : 0);
        if (w < 0 || fflush(stdout) != 0) {
            fprintf(stderr, "render_filter: write failed\n");
            goto done;
        }
    }
    rc = 0;
done:
    free(rec);
    buf_free(&out);
    return rc;
}
