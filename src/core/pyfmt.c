/* pyfmt.c -- Python's str(), repr(), ascii() and format() of JSON values.
 *
 * Format specifications. A spec is read the way Python 3.11 reads it, one
 * character (code point) at a time:
 *
 *     [[fill]align][sign][z][#][0][width][, or _][.precision][type]
 *
 * fill is any one character when the second character is an align mark;
 * width and precision are runs of decimal digits of any script, at most
 * 2**63-1; a '0' flag sets the fill to '0' unless a fill was given, and the
 * alignment to '=' when none was given and the type is a number; more than one
 * character left at the end is an error, one is the type. A grouping mark
 * must suit the type (',' for d e f g E F G % and none, '_' for those and
 * b o x X). Each type's __format__ then refuses what it cannot use (a sign
 * for str, a precision for int, 'z' for int and str, ...).
 *
 * Numbers are laid out as sign, prefix ("0x"), integer digits, the rest (the
 * fraction, the exponent, '%'), with the digits grouped from the right in
 * threes (fours for b o x X with '_'). Padding goes where the alignment says,
 * '=' putting it between prefix and digits. With fill '0', alignment '=' and
 * grouping, Python pads with grouped zeros instead ("0,001,234"), never
 * starting with a separator, so the result may pass the width by one.
 *
 * Float digits come from glibc's printf, whose "%.*e" and "%.*f" are correctly
 * rounded (half-even on the exact binary value) as Python's own dtoa is, and
 * from canon_float_repr for the shortest round-trip digits repr() uses. A
 * double's exact decimal expansion has at most 767 significant digits and
 * 1074 after the point, so printf is never asked for more than 800 and 1100:
 * further digits are zeros and are appended without it.
 *
 * Recursion only follows the nesting of lists and dicts, bounded by
 * PYFMT_MAX_DEPTH.
 */
#include "core/pyfmt.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/canon.h"
#include "core/uniprint.h"

#define SCI_DIGITS_MAX 800    /* significant digits asked of printf's %e */
#define FIXED_DIGITS_MAX 1100 /* digits after the point asked of printf's %f */
#define NUM_MAX INT64_MAX     /* largest width or precision Python reads */

/* ---- UTF-8 -------------------------------------------------------------- */

uint32_t pyfmt_utf8_next(const char *s, size_t n, size_t *i)
{
    const unsigned char *p = (const unsigned char *)s + *i;
    size_t left = n - *i;
    uint32_t c = p[0];
    size_t len = 0;
    uint32_t min = 0;
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        c &= 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        c &= 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        c &= 0x07;
        min = 0x10000;
    }
    if (len == 0 || len > left)
        goto bad;
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xC0) != 0x80)
            goto bad;
        c = c << 6 | (p[k] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        goto bad;
    *i += len;
    return c;
bad:
    *i += 1;
    return 0xDC00 + p[0];
}

int pyfmt_utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t at = i;
        uint32_t c = pyfmt_utf8_next(s, n, &i);
        /* the escape for a bad byte is a surrogate, which valid input never decodes to */
        if (c >= 0xDC80 && c <= 0xDCFF && i == at + 1)
            return 0;
    }
    return 1;
}

