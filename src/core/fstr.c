/* fstr.c -- the SDK's f-string rule: string.Formatter().parse, then str.format.
 *
 * Two passes over the text, as the SDK makes them. The first is
 * Formatter.parse: it checks the brace structure and collects every top-level
 * field name (a pointer into the text) into an array, sorted afterwards so
 * that "is this name in resolved?" is a bisection. The second is str.format:
 * literals are copied, each field's first name part is looked up in that
 * array, its value taken from vars, walked through .attr and [key], converted,
 * and formatted with its spec, which is first rendered itself when it holds
 * braces (with one level less of recursion left: Python starts at 2).
 *
 * Both passes use one tokenizer (next_piece) that follows CPython's markup
 * rules: a literal runs to the first brace; a doubled brace ends the literal
 * with one brace; a field name runs to ':', '!' or '}', skipping over [...];
 * after '!' comes one character and then ':' or '}'; the spec runs to the
 * '}' that balances the field's '{'. All delimiters are ASCII, so scanning
 * UTF-8 byte by byte is exact.
 */
#include "core/fstr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pyfmt.h"
#include "core/uniprint.h"

#define TOP_DEPTH 2 /* str.format's recursion allowance */

/* pyfmt's answers are passed on as they are */
_Static_assert(FSTR_NOROOM == (int)PYFMT_NOROOM && FSTR_OK == (int)PYFMT_OK &&
                   FSTR_RAISES == (int)PYFMT_RAISES && FSTR_UNSUPPORTED == (int)PYFMT_UNSUPPORTED,
               "fstr_rc and pyfmt_rc agree");

typedef struct piece {
    const char *lit; /* literal text to copy */
    size_t litlen;
    int has_field;
    const char *name;
    size_t namelen;
    int has_conv;
    uint32_t conv;
    const char *spec;
    size_t speclen;
    int spec_expand; /* the spec holds '{' */
} piece;

typedef struct name_ref {
    const char *s;
    size_t n;
} name_ref;

typedef struct ctx {
    const json_t *vars;
    name_ref *names; /* owned: the top-level field names, sorted */
    size_t nnames;
    size_t max; /* the bound of every temporary buf */
} ctx;

/* What a field stands for while it is walked. */
enum { V_JSON, V_TEXT, V_INT, V_REAL };

typedef struct fval {
    int kind;
    const json_t *j; /* V_JSON */
    const char *s;   /* V_TEXT: not owned */
    size_t n;
    long long i; /* V_INT */
    double d;    /* V_REAL */
} fval;

/* ---- the tokenizer ------------------------------------------------------- */

/* A field name from s[*i]: runs to ':', '!' or '}', which is returned with
 * *i past it, skipping over [...]; -1 on a '{' in it or the end of s. */
static int scan_field_name(const char *s, size_t n, size_t *i)
{
    for (;;) {
        if (*i >= n)
            return -1; /* expected '}' before end of string */
        char c = s[(*i)++];
        if (c == '{')
            return -1; /* unexpected '{' in field name */
        if (c == '[') {
            while (*i < n && s[*i] != ']')
                (*i)++;
            continue;
        }
        if (c == '}' || c == ':' || c == '!')
            return c;
    }
}

/* After '!': one character, the conversion, into p; then '}' or ':' is
 * returned with *i past it, 0 at the end of s (no '}' will follow), -1 for
 * anything else. */
static int scan_conversion(const char *s, size_t n, size_t *i, piece *p)
{
    if (*i >= n)
        return -1; /* end of string while looking for conversion */
    p->has_conv = 1;
    p->conv = pyfmt_utf8_next(s, n, i);
    if (*i >= n)
        return 0;
    char c = s[(*i)++];
    if (c != '}' && c != ':')
        return -1; /* expected ':' after conversion specifier */
    return c;
}

/* The spec from s[i]: up to the '}' that balances the field's '{'. Returns 1
 * with *pos past that '}', -1 when there is none. */
static int scan_spec(const char *s, size_t n, size_t i, size_t *pos, piece *p)
{
    size_t spec_start = i;
    int depth = 1;
    while (i < n) {
        char c = s[i++];
        if (c == '{') {
            p->spec_expand = 1;
            depth++;
        } else if (c == '}' && --depth == 0) {
            p->spec = s + spec_start;
            p->speclen = i - 1 - spec_start;
            *pos = i;
            return 1;
        }
    }
    return -1; /* unmatched '{' in format spec */
}

