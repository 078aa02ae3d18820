/* canon.c -- Python-compatible canonical JSON: a strict parser and a dumper
 * that writes json.dumps(value, sort_keys=True) byte for byte.
 *
 * Input decoding. json.loads(bytes) first picks an encoding the way Python's
 * json.detect_encoding does (UTF-32/UTF-16 byte order marks, then UTF-8 with a
 * BOM, then the pattern of zero bytes in the first four, else UTF-8) and
 * decodes with 'surrogatepass'. UTF-8 input (the only kind seen in practice)
 * is parsed in place; UTF-16/UTF-32 input is first transcoded into UTF-8. All
 * text inside the parser is "generalized" UTF-8: lone surrogates appear in
 * their 3-byte form (ED A0..BF xx), which keeps two properties we rely on:
 * byte order equals code point order, and equal strings have equal bytes.
 *
 * Parsing is iterative. Finished values are pushed on a value stack; an open
 * container leaves a placeholder on that stack that remembers the index of
 * the enclosing container's placeholder, so no separate frame stack exists
 * and nesting costs no C recursion. When a container closes, its children are
 * copied from the stack into an arena array. An object's members are sorted
 * by key bytes (ties by position in the text, which the key pointers give:
 * every decoded string gets its own NUL-terminated slot in one text buffer, in
 * input order), and of each run of equal keys only the last is kept, exactly
 * as a Python dict followed by sorted() would. Already sorted objects, the
 * common case for signed payloads, skip the sort.
 *
 * Memory is linear in the input: one text buffer the size of the input, and
 * per value 24 bytes on the stack plus 24 (array item) or 40 (object member)
 * in the arena, so about 25 times the input at worst ("[1,1,1,...]").
 *
 * Numbers. Integers keep their digit text. Floats are read from their first
 * 19 significant digits times a power of ten, one 64x128-bit product with a
 * table of powers of five (canon_pow5.h), correctly rounded; the rare texts
 * that product cannot decide (a value within 2^-64 of a rounding boundary,
 * or more than 19 digits that straddle one) go to strtod on a rewritten text
 * "<digits>e<exponent>" with no decimal point (independent of the locale),
 * the mantissa cut to 800 digits plus a sticky one, which cannot change the
 * rounding (a halfway point between two doubles has at most 768 significant
 * digits). Reading a float is linear in its length either way.
 *
 * Float output is Python's repr: the shortest digit string that reads back
 * to the same double, found with exact integer arithmetic and the same table
 * in a few dozen nanoseconds (see the float repr section), written
 * positionally or with an exponent as repr() does.
 */
#include "core/canon.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/canon_pow5.h"

#define CANON_MAX_INT_DIGITS 4300 /* Python 3.11's int/str conversion limit */
#define CANON_MAX_MANTISSA 800    /* float digits kept before the sticky one */
#define NO_TOP SIZE_MAX

typedef struct canon_val canon_val;
typedef struct canon_member canon_member;

struct canon_val {
    canon_type type;
    size_t n; /* STRING, INT: byte length; ARRAY, OBJECT: count */
    union {
        const char *s;         /* STRING: generalized UTF-8; INT: digit text */
        double d;              /* FLOAT */
        canon_val *items;      /* ARRAY */
        canon_member *members; /* OBJECT: sorted by key, keys unique */
    } u;
};

struct canon_member {
    const char *key; /* in doc->text, NUL-terminated (may hold NUL bytes) */
    size_t klen;
    canon_val val;
};

typedef struct canon_chunk {
    struct canon_chunk *next;
    size_t cap;
    size_t used;
    max_align_t data[];
} canon_chunk;

struct canon_doc {
    canon_val root;
    size_t depth;        /* deepest container nesting, sizes the dumper's stack */
    size_t srclen;       /* length of the parsed text, to size the dump buffer */
    char *text;          /* owned: every string and integer text */
    canon_chunk *chunks; /* owned: arrays of items and members */
};

typedef struct parser {
    const unsigned char *start;
    const unsigned char *p;
    const unsigned char *end;
    canon_doc *doc;
    size_t tlen;      /* bytes used in doc->text */
    canon_val *stack; /* owned by the parser, freed when it ends */
    size_t n;
    size_t cap;
    size_t top; /* placeholder of the innermost open container */
    size_t depth;
    char *err;
    size_t errlen;
} parser;

/* ---- errors and memory ------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

static int fail(parser *ps, const char *msg)
{
    if (ps->err != NULL && ps->errlen > 0)
        snprintf(ps->err, ps->errlen, "%s at offset %zu", msg, (size_t)(ps->p - ps->start));
    return -1;
}

/* fail() with the offset of p: the parser stops there. */
static int fail_at(parser *ps, const unsigned char *p, const char *msg)
{
    ps->p = p;
    return fail(ps, msg);
}

/* Returns `size` bytes (8-aligned) owned by doc, or NULL when out of memory. */
static void *arena_alloc(canon_doc *doc, size_t size)
{
    if (size > SIZE_MAX - 64)
        return NULL;
    size = (size + 7) & ~(size_t)7;
    canon_chunk *c = doc->chunks;
    if (c == NULL || c->cap - c->used < size) {
        size_t cap = c != NULL ? c->cap * 2 : 2048;
        if (cap > ((size_t)1 << 20))
            cap = (size_t)1 << 20;
        if (cap < size)
            cap = size;
        canon_chunk *nc = malloc(sizeof(*nc) + cap);
        if (nc == NULL)
            return NULL;
        nc->next = doc->chunks;
        nc->cap = cap;
        nc->used = 0;
        doc->chunks = nc;
        c = nc;
    }
    void *mem = (char *)c->data + c->used;
    c->used += size;
    return mem;
}

