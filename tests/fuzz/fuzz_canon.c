/* fuzz_canon.c -- libFuzzer target for canon: parse, dump, re-parse, compare.
 *
 * Whatever the input, canon must not crash or leak, and canonicalizing the
 * canonical text again must give the same bytes. One exception, shared with
 * Python: two lone surrogates written one after the other (raw in the input)
 * dump as an escaped pair, which reads back as one astral character, so keys
 * may re-sort or merge; then the second canonical text must be the fixed point.
 * canon_root_string and canon_root_type are exercised on every document. Any
 * disagreement aborts.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -I src \
 *        src/core/canon.c tests/fuzz/fuzz_canon.c -lm -o fuzz_canon
 */
#include "core/canon.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_canon: %s\n", what);
        abort();
    }
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Whether t[0..6) is an escape "\udXXX" of a high (want_low 0) or low surrogate. */
static int is_surrogate_escape(const char *t, int want_low)
{
    if (t[0] != '\\' || t[1] != 'u' || t[2] != 'd' || !is_hex(t[4]) || !is_hex(t[5]))
        return 0;
    int hi = t[3] == '8' || t[3] == '9' || t[3] == 'a' || t[3] == 'b';
    int lo = t[3] == 'c' || t[3] == 'd' || t[3] == 'e' || t[3] == 'f';
    return want_low ? lo : hi;
}

/* Whether text holds an escaped surrogate pair. */
static int has_escaped_pair(const char *t, size_t len)
{
    for (size_t i = 0; i + 12 <= len; i++) {
        if (is_surrogate_escape(t + i, 0) && is_surrogate_escape(t + i + 6, 1))
            return 1;
    }
    return 0;
}

/* Parses text and dumps it again; aborts when that fails. */
static char *recanon(const char *text, size_t len, size_t *outlen, canon_type type)
{
    char err[128];
    canon_doc *doc = canon_parse(text, len, err, sizeof(err));
    check(doc != NULL, "the canonical text does not parse again");
    check(canon_root_type(doc) == type, "root type changed");
    char *out = canon_dump(doc, outlen);
    check(out != NULL, "dump failed");
    size_t slen = 0;
    const char *s = canon_root_string(doc, "event_type", &slen);
    check(s == NULL || strstr(out, "\"event_type\": \"") != NULL, "root string not in the text");
    canon_free(doc);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[128];
    canon_doc *doc = canon_parse((const char *)data, size, err, sizeof(err));
    if (doc == NULL) {
        check(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0', "empty error text");
        return 0;
    }
    canon_type type = canon_root_type(doc);
    check(type >= CANON_NULL && type <= CANON_OBJECT, "bad root type");

    size_t len1 = 0;
    char *out1 = canon_dump(doc, &len1);
    check(out1 != NULL, "dump failed");
    check(out1[len1] == '\0' && strlen(out1) == len1, "dump has a NUL inside");
    for (size_t i = 0; i < len1; i++)
        check((unsigned char)out1[i] >= 0x20 && (unsigned char)out1[i] < 0x7F, "dump is not ASCII");

    static const char *keys[] = {"event_type", "timestamp", "", "a", "\xed\xa0\x80"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        size_t slen = (size_t)-1;
        const char *s = canon_root_string(doc, keys[i], &slen);
        if (s != NULL) {
            check(type == CANON_OBJECT, "root string from a non-object");
            check(slen != (size_t)-1 && s[slen] == '\0', "root string not terminated");
        }
    }
    canon_free(doc);

    size_t len2 = 0, len3 = 0;
    char *out2 = recanon(out1, len1, &len2, type);
    if (!has_escaped_pair(out1, len1)) {
        check(len1 == len2 && memcmp(out1, out2, len1) == 0, "canonical text is not a fixed point");
    } else {
        char *out3 = recanon(out2, len2, &len3, type);
        check(len2 == len3 && memcmp(out2, out3, len2) == 0, "second text is not a fixed point");
        free(out3);
    }
    free(out1);
    free(out2);
    return 0;
}
