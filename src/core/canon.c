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
 * Numbers. Integers keep their digit text. Floats are converted by strtod on
 * a rewritten text "<digits>e<exponent>" with no decimal point, which makes
 * the result independent of the locale; mantissas longer than 800 digits are
 * cut to 800 plus a sticky digit, which cannot change the rounding (a halfway
 * point between two doubles has at most 768 significant digits).
 *
 * Float output is Python's repr: the shortest digit string that reads back
 * to the same double, found with printf's correctly rounded "%.*e" and strtod.
 * At a power of two the gap to the next lower double is half the gap to the
 * next higher one, so the nearest p-digit decimal may fall outside the
 * rounding interval (below) while the next p-digit decimal above is inside;
 * that neighbour is tried as well. Whether some p-digit decimal reads back is
 * monotonic in p, so p is found by bisection.
 */
#include "core/canon.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int push(parser *ps, canon_val v)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap != 0 ? ps->cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof(canon_val))
            return fail(ps, "out of memory");
        canon_val *s = realloc(ps->stack, cap * sizeof(canon_val));
        if (s == NULL)
            return fail(ps, "out of memory");
        ps->stack = s;
        ps->cap = cap;
    }
    ps->stack[ps->n++] = v;
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

/* Parses the string whose opening quote is at ps->p into a fresh slot of the
 * text buffer (decoded, then a NUL) and pushes it. */
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
        if (p == end) {
            ps->p = p;
            return fail(ps, "unterminated string");
        }
        unsigned c = *p;
        if (c == '"') {
            p++;
            break;
        }
        if (c < 0x20) {
            ps->p = p;
            return fail(ps, "control character in string");
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(p, end);
            if (k == 0) {
                ps->p = p;
                return fail(ps, "invalid UTF-8");
            }
            memcpy(o, p, k);
            o += k;
            p += k;
            continue;
        }
        /* a backslash */
        if (end - p < 2) {
            ps->p = p;
            return fail(ps, "unterminated string");
        }
        switch (p[1]) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '/':
            *o++ = '/';
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            long cp = end - p >= 6 ? hex4(p + 2) : -1;
            if (cp < 0) {
                ps->p = p;
                return fail(ps, "invalid \\u escape");
            }
            p += 6;
            if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                long lo = hex4(p + 2);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            o = put_utf8(o, (uint32_t)cp);
            continue;
        }
        default:
            ps->p = p;
            return fail(ps, "invalid escape");
        }
        p += 2;
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

/* The value of the decimal [ip, ip+ilen) "." [fp, fp+flen) "e" exponent,
 * correctly rounded (strtod), overflow to infinity, underflow to zero. */
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
    char buf[CANON_MAX_MANTISSA + 40];
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

/* Parses a number (or -Infinity) at ps->p and pushes it. */
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
        ps->p = p;
        return fail(ps, "expected a value");
    }
    size_t ilen = (size_t)(p - ip);
    const unsigned char *fp = NULL;
    size_t flen = 0;
    const unsigned char *ep = NULL;
    size_t elen = 0;
    int eneg = 0;
    int is_float = 0;
    if (p < end && *p == '.') {
        if (end - p < 2 || !is_digit(p[1])) {
            ps->p = p;
            return fail(ps, "bad number");
        }
        fp = ++p;
        while (p < end && is_digit(*p))
            p++;
        flen = (size_t)(p - fp);
        is_float = 1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const unsigned char *q = p + 1;
        if (q < end && (*q == '+' || *q == '-')) {
            eneg = *q == '-';
            q++;
        }
        if (q == end || !is_digit(*q)) {
            ps->p = p;
            return fail(ps, "bad number");
        }
        ep = q;
        while (q < end && is_digit(*q))
            q++;
        elen = (size_t)(q - ep);
        p = q;
        is_float = 1;
    }
    if (is_float) {
        double d = decimal_to_double(ip, ilen, fp, flen, eneg, ep, elen);
        ps->p = p;
        canon_val v = {.type = CANON_FLOAT, .u.d = neg ? -d : d};
        return push(ps, v);
    }
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
    canon_val v = {.type = CANON_INT, .n = tl, .u.s = t};
    return push(ps, v);
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