void canon_free(canon_doc *doc)
{
    if (doc == NULL)
        return;
    canon_chunk *c = doc->chunks;
    while (c != NULL) {
        canon_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(doc->text);
    free(doc);
}

/* Makes room for one more value on the stack: 0, or -1 out of memory. */
static int grow(parser *ps)
{
    if (ps->n < ps->cap)
        return 0;
    size_t cap = ps->cap != 0 ? ps->cap * 2 : 64;
    if (cap > SIZE_MAX / sizeof(canon_val))
        return fail(ps, "out of memory");
    canon_val *s = realloc(ps->stack, cap * sizeof(canon_val));
    if (s == NULL)
        return fail(ps, "out of memory");
    ps->stack = s;
    ps->cap = cap;
    return 0;
}

static int push(parser *ps, canon_val v)
{
    if (grow(ps) < 0)
        return -1;
    ps->stack[ps->n++] = v;
    return 0;
}

/* push() for a number, written field by field in place. A struct passed by
 * value is stored in parts and read back whole, which defeats the store
 * forwarding of x86 CPUs (a stall of a dozen cycles a value): in place,
 * [1, 1, ...] parses 30% faster and [1E9, ...] 12%. */
static int push_number(parser *ps, canon_type type, double d, const char *s, size_t n)
{
    if (grow(ps) < 0)
        return -1;
    canon_val *v = &ps->stack[ps->n++];
    v->type = type;
    v->n = n;
    if (type == CANON_FLOAT)
        v->u.d = d;
    else
        v->u.s = s;
    return 0;
}

/* ---- input encodings -------------------------------------------------- */

/* Appends code point cp as (generalized) UTF-8; surrogates get 3 bytes. */
static unsigned char *put_utf8(unsigned char *o, uint32_t cp)
{
    if (cp < 0x80) {
        *o++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *o++ = (unsigned char)(0xC0 | (cp >> 6));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (unsigned char)(0xE0 | (cp >> 12));
        *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (unsigned char)(0xF0 | (cp >> 18));
        *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    return o;
}

static uint32_t read_unit(const unsigned char *p, int width, int big)
{
    if (width == 2)
        return big ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
    if (big)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* Decodes UTF-16 (width 2) or UTF-32 (width 4) with Python's 'surrogatepass'
 * rules into a new generalized UTF-8 buffer owned by the caller. UTF-16 joins
 * a high surrogate followed by a low one; every other surrogate is kept alone.
 * Returns NULL with err set on truncated data, code points above U+10FFFF, or
 * out of memory. */
static unsigned char *transcode(const unsigned char *in, size_t len, int width, int big,
                                size_t *outlen, char *err, size_t errlen)
{
    if (len % (size_t)width != 0) {
        set_err(err, errlen, "truncated UTF-16/UTF-32 data");
        return NULL;
    }
    if (len > (SIZE_MAX - 16) / 2) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    unsigned char *out = malloc(len * 2 + 16);
    if (out == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    unsigned char *o = out;
    size_t i = 0;
    while (i < len) {
        uint32_t cp = read_unit(in + i, width, big);
        i += (size_t)width;
        if (width == 4 && cp > 0x10FFFF) {
            free(out);
            set_err(err, errlen, "UTF-32 code point out of range");
            return NULL;
        }
        if (width == 2 && cp >= 0xD800 && cp < 0xDC00 && i < len) {
            uint32_t lo = read_unit(in + i, 2, big);
            if (lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 2;
            }
        }
        o = put_utf8(o, cp);
    }
    *outlen = (size_t)(o - out);
    return out;
}

/* ---- strings ---------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (surrogates allowed, as Python's
 * 'surrogatepass' does), or 0 when the bytes are not valid UTF-8. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80;
        if (avail < 3 || p[1] < lo || p[1] > 0xBF || (p[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80;
        unsigned hi = c == 0xF4 ? 0x8F : 0xBF;
        if (avail < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

static int hexval(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

/* Reads 4 hex digits at p (p + 4 <= end checked by the caller); -1 if bad. */
static long hex4(const unsigned char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* The character a one-letter escape (\" \\ \/ \b \f \n \r \t) stands for,
 * given the letter; -1 for any other. */
static int short_escape(unsigned c)
{
    switch (c) {
    case '"':
    case '\\':
    case '/':
        return (int)c;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return -1;
    }
}

/* The \uXXXX escape at p (its backslash, p + 2 <= end) into *cp, joined with
 * a \uXXXX low surrogate right after a high one, as Python's json does; a
 * lone surrogate stays alone. Returns the bytes read (6 or 12), or 0 when
 * the four hex digits are not there. */
static size_t u_escape(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
    long hi = end - p >= 6 ? hex4(p + 2) : -1;
    if (hi < 0)
        return 0;
    *cp = (uint32_t)hi;
    if (hi >= 0xD800 && hi < 0xDC00 && end - p >= 12 && p[6] == '\\' && p[7] == 'u') {
        long lo = hex4(p + 8);
        if (lo >= 0xDC00 && lo < 0xE000) {
            *cp = (uint32_t)(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
            return 12;
        }
    }
    return 6;
}

/* Decodes the escape at *pp (a backslash) into *op and moves both past it.
 * 0, or -1 with the error set. */
static int decode_escape(parser *ps, const unsigned char **pp, unsigned char **op)
{
    const unsigned char *p = *pp;
    if (ps->end - p < 2)
        return fail_at(ps, p, "unterminated string");
    int e = short_escape(p[1]);
    if (e >= 0) {
        *(*op)++ = (unsigned char)e;
        *pp = p + 2;
        return 0;
    }
    if (p[1] != 'u')
        return fail_at(ps, p, "invalid escape");
    uint32_t cp = 0;
    size_t k = u_escape(p, ps->end, &cp);
    if (k == 0)
        return fail_at(ps, p, "invalid \\u escape");
    *op = put_utf8(*op, cp);
    *pp = p + k;
    return 0;
}

/* Parses the string whose opening quote is at ps->p into a fresh slot of the
 * text buffer (decoded, then a NUL) and pushes it. Runs of plain ASCII are
 * copied at once; UTF-8 is checked, escapes decoded (decode_escape). */
static int parse_string(parser *ps)
{
    const unsigned char *p = ps->p + 1;
    const unsigned char *end = ps->end;
    unsigned char *base = (unsigned char *)ps->doc->text + ps->tlen;
    unsigned char *o = base;
    for (;;) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p != run) {
            memcpy(o, run, (size_t)(p - run));
            o += p - run;
        }
        if (p == end)
            return fail_at(ps, p, "unterminated string");
        unsigned c = *p;
        if (c == '"') {
            p++;
            break;
        }
        if (c < 0x20)
            return fail_at(ps, p, "control character in string");
        if (c >= 0x80) {
            size_t k = utf8_seq(p, end);
            if (k == 0)
                return fail_at(ps, p, "invalid UTF-8");
            memcpy(o, p, k);
            o += k;
            p += k;
            continue;
        }
        if (decode_escape(ps, &p, &o) < 0) /* a backslash */
            return -1;
    }
    size_t slen = (size_t)(o - base);
    *o = '\0';
    ps->tlen += slen + 1;
    ps->p = p;
    canon_val v = {.type = CANON_STRING, .n = slen, .u.s = (const char *)base};
    return push(ps, v);
}

/* ---- numbers ---------------------------------------------------------- */

static int is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

/* The high 64 bits of a * b; the low ones in *lo. */
static uint64_t mul64(uint64_t a, uint64_t b, uint64_t *lo)
{
#if defined(__SIZEOF_INT128__)
    __extension__ typedef unsigned __int128 u128;
    u128 p = (u128)a * b;
    *lo = (uint64_t)p;
    return (uint64_t)(p >> 64);
#else
    uint64_t a0 = a & 0xFFFFFFFFu, a1 = a >> 32;
    uint64_t b0 = b & 0xFFFFFFFFu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xFFFFFFFFu) + (p10 & 0xFFFFFFFFu);
    *lo = (mid << 32) | (p00 & 0xFFFFFFFFu);
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
#endif
}

/* 5^0 .. 5^27: every power of five below 2^64. */
static const uint64_t pow5_small[28] = {
    UINT64_C(1),
    UINT64_C(5),
    UINT64_C(25),
    UINT64_C(125),
    UINT64_C(625),
    UINT64_C(3125),
    UINT64_C(15625),
    UINT64_C(78125),
    UINT64_C(390625),
    UINT64_C(1953125),
    UINT64_C(9765625),
    UINT64_C(48828125),
    UINT64_C(244140625),
    UINT64_C(1220703125),
    UINT64_C(6103515625),
    UINT64_C(30517578125),
    UINT64_C(152587890625),
    UINT64_C(762939453125),
    UINT64_C(3814697265625),
    UINT64_C(19073486328125),
    UINT64_C(95367431640625),
    UINT64_C(476837158203125),
    UINT64_C(2384185791015625),
    UINT64_C(11920928955078125),
    UINT64_C(59604644775390625),
    UINT64_C(298023223876953125),
    UINT64_C(1490116119384765625),
    UINT64_C(7450580596923828125),
};

/* The number of leading zero bits of w (w > 0). */
static int clz64(uint64_t w)
{
#if defined(__GNUC__)
    return __builtin_clzll(w);
#else
    int n = 0;
    while ((w & (UINT64_C(1) << 63)) == 0) {
        w <<= 1;
        n++;
    }
    return n;
#endif
}

/* w * 10^x (w > 0, POW5_MIN <= x <= 308) rounded to the nearest double, ties
 * to even, into *out. Returns 0, or -1 when the 128-bit product cannot
 * decide (the caller then asks strtod).
 *
 * w * 10^x = w * 5^x * 2^x. With w shifted up to 64 significant bits (wn)
 * and 5^x's table mantissa M, the 192-bit P = wn * M is the exact product
 * Pe = wn * 5^x * 2^-b or at most wn < 2^64 above it (M exceeds the exact
 * mantissa by less than 1; it is exact for 0 <= x <= POW5_EXACT_MAX). The
 * double's 53 bits (fewer for a subnormal) are the top bits of P; the rest, R,
 * decides the rounding against the halfway point H. R < H: down; R > H + 2^64
 * or more: up (Pe is above H too). An R a little below the mantissa's last
 * unit is harmless: Pe then lies just under the same double. Only H <= R <
 * H + 2^64 with an inexact M is undecided: at R == H, Pe lies below H (down);
 * otherwise Pe may be on either side, unless 5^-x divides w, when the value is
 * the integer w / 5^-x times 2^x and converts exactly. */
static int scale_decimal(uint64_t w, int x, double *out)
{
    int lz = clz64(w);
    uint64_t wn = w << lz;
    const pow5_u128 *m = &pow5_mant[x - POW5_MIN];
    uint64_t w0, a = mul64(wn, m->lo, &w0);
    uint64_t b_lo, b_hi = mul64(wn, m->hi, &b_lo);
    uint64_t w1 = a + b_lo;
    uint64_t w2 = b_hi + (w1 < a);
    /* P's top bit: P >= 2^190, as wn >= 2^63 and M >= 2^127 */
    int hb = (w2 >> 63) != 0 ? 191 : 190;
    /* the value's top bit: it is P * 2^(x + b - lz) */
    int top = hb + x + pow5_exp2[x - POW5_MIN] - lz;
    if (top > 1023) {
        *out = HUGE_VAL;
        return 0;
    }
    int sh = hb - 52; /* bits of P below the double's last one */
    if (top < -1022)
        sh += -1022 - top; /* a subnormal keeps fewer */
    if (sh > 192) {
        *out = 0.0; /* below half the smallest subnormal */
        return 0;
    }
    int rs = sh - 128; /* 10 .. 64: R's bits in w2 */
    uint64_t mant = rs == 64 ? 0 : w2 >> rs;
    uint64_t rtop = rs == 64 ? w2 : w2 & ((UINT64_C(1) << rs) - 1);
    uint64_t htop = UINT64_C(1) << (rs - 1);
    int exact = x >= 0 && x <= POW5_EXACT_MAX;
    int up;
    if (rtop != htop) {
        up = rtop > htop;
    } else if ((w1 | w0) == 0) {
        up = exact && (mant & 1) != 0;
    } else if (w1 != 0 || exact) {
        up = 1;
    } else {
        if (x < 0 && x >= -27 && w % pow5_small[-x] == 0) {
            *out = ldexp((double)(w / pow5_small[-x]), x);
            return 0;
        }
        return -1;
    }
    mant += (uint64_t)up;
    /* a normal mantissa carries its hidden bit into the exponent field; a
     * rounding carry moves to the next binade, or to infinity */
    uint64_t bits = top < -1022 ? mant : ((uint64_t)(top + 1022) << 52) + mant;
    memcpy(out, &bits, sizeof(*out));
    return 0;
}

/* 10^0 .. 10^22, every power of ten a double holds exactly. */
static const double exact_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The correctly rounded value of the digits [first, total) of the integer
 * part ip then the fraction fp (the first one not 0), as an integer, times
 * 10^x, by strtod: the slow path for what scale_decimal cannot decide.
 * Mantissas longer than CANON_MAX_MANTISSA digits are cut to that length
 * plus a sticky 1 when a nonzero digit was cut, which cannot change the
 * rounding (a halfway point between two doubles has at most 768 significant
 * digits). */
static double strtod_decimal(const unsigned char *ip, size_t ilen, const unsigned char *fp,
                             size_t first, size_t total, long long x)
{
    char buf[CANON_MAX_MANTISSA + 40];
    size_t m = total - first;
    size_t keep = m > CANON_MAX_MANTISSA ? CANON_MAX_MANTISSA : m;
    size_t k = 0;
    for (size_t i = first; i < first + keep; i++)
        buf[k++] = (char)(i < ilen ? ip[i] : fp[i - ilen]);
    if (keep < m) {
        for (size_t i = first + keep; i < total; i++) {
            if ((i < ilen ? ip[i] : fp[i - ilen]) != '0') {
                buf[k++] = '1';
                x--;
                break;
            }
        }
        x += (long long)(m - keep);
    }
    snprintf(buf + k, sizeof(buf) - k, "e%lld", x);
    return strtod(buf, NULL);
}

/* The value of the decimal [ip, ip+ilen) "." [fp, fp+flen) "e" exponent,
 * correctly rounded, overflow to infinity, underflow to zero.
 *
 * The first 19 significant digits make w; when that is all of them, w * 10^x
 * goes to scale_decimal. When more digits follow, the value lies between
 * w * 10^x and (w + 1) * 10^x, and when both round to the same double so
 * does the value. Anything else (undecided by scale_decimal, or the two
 * bounds apart) goes to strtod. The cost is linear in the text: one pass over
 * the digits, then at most 800 of them for strtod. */
static double decimal_to_double(const unsigned char *ip, size_t ilen, const unsigned char *fp,
                                size_t flen, int eneg, const unsigned char *ep, size_t elen)
{
    const long long cap = 1000000000000000LL; /* far beyond any double */
    long long e = 0;
    for (size_t i = 0; i < elen; i++) {
        if (e < cap)
            e = e * 10 + (ep[i] - '0');
    }
    if (eneg)
        e = -e;
    /* the digits, int part then fraction, without leading zeros */
    size_t total = ilen + flen;
    size_t first = 0;
    while (first < total && (first < ilen ? ip[first] : fp[first - ilen]) == '0')
        first++;
    if (first == total)
        return 0.0;
    size_t m = total - first;
    long long x = e - (long long)flen; /* value = M * 10^x, M has m digits */
    long long lead = x + (long long)m - 1;
    if (lead > 400)
        return HUGE_VAL;
    if (lead < -400)
        return 0.0;
    size_t take = m < 19 ? m : 19;
    uint64_t w = 0;
    for (size_t i = first; i < first + take; i++)
        w = w * 10 + (uint64_t)((i < ilen ? ip[i] : fp[i - ilen]) - '0');
    long long wx = x + (long long)(m - take); /* value = (w + cut) * 10^wx */
    int cut = 0;
    for (size_t i = first + take; i < total && !cut; i++)
        cut = (i < ilen ? ip[i] : fp[i - ilen]) != '0';
    if (wx < POW5_MIN) /* below 10^19 * 10^-343, under half the smallest double */
        return 0.0;
    if (wx > 308)
        return HUGE_VAL;
    double d, d2;
#if FLT_EVAL_METHOD == 0
    /* Clinger's fast path: w and 10^|wx| are exact doubles, so one correctly
     * rounded multiplication or division gives the answer */
    if (!cut && w <= (UINT64_C(1) << 53) && wx >= -22 && wx <= 22)
        return wx >= 0 ? (double)w * exact_pow10[wx] : (double)w / exact_pow10[-wx];
#endif
    if (scale_decimal(w, (int)wx, &d) == 0 &&
        (!cut || (scale_decimal(w + 1, (int)wx, &d2) == 0 && d == d2)))
        return d;
    return strtod_decimal(ip, ilen, fp, first, total, x);
}

/* The fraction after the '.' at p: its digits into *fp and *flen. Returns
 * the end of them, or NULL ("bad number" at the point) when none follows. */
static const unsigned char *scan_fraction(parser *ps, const unsigned char *p,
                                          const unsigned char **fp, size_t *flen)
{
    const unsigned char *end = ps->end;
    if (end - p < 2 || !is_digit(p[1])) {
        fail_at(ps, p, "bad number");
        return NULL;
    }
    *fp = ++p;
    while (p < end && is_digit(*p))
        p++;
    *flen = (size_t)(p - *fp);
    return p;
}

/* The exponent at p ('e' or 'E', a sign, digits): its digits into *ep and
 * *elen, a '-' into *eneg. Returns the end of it, or NULL ("bad number" at
 * the 'e') when no digit follows. */
static const unsigned char *scan_exponent(parser *ps, const unsigned char *p,
                                          const unsigned char **ep, size_t *elen, int *eneg)
{
    const unsigned char *end = ps->end;
    const unsigned char *q = p + 1;
    if (q < end && (*q == '+' || *q == '-')) {
        *eneg = *q == '-';
        q++;
    }
    if (q == end || !is_digit(*q)) {
        fail_at(ps, p, "bad number");
        return NULL;
    }
    *ep = q;
    while (q < end && is_digit(*q))
        q++;
    *elen = (size_t)(q - *ep);
    return q;
}

/* Pushes the integer of digits [ip, ip+ilen), negative when neg ("-0" is
 * written "0"), as its text; ps->p moves on to p. */
static int push_int(parser *ps, int neg, const unsigned char *ip, size_t ilen,
                    const unsigned char *p)
{
    if (ilen > CANON_MAX_INT_DIGITS)
        return fail(ps, "integer has more than 4300 digits");
    char *t = ps->doc->text + ps->tlen;
    size_t tl = 0;
    if (neg && !(ilen == 1 && ip[0] == '0'))
        t[tl++] = '-';
    memcpy(t + tl, ip, ilen);
    tl += ilen;
    ps->tlen += tl;
    ps->p = p;
    return push_number(ps, CANON_INT, 0.0, t, tl);
}

/* Parses a number (or -Infinity) at ps->p and pushes it: the sign, the
 * integer digits, then a fraction or an exponent make it a float. */
static int parse_number(parser *ps)
{
    const unsigned char *p = ps->p;
    const unsigned char *end = ps->end;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
        if (end - p >= 8 && memcmp(p, "Infinity", 8) == 0) {
            ps->p = p + 8;
            canon_val v = {.type = CANON_FLOAT, .u.d = -HUGE_VAL};
            return push(ps, v);
        }
    }
    const unsigned char *ip = p;
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && is_digit(*p))
            p++;
    } else {
        return fail_at(ps, p, "expected a value");
    }
    size_t ilen = (size_t)(p - ip);
    const unsigned char *fp = NULL, *ep = NULL;
    size_t flen = 0, elen = 0;
    int eneg = 0, is_float = 0;
    if (p < end && *p == '.') {
        p = scan_fraction(ps, p, &fp, &flen);
        if (p == NULL)
            return -1;
        is_float = 1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p = scan_exponent(ps, p, &ep, &elen, &eneg);
        if (p == NULL)
            return -1;
        is_float = 1;
    }
    if (!is_float)
        return push_int(ps, neg, ip, ilen, p);
    double d = decimal_to_double(ip, ilen, fp, flen, eneg, ep, elen);
    ps->p = p;
    return push_number(ps, CANON_FLOAT, neg ? -d : d, NULL, 0);
}

/* ---- containers ------------------------------------------------------- */

static int open_container(parser *ps, canon_type type)
{
    if (ps->depth == CANON_MAX_DEPTH)
        return fail(ps, "nested too deeply");
    canon_val ph = {.type = type, .n = ps->top};
    if (push(ps, ph) < 0)
        return -1;
    ps->top = ps->n - 1;
    ps->depth++;
    if (ps->depth > ps->doc->depth)
        ps->doc->depth = ps->depth;
    return 0;
}

static int key_cmp(const canon_member *a, const canon_member *b)
{
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = memcmp(a->key, b->key, n);
    if (c != 0)
        return c;
    if (a->klen != b->klen)
        return a->klen < b->klen ? -1 : 1;
    return 0;
}

/* qsort order: by key, then by position in the text (the key pointers). */
static int member_cmp(const void *pa, const void *pb)
{
    const canon_member *a = pa;
    const canon_member *b = pb;
    int c = key_cmp(a, b);
    if (c != 0)
        return c;
    if (a->key == b->key)
        return 0;
    return (uintptr_t)a->key < (uintptr_t)b->key ? -1 : 1;
}

/* Closes an array: the count values at kids, copied into the arena. */
static int close_array(parser *ps, const canon_val *kids, size_t count, canon_val *done)
{
    if (count > 0) {
        canon_val *items = count <= SIZE_MAX / sizeof(*items)
                               ? arena_alloc(ps->doc, count * sizeof(*items))
                               : NULL;
        if (items == NULL)
            return fail(ps, "out of memory");
        memcpy(items, kids, count * sizeof(*items));
        done->u.items = items;
    }
    done->n = count;
    return 0;
}

/* Sorts the members ms[0..pairs) by key, then position, and keeps of each
 * run of equal keys only the last, as a dict followed by sorted() would.
 * Returns how many are kept. */
static size_t sort_members(canon_member *ms, size_t pairs)
{
    qsort(ms, pairs, sizeof(*ms), member_cmp);
    size_t kept = 0;
    for (size_t i = 0; i < pairs; i++) {
        if (i + 1 < pairs && key_cmp(&ms[i], &ms[i + 1]) == 0)
            continue; /* a later one of the same key wins */
        ms[kept++] = ms[i];
    }
    return kept;
}

/* Closes an object: the key, value pairs of the count values at kids, as
 * members in the arena, sorted unless they already are. */
static int close_object(parser *ps, const canon_val *kids, size_t count, canon_val *done)
{
    size_t pairs = count / 2;
    if (pairs == 0)
        return 0;
    canon_member *ms =
        pairs <= SIZE_MAX / sizeof(*ms) ? arena_alloc(ps->doc, pairs * sizeof(*ms)) : NULL;
    if (ms == NULL)
        return fail(ps, "out of memory");
    int sorted = 1;
    for (size_t i = 0; i < pairs; i++) {
        ms[i].key = kids[2 * i].u.s;
        ms[i].klen = kids[2 * i].n;
        ms[i].val = kids[2 * i + 1];
        if (i > 0 && sorted && key_cmp(&ms[i - 1], &ms[i]) >= 0)
            sorted = 0;
    }
    done->u.members = ms;
    done->n = sorted ? pairs : sort_members(ms, pairs);
    return 0;
}

/* Replaces the innermost open container's placeholder and children on the
 * stack with the finished container. */
static int close_container(parser *ps)
{
    size_t open = ps->top;
    canon_val done = {.type = ps->stack[open].type};
    size_t parent = ps->stack[open].n;
    size_t count = ps->n - open - 1;
    const canon_val *kids = ps->stack + open + 1;
    int rc = done.type == CANON_ARRAY ? close_array(ps, kids, count, &done)
                                      : close_object(ps, kids, count, &done);
    if (rc < 0)
        return -1;
    ps->stack[open] = done;
    ps->n = open + 1;
    ps->top = parent;
    ps->depth--;
    return 0;
}

/* ---- the parser ------------------------------------------------------- */

static void skip_ws(parser *ps)
{
    const unsigned char *p = ps->p;
    while (p < ps->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

static int literal(parser *ps, const char *word, size_t wlen, canon_val v)
{
    if ((size_t)(ps->end - ps->p) < wlen || memcmp(ps->p, word, wlen) != 0)
        return fail(ps, "expected a value");
    ps->p += wlen;
    return push(ps, v);
}

/* Parses the key at ps->p (after whitespace) and the colon after it. */
static int parse_key(parser *ps)
{
    if (ps->p == ps->end || *ps->p != '"')
        return fail(ps, "expected a key");
    if (parse_string(ps) < 0)
        return -1;
    skip_ws(ps);
    if (ps->p == ps->end || *ps->p != ':')
        return fail(ps, "expected ':'");
    ps->p++;
    return 0;
}

static int parse_scalar(parser *ps)
{
    canon_val v = {.type = CANON_NULL};
    switch (*ps->p) {
    case '"':
        return parse_string(ps);
    case 't':
        v.type = CANON_TRUE;
        return literal(ps, "true", 4, v);
    case 'f':
        v.type = CANON_FALSE;
        return literal(ps, "false", 5, v);
    case 'n':
        return literal(ps, "null", 4, v);
    case 'N':
        v.type = CANON_FLOAT;
        v.u.d = NAN;
        return literal(ps, "NaN", 3, v);
    case 'I':
        v.type = CANON_FLOAT;
        v.u.d = HUGE_VAL;
        return literal(ps, "Infinity", 8, v);
    default:
        if (*ps->p == '-' || is_digit(*ps->p))
            return parse_number(ps);
        return fail(ps, "expected a value");
    }
}

static int parse_doc(parser *ps)
{
    for (;;) {
        /* a value is expected here */
        skip_ws(ps);
        if (ps->p == ps->end)
            return fail(ps, "expected a value");
        unsigned c = *ps->p;
        if (c == '[' || c == '{') {
            if (open_container(ps, c == '[' ? CANON_ARRAY : CANON_OBJECT) < 0)
                return -1;
            ps->p++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == (c == '[' ? ']' : '}')) {
                ps->p++;
                if (close_container(ps) < 0)
                    return -1;
            } else {
                if (c == '{' && parse_key(ps) < 0)
                    return -1;
                continue;
            }
        } else if (parse_scalar(ps) < 0) {
            return -1;
        }
        /* after a value: close containers until one wants another value */
        for (;;) {
            if (ps->top == NO_TOP)
                return 0;
            skip_ws(ps);
            if (ps->p == ps->end)
                return fail(ps, "unexpected end of text");
            int is_array = ps->stack[ps->top].type == CANON_ARRAY;
            c = *ps->p;
            if (c == ',') {
                ps->p++;
                if (!is_array) {
                    skip_ws(ps);
                    if (parse_key(ps) < 0)
                        return -1;
                }
                break;
            }
            if (c != (is_array ? ']' : '}'))
                return fail(ps, is_array ? "expected ',' or ']'" : "expected ',' or '}'");
            ps->p++;
            if (close_container(ps) < 0)
                return -1;
        }
    }
}

typedef struct input_encoding {
    int width;   /* 1: UTF-8, 2: UTF-16, 4: UTF-32 */
    int big;     /* big-endian code units */
    size_t skip; /* bytes of byte order mark */
} input_encoding;

/* The encoding Python's json.detect_encoding picks for the bytes b[0..len). */
static input_encoding detect_encoding(const unsigned char *b, size_t len)
{
    input_encoding enc = {.width = 1, .big = 0, .skip = 0};
    if (len >= 4 && memcmp(b, "\x00\x00\xfe\xff", 4) == 0) {
        enc.width = 4;
        enc.big = 1;
        enc.skip = 4;
    } else if (len >= 4 && memcmp(b, "\xff\xfe\x00\x00", 4) == 0) {
        enc.width = 4;
        enc.skip = 4;
    } else if (len >= 2 && b[0] == 0xFE && b[1] == 0xFF) {
        enc.width = 2;
        enc.big = 1;
        enc.skip = 2;
    } else if (len >= 2 && b[0] == 0xFF && b[1] == 0xFE) {
        enc.width = 2;
        enc.skip = 2;
    } else if (len >= 3 && memcmp(b, "\xef\xbb\xbf", 3) == 0) {
        enc.skip = 3; /* utf-8-sig */
    } else if (len >= 4 && b[0] == 0) {
        enc.width = b[1] ? 2 : 4;
        enc.big = 1;
    } else if (len >= 4 && b[1] == 0) {
        enc.width = (b[2] || b[3]) ? 2 : 4;
    } else if (len == 2 && (b[0] == 0 || b[1] == 0)) {
        enc.width = 2;
        enc.big = b[0] == 0;
    }
    return enc;
}

/* A new document with a text buffer for tlen bytes of input (decoded strings,
 * each with its NUL, and integer texts never outgrow it); NULL with err set
 * when out of memory. */
static canon_doc *new_doc(size_t tlen, char *err, size_t errlen)
{
    canon_doc *doc = calloc(1, sizeof(*doc));
    if (doc == NULL || tlen > SIZE_MAX - 16) {
        set_err(err, errlen, "out of memory");
        canon_free(doc);
        return NULL;
    }
    doc->text = malloc(tlen + 16);
    if (doc->text == NULL) {
        set_err(err, errlen, "out of memory");
        canon_free(doc);
        return NULL;
    }
    return doc;
}

canon_doc *canon_parse(const char *in, size_t len, char *err, size_t errlen)
{
    const unsigned char *b = (const unsigned char *)(in != NULL ? in : "");
    unsigned char *decoded = NULL; /* owned: transcoded UTF-16/UTF-32 input */
    canon_doc *doc = NULL;
    parser ps;
    memset(&ps, 0, sizeof(ps));

    if (in == NULL && len > 0) {
        set_err(err, errlen, "no input");
        return NULL;
    }
    input_encoding enc = detect_encoding(b, len);
    const unsigned char *text = b + enc.skip;
    size_t tlen = len - enc.skip;
    if (enc.width != 1) {
        decoded = transcode(text, tlen, enc.width, enc.big, &tlen, err, errlen);
        if (decoded == NULL)
            goto err;
        text = decoded;
    }

    doc = new_doc(tlen, err, errlen);
    if (doc == NULL)
        goto err;
    ps.start = text;
    ps.p = text;
    ps.end = text + tlen;
    ps.doc = doc;
    ps.top = NO_TOP;
    ps.err = err;
    ps.errlen = errlen;
    if (parse_doc(&ps) < 0)
        goto err;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        fail(&ps, "extra data after the value");
        goto err;
    }
    doc->root = ps.stack[0];
    doc->srclen = tlen;
    free(ps.stack);
    free(decoded);
    return doc;

err:
    free(ps.stack);
    free(decoded);
    canon_free(doc);
    return NULL;
}

/* A NULL document reads as CANON_NULL. */
canon_type canon_root_type(const canon_doc *doc)
{
    return doc != NULL ? doc->root.type : CANON_NULL;
}

const char *canon_root_string(const canon_doc *doc, const char *key, size_t *len)
{
    if (doc == NULL || key == NULL || doc->root.type != CANON_OBJECT)
        return NULL;
    canon_member probe = {.key = key, .klen = strlen(key)};
    size_t lo = 0, hi = doc->root.n;
    const canon_member *ms = doc->root.u.members;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(&ms[mid], &probe);
        if (c == 0) {
            if (ms[mid].val.type != CANON_STRING)
                return NULL;
            if (len != NULL)
                *len = ms[mid].val.n;
            return ms[mid].val.u.s;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- float repr ------------------------------------------------------- */

/* The shortest decimal of a double, and of those the nearest: the digits of
 * Python's repr(float), which uses David Gay's dtoa in mode 0.
 *
 * A positive finite double is v = c * 2^e (c below 2^53). A reader that
 * rounds to nearest, ties to even, turns a decimal back into v exactly when
 * the decimal lies in v's rounding interval: from halfway down to the
 * previous double to halfway up to the next one, both ends included when c
 * is even (Gay's rule, as Python builds dtoa.c). The spacing is 2^e on both
 * sides, except at the bottom of a binade (c = 2^52, above the smallest
 * normal exponent) where the gap below is half as wide. In units of 2^(e-2)
 * the interval runs from u = 4c - 2 (4c - 1 at a binade bottom) to
 * w = 4c + 2, and v itself is 4c.
 *
 * Take k, the largest power of ten not above the interval's width
 * (floor(log10(2^e)), or floor(log10(3 * 2^(e-2))) at a binade bottom), and
 * scale everything by 2^(e-2) / 10^k: the interval becomes [L, H], of width
 * W in [1, 10), and v becomes V, L < V < H. Then:
 *   - W < 10, so at most one multiple of 10 lies in [L, H]. If one does, it
 *     has fewer significant digits than any other decimal in there (a
 *     shorter one would be a multiple of 100, 1000, ... and so that same
 *     number): it is the answer, without its trailing zeros.
 *   - Otherwise the answer is an integer at this scale. The nearest ones
 *     are floor(V) and floor(V) + 1, and at least one of them is inside
 *     (W >= 1, and the narrower side of the interval is W/2, or W/3 at a
 *     binade bottom where the wider one is 2W/3). Take the one inside, or
 *     when both are, the nearer to V; when V is exactly halfway, the even
 *     one, as Gay's dtoa does.
 * So every decision needs only floor(L), floor(H), floor(2V), and whether L,
 * H and 2V are integers.
 *
 * Those floors are floor(X * 2^(e-2) / 10^k) for X = u, w, 8c, all below
 * 2^56. The factor is 5^-k * 2^(e-2-k); canon_pow5.h holds 5^j, j = -k, as a
 * 128-bit mantissa rounded up with a binary exponent, so one 64x128-bit
 * product and a shift give X times the factor, a little too large. That
 * excess is below the distance from X * 2^(e-2) / 10^k up to the next
 * integer for every exponent and every X below 2^56, so the floor is exact:
 * scripts/gen-canon-pow5.py proves it (a Euclid-like walk over the residues
 * of X * numerator mod denominator) before it writes the table. Whether
 * X * 2^(e-2) / 10^k is an integer is a question of divisibility: of X by
 * 5^k when e >= 2 (only possible for k <= 24, since 5^25 > 2^56), of X by
 * 2^(k-e+2) otherwise.
 *
 * Integers below 2^53 are their own shortest decimal (another decimal with
 * no more significant digits is at least 1 away, the interval reaches 1/2
 * at most), which answers whole numbers without any scaling.
 *
 * This is the approach of Ryu (Adams, 2018) and Schubfach (Giulietti, 2020),
 * built here from their papers' ideas: exact integer scaling by precomputed
 * powers of five, and one decimal exponent chosen so that the answer is one
 * of a handful of candidates. */

/* k = floor((e * MUL - (binade bottom ? IRR : 0)) / 2^SHIFT) is
 * floor(log10(2^e)) (or floor(log10(3 * 2^(e-2)))) for every double
 * exponent: scripts/gen-canon-pow5.py checks it with the same numbers. */
#define CANON_LOG10_2_MUL 315653
#define CANON_LOG10_2_SHIFT 20
#define CANON_LOG10_IRR 131008

/* floor(x * m / 2^s) for a table mantissa m and 64 <= s <= 191, where the
 * caller knows the result fits in 64 bits. */
static uint64_t scaled_floor(uint64_t x, const pow5_u128 *m, int s)
{
    uint64_t lo_lo, lo_hi = mul64(x, m->lo, &lo_lo);
    uint64_t hi_lo, hi_hi = mul64(x, m->hi, &hi_lo);
    uint64_t w1 = lo_hi + hi_lo;
    uint64_t w2 = hi_hi + (w1 < lo_hi);
    (void)lo_lo; /* bits 0..63 lie below every shift */
    if (s >= 128)
        return w2 >> (s - 128);
    if (s == 64)
        return w1;
    return (w1 >> (s - 64)) | (w2 << (128 - s));
}

/* floor(a / 2^s), toward minus infinity for negative a as well. */
static int floor_shift(long long a, int s)
{
    if (a >= 0)
        return (int)(a >> s);
    return (int)-((-a + (1LL << s) - 1) >> s);
}

/* How one double is scaled: x * 2^e2 / 10^k for the x of its interval. */
typedef struct fscale {
    const pow5_u128 *m; /* 5^-k */
    int s;              /* shift of the 192-bit product */
    int e2;             /* e - 2 */
    int k;
} fscale;

/* 1 when x * 2^e2 / 10^k is an integer. */
static int scaled_is_int(const fscale *sc, uint64_t x)
{
    if (sc->e2 >= 0) /* x * 2^(e2-k) / 5^k, with e2 >= k */
        return sc->k == 0 || (sc->k <= 24 && x % pow5_small[sc->k] == 0);
    int r = sc->k - sc->e2; /* x * 5^-k / 2^r, r > 0 */
    return r < 64 && (x & ((UINT64_C(1) << r) - 1)) == 0;
}

/* n without its trailing zeros, each one added to *exp10 (0 < n < 10^17,
 * so at most 16 zeros: two steps of 8, then 4, 2 and 1). */
static uint64_t strip_zeros(uint64_t n, int *exp10)
{
    while (n % 100000000 == 0) {
        n /= 100000000;
        *exp10 += 8;
    }
    if (n % 10000 == 0) {
        n /= 10000;
        *exp10 += 4;
    }
    if (n % 100 == 0) {
        n /= 100;
        *exp10 += 2;
    }
    if (n % 10 == 0) {
        n /= 10;
        *exp10 += 1;
    }
    return n;
}

/* The shortest decimal of v (finite, > 0): returns its digits (1 to 17 of
 * them, the last one not 0) and the power of ten they are multiplied by in
 * *exp10. */
static uint64_t shortest(double v, int *exp10)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    uint64_t frac = bits & ((UINT64_C(1) << 52) - 1);
    int bexp = (int)((bits >> 52) & 0x7FF);
    uint64_t c = bexp == 0 ? frac : frac | (UINT64_C(1) << 52);
    int e = bexp == 0 ? -1074 : bexp - 1075;
    *exp10 = 0;
    if (e <= 0 && e >= -52 && (c & ((UINT64_C(1) << -e) - 1)) == 0)
        return strip_zeros(c >> -e, exp10);

    int bottom = frac == 0 && bexp > 1; /* the gap below is half the one above */
    fscale sc;
    sc.e2 = e - 2;
    sc.k = floor_shift((long long)e * CANON_LOG10_2_MUL - (bottom ? CANON_LOG10_IRR : 0),
                       CANON_LOG10_2_SHIFT);
    int j = -sc.k - POW5_MIN;
    sc.m = &pow5_mant[j];
    sc.s = sc.k - sc.e2 - pow5_exp2[j];

    uint64_t xu = 4 * c - (bottom ? 1 : 2);
    uint64_t xw = 4 * c + 2;
    uint64_t xv = 8 * c;
    uint64_t lo = scaled_floor(xu, sc.m, sc.s); /* floor(L) */
    uint64_t hi = scaled_floor(xw, sc.m, sc.s); /* floor(H) */
    uint64_t v2 = scaled_floor(xv, sc.m, sc.s); /* floor(2V) */
    int ends_in = (c & 1) == 0;

    /* An integer n is in the interval when it is above L (n > lo, or
     * n == lo == L with the ends in) and below H (n < hi, or n == hi with
     * H above hi or the ends in). */
    uint64_t t10 = hi - hi % 10;
    if ((t10 > lo || (t10 == lo && ends_in && scaled_is_int(&sc, xu))) &&
        (t10 < hi || ends_in || !scaled_is_int(&sc, xw))) {
        *exp10 = sc.k + 1;
        return strip_zeros(t10 / 10, exp10);
    }
    *exp10 = sc.k;
    uint64_t b = v2 >> 1;
    int b_in = b > lo || (ends_in && b == lo && scaled_is_int(&sc, xu));
    int b1_in = b + 1 < hi || (b + 1 == hi && (ends_in || !scaled_is_int(&sc, xw)));
    if (!b_in)
        return b + 1;
    if (!b1_in || (v2 & 1) == 0) /* V - b < 1/2 */
        return b;
    if (scaled_is_int(&sc, xv)) /* exactly halfway: the even one */
        return b + (b & 1);
    return b + 1;
}

static const char digit_pairs[] = "00010203040506070809"
                                  "10111213141516171819"
                                  "20212223242526272829"
                                  "30313233343536373839"
                                  "40414243444546474849"
                                  "50515253545556575859"
                                  "60616263646566676869"
                                  "70717273747576777879"
                                  "80818283848586878889"
                                  "90919293949596979899";

/* Writes the decimal digits of n (n > 0) at out (room for 20) and returns
 * how many. */
static int put_digits(uint64_t n, char *out)
{
    char tmp[20];
    int i = (int)sizeof(tmp);
    while (n >= 100) {
        unsigned d = (unsigned)(n % 100);
        n /= 100;
        i -= 2;
        memcpy(tmp + i, digit_pairs + 2 * d, 2);
    }
    if (n >= 10) {
        i -= 2;
        memcpy(tmp + i, digit_pairs + 2 * n, 2);
    } else {
        tmp[--i] = (char)('0' + n);
    }
    int len = (int)sizeof(tmp) - i;
    memcpy(out, tmp + i, (size_t)len);
    return len;
}

/* The n digits dig as d1.d2...e+XX, the exponent decpt - 1 with at least
 * two digits, into out; returns the bytes written. */
static size_t put_exponent_form(char *out, const char *dig, int n, int decpt)
{
    size_t o = 0;
    int x = decpt - 1;
    int ax = x < 0 ? -x : x;
    out[o++] = dig[0];
    if (n > 1) {
        out[o++] = '.';
        memcpy(out + o, dig + 1, (size_t)n - 1);
        o += (size_t)n - 1;
    }
    out[o++] = 'e';
    out[o++] = x < 0 ? '-' : '+';
    if (ax >= 100)
        out[o++] = (char)('0' + ax / 100);
    out[o++] = (char)('0' + ax / 10 % 10);
    out[o++] = (char)('0' + ax % 10);
    return o;
}

/* The n digits dig written positionally, the point decpt places after the
 * first digit ("0.000ddd" when decpt <= 0, "ddd00.0" past the digits), into
 * out; returns the bytes written. */
static size_t put_positional_form(char *out, const char *dig, int n, int decpt)
{
    size_t o = 0;
    if (decpt <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -decpt; i++)
            out[o++] = '0';
        memcpy(out + o, dig, (size_t)n);
        o += (size_t)n;
    } else if (decpt < n) {
        memcpy(out + o, dig, (size_t)decpt);
        o += (size_t)decpt;
        out[o++] = '.';
        memcpy(out + o, dig + decpt, (size_t)(n - decpt));
        o += (size_t)(n - decpt);
    } else {
        memcpy(out + o, dig, (size_t)n);
        o += (size_t)n;
        for (int i = n; i < decpt; i++)
            out[o++] = '0';
        out[o++] = '.';
        out[o++] = '0';
    }
    return o;
}

/* Writes Python's repr(v) into out (at least 32 bytes); returns its length.
 * Python writes the digits positionally when the decimal point falls at most
 * 3 places before the first digit or at most 16 after it (-4 < decpt <= 16,
 * decpt counting as in 0.d1d2... * 10^decpt), and as d1.d2...e+XX otherwise,
 * the exponent with at least two digits. */
static size_t float_repr(double v, char *out)
{
    if (isnan(v)) {
        memcpy(out, "NaN", 3);
        return 3;
    }
    if (isinf(v)) {
        if (v < 0) {
            memcpy(out, "-Infinity", 9);
            return 9;
        }
        memcpy(out, "Infinity", 8);
        return 8;
    }
    size_t o = 0;
    if (signbit(v)) {
        out[o++] = '-';
        v = -v;
    }
    if (v == 0) {
        memcpy(out + o, "0.0", 3);
        return o + 3;
    }
    int exp10;
    char dig[20];
    int n = put_digits(shortest(v, &exp10), dig);
    int decpt = n + exp10;
    if (decpt <= -4 || decpt > 16)
        return o + put_exponent_form(out + o, dig, n, decpt);
    return o + put_positional_form(out + o, dig, n, decpt);
}

/* ---- the dumper ------------------------------------------------------- */

typedef struct outbuf {
    char *b; /* owned until handed to the caller */
    size_t len;
    size_t cap;
} outbuf;

/* Makes room for `more` bytes (plus a NUL). Returns 0, or -1 out of memory. */
static int reserve(outbuf *ob, size_t more)
{
    if (more > SIZE_MAX - ob->len - 1)
        return -1;
    size_t need = ob->len + more + 1;
    if (need <= ob->cap)
        return 0;
    size_t cap = ob->cap > 0 ? ob->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *nb = realloc(ob->b, cap);
    if (nb == NULL)
        return -1;
    ob->b = nb;
    ob->cap = cap;
    return 0;
}

static int put(outbuf *ob, const char *s, size_t n)
{
    if (reserve(ob, n) < 0)
        return -1;
    memcpy(ob->b + ob->len, s, n);
    ob->len += n;
    return 0;
}

static const char hexd[] = "0123456789abcdef";

static char *put_u(char *o, uint32_t u)
{
    *o++ = '\\';
    *o++ = 'u';
    *o++ = hexd[(u >> 12) & 0xF];
    *o++ = hexd[(u >> 8) & 0xF];
    *o++ = hexd[(u >> 4) & 0xF];
    *o++ = hexd[u & 0xF];
    return o;
}

/* The escape json.dumps writes for an ASCII byte c other than a printable
 * one: \" \\ \n \r \t \b \f, or \u00XX. */
static char *put_ascii_escape(char *o, unsigned c)
{
    *o++ = '\\';
    switch (c) {
    case '"':
        *o++ = '"';
        break;
    case '\\':
        *o++ = '\\';
        break;
    case '\n':
        *o++ = 'n';
        break;
    case '\r':
        *o++ = 'r';
        break;
    case '\t':
        *o++ = 't';
        break;
    case '\b':
        *o++ = 'b';
        break;
    case '\f':
        *o++ = 'f';
        break;
    default:
        o = put_u(o - 1, c);
        break;
    }
    return o;
}

/* The code point of the multi-byte sequence at *sp (generalized UTF-8 the
 * parser validated); *sp moves past it. */
static uint32_t read_utf8(const unsigned char **sp)
{
    const unsigned char *s = *sp;
    unsigned c = *s;
    uint32_t cp;
    if (c < 0xE0) {
        cp = (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F);
        s += 2;
    } else if (c < 0xF0) {
        cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        s += 3;
    } else {
        cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
             (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
        s += 4;
    }
    *sp = s;
    return cp;
}

/* cp as \uXXXX, or as a surrogate pair of them above U+FFFF. */
static char *put_u_pair(char *o, uint32_t cp)
{
    if (cp < 0x10000)
        return put_u(o, cp);
    cp -= 0x10000;
    o = put_u(o, 0xD800 | (cp >> 10));
    return put_u(o, 0xDC00 | (cp & 0x3FF));
}

/* Writes a string as json.dumps (ensure_ascii) does: s is generalized UTF-8
 * that the parser validated. */
static int put_string(outbuf *ob, const char *str, size_t n)
{
    if (n > (SIZE_MAX - 2) / 6 || reserve(ob, n * 6 + 2) < 0)
        return -1;
    const unsigned char *s = (const unsigned char *)str;
    const unsigned char *end = s + n;
    char *o = ob->b + ob->len;
    *o++ = '"';
    while (s < end) {
        unsigned c = *s;
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            *o++ = (char)c;
            s++;
        } else if (c < 0x80) {
            o = put_ascii_escape(o, c);
            s++;
        } else {
            o = put_u_pair(o, read_utf8(&s));
        }
    }
    *o++ = '"';
    ob->len = (size_t)(o - ob->b);
    return 0;
}

size_t canon_float_repr(double d, char *out, size_t outlen)
{
    if (out == NULL || outlen < CANON_FLOAT_REPR_MAX)
        return 0;
    size_t n = float_repr(d, out);
    out[n] = '\0';
    return n;
}

static int put_scalar(outbuf *ob, const canon_val *v)
{
    char num[32];
    switch (v->type) {
    case CANON_NULL:
        return put(ob, "null", 4);
    case CANON_FALSE:
        return put(ob, "false", 5);
    case CANON_TRUE:
        return put(ob, "true", 4);
    case CANON_INT:
        return put(ob, v->u.s, v->n);
    case CANON_FLOAT:
        return put(ob, num, float_repr(v->u.d, num));
    case CANON_STRING:
        return put_string(ob, v->u.s, v->n);
    case CANON_ARRAY:
        return put(ob, "[]", 2);
    case CANON_OBJECT:
        return put(ob, "{}", 2);
    }
    return -1;
}

typedef struct dump_frame {
    const canon_val *v;
    size_t i;
} dump_frame;

/* Writes the member or item i of container v, up to its value, and returns
 * the value to write next. */
static const canon_val *enter(outbuf *ob, const canon_val *v, size_t i)
{
    if (v->type == CANON_ARRAY)
        return &v->u.items[i];
    const canon_member *m = &v->u.members[i];
    if (put_string(ob, m->key, m->klen) < 0 || put(ob, ": ", 2) < 0)
        return NULL;
    return &m->val;
}

/* After a value: closes the containers it finished and, at the first one with
 * another member or item, writes ", " and what leads to it. Returns 1 with
 * *v the value to write next, 0 when the document is written, -1 out of
 * memory. */
static int next_value(outbuf *ob, dump_frame *frames, size_t *sp, const canon_val **v)
{
    for (;;) {
        if (*sp == 0)
            return 0;
        dump_frame *f = &frames[*sp - 1];
        f->i++;
        if (f->i < f->v->n) {
            if (put(ob, ", ", 2) < 0)
                return -1;
            *v = enter(ob, f->v, f->i);
            return *v != NULL ? 1 : -1;
        }
        if (put(ob, f->v->type == CANON_ARRAY ? "]" : "}", 1) < 0)
            return -1;
        (*sp)--;
    }
}

char *canon_dump(const canon_doc *doc, size_t *outlen)
{
    outbuf ob = {NULL, 0, 0};
    dump_frame *frames = NULL; /* owned, one per open container */
    size_t sp = 0;
    if (doc == NULL)
        return NULL;
    frames = malloc((doc->depth + 1) * sizeof(*frames));
    /* the canonical text is usually a little longer than the input */
    size_t guess = doc->srclen < SIZE_MAX / 2 ? doc->srclen + doc->srclen / 4 + 64 : 0;
    if (frames == NULL || reserve(&ob, guess) < 0)
        goto err;
    const canon_val *v = &doc->root;
    for (;;) {
        if ((v->type == CANON_ARRAY || v->type == CANON_OBJECT) && v->n > 0) {
            if (put(&ob, v->type == CANON_ARRAY ? "[" : "{", 1) < 0)
                goto err;
            frames[sp].v = v;
            frames[sp].i = 0;
            sp++;
            v = enter(&ob, v, 0);
            if (v == NULL)
                goto err;
            continue;
        }
        if (put_scalar(&ob, v) < 0)
            goto err;
        int more = next_value(&ob, frames, &sp, &v);
        if (more < 0)
            goto err;
        if (more == 0)
            break;
    }
    free(frames);
    ob.b[ob.len] = '\0';
    if (outlen != NULL)
        *outlen = ob.len;
    return ob.b;
err:
    free(frames);
    free(ob.b);
    return NULL;
}

char *canon_json(const char *in, size_t len, size_t *outlen, char *err, size_t errlen)
{
    canon_doc *doc = canon_parse(in, len, err, errlen);
    if (doc == NULL)
        return NULL;
    char *out = canon_dump(doc, outlen);
    if (out == NULL)
        set_err(err, errlen, "out of memory");
    canon_free(doc);
    return out;
}