/* Reads the next piece of s[*pos..n): the literal, then the field's name,
 * conversion and spec. Returns 1 with *p set, 0 at the end, -1 where Python
 * raises ValueError. */
static int next_piece(const char *s, size_t n, size_t *pos, piece *p)
{
    size_t i = *pos, start = i;
    memset(p, 0, sizeof(*p));
    if (i >= n)
        return 0;
    while (i < n && s[i] != '{' && s[i] != '}')
        i++;
    p->lit = s + start;
    p->litlen = i - start;
    if (i >= n) {
        *pos = i;
        return 1;
    }
    char brace = s[i++];
    if (i < n && s[i] == brace) { /* doubled: one brace of literal text */
        p->litlen++;
        *pos = i + 1;
        return 1;
    }
    if (brace == '}' || i >= n)
        return -1; /* single '}', or '{' at the end */
    size_t name_start = i;
    int c = scan_field_name(s, n, &i);
    if (c < 0)
        return -1;
    p->has_field = 1;
    p->name = s + name_start;
    p->namelen = i - 1 - name_start;
    if (c == '!')
        c = scan_conversion(s, n, &i, p);
    if (c < 0)
        return -1;
    if (c == '}') {
        *pos = i;
        return 1;
    }
    return scan_spec(s, n, i, pos, p);
}

/* ---- resolved ------------------------------------------------------------ */

static int name_cmp(const void *a, const void *b)
{
    const name_ref *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, m);
    if (c != 0)
        return c;
    return x->n < y->n ? -1 : x->n > y->n;
}

/* Formatter().parse over the whole text: FSTR_OK with c->names filled,
 * FSTR_RAISES on a syntax error, FSTR_NOROOM. */
static int collect_names(ctx *c, const char *s, size_t n)
{
    size_t pos = 0, cap = 0;
    piece p;
    for (;;) {
        int r = next_piece(s, n, &pos, &p);
        if (r < 0)
            return FSTR_RAISES;
        if (r == 0)
            break;
        if (!p.has_field || p.namelen == 0)
            continue;
        if (c->nnames == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            name_ref *nn = realloc(c->names, ncap * sizeof(*nn));
            if (nn == NULL)
                return FSTR_NOROOM;
            c->names = nn;
            cap = ncap;
        }
        c->names[c->nnames].s = p.name;
        c->names[c->nnames].n = p.namelen;
        c->nnames++;
    }
    if (c->nnames > 1)
        qsort(c->names, c->nnames, sizeof(*c->names), name_cmp);
    return FSTR_OK;
}

static int resolved_has(const ctx *c, const char *s, size_t n)
{
    name_ref key = {s, n};
    return c->nnames > 0 && bsearch(&key, c->names, c->nnames, sizeof(*c->names), name_cmp) != NULL;
}

/* ---- field names --------------------------------------------------------- */

/* Python's get_integer over s[0..n): 1 with *val when every character is a
 * decimal digit (n > 0), 0 when some is not, -1 past 2**63-1 (ValueError). */
static int all_digits(const char *s, size_t n, int64_t *val)
{
    int64_t acc = 0;
    size_t i = 0;
    if (n == 0)
        return 0;
    while (i < n) {
        int d = uniprint_decimal(pyfmt_utf8_next(s, n, &i));
        if (d < 0)
            return 0;
        if (acc > (INT64_MAX - d) / 10)
            return -1;
        acc = acc * 10 + d;
    }
    *val = acc;
    return 1;
}

/* Checks the syntax of what follows the first part of a field name (".a",
 * "[k]" in any sequence) the way str.format walks it. 0, or -1 where it
 * raises. */
static int check_rest(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] == '.') {
            size_t j = ++i;
            while (i < n && s[i] != '.' && s[i] != '[')
                i++;
            if (i == j)
                return -1; /* empty attribute */
        } else if (s[i] == '[') {
            size_t j = ++i;
            while (i < n && s[i] != ']')
                i++;
            if (i >= n || i == j)
                return -1; /* missing ']', or empty key */
            i++;
            if (i < n && s[i] != '.' && s[i] != '[')
                return -1; /* only '.' or '[' may follow ']' */
        } else {
            return -1; /* cannot happen: the first part ends at '.' or '[' */
        }
    }
    return 0;
}

