/* fuzz_render.c -- libFuzzer target for jinja_render and render_json.
 *
 * The input is split at its first 0xFF byte (never part of UTF-8): what comes
 * before is a jinja2 template, or with the first byte's low bit set a cached
 * entry (JSON), and what comes after is the variables (JSON; none when it
 * does not parse as an object). Whatever the input, neither may crash, leak,
 * hang past the step bound, or break its contract: on anything but OK the
 * buffer is left as it was; what is rendered is valid UTF-8 (it goes back
 * into JSON) and comes out the same when rendered again; a rendered entry is
 * JSON again. Any disagreement aborts.
 *
 * Build: see tests/fuzz/meson.build; run with scripts/fuzz 300 fuzz_render.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/jinja.h"
#include "core/pyfmt.h"
#include "core/render.h"

#define OUT_MAX ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_render: %s\n", what);
        abort();
    }
}

static void fuzz_jinja(const char *text, size_t len, const json_t *vars)
{
    buf a, b;
    buf_init(&a, OUT_MAX);
    buf_init(&b, OUT_MAX);
    check(buf_puts(&a, "<") == 0 && buf_puts(&b, "<") == 0, "out of memory");
    int rc = jinja_render(&a, text, len, vars);
    int again = jinja_render(&b, text, len, vars);
    check(rc >= JINJA_NOROOM && rc <= JINJA_UNSUPPORTED, "an answer outside jinja_rc");
    check(rc == again, "two renders answer differently");
    if (rc == JINJA_OK) {
        check(a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
              "two renders give different texts");
        check(pyfmt_utf8_valid(a.data, a.len), "rendered text is not UTF-8");
    } else {
        check(a.len == 1 && a.data[0] == '<' && a.data[1] == 0, "the buffer changed on failure");
    }
    buf_free(&a);
    buf_free(&b);
}

static void fuzz_entry(const char *entry, size_t len, const char *vars, size_t varslen)
{
    char *out = NULL;
    size_t outlen = 0;
    render_status st = render_json(entry, len, vars, varslen, 1 << 16, &out, &outlen);
    check(st >= RENDER_ERROR && st <= RENDER_UNSUPPORTED, "an answer outside render_status");
    if (st == RENDER_OK) {
        json_error_t err;
        check(out != NULL && strlen(out) == outlen, "rendered entry has no text");
        json_t *back = json_loadb(out, outlen, JSON_ALLOW_NUL, &err);
        check(back != NULL, "rendered entry is not JSON");
        json_decref(back);
    } else {
        check(out == NULL, "text given with a failure");
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int entry = data[0] & 1;
    const char *p = (const char *)data + 1;
    size_t n = size - 1, cut = 0;
    while (cut < n && (unsigned char)p[cut] != 0xFF)
        cut++;
    const char *vars = cut < n ? p + cut + 1 : NULL;
    size_t varslen = cut < n ? n - cut - 1 : 0;
    if (entry) {
        fuzz_entry(p, cut, vars, varslen);
        return 0;
    }
    json_t *v = NULL; /* owned */
    if (vars != NULL) {
        json_error_t err;
        v = json_loadb(vars, varslen, JSON_ALLOW_NUL, &err);
        if (v != NULL && !json_is_object(v)) {
            json_decref(v);
            v = NULL;
        }
    }
    fuzz_jinja(p, cut, v);
    json_decref(v);
    return 0;
}
