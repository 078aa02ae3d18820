/* canon_filter.c -- canon_json over framed records on stdin, for canon_oracle.py.
 *
 * Each input record is a 4-byte big-endian length and that many bytes. For
 * each one it writes '1', a 4-byte big-endian length and the canonical text,
 * or '0', a length and the error text. It stops at end of input (exit 0) and
 * exits 1 on a truncated record or an I/O error.
 */
#include "core/canon.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_len(uint32_t *len)
{
    unsigned char b[4];
    size_t got = fread(b, 1, 4, stdin);
    if (got == 0 && feof(stdin))
        return 1;
    if (got != 4)
        return -1;
    *len = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 0;
}

static int write_record(char tag, const char *s, size_t n)
{
    unsigned char h[5];
    h[0] = (unsigned char)tag;
    h[1] = (unsigned char)(n >> 24);
    h[2] = (unsigned char)(n >> 16);
    h[3] = (unsigned char)(n >> 8);
    h[4] = (unsigned char)n;
    if (fwrite(h, 1, 5, stdout) != 5 || fwrite(s, 1, n, stdout) != n)
        return -1;
    return 0;
}

int main(void)
{
    char *buf = NULL; /* owned: the current record */
    int rc = 1;
    for (;;) {
        uint32_t len = 0;
        int r = read_len(&len);
        if (r > 0)
            break;
        if (r < 0) {
            fprintf(stderr, "canon_filter: truncated record\n");
            goto done;
        }
        free(buf);
        buf = malloc(len > 0 ? len : 1);
        if (buf == NULL || fread(buf, 1, len, stdin) != len) {
            fprintf(stderr, "canon_filter: short record\n");
            goto done;
        }
        char err[128] = "";
        size_t outlen = 0;
        char *out = canon_json(buf, len, &outlen, err, sizeof(err));
        int w = out != NULL ? write_record('1', out, outlen) : write_record('0', err, strlen(err));
        free(out);
        if (w < 0 || fflush(stdout) != 0) {
            fprintf(stderr, "canon_filter: write failed\n");
            goto done;
        }
    }
    rc = 0;
done:
    free(buf);
    return rc;
}