static size_t utf8_encode(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- output helpers ------------------------------------------------------ */

static int put(buf *out, const char *s, size_t n)
{
    return buf_append(out, s, n) == 0 ? PYFMT_OK : PYFMT_NOROOM;
}

static size_t room(const buf *out)
{
    return out->len < out->max ? out->max - out->len : 0;
}

/* Appends `count` copies of the character cp, refusing up front what cannot fit. */
static int put_fill(buf *out, uint32_t cp, uint64_t count)
{
    char one[4];
    size_t w = utf8_encode(cp, one);
    if (count == 0)
        return PYFMT_OK;
    if (count > room(out) / w)
        return PYFMT_NOROOM;
    char chunk[256];
    size_t per = sizeof(chunk) / w;
    for (size_t k = 0; k < per; k++)
        memcpy(chunk + k * w, one, w);
    while (count > 0) {
        size_t take = count < per ? (size_t)count : per;
        if (buf_append(out, chunk, take * w) != 0)
            return PYFMT_NOROOM;
        count -= take;
    }
    return PYFMT_OK;
}

/* Passes rc on; on failure first takes back what was appended since mark. */
static int restore(buf *out, size_t mark, int rc)
{
    if (rc != PYFMT_OK && out->data != NULL) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}

/* ---- repr, str, ascii ---------------------------------------------------- */

static int repr_text(buf *out, const char *s, size_t n, int ascii_only)
{
    static const char hex[] = "0123456789abcdef";
    int has_sq = memchr(s, '\'', n) != NULL;
    int has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (buf_putc(out, q) != 0)
        return PYFMT_NOROOM;
    size_t i = 0;
    while (i < n) {
        size_t at = i;
        uint32_t c = pyfmt_utf8_next(s, n, &i);
        char e[10];
        size_t k = 0;
        if (c == (uint32_t)q || c == '\\') {
            e[k++] = '\\';
            e[k++] = (char)c;
        } else if (c == '\t' || c == '\n' || c == '\r') {
            e[k++] = '\\';
            e[k++] = c == '\t' ? 't' : c == '\n' ? 'n' : 'r';
        } else if (c >= 0x20 && c < 0x7F) {
            e[k++] = (char)c;
        } else if (c >= 0x80 && !ascii_only && uniprint_printable(c)) {
            if (buf_append(out, s + at, i - at) != 0)
                return PYFMT_NOROOM;
            continue;
        } else {
            int digits = c < 0x100 ? 2 : c < 0x10000 ? 4 : 8;
            e[k++] = '\\';
            e[k++] = digits == 2 ? 'x' : digits == 4 ? 'u' : 'U';
            for (int d = digits - 1; d >= 0; d--)
                e[k++] = hex[c >> (4 * d) & 0xF];
        }
        if (buf_append(out, e, k) != 0)
            return PYFMT_NOROOM;
    }
    return buf_putc(out, q) == 0 ? PYFMT_OK : PYFMT_NOROOM;
}

int pyfmt_repr_text(buf *out, const char *s, size_t n, int ascii_only)
{
    size_t mark = out->len;
    return restore(out, mark, repr_text(out, s, n, ascii_only));
}

static int float_repr(buf *out, double d)
{
    if (isnan(d))
        return put(out, "nan", 3);
    if (isinf(d))
        return d < 0 ? put(out, "-inf", 4) : put(out, "inf", 3);
    char t[CANON_FLOAT_REPR_MAX];
    size_t n = canon_float_repr(d, t, sizeof(t));
    return n > 0 ? put(out, t, n) : PYFMT_NOROOM;
}

int pyfmt_float_repr(buf *out, double d)
{
    size_t mark = out->len;
    return restore(out, mark, float_repr(out, d));
}

enum { MODE_STR, MODE_REPR, MODE_ASCII };

static int obj_text(buf *out, const json_t *v, int mode, int depth);

static int int_text(buf *out, long long v)
{
    return buf_printf(out, "%lld", v) == 0 ? PYFMT_OK : PYFMT_NOROOM;
}

static int container_text(buf *out, const json_t *v, int mode, int depth)
{
    int item_mode = mode == MODE_ASCII ? MODE_ASCII : MODE_REPR;
    int rc = PYFMT_OK;
    if (depth >= PYFMT_MAX_DEPTH)
        return PYFMT_UNSUPPORTED;
    if (json_is_array(v)) {
        if (buf_putc(out, '[') != 0)
            return PYFMT_NOROOM;
        for (size_t k = 0; k < json_array_size(v); k++) {
            if (k > 0 && buf_append(out, ", ", 2) != 0)
                return PYFMT_NOROOM;
            rc = obj_text(out, json_array_get(v, k), item_mode, depth + 1);
            if (rc != PYFMT_OK)
                return rc;
        }
        return buf_putc(out, ']') == 0 ? PYFMT_OK : PYFMT_NOROOM;
    }
    const char *key;
    size_t keylen;
    json_t *item;
    int first = 1;
    if (buf_putc(out, '{') != 0)
        return PYFMT_NOROOM;
    json_object_keylen_foreach((json_t *)v, key, keylen, item)
    {
        if (!first && buf_append(out, ", ", 2) != 0)
            return PYFMT_NOROOM;
        first = 0;
        rc = repr_text(out, key, keylen, item_mode == MODE_ASCII);
        if (rc == PYFMT_OK && buf_append(out, ": ", 2) != 0)
            rc = PYFMT_NOROOM;
        if (rc == PYFMT_OK)
            rc = obj_text(out, item, item_mode, depth + 1);
        if (rc != PYFMT_OK)
            return rc;
    }
    return buf_putc(out, '}') == 0 ? PYFMT_OK : PYFMT_NOROOM;
}

static int obj_text(buf *out, const json_t *v, int mode, int depth)
{
    if (v == NULL)
        return PYFMT_UNSUPPORTED;
    switch (json_typeof(v)) {
    case JSON_NULL:
        return put(out, "None", 4);
    case JSON_TRUE:
        return put(out, "True", 4);
    case JSON_FALSE:
        return put(out, "False", 5);
    case JSON_INTEGER:
        return int_text(out, (long long)json_integer_value(v));
    case JSON_REAL:
        return float_repr(out, json_real_value(v));
    case JSON_STRING:
        if (mode == MODE_STR)
            return put(out, json_string_value(v), json_string_length(v));
        return repr_text(out, json_string_value(v), json_string_length(v), mode == MODE_ASCII);
    case JSON_ARRAY:
    case JSON_OBJECT:
        return container_text(out, v, mode, depth);
    }
    return PYFMT_UNSUPPORTED;
}

int pyfmt_str(buf *out, const json_t *v)
{
    size_t mark = out->len;
    return restore(out, mark, obj_text(out, v, MODE_STR, 0));
}

int pyfmt_repr(buf *out, const json_t *v)
{
    size_t mark = out->len;
    return restore(out, mark, obj_text(out, v, MODE_REPR, 0));
}

int pyfmt_ascii(buf *out, const json_t *v)
{
    size_t mark = out->len;
    return restore(out, mark, obj_text(out, v, MODE_ASCII, 0));
}

/* ---- the spec ------------------------------------------------------------ */

typedef struct fspec {
    uint32_t fill;
    int fill_given;
    uint32_t align;    /* 0 when not given */
    uint32_t sign;     /* 0, '+', '-' or ' ' */
    int no_neg_0;      /* 'z' */
    int alt;           /* '#' */
    int64_t width;     /* -1 when not given */
    uint32_t group;    /* 0, ',' or '_' */
    int64_t precision; /* -1 when not given */
    uint32_t type;     /* 0 when not given */
} fspec;

static int is_align(uint32_t c)
{
    return c == '<' || c == '>' || c == '=' || c == '^';
}

/* Reads a run of decimal digits at s[*i] into *val (-1 when there is none).
 * Returns -1 when the number passes 2**63-1, as Python refuses it. */
static int read_number(const char *s, size_t n, size_t *i, int64_t *val)
{
    int64_t acc = 0;
    int any = 0;
    while (*i < n) {
        size_t j = *i;
        int d = uniprint_decimal(pyfmt_utf8_next(s, n, &j));
        if (d < 0)
            break;
        if (acc > (NUM_MAX - d) / 10)
            return -1;
        acc = acc * 10 + d;
        any = 1;
        *i = j;
    }
    *val = any ? acc : -1;
    return 0;
}

static uint32_t peek(const char *s, size_t n, size_t i)
{
    return i < n ? pyfmt_utf8_next(s, n, &i) : 0;
}

/* Whether a grouping mark suits the type (0: float's missing type). */
static int group_fits_type(uint32_t group, uint32_t type)
{
    if (type == 0)
        return 1;
    if (type >= 0x80)
        return 0;
    if (strchr("defgEFG%", (int)type) != NULL)
        return 1;
    return group == '_' && strchr("boxX", (int)type) != NULL;
}

/* [[fill]align] at the start of s into sp; returns where the rest begins. */
static size_t read_fill_align(const char *s, size_t n, fspec *sp)
{
    if (n == 0)
        return 0;
    size_t j = 0;
    uint32_t c0 = pyfmt_utf8_next(s, n, &j);
    size_t k = j;
    uint32_t c1 = j < n ? pyfmt_utf8_next(s, n, &k) : 0;
    if (j < n && is_align(c1)) {
        sp->fill = c0;
        sp->fill_given = 1;
        sp->align = c1;
        return k;
    }
    if (is_align(c0)) {
        sp->align = c0;
        return j;
    }
    return 0;
}

/* [sign][z][#][0] from s[*i] into sp, *i moved past them; default_align as
 * for parse_spec. */
static void read_flags(const char *s, size_t n, size_t *i, uint32_t default_align, fspec *sp)
{
    uint32_t c = peek(s, n, *i);
    if (*i < n && (c == '+' || c == '-' || c == ' ')) {
        sp->sign = c;
        c = peek(s, n, ++*i);
    }
    if (*i < n && c == 'z') {
        sp->no_neg_0 = 1;
        c = peek(s, n, ++*i);
    }
    if (*i < n && c == '#') {
        sp->alt = 1;
        c = peek(s, n, ++*i);
    }
    if (*i < n && c == '0' && !sp->fill_given) {
        sp->fill = '0';
        if (sp->align == 0 && default_align == '>')
            sp->align = '=';
        ++*i;
    }
}

/* [, or _] from s[*i] into sp, *i moved past it. PYFMT_OK, or PYFMT_RAISES
 * when both marks are given. */
static int read_grouping(const char *s, size_t n, size_t *i, fspec *sp)
{
    uint32_t c = peek(s, n, *i);
    if (*i < n && c == ',') {
        sp->group = ',';
        c = peek(s, n, ++*i);
    }
    if (*i < n && c == '_') {
        if (sp->group != 0)
            return PYFMT_RAISES;
        sp->group = '_';
        c = peek(s, n, ++*i);
    }
    if (*i < n && c == ',' && sp->group == '_')
        return PYFMT_RAISES;
    return PYFMT_OK;
}

/* Reads spec into *sp, one part of the grammar above after the other;
 * default_type stands in for a missing type when the grouping mark is
 * checked, default_align decides what a '0' flag does. PYFMT_OK or
 * PYFMT_RAISES. */
static int parse_spec(const char *s, size_t n, uint32_t default_type, uint32_t default_align,
                      fspec *sp)
{
    memset(sp, 0, sizeof(*sp));
    sp->fill = ' ';
    sp->width = -1;
    sp->precision = -1;
    size_t i = read_fill_align(s, n, sp);
    read_flags(s, n, &i, default_align, sp);
    if (read_number(s, n, &i, &sp->width) != 0 || read_grouping(s, n, &i, sp) != PYFMT_OK)
        return PYFMT_RAISES;
    if (i < n && peek(s, n, i) == '.') {
        i++;
        if (read_number(s, n, &i, &sp->precision) != 0 || sp->precision < 0)
            return PYFMT_RAISES;
    }
    if (i < n) {
        sp->type = pyfmt_utf8_next(s, n, &i);
        if (i < n || sp->type == 0)
            return PYFMT_RAISES; /* more than one character left, or the type U+0000 */
    }
    if (sp->group != 0 && !group_fits_type(sp->group, sp->type ? sp->type : default_type))
        return PYFMT_RAISES;
    return PYFMT_OK;
}

/* Puts body (cp characters) padded to the spec's width with its fill. */
static int put_aligned(buf *out, const fspec *sp, uint32_t align, const char *body, size_t len,
                       size_t cp)
{
    uint64_t pad = sp->width > 0 && (uint64_t)sp->width > cp ? (uint64_t)sp->width - cp : 0;
    uint64_t left = align == '>' ? pad : align == '^' ? pad / 2 : 0;
    int rc = put_fill(out, sp->fill, left);
    if (rc == PYFMT_OK)
        rc = put(out, body, len);
    if (rc == PYFMT_OK)
        rc = put_fill(out, sp->fill, pad - left);
    return rc;
}

/* ---- str.__format__ ------------------------------------------------------ */

static int format_text(buf *out, const char *s, size_t n, const char *spec, size_t speclen)
{
    fspec sp;
    if (speclen == 0)
        return put(out, s, n);
    if (parse_spec(spec, speclen, 's', '<', &sp) != PYFMT_OK)
        return PYFMT_RAISES;
    if ((sp.type != 0 && sp.type != 's') || sp.sign != 0 || sp.alt || sp.no_neg_0 ||
        sp.align == '=')
        return PYFMT_RAISES;
    size_t cp = 0, i = 0;
    while (i < n && (sp.precision < 0 || (uint64_t)cp < (uint64_t)sp.precision)) {
        (void)pyfmt_utf8_next(s, n, &i);
        cp++;
    }
    return put_aligned(out, &sp, sp.align ? sp.align : '<', s, i, cp);
}

int pyfmt_format_text(buf *out, const char *s, size_t n, const char *spec, size_t speclen)
{
    size_t mark = out->len;
    return restore(out, mark, format_text(out, s, n, spec, speclen));
}

/* ---- numbers ------------------------------------------------------------- */

typedef struct numparts {
    char sign;          /* 0, '-', '+' or ' ' */
    const char *prefix; /* "" or "0b", "0o", "0x", "0X" */
    const char *digits; /* the integer digits that are grouped */
    size_t ndigits;     /* bytes */
    size_t digits_cp;   /* characters ('c' puts one non-ASCII character here) */
    const char *rest;   /* fraction, exponent, '%', or "inf"/"nan": ASCII */
    size_t restlen;
    int group_size; /* 3, or 4 for b o x X */
} numparts;

/* Groups np's digits from the right with sep. With min_width > 0 the groups
 * go on with '0' digits until that many characters are written (the last one
 * a digit, so it may end one past). Writes into g, left to right. */
static int group_digits(buf *g, const numparts *np, char sep, int64_t min_width)
{
    size_t remaining = np->ndigits;
    int64_t left = min_width;
    size_t gs = (size_t)np->group_size;
    /* built right to left in g, then reversed */
    for (;;) {
        int64_t want = (int64_t)remaining > left ? (int64_t)remaining : left;
        if (want < 1)
            want = 1;
        size_t l = (size_t)want < gs ? (size_t)want : gs;
        size_t take = remaining < l ? remaining : l;
        for (size_t k = 0; k < take; k++) {
            if (buf_putc(g, np->digits[remaining - 1 - k]) != 0)
                return PYFMT_NOROOM;
        }
        for (size_t k = take; k < l; k++) {
            if (buf_putc(g, '0') != 0)
                return PYFMT_NOROOM;
        }
        remaining -= take;
        left -= (int64_t)l;
        if (remaining == 0 && left <= 0)
            break;
        if (buf_putc(g, sep) != 0)
            return PYFMT_NOROOM;
        left--;
    }
    for (size_t a = 0, b = g->len; b > a + 1; a++, b--) {
        char t = g->data[a];
        g->data[a] = g->data[b - 1];
        g->data[b - 1] = t;
    }
    return PYFMT_OK;
}

static int put_number(buf *out, const fspec *sp, const numparts *np)
{
    buf g;
    buf_init(&g, out->max);
    const char *digits = np->digits;
    size_t nd = np->ndigits, nd_cp = np->digits_cp;
    size_t signlen = np->sign ? 1 : 0, prefixlen = strlen(np->prefix);
    int rc = PYFMT_OK;
    uint32_t align = sp->align ? sp->align : '>';
    if (sp->group != 0 && np->ndigits > 0) {
        int64_t min_width = 0;
        if (sp->fill == '0' && align == '=' && sp->width > 0)
            min_width = sp->width - (int64_t)(signlen + prefixlen + np->restlen);
        rc = group_digits(&g, np, (char)sp->group, min_width);
        if (rc != PYFMT_OK)
            goto done;
        digits = g.data;
        nd = nd_cp = g.len;
    }
    size_t cp = signlen + prefixlen + nd_cp + np->restlen;
    uint64_t pad = sp->width > 0 && (uint64_t)sp->width > cp ? (uint64_t)sp->width - cp : 0;
    uint64_t before = align == '>' ? pad : align == '^' ? pad / 2 : 0;
    uint64_t between = align == '=' ? pad : 0;
    uint64_t after = pad - before - between;
    rc = put_fill(out, sp->fill, before);
    if (rc == PYFMT_OK && signlen)
        rc = put(out, &np->sign, 1);
    if (rc == PYFMT_OK)
        rc = put(out, np->prefix, prefixlen);
    if (rc == PYFMT_OK)
        rc = put_fill(out, sp->fill, between);
    if (rc == PYFMT_OK)
        rc = put(out, digits, nd);
    if (rc == PYFMT_OK)
        rc = put(out, np->rest, np->restlen);
    if (rc == PYFMT_OK)
        rc = put_fill(out, sp->fill, after);
done:
    buf_free(&g);
    return rc;
}

static char sign_char(const fspec *sp, int negative)
{
    if (negative)
        return '-';
    return sp->sign == '+' || sp->sign == ' ' ? (char)sp->sign : 0;
}

/* ---- float.__format__ ---------------------------------------------------- */

/* The ndig (>= 1) leading significant digits of a (finite, >= 0), correctly
 * rounded, into dig; *x gets the decimal exponent of the first. */
static int sci_digits(double a, int64_t ndig, buf *dig, int *x)
{
    int k = ndig < SCI_DIGITS_MAX ? (int)ndig : SCI_DIGITS_MAX;
    char t[SCI_DIGITS_MAX + 16];
    int n = snprintf(t, sizeof(t), "%.*e", k - 1, a);
    if (n <= 0 || (size_t)n >= sizeof(t))
        return PYFMT_NOROOM;
    const char *e = strchr(t, 'e');
    if (e == NULL)
        return PYFMT_NOROOM;
    for (const char *p = t; p < e; p++) {
        if (*p != '.' && buf_putc(dig, *p) != 0)
            return PYFMT_NOROOM;
    }
    *x = (int)strtol(e + 1, NULL, 10);
    for (int64_t z = k; z < ndig; z++) {
        if (buf_putc(dig, '0') != 0)
            return PYFMT_NOROOM;
    }
    return PYFMT_OK;
}

/* The shortest digits that read back as a (finite, >= 0), as repr() picks
 * them, without trailing zeros ("0" for zero); *x as for sci_digits. */
static int short_digits(double a, buf *dig, int *x)
{
    char t[CANON_FLOAT_REPR_MAX];
    size_t n = canon_float_repr(a, t, sizeof(t));
    if (n == 0)
        return PYFMT_NOROOM;
    const char *e = memchr(t, 'e', n);
    size_t mlen = e != NULL ? (size_t)(e - t) : n;
    int intlen = -1, lead = 0, seen = 0;
    for (size_t k = 0; k < mlen; k++) {
        if (t[k] == '.') {
            intlen = (int)dig->len + lead;
            continue;
        }
        if (!seen && t[k] == '0') {
            lead++;
            continue;
        }
        seen = 1;
        if (buf_putc(dig, t[k]) != 0)
            return PYFMT_NOROOM;
    }
    if (intlen < 0)
        intlen = (int)dig->len + lead;
    while (dig->len > 0 && dig->data[dig->len - 1] == '0')
        dig->len--;
    if (dig->len == 0) {
        *x = 0;
        return buf_putc(dig, '0') == 0 ? PYFMT_OK : PYFMT_NOROOM;
    }
    dig->data[dig->len] = '\0';
    *x = intlen - 1 - lead + (e != NULL ? (int)strtol(e + 1, NULL, 10) : 0);
    return PYFMT_OK;
}

/* a (finite, >= 0) with prec digits after the point, correctly rounded. */
static int fixed_text(double a, int64_t prec, buf *txt)
{
    int k = prec < FIXED_DIGITS_MAX ? (int)prec : FIXED_DIGITS_MAX;
    char t[FIXED_DIGITS_MAX + 400];
    int n = snprintf(t, sizeof(t), "%.*f", k, a);
    if (n <= 0 || (size_t)n >= sizeof(t) || buf_append(txt, t, (size_t)n) != 0)
        return PYFMT_NOROOM;
    for (int64_t z = k; z < prec; z++) {
        if (buf_putc(txt, '0') != 0)
            return PYFMT_NOROOM;
    }
    return PYFMT_OK;
}

static int all_zero(const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (s[k] >= '1' && s[k] <= '9')
            return 0;
    }
    return 1;
}