static int text_index(fval *v, int64_t idx)
{
    size_t i = 0;
    int64_t k = 0;
    while (i < v->n && k < idx) {
        (void)pyfmt_utf8_next(v->s, v->n, &i);
        k++;
    }
    if (i >= v->n)
        return FSTR_RAISES; /* string index out of range */
    size_t start = i;
    (void)pyfmt_utf8_next(v->s, v->n, &i);
    v->s += start;
    v->n = i - start;
    return FSTR_OK;
}

/* value[key]: all-digit keys are ints. */
static int apply_index(fval *v, const char *key, size_t keylen)
{
    int64_t idx = 0;
    int isint = all_digits(key, keylen, &idx);
    if (isint < 0)
        return FSTR_RAISES;
    if (v->kind == V_JSON && json_is_string(v->j)) {
        v->kind = V_TEXT;
        v->s = json_string_value(v->j);
        v->n = json_string_length(v->j);
    }
    if (v->kind == V_TEXT)
        return isint ? text_index(v, idx) : FSTR_RAISES;
    if (v->kind != V_JSON)
        return FSTR_RAISES; /* int, float: not subscriptable */
    if (json_is_array(v->j)) {
        if (!isint || (uint64_t)idx >= json_array_size(v->j))
            return FSTR_RAISES;
        v->j = json_array_get(v->j, (size_t)idx);
        return FSTR_OK;
    }
    if (json_is_object(v->j)) {
        json_t *item = isint ? NULL : json_object_getn(v->j, key, keylen);
        if (item == NULL)
            return FSTR_RAISES; /* KeyError (JSON keys are never ints) */
        v->j = item;
        return FSTR_OK;
    }
    return FSTR_RAISES; /* None, bool, int, float */
}

static int attr_is(const char *a, size_t n, const char *name)
{
    return strlen(name) == n && memcmp(a, name, n) == 0;
}

/* value.attr for the attributes whose value is plain data. */
static int apply_attr(fval *v, const char *a, size_t n)
{
    int isint =
        v->kind == V_INT || (v->kind == V_JSON && (json_is_integer(v->j) || json_is_boolean(v->j)));
    int isreal = v->kind == V_REAL || (v->kind == V_JSON && json_is_real(v->j));
    if (isint) {
        long long i = v->kind == V_INT        ? v->i
                      : json_is_integer(v->j) ? (long long)json_integer_value(v->j)
                                              : json_is_true(v->j);
        v->kind = V_INT;
        if (attr_is(a, n, "real") || attr_is(a, n, "numerator"))
            v->i = i;
        else if (attr_is(a, n, "imag"))
            v->i = 0;
        else if (attr_is(a, n, "denominator"))
            v->i = 1;
        else
            return FSTR_UNSUPPORTED;
        return FSTR_OK;
    }
    if (isreal) {
        double d = v->kind == V_REAL ? v->d : json_real_value(v->j);
        v->kind = V_REAL;
        if (attr_is(a, n, "real"))
            v->d = d;
        else if (attr_is(a, n, "imag"))
            v->d = 0.0;
        else
            return FSTR_UNSUPPORTED;
        return FSTR_OK;
    }
    return FSTR_UNSUPPORTED;
}

/* str.format's get_field_object: the value a field name stands for. */
static int field_value(const ctx *c, const char *name, size_t n, fval *v)
{
    size_t first = 0;
    int64_t idx = 0;
    while (first < n && name[first] != '.' && name[first] != '[')
        first++;
    if (first == 0 || all_digits(name, first, &idx) != 0)
        return FSTR_RAISES; /* positional: there are no positional arguments */
    if (check_rest(name + first, n - first) != 0 || !resolved_has(c, name, first))
        return FSTR_RAISES; /* bad syntax, or KeyError */
    memset(v, 0, sizeof(*v));
    const json_t *j = c->vars != NULL ? json_object_getn(c->vars, name, first) : NULL;
    if (j == NULL || json_is_null(j)) {
        v->kind = V_TEXT;
        v->s = "";
    } else {
        v->kind = V_JSON;
        v->j = j;
    }
    size_t i = first;
    while (i < n) {
        int rc;
        if (name[i] == '.') {
            size_t j0 = ++i;
            while (i < n && name[i] != '.' && name[i] != '[')
                i++;
            rc = apply_attr(v, name + j0, i - j0);
        } else {
            size_t j0 = ++i;
            while (name[i] != ']')
                i++;
            rc = apply_index(v, name + j0, i - j0);
            i++;
        }
        if (rc != FSTR_OK)
            return rc;
    }
    return FSTR_OK;
}

/* ---- rendering ----------------------------------------------------------- */