static int close_container(parser *ps)
{
    size_t open = ps->top;
    canon_val done = {.type = ps->stack[open].type};
    size_t parent = ps->stack[open].n;
    size_t count = ps->n - open - 1;
    const canon_val *kids = ps->stack + open + 1;
    if (done.type == CANON_ARRAY) {
        if (count > 0) {
            canon_val *items = count <= SIZE_MAX / sizeof(*items)
                                   ? arena_alloc(ps->doc, count * sizeof(*items))
                                   : NULL;
            if (items == NULL)
                return fail(ps, "out of memory");
            memcpy(items, kids, count * sizeof(*items));
            done.u.items = items;
        }
        done.n = count;
    } else {
        size_t pairs = count / 2;
        if (pairs > 0) {
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
            size_t kept = pairs;
            if (!sorted) {
                qsort(ms, pairs, sizeof(*ms), member_cmp);
                kept = 0;
                for (size_t i = 0; i < pairs; i++) {
                    if (i + 1 < pairs && key_cmp(&ms[i], &ms[i + 1]) == 0)
                        continue; /* a later one of the same key wins */
                    ms[kept++] = ms[i];
                }
            }
            done.u.members = ms;
            done.n = kept;
        }
    }
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

    doc = calloc(1, sizeof(*doc));
    if (doc == NULL || tlen > SIZE_MAX - 16) {
        set_err(err, errlen, "out of memory");
        goto err;
    }
    /* decoded strings (+ NUL each) and integer texts never outgrow the input */
    doc->text = malloc(tlen + 16);
    if (doc->text == NULL) {
        set_err(err, errlen, "out of memory");
        goto err;
    }
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

/* Reads digits dig[0..p) times 10^(exp10 - p + 1) back as a double. */
static double read_back(const char *dig, int p, int exp10)
{
    char buf[48];
    memcpy(buf, dig, (size_t)p);
    snprintf(buf + p, sizeof(buf) - (size_t)p, "e%d", exp10 - p + 1);
    return strtod(buf, NULL);
}

/* Looks for a p-digit decimal that reads back as v (finite, > 0): the nearest
 * one, else, when that is below v, the next one above. On success writes the
 * p digits and the decimal exponent of the first one and returns 0. */
static int try_digits(double v, int p, char *dig, int *exp10)
{
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "%.*e", p - 1, v);
    if (n <= 0 || (size_t)n >= sizeof(buf))
        return -1;
    const char *e = strrchr(buf, 'e');
    if (e == NULL)
        return -1;
    int k = 0;
    for (const char *s = buf; s < e; s++) {
        if (is_digit((unsigned char)*s) && k < p)
            dig[k++] = *s;
    }
    if (k != p)
        return -1;
    *exp10 = (int)strtol(e + 1, NULL, 10);
    double w = read_back(dig, p, *exp10);
    if (w == v)
        return 0;
    if (w > v)
        return -1;
    int i = p - 1;
    while (i >= 0 && dig[i] == '9')
        dig[i--] = '0';
    if (i < 0) {
        dig[0] = '1';
        (*exp10)++;
    } else {
        dig[i]++;
    }
    return read_back(dig, p, *exp10) == v ? 0 : -1;
}

/* Writes Python's repr(v) into out (at least 32 bytes); returns its length. */
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
    char dig[20], best[20];
    int e = 0, beste = 0, n = 17;
    /* bisection for the fewest digits, starting at 15 where most land */
    int lo = 1, hi = 17;
    if (try_digits(v, 15, dig, &e) == 0) {
        memcpy(best, dig, 15);
        beste = e;
        hi = 15;
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (try_digits(v, mid, dig, &e) == 0) {
                memcpy(best, dig, (size_t)mid);
                beste = e;
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        n = hi;
    } else if (try_digits(v, 16, dig, &e) == 0) {
        memcpy(best, dig, 16);
        beste = e;
        n = 16;
    } else {
        /* the nearest 17-digit decimal always reads back */
        (void)try_digits(v, 17, dig, &e);
        memcpy(best, dig, 17);
        beste = e;
        n = 17;
    }
    while (n > 1 && best[n - 1] == '0')
        n--;
    int decpt = beste + 1; /* digits are 0.ddd times 10^decpt */
    if (beste < -4 || beste >= 16) {
        out[o++] = best[0];
        if (n > 1) {
            out[o++] = '.';
            memcpy(out + o, best + 1, (size_t)n - 1);
            o += (size_t)n - 1;
        }
        int ae = beste < 0 ? -beste : beste;
        out[o++] = 'e';
        out[o++] = beste < 0 ? '-' : '+';
        if (ae >= 100)
            out[o++] = (char)('0' + ae / 100);
        out[o++] = (char)('0' + ae / 10 % 10);
        out[o++] = (char)('0' + ae % 10);
    } else if (decpt <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -decpt; i++)
            out[o++] = '0';
        memcpy(out + o, best, (size_t)n);
        o += (size_t)n;
    } else if (decpt < n) {
        memcpy(out + o, best, (size_t)decpt);
        o += (size_t)decpt;
        out[o++] = '.';
        memcpy(out + o, best + decpt, (size_t)(n - decpt));
        o += (size_t)(n - decpt);
    } else {
        memcpy(out + o, best, (size_t)n);
        o += (size_t)n;
        for (int i = n; i < decpt; i++)
            out[o++] = '0';
        out[o++] = '.';
        out[o++] = '0';
    }
    return o;
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
            continue;
        }
        if (c < 0x80) {
            s++;
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
            continue;
        }
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
        if (cp >= 0x10000) {
            cp -= 0x10000;
            o = put_u(o, 0xD800 | (cp >> 10));
            o = put_u(o, 0xDC00 | (cp & 0x3FF));
        } else {
            o = put_u(o, cp);
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
        for (;;) {
            if (sp == 0)
                goto done;
            dump_frame *f = &frames[sp - 1];
            f->i++;
            if (f->i < f->v->n) {
                if (put(&ob, ", ", 2) < 0)
                    goto err;
                v = enter(&ob, f->v, f->i);
                if (v == NULL)
                    goto err;
                break;
            }
            if (put(&ob, f->v->type == CANON_ARRAY ? "]" : "}", 1) < 0)
                goto err;
            sp--;
        }
    }
done:
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