static int put_zeros(buf *b, int64_t count)
{
    for (int64_t k = 0; k < count; k++) {
        if (buf_putc(b, '0') != 0)
            return PYFMT_NOROOM;
    }
    return PYFMT_OK;
}

/* Lays out digits dig (first at exponent x) as Python's format_float_short
 * does for the modes 'r', 'g' and 'e': integer digits into ip, the rest
 * (point, fraction, exponent) into rp. */
static int lay_out_digits(const buf *dig, int x, int sci, int alt, int add_dot_0, int upper,
                          buf *ip, buf *rp)
{
    size_t nd = dig->len;
    const char *d = dig->data;
    if (sci) {
        if (buf_putc(ip, d[0]) != 0)
            return PYFMT_NOROOM;
        if (nd > 1 || alt) {
            if (buf_putc(rp, '.') != 0 || buf_append(rp, d + 1, nd - 1) != 0)
                return PYFMT_NOROOM;
        }
        int ax = x < 0 ? -x : x;
        return buf_printf(rp, "%c%c%02d", upper ? 'E' : 'e', x < 0 ? '-' : '+', ax) == 0
                   ? PYFMT_OK
                   : PYFMT_NOROOM;
    }
    size_t fracstart = rp->len;
    if (x >= 0) {
        size_t intn = (size_t)x + 1;
        if (buf_append(ip, d, intn < nd ? intn : nd) != 0)
            return PYFMT_NOROOM;
        if (intn > nd && put_zeros(ip, (int64_t)(intn - nd)) != PYFMT_OK)
            return PYFMT_NOROOM;
        if (intn < nd && (buf_putc(rp, '.') != 0 || buf_append(rp, d + intn, nd - intn) != 0))
            return PYFMT_NOROOM;
    } else {
        if (buf_putc(ip, '0') != 0 || buf_putc(rp, '.') != 0)
            return PYFMT_NOROOM;
        if (put_zeros(rp, (int64_t)-x - 1) != PYFMT_OK || buf_append(rp, d, nd) != 0)
            return PYFMT_NOROOM;
    }
    if (rp->len == fracstart) {
        if (add_dot_0)
            return buf_append(rp, ".0", 2) == 0 ? PYFMT_OK : PYFMT_NOROOM;
        if (alt)
            return buf_putc(rp, '.') == 0 ? PYFMT_OK : PYFMT_NOROOM;
    }
    return PYFMT_OK;
}

