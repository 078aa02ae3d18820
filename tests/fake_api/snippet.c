/* snippet.c -- PromptLayer snippet references in prompt templates.
 *
 * A reference is the text between two "@@@" marks: the template name,
 * optionally followed by "@version_number:N" or "@label:L" (the last such
 * suffix counts, so a name may itself hold an '@'). Text that does not parse
 * as a reference is left alone. Expanding a reference looks the snippet up,
 * joins the texts of its text blocks, and expands that text in turn with
 * the snippet pushed on a stack of (name, version) frames: a reference to a
 * frame already on the stack is a cycle and stays as written. The expanded
 * text of one block is bounded (SNIPPET_MAX_TEXT) so that snippets quoting
 * each other many times cannot blow up; past it references stay as written.
 */
#include "snippet.h"

#include <stdlib.h>
#include <string.h>

#define MARK "@@@"
#define MARK_LEN 3
#define VERSION_TAG "@version_number:"
#define LABEL_TAG "@label:"
/* Longest text one block may grow to by expansion, in bytes. */
#define SNIPPET_MAX_TEXT (4u * 1024u * 1024u)

typedef struct frame {
    const char *name;
    int64_t version;
    const struct frame *up;
} frame;

typedef struct sctx {
    snippet_lookup_fn lookup;
    void *ctx;
    json_t *found; /* owned: the direct references */
    int oom;
} sctx;

typedef struct sbuf {
    char *p;
    size_t len;
    size_t cap;
} sbuf;

static int sbuf_add(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap == 0) ? 256 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->p, cap);
        if (grown == NULL)
            return -1;
        b->p = grown;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static const char *find(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    return (hlen >= nlen) ? memmem(hay, hlen, needle, nlen) : NULL;
}

/* The last occurrence of needle in hay[0..hlen), or NULL. */
static const char *find_last(const char *hay, size_t hlen, const char *needle)
{
    size_t nlen = strlen(needle);
    const char *last = NULL;
    const char *p = hay;
    for (;;) {
        const char *q = find(p, hlen - (size_t)(p - hay), needle, nlen);
        if (q == NULL)
            return last;
        last = q;
        p = q + 1;
    }
}

/* A parsed reference; name and label are malloc'd. */
typedef struct ref {
    char *name;
    int64_t version; /* 0: not given */
    char *label;     /* NULL: not given */
} ref;

