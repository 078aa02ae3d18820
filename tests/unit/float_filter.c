/* float_filter.c -- canon_float_repr over raw doubles, or canon_json over
 * number texts, on stdin, for float_oracle.py.
 *
 * Default mode, input: doubles as 8 bytes each, the IEEE bit pattern
 * little-endian, with nothing between them; output: for each one, the text
 * canon_float_repr writes and a newline. With --break it spoils its own
 * answers on purpose (the last digit of every 256th text, chosen by the
 * double's low bits, goes up by one, a 9 down), so that the oracle can show
 * it notices a wrong digit.
 *
 * --parse mode, input: one JSON text a line (a number, in any form Python's
 * json accepts); output: for each one, canon_json's canonical text, or "!"
 * and the error, and a newline.
 *
 * Exit 0 at end of input, 1 on a trailing partial double or an I/O error, 2
 * on a bad argument.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/canon.h"

#define CHUNK 4096

static int parse_lines(void)
{
    char *line = NULL; /* owned, grown by getline */
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
            break;
        if (n > 0 && line[n - 1] == '\n')
            n--;
        char err[128] = "";
        size_t outlen = 0;
        char *out = canon_json(line, (size_t)n, &outlen, err, sizeof(err));
        int w = out != NULL ? printf("%s\n", out) : printf("!%s\n", err);
        free(out);
        if (w < 0) {
            rc = 1;
            break;
        }
    }
    free(line);
    if (ferror(stdin) || fflush(stdout) != 0)
        rc = 1;
    if (rc != 0)
        fprintf(stderr, "float_filter: I/O error\n");
    return rc;
}

int main(int argc, char **argv)
{
    int spoil = 0;
    if (argc == 2 && strcmp(argv[1], "--parse") == 0)
        return parse_lines();
    if (argc == 2 && strcmp(argv[1], "--break") == 0) {
        spoil = 1;
    } else if (argc != 1) {
        fprintf(stderr, "usage: float_filter [--break | --parse] < input > texts\n");
        return 2;
    }
    static unsigned char in[CHUNK * 8];
    static char out[CHUNK * (CANON_FLOAT_REPR_MAX + 1)];
    for (;;) {
        size_t got = fread(in, 1, sizeof(in), stdin);
        if (got % 8 != 0) {
            fprintf(stderr, "float_filter: input is not a whole number of doubles\n");
            return 1;
        }
        size_t o = 0;
        for (size_t i = 0; i < got; i += 8) {
            uint64_t bits = 0;
            for (int b = 7; b >= 0; b--)
                bits = bits << 8 | in[i + (size_t)b];
            double d;
            memcpy(&d, &bits, sizeof(d));
            size_t n = canon_float_repr(d, out + o, CANON_FLOAT_REPR_MAX);
            if (spoil && (bits & 0xFF) == 0x5A) {
                char *last = out + o + n - 1;
                if (*last >= '0' && *last <= '9')
                    *last = *last == '9' ? '8' : (char)(*last + 1);
            }
            o += n;
            out[o++] = '\n';
        }
        if (o > 0 && fwrite(out, 1, o, stdout) != o) {
            fprintf(stderr, "float_filter: write failed\n");
            return 1;
        }
        if (got < sizeof(in))
            break;
    }
    if (ferror(stdin) || fflush(stdout) != 0) {
        fprintf(stderr, "float_filter: I/O error\n");
        return 1;
    }
    return 0;
}