/* What a float type asks for, chosen from the spec before any digit is made. */
typedef struct fpres {
    char mode;     /* 'r' (repr's shortest digits), 'e', 'f' or 'g' */
    int upper;     /* E F G: 'E', "INF", "NAN" */
    int pct;       /* '%': the value times 100, as 'f', then '%' */
    int add_dot_0; /* no type: ".0" after an integer value, as repr() */
    int64_t p;     /* the precision, 6 when not given */
} fpres;

static fpres float_presentation(const fspec *sp)
{
    uint32_t t = sp->type;
    fpres fp;
    fp.upper = t == 'E' || t == 'F' || t == 'G';
    fp.pct = t == '%';
    fp.add_dot_0 = t == 0;
    fp.mode = t == 0 ? (sp->precision < 0 ? 'r' : 'g') : fp.pct ? 'f' : (char)(t | 0x20);
    fp.p = sp->precision < 0 ? 6 : sp->precision;
    return fp;
}

/* inf or nan (v), spelled as the type spells it, signed and padded. */
static int put_nonfinite(buf *out, const fspec *sp, double v, const fpres *fp)
{
    static const char *const names[] = {"inf", "nan", "INF", "NAN", "inf%", "nan%"};
    int which = (isnan(v) ? 1 : 0) + (fp->upper ? 2 : fp->pct ? 4 : 0);
    numparts np = {.prefix = "", .digits = "", .rest = "", .group_size = 3};
    np.sign = sign_char(sp, !isnan(v) && v < 0);
    np.rest = names[which];
    np.restlen = strlen(np.rest);
    return put_number(out, sp, &np);
}