static int convert(const fval *v, uint32_t conv, buf *to)
{
    int ascii = conv == 'a';
    if (conv != 'r' && conv != 's' && conv != 'a')
        return FSTR_RAISES; /* unknown conversion specifier */
    switch (v->kind) {
    case V_TEXT:
        if (conv == 's')
            return buf_append(to, v->s, v->n) == 0 ? FSTR_OK : FSTR_NOROOM;
        return pyfmt_repr_text(to, v->s, v->n, ascii);
    case V_INT:
        return buf_printf(to, "%lld", v->i) == 0 ? FSTR_OK : FSTR_NOROOM;
    case V_REAL:
        return pyfmt_float_repr(to, v->d);
    default:
        break;
    }
    if (conv == 's')
        return pyfmt_str(to, v->j);
    return ascii ? pyfmt_ascii(to, v->j) : pyfmt_repr(to, v->j);
}

static int format_fval(buf *out, const fval *v, const char *spec, size_t speclen)
{
    switch (v->kind) {
    case V_TEXT:
        return pyfmt_format_text(out, v->s, v->n, spec, speclen);
    case V_INT:
        return pyfmt_format_int(out, v->i, spec, speclen);
    case V_REAL:
        return pyfmt_format_float(out, v->d, spec, speclen);
    default:
        return pyfmt_format(out, v->j, spec, speclen);
    }
}

static int build(const ctx *c, const char *s, size_t n, int depth, buf *out);

/* One field: value, conversion, spec, format. */
static int render_field(const ctx *c, const piece *p, int depth, buf *out)
{
    fval v;
    buf conv, spec;
    buf_init(&conv, c->max);
    buf_init(&spec, c->max);
    int rc = field_value(c, p->name, p->namelen, &v);
    if (rc == FSTR_OK && p->has_conv) {
        rc = convert(&v, p->conv, &conv);
        if (rc == FSTR_OK) {
            v.kind = V_TEXT;
            v.s = conv.data != NULL ? conv.data : "";
            v.n = conv.len;
        }
    }
    const char *sp = p->spec;
    size_t splen = p->speclen;
    if (rc == FSTR_OK && p->spec_expand) {
        rc = build(c, p->spec, p->speclen, depth - 1, &spec);
        sp = spec.data != NULL ? spec.data : "";
        splen = spec.len;
    }
    if (rc == FSTR_OK)
        rc = format_fval(out, &v, sp != NULL ? sp : "", splen);
    buf_free(&conv);
    buf_free(&spec);
    return rc;
}

/* str.format's build_string: renders s into out. A field that is
 * unsupported or out of room does not stop the walk: Python goes on (or
 * raises MemoryError), so a later field that surely raises still decides.
 * After one, fields are rendered into a throwaway buf, each on its own. */
static int build(const ctx *c, const char *s, size_t n, int depth, buf *out)
{
    size_t pos = 0;
    int first_fault = FSTR_OK; /* the first FSTR_UNSUPPORTED or FSTR_NOROOM */
    buf waste;
    piece p;
    int r = 0;
    if (depth <= 0)
        return FSTR_RAISES; /* Max string recursion exceeded */
    buf_init(&waste, c->max);
    for (;;) {
        r = next_piece(s, n, &pos, &p);
        if (r <= 0)
            break;
        if (first_fault == FSTR_OK && buf_append(out, p.lit, p.litlen) != 0)
            first_fault = FSTR_NOROOM;
        if (!p.has_field)
            continue;
        buf_reset(&waste);
        int rc = render_field(c, &p, depth, first_fault == FSTR_OK ? out : &waste);
        if (rc == FSTR_RAISES) {
            first_fault = FSTR_RAISES;
            break;
        }
        if (rc != FSTR_OK && first_fault == FSTR_OK)
            first_fault = rc;
    }
    buf_free(&waste);
    if (r < 0)
        return FSTR_RAISES;
    return first_fault;
}

int fstr_render(buf *out, const char *text, size_t len, const json_t *vars)
{
    ctx c = {vars, NULL, 0, out->max};
    size_t mark = out->len;
    int rc;
    if (!pyfmt_utf8_valid(text, len) || (vars != NULL && !json_is_object(vars)))
        return FSTR_UNSUPPORTED;
    rc = collect_names(&c, text, len);
    if (rc == FSTR_OK)
        rc = build(&c, text, len, TOP_DEPTH, out);
    free(c.names);
    if (rc != FSTR_OK && out->data != NULL) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}