static void ref_clear(ref *r)
{
    free(r->name);
    free(r->label);
    memset(r, 0, sizeof(*r));
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Parses the text between the marks. Returns 1 (r filled), 0 when it is not
 * a reference, -1 when memory runs out. */
static int parse_ref(const char *in, size_t n, ref *r)
{
    memset(r, 0, sizeof(*r));
    if (n == 0 || memchr(in, '\0', n) != NULL || memchr(in, '\n', n) != NULL)
        return 0;
    const char *vn = find_last(in, n, VERSION_TAG);
    const char *lb = find_last(in, n, LABEL_TAG);
    size_t name_len = n;
    if (vn != NULL && (lb == NULL || vn > lb)) {
        const char *d = vn + strlen(VERSION_TAG);
        size_t dl = n - (size_t)(d - in);
        int64_t v = 0;
        if (dl == 0 || dl > 12)
            return 0;
        for (size_t i = 0; i < dl; i++) {
            if (d[i] < '0' || d[i] > '9')
                return 0;
            v = v * 10 + (d[i] - '0');
        }
        if (v < 1)
            return 0;
        r->version = v;
        name_len = (size_t)(vn - in);
    } else if (lb != NULL) {
        const char *l = lb + strlen(LABEL_TAG);
        size_t ll = n - (size_t)(l - in);
        if (ll == 0)
            return 0;
        r->label = dup_n(l, ll);
        if (r->label == NULL)
            return -1;
        name_len = (size_t)(lb - in);
    }
    if (name_len == 0) {
        ref_clear(r);
        return 0;
    }
    r->name = dup_n(in, name_len);
    if (r->name == NULL) {
        ref_clear(r);
        return -1;
    }
    return 1;
}

static int on_stack(const frame *f, const char *name, int64_t version)
{
    for (; f != NULL; f = f->up) {
        if (f->version == version && strcmp(f->name, name) == 0)
            return 1;
    }
    return 0;
}

static void note_found(sctx *c, const ref *r, int64_t version)
{
    json_t *one = json_pack("{s:s,s:I,s:o}", "prompt_name", r->name, "version", (json_int_t)version,
                            "label", r->label != NULL ? json_string(r->label) : json_null());
    if (one == NULL) {
        c->oom = 1;
        return;
    }
    for (size_t i = 0; i < json_array_size(c->found); i++) {
        if (json_equal(json_array_get(c->found, i), one)) {
            json_decref(one);
            return;
        }
    }
    if (json_array_append_new(c->found, one) != 0)
        c->oom = 1;
}

/* The texts of a completion template's text blocks, joined (malloc'd). */
static char *joined_text(const json_t *pt, size_t *len)
{
    sbuf b = {0};
    if (sbuf_add(&b, "", 0) != 0)
        return NULL;
    const json_t *content = json_object_get(pt, "content");
    for (size_t i = 0; i < json_array_size(content); i++) {
        const json_t *blk = json_array_get(content, i);
        const json_t *t = json_object_get(blk, "text");
        const json_t *type = json_object_get(blk, "type");
        if (json_is_string(type) && strcmp(json_string_value(type), "text") == 0 &&
            json_is_string(t) && sbuf_add(&b, json_string_value(t), json_string_length(t)) != 0) {
            free(b.p);
            return NULL;
        }
    }
    *len = b.len;
    return b.p;
}

static int is_completion(const json_t *pt)
{
    const json_t *type = json_object_get(pt, "type");
    return json_is_string(type) && strcmp(json_string_value(type), "completion") == 0;
}

/* Returns text[0..len) with its references expanded (malloc'd, *out_len),
 * or NULL when memory runs out. Notes direct references when depth is 1. */
static char *expand(sctx *c, const char *text, size_t len, size_t *out_len, const frame *stack,
                    int depth, int resolve)
{
    sbuf b = {0};
    size_t pos = 0;
    if (sbuf_add(&b, "", 0) != 0)
        goto oom;
    for (;;) {
        const char *open = find(text + pos, len - pos, MARK, MARK_LEN);
        if (open == NULL)
            break;
        size_t start = (size_t)(open - text);
        const char *close = find(text + start + MARK_LEN, len - start - MARK_LEN, MARK, MARK_LEN);
        if (close == NULL)
            break;
        size_t inner = start + MARK_LEN;
        size_t end = (size_t)(close - text) + MARK_LEN;
        ref r;
        int rc = parse_ref(text + inner, (size_t)(close - text) - inner, &r);
        if (rc < 0)
            goto oom;
        if (rc == 0) {
            /* Not a reference: its closing mark may open the next one. */
            if (sbuf_add(&b, text + pos, (size_t)(close - text) - pos) != 0)
                goto oom;
            pos = (size_t)(close - text);
            continue;
        }
        if (sbuf_add(&b, text + pos, start - pos) != 0) {
            ref_clear(&r);
            goto oom;
        }
        int64_t v = 0;
        const json_t *pt = c->lookup(c->ctx, r.name, r.version, r.label, &v);
        if (pt != NULL && depth == 1)
            note_found(c, &r, v);
        int expanded = 0;
        if (resolve && pt != NULL && is_completion(pt) && !on_stack(stack, r.name, v) &&
            depth <= SNIPPET_MAX_DEPTH) {
            size_t jl = 0;
            size_t sl = 0;
            char *joined = joined_text(pt, &jl);
            frame f = {.name = r.name, .version = v, .up = stack};
            char *sub = (joined != NULL) ? expand(c, joined, jl, &sl, &f, depth + 1, 1) : NULL;
            free(joined);
            if (sub == NULL) {
                ref_clear(&r);
                goto oom;
            }
            if (b.len + sl <= SNIPPET_MAX_TEXT) {
                expanded = 1;
                if (sbuf_add(&b, sub, sl) != 0) {
                    free(sub);
                    ref_clear(&r);
                    goto oom;
                }
            }
            free(sub);
        }
        ref_clear(&r);
        if (!expanded && sbuf_add(&b, text + start, end - start) != 0)
            goto oom;
        pos = end;
    }
    if (sbuf_add(&b, text + pos, len - pos) != 0)
        goto oom;
    *out_len = b.len;
    return b.p;
oom:
    free(b.p);
    c->oom = 1;
    return NULL;
}

static void process_blocks(sctx *c, json_t *blocks, const frame *root, int resolve)
{
    for (size_t i = 0; i < json_array_size(blocks) && !c->oom; i++) {
        json_t *blk = json_array_get(blocks, i);
        const json_t *type = json_object_get(blk, "type");
        const json_t *t = json_object_get(blk, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(t))
            continue;
        size_t n = 0;
        char *out = expand(c, json_string_value(t), json_string_length(t), &n, root, 1, resolve);
        if (out == NULL)
            return;
        if (resolve && json_object_set_new(blk, "text", json_stringn(out, n)) != 0)
            c->oom = 1;
        free(out);
    }
}

json_t *snippet_process(json_t *pt, const char *name, int64_t version, int resolve,
                        snippet_lookup_fn lookup, void *ctx)
{
    sctx c = {.lookup = lookup, .ctx = ctx, .found = json_array()};
    if (c.found == NULL)
        return NULL;
    frame root = {.name = name, .version = version, .up = NULL};
    if (is_completion(pt)) {
        process_blocks(&c, json_object_get(pt, "content"), &root, resolve);
    } else {
        json_t *msgs = json_object_get(pt, "messages");
        for (size_t i = 0; i < json_array_size(msgs) && !c.oom; i++)
            process_blocks(&c, json_object_get(json_array_get(msgs, i), "content"), &root, resolve);
    }
    if (c.oom) {
        json_decref(c.found);
        return NULL;
    }
    return c.found;
}