/* Mode 'f': a (finite, >= 0) with p digits after the point; the integer
 * digits into ip, the point and fraction into rp ('#' keeps a bare point).
 * dig is scratch; avail is the room left in the output. */
static int fixed_parts(double a, int64_t p, int alt, size_t avail, buf *dig, buf *ip, buf *rp)
{
    if ((uint64_t)p > avail)
        return PYFMT_NOROOM;
    int rc = fixed_text(a, p, dig);
    if (rc != PYFMT_OK)
        return rc;
    const char *dot = memchr(dig->data, '.', dig->len);
    size_t intn = dot != NULL ? (size_t)(dot - dig->data) : dig->len;
    if (buf_append(ip, dig->data, intn) != 0 ||
        buf_append(rp, dig->data + intn, dig->len - intn) != 0 ||
        (dot == NULL && alt && buf_putc(rp, '.') != 0))
        return PYFMT_NOROOM;
    return PYFMT_OK;
}

/* Modes 'r', 'e' and 'g': the significant digits of a (finite, >= 0) into
 * dig, the exponent of the first into *x, and into *sci whether Python
 * writes them in scientific notation. avail as for fixed_parts. */
static int significant_digits(double a, const fspec *sp, const fpres *fp, size_t avail, buf *dig,
                              int *x, int *sci)
{
    int64_t p = fp->p;
    int rc;
    if (fp->mode == 'r') {
        rc = short_digits(a, dig, x);
        *sci = *x < -4 || *x >= 16;
        return rc;
    }
    if (fp->mode == 'e') {
        if ((uint64_t)p >= avail)
            return PYFMT_NOROOM;
        *sci = 1;
        return sci_digits(a, p + 1, dig, x);
    }
    /* 'g', and no type with a precision */
    if (p == 0)
        p = 1;
    if (sp->alt && (uint64_t)p > avail)
        return PYFMT_NOROOM;
    rc = sci_digits(a, sp->alt ? p : (p < SCI_DIGITS_MAX ? p : SCI_DIGITS_MAX), dig, x);
    if (!sp->alt) {
        while (dig->len > 1 && dig->data[dig->len - 1] == '0')
            dig->len--;
    }
    *sci = *x < -4 || *x >= (fp->add_dot_0 ? p - 1 : p);
    return rc;
}

/* a (finite, >= 0) as the presentation asks: the integer digits into ip,
 * the rest (point, fraction, exponent, '%') into rp. dig is scratch. */
static int float_parts(double a, const fspec *sp, const fpres *fp, size_t avail, buf *dig, buf *ip,
                       buf *rp)
{
    int rc;
    if (fp->mode == 'f') {
        rc = fixed_parts(a, fp->p, sp->alt, avail, dig, ip, rp);
    } else {
        int x = 0, sci = 0;
        rc = significant_digits(a, sp, fp, avail, dig, &x, &sci);
        if (rc == PYFMT_OK)
            rc = lay_out_digits(dig, x, sci, sp->alt, fp->add_dot_0 && !sci, fp->upper, ip, rp);
    }
    if (rc == PYFMT_OK && fp->pct && buf_putc(rp, '%') != 0)
        rc = PYFMT_NOROOM;
    return rc;
}

/* Puts the float v laid out in ip and rp: signed ('z' drops the '-' of a
 * value that shows as zero), grouped, padded and aligned by the spec. */
static int put_float_parts(buf *out, const fspec *sp, double v, int upper, const buf *ip,
                           const buf *rp)
{
    const char *e = memchr(rp->data != NULL ? rp->data : "", upper ? 'E' : 'e', rp->len);
    size_t fracn = e != NULL ? (size_t)(e - rp->data) : rp->len;
    int zero = all_zero(ip->data, ip->len) && all_zero(rp->data, fracn);
    numparts np = {.prefix = "", .digits = "", .rest = "", .group_size = 3};
    np.sign = sign_char(sp, signbit(v) && !(sp->no_neg_0 && zero));
    np.digits = ip->data;
    np.ndigits = np.digits_cp = ip->len;
    np.rest = rp->data != NULL ? rp->data : "";
    np.restlen = rp->len;
    return put_number(out, sp, &np);
}

/* float.__format__ once the spec is read (int's e f g % come here too): the
 * type checked, the presentation chosen, the digits laid out, then put. */
static int format_float_spec(buf *out, double v, const fspec *sp)
{
    uint32_t t = sp->type;
    if (t != 0 && (t >= 0x80 || strchr("eEfFgGn%", (int)t) == NULL))
        return PYFMT_RAISES;
    if (sp->precision > INT_MAX)
        return PYFMT_RAISES; /* precision too big */
    if (t == 'n')
        return PYFMT_UNSUPPORTED; /* locale-dependent */
    fpres fp = float_presentation(sp);
    if (fp.pct)
        v *= 100;
    if (!isfinite(v))
        return put_nonfinite(out, sp, v, &fp);
    buf dig, ip, rp;
    buf_init(&dig, out->max);
    buf_init(&ip, out->max);
    buf_init(&rp, out->max);
    int rc = float_parts(fabs(v), sp, &fp, room(out), &dig, &ip, &rp);
    if (rc == PYFMT_OK)
        rc = put_float_parts(out, sp, v, fp.upper, &ip, &rp);
    buf_free(&dig);
    buf_free(&ip);
    buf_free(&rp);
    return rc;
}

static int format_float(buf *out, double v, const char *spec, size_t speclen)
{
    fspec sp;
    if (speclen == 0)
        return float_repr(out, v);
    if (parse_spec(spec, speclen, 0, '>', &sp) != PYFMT_OK)
        return PYFMT_RAISES;
    return format_float_spec(out, v, &sp);
}

int pyfmt_format_float(buf *out, double v, const char *spec, size_t speclen)
{
    size_t mark = out->len;
    return restore(out, mark, format_float(out, v, spec, speclen));
}

/* ---- int.__format__ ------------------------------------------------------ */

static int format_int(buf *out, long long v, const char *spec, size_t speclen)
{
    fspec sp;
    if (speclen == 0)
        return int_text(out, v);
    if (parse_spec(spec, speclen, 'd', '>', &sp) != PYFMT_OK)
        return PYFMT_RAISES;
    uint32_t t = sp.type ? sp.type : 'd';
    if (t < 0x80 && strchr("eEfFgG%", (int)t) != NULL)
        return format_float_spec(out, (double)v, &sp);
    if (t >= 0x80 || strchr("bcdoxXn", (int)t) == NULL)
        return PYFMT_RAISES;
    if (sp.precision >= 0 || sp.no_neg_0)
        return PYFMT_RAISES;
    unsigned long long mag = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    numparts np = {
        .sign = sign_char(&sp, v < 0), .prefix = "", .digits = "", .rest = "", .group_size = 3};
    char digits[72];
    size_t nd = 0;
    if (t == 'c') {
        if (sp.sign != 0 || sp.alt || v < 0 || v > 0x10FFFF)
            return PYFMT_RAISES;
        if (v >= 0xD800 && v <= 0xDFFF)
            return PYFMT_UNSUPPORTED; /* a lone surrogate has no UTF-8 */
        np.sign = 0;
        np.digits = digits;
        np.ndigits = utf8_encode((uint32_t)v, digits);
        np.digits_cp = 1;
        return put_number(out, &sp, &np);
    }
    if (t == 'n')
        return PYFMT_UNSUPPORTED; /* locale-dependent */
    unsigned base = t == 'b' ? 2 : t == 'o' ? 8 : t == 'd' ? 10 : 16;
    const char *set = t == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
    char rev[72];
    do {
        rev[nd++] = set[mag % base];
        mag /= base;
    } while (mag > 0);
    for (size_t k = 0; k < nd; k++)
        digits[k] = rev[nd - 1 - k];
    if (sp.alt && base != 10)
        np.prefix = t == 'b' ? "0b" : t == 'o' ? "0o" : t == 'x' ? "0x" : "0X";
    np.digits = digits;
    np.ndigits = np.digits_cp = nd;
    np.group_size = base == 10 ? 3 : 4;
    return put_number(out, &sp, &np);
}

int pyfmt_format_int(buf *out, long long v, const char *spec, size_t speclen)
{
    size_t mark = out->len;
    return restore(out, mark, format_int(out, v, spec, speclen));
}

/* ---- format() ------------------------------------------------------------ */

static int format_value(buf *out, const json_t *v, const char *spec, size_t speclen)
{
    if (v == NULL)
        return PYFMT_UNSUPPORTED;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return format_text(out, json_string_value(v), json_string_length(v), spec, speclen);
    case JSON_INTEGER:
        return format_int(out, (long long)json_integer_value(v), spec, speclen);
    case JSON_REAL:
        return format_float(out, json_real_value(v), spec, speclen);
    case JSON_TRUE:
    case JSON_FALSE:
        /* bool has no __format__ of its own: int's, which gives str() for "" */
        if (speclen == 0)
            return obj_text(out, v, MODE_STR, 0);
        return format_int(out, json_is_true(v) ? 1 : 0, spec, speclen);
    case JSON_NULL:
    case JSON_ARRAY:
    case JSON_OBJECT:
        /* object.__format__: str(self) for "", TypeError for anything else */
        if (speclen != 0)
            return PYFMT_RAISES;
        return obj_text(out, v, MODE_STR, 0);
    }
    return PYFMT_UNSUPPORTED;
}

int pyfmt_format(buf *out, const json_t *v, const char *spec, size_t speclen)
{
    size_t mark = out->len;
    return restore(out, mark, format_value(out, v, spec, speclen));
}
