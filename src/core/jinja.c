/* jinja.c -- jinja2 (3.1, sandboxed, ChainableUndefined) over JSON variables.
 *
 * Stages as jinja2 has them. A lexer that follows jinja2's regular
 * expressions one rule at a time (data up to the first "{{", "{%" or "{#";
 * inside a tag: end of tag, whitespace, float, integer, name, string,
 * operator, with jinja2's bracket balancing), pulled one token at a time by
 * a recursive-descent parser that is jinja2's Parser method by method, into
 * a tree. Then what jinja2's compiler does: it marks what may be constant
 * (set_cst), refuses what its code generator refuses (check: unknown filters
 * and tests outside if statements and conditional expressions, unless folded
 * away; assignments to "loop" in a for), and binds every name to a slot of a
 * frame as its symbol tables do (idtracking: fsv_*, bind_*). Then the tree
 * is evaluated over values that stand for the Python objects jinja2 would
 * have (jv: None, bool, int, float, str with a Markup flag, list, tuple,
 * dict, dict views, iterators, range, the loop context, namespace, bound
 * methods and the undefined), with Python's semantics for each operation,
 * and jinja2's constant folding where it changes the answer (eval, fold).
 *
 * Errors travel as return codes: 0, R_RAISE (Python raises: the render
 * fails), R_UNSUP (not reproduced) or R_NOROOM. The first one met ends the
 * render, in the order Python would meet them.
 *
 * All memory of a render lives in one arena freed at the end; values point
 * into it or into vars (borrowed, never changed). The arena is bounded.
 */
#include "core/jinja.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pyfmt.h"
#include "core/unicase.h"
#include "core/uniprint.h"

#define R_RAISE JINJA_RAISES
#ifdef JINJA_TRACE /* a debugging aid: where "unsupported" comes from, on stderr */
#include <stdio.h>
static int trace_unsup(int line)
{
    fprintf(stderr, "jinja: unsupported at jinja.c:%d\n", line);
    return JINJA_UNSUPPORTED;
}
#define R_UNSUP trace_unsup(__LINE__)
#else
#define R_UNSUP JINJA_UNSUPPORTED
#endif
#define R_NOROOM JINJA_NOROOM
#define R_IMPOSSIBLE 3 /* internal: not constant (jinja2's nodes.Impossible) */

#define TRY(e)                                                                                     \
    do {                                                                                           \
        int try_rc_ = (e);                                                                         \
        if (try_rc_ != 0)                                                                          \
            return try_rc_;                                                                        \
    } while (0)

#define MAX_BALANCE 256 /* brackets open at once inside one tag */

/* ---- the arena ------------------------------------------------------------ */

typedef struct ablock {
    struct ablock *next;
    size_t used, cap;
    max_align_t data[];
} ablock;

typedef struct arena {
    ablock *head; /* owned, a list */
    size_t total; /* bytes taken from malloc */
    size_t max;
} arena;

static void arena_free(arena *a)
{
    ablock *b = a->head;
    while (b != NULL) {
        ablock *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* n bytes, aligned; NULL past the arena's maximum or when memory runs out. */
static void *arena_alloc(arena *a, size_t n)
{
    size_t need = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (need < n)
        return NULL;
    if (a->head == NULL || a->head->cap - a->head->used < need) {
        size_t cap = need > 65536 ? need : 65536;
        if (cap > a->max || a->total > a->max - cap)
            return NULL;
        ablock *b = malloc(sizeof(ablock) + cap);
        if (b == NULL)
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += cap;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += need;
    return p;
}

/* ---- values --------------------------------------------------------------- */

enum {
    K_UNDEF,  /* ChainableUndefined */
    K_NONE,   /* None */
    K_BOOL,   /* u.i 0 or 1 */
    K_INT,    /* u.i */
    K_FLOAT,  /* u.d */
    K_STR,    /* u.s; markup: a markupsafe.Markup */
    K_LIST,   /* isj: u.j a JSON array, else u.seq */
    K_TUPLE,  /* u.seq */
    K_DICT,   /* isj: u.j a JSON object, else u.dict */
    K_VIEW,   /* u.seq materialized; sub: VIEW_KEYS, VIEW_VALUES, VIEW_ITEMS */
    K_ITER,   /* u.it: an iterator or generator, shared by every copy */
    K_RANGE,  /* u.rg */
    K_LOOP,   /* u.loop: the LoopContext */
    K_NS,     /* u.ns: a Namespace */
    K_METHOD, /* u.m: a bound method or a global function */
};

enum { VIEW_KEYS, VIEW_VALUES, VIEW_ITEMS };

typedef struct jseq jseq;
typedef struct jdict jdict;
typedef struct jiter jiter;
typedef struct jrange jrange;
typedef struct jloop jloop;
typedef struct jns jns;
typedef struct jmeth jmeth;

typedef struct jv {
    unsigned char k;
    unsigned char markup;
    unsigned char isj;
    unsigned char sub;
    union {
        long long i;
        double d;
        struct {
            const char *p;
            size_t n;
        } s;
        const json_t *j;
        jseq *seq;
        jdict *dict;
        jiter *it;
        jrange *rg;
        jloop *loop;
        jns *ns;
        jmeth *m;
    } u;
} jv;

struct jseq {
    size_t n;
    jv *v;
};

struct jdict { /* string keys, insertion order, no duplicates */
    size_t n, cap;
    jv *keys;
    jv *vals;
};

struct jrange {
    long long start, stop, step;
};

struct jns {
    jdict attrs;
};

static jv mk_undef(void)
{
    jv v;
    memset(&v, 0, sizeof(v));
    v.k = K_UNDEF;
    return v;
}

static jv mk_none(void)
{
    jv v = mk_undef();
    v.k = K_NONE;
    return v;
}

static jv mk_bool(int b)
{
    jv v = mk_undef();
    v.k = K_BOOL;
    v.u.i = b != 0;
    return v;
}

static jv mk_int(long long i)
{
    jv v = mk_undef();
    v.k = K_INT;
    v.u.i = i;
    return v;
}

static jv mk_float(double d)
{
    jv v = mk_undef();
    v.k = K_FLOAT;
    v.u.d = d;
    return v;
}

static jv mk_str(const char *p, size_t n)
{
    jv v = mk_undef();
    v.k = K_STR;
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

static jv mk_seq(int kind, jseq *s)
{
    jv v = mk_undef();
    v.k = (unsigned char)kind;
    v.u.seq = s;
    return v;
}

/* The value json.loads makes of j. */
static jv of_json(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jv v = mk_undef();
        v.k = K_DICT;
        v.isj = 1;
        v.u.j = j;
        return v;
    }
    case JSON_ARRAY: {
        jv v = mk_undef();
        v.k = K_LIST;
        v.isj = 1;
        v.u.j = j;
        return v;
    }
    case JSON_STRING:
        return mk_str(json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        return mk_int(json_integer_value(j));
    case JSON_REAL:
        return mk_float(json_real_value(j));
    case JSON_TRUE:
        return mk_bool(1);
    case JSON_FALSE:
        return mk_bool(0);
    case JSON_NULL:
        break;
    }
    return mk_none();
}

static int is_num(const jv *v)
{
    return v->k == K_BOOL || v->k == K_INT || v->k == K_FLOAT;
}

static int is_intlike(const jv *v)
{
    return v->k == K_BOOL || v->k == K_INT;
}

static int str_eq(const jv *v, const char *s)
{
    size_t n = strlen(s);
    return v->k == K_STR && v->u.s.n == n && memcmp(v->u.s.p, s, n) == 0;
}

static int bytes_eq(const char *p, size_t n, const char *s)
{
    size_t m = strlen(s);
    return n == m && memcmp(p, s, m) == 0;
}

/* ---- iterators, loops, methods -------------------------------------------- */

typedef struct node node;
typedef struct scope scope;
typedef struct syms syms;

enum {
    IT_EMPTY,
    IT_SEQ,     /* src a list, tuple or view (or keys materialized): pos the index */
    IT_STR,     /* src a str: pos the byte offset */
    IT_RANGE,   /* src a range: pos the index */
    IT_REVERSE, /* reversed(src), src a list, tuple, view or keys: pos counts down */
    IT_MAP,     /* the map filter */
    IT_SELECT,  /* select, reject, selectattr, rejectattr */
    IT_UNIQUE,  /* the unique filter */
    IT_ITEMS,   /* the items filter */
    IT_TEST,    /* a for loop's "if" */
};

/* A growable list of values, for building sequences. */
typedef struct vec {
    jv *v;
    size_t n, cap;
} vec;

typedef struct callargs { /* the arguments of one call */
    size_t npos;
    jv *pos;
    size_t nkw;
    const char **kwname;
    size_t *kwlen;
    jv *kw;
} callargs;

struct jiter {
    int kind;
    int started; /* generators: the body has run up to its first yield */
    int done;
    int busy; /* a for loop pulls from it: anyone else is unsupported */
    jv src;   /* what is iterated, or the value a generator was given */
    size_t pos;
    size_t len; /* IT_SEQ, IT_RANGE, IT_REVERSE: items in all */
    jiter *in;  /* generators: the iterator over src */
    /* generator parameters */
    int fid;    /* IT_MAP by filter, IT_SELECT by test: its id; -1: none */
    int negate; /* IT_SELECT: reject */
    int lookup; /* IT_SELECT: selectattr / rejectattr; IT_MAP: by attribute */
    jv attr;    /* the attribute argument */
    jv dflt;    /* IT_MAP: default */
    int has_dflt;
    int case_sens;    /* IT_UNIQUE */
    callargs args;    /* IT_MAP, IT_SELECT: the arguments passed on */
    vec seen;         /* IT_UNIQUE: keys seen */
    const node *test; /* IT_TEST */
    const node *target;
    scope *sc;         /* IT_TEST: the enclosing frame, then the test's own */
    const syms *tinfo; /* IT_TEST: the test's frame */
};

struct jloop {
    jiter *it;
    jv iterable; /* for len() */
    int has_after;
    jv after;
    int has_length;
    long long length;
    long long index0;
    jv before, current;
    int has_changed;
    jv last_changed;
};

enum {          /* methods and functions: what a K_METHOD calls */
       M_OTHER, /* a method this module does not call: unsupported when used */
       M_RANGE,
       M_DICT,
       M_NAMESPACE,
       M_LIPSUM,
       M_CYCLER,
       M_JOINER,
       M_CYCLE,
       M_CHANGED,
       M_UPPER,
       M_LOWER,
       M_STRIP,
       M_LSTRIP,
       M_RSTRIP,
       M_SPLIT,
       M_RSPLIT,
       M_STARTSWITH,
       M_ENDSWITH,
       M_REPLACE,
       M_TITLE,
       M_CAPITALIZE,
       M_JOIN,
       M_COUNT,
       M_FIND,
       M_GET,
       M_ITEMS,
       M_KEYS,
       M_VALUES,
       M_INDEX,
};

struct jmeth {
    int id;
    jv self;
};

/* ---- the render ------------------------------------------------------------ */

/* Names are scoped as jinja2's compiler scopes them (idtracking.py): every
 * frame (the template, a for loop's body, its else, its test, a set block's
 * body) has a table of symbols fixed at compile time, each with how its slot
 * starts when the frame is entered; every name in the tree is bound to a slot
 * of its frame or of an enclosing one. */
enum {
    LD_PARAM,   /* set by the construct (a loop's target, loop) */
    LD_RESOLVE, /* from the variables and globals */
    LD_ALIAS,   /* the value the enclosing frame's slot has then */
    LD_UNDEF,   /* undefined until assigned */
};

typedef struct sym {
    const char *name;
    size_t len;
    int load;   /* LD_* */
    int stored; /* assigned somewhere in the frame */
    int adepth; /* LD_ALIAS: frames up to the slot, and the slot */
    int aslot;
} sym;

struct syms {
    syms *parent;
    sym *v;
    size_t n, cap;
};

struct scope { /* a frame as it runs */
    scope *parent;
    const syms *info;
    jv *slot; /* info->n of them */
};

typedef struct jx {
    arena ar;
    const json_t *vars; /* the variables: an object, or NULL */
    long long steps;
    size_t textmax; /* the bound of every text built */
    buf *out;       /* where output goes now */
    int constmode;  /* evaluating as jinja2's as_const does at compile time */
} jx;

static int step(jx *x)
{
    return ++x->steps > JINJA_MAX_STEPS ? R_UNSUP : 0;
}

static void *xalloc(jx *x, size_t n)
{
    return arena_alloc(&x->ar, n);
}

/* A copy of n bytes in the arena, as a str. */
static int new_str(jx *x, const char *p, size_t n, jv *out)
{
    if (n > x->textmax)
        return R_NOROOM;
    char *q = xalloc(x, n + 1);
    if (q == NULL)
        return R_NOROOM;
    if (n > 0)
        memcpy(q, p, n);
    q[n] = 0;
    *out = mk_str(q, n);
    return 0;
}

/* The bytes of b as a str (b stays the caller's). */
static int buf_str(jx *x, const buf *b, jv *out)
{
    return new_str(x, b->data != NULL ? b->data : "", b->len, out);
}

static int put(buf *b, const char *p, size_t n)
{
    return buf_append(b, p, n) == 0 ? 0 : R_NOROOM;
}

static int puts_(buf *b, const char *s)
{
    return put(b, s, strlen(s));
}

static int put_cp(buf *b, uint32_t cp)
{
    char t[4];
    size_t n;
    if (cp < 0x80) {
        t[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        t[0] = (char)(0xC0 | cp >> 6);
        t[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | cp >> 12);
        t[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        t[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        t[0] = (char)(0xF0 | cp >> 18);
        t[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        t[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        t[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return put(b, t, n);
}

static jseq *new_seq(jx *x, size_t n)
{
    if (n > SIZE_MAX / sizeof(jv) / 2)
        return NULL;
    jseq *s = xalloc(x, sizeof(jseq));
    if (s == NULL)
        return NULL;
    s->n = n;
    s->v = n > 0 ? xalloc(x, n * sizeof(jv)) : NULL;
    if (n > 0 && s->v == NULL)
        return NULL;
    return s;
}

static int vec_push(jx *x, vec *a, jv v)
{
    if (a->n == a->cap) {
        size_t cap = a->cap > 0 ? a->cap * 2 : 8;
        if (cap > SIZE_MAX / sizeof(jv) / 2)
            return R_NOROOM;
        jv *nv = xalloc(x, cap * sizeof(jv));
        if (nv == NULL)
            return R_NOROOM;
        if (a->n > 0)
            memcpy(nv, a->v, a->n * sizeof(jv));
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = v;
    return 0;
}

static int vec_seq(jx *x, const vec *a, int kind, jv *out)
{
    jseq *s = xalloc(x, sizeof(jseq));
    if (s == NULL)
        return R_NOROOM;
    s->n = a->n;
    s->v = a->v;
    *out = mk_seq(kind, s);
    return 0;
}

/* ---- sequences and dicts ------------------------------------------------- */

static size_t seq_len(const jv *v)
{
    return v->isj ? json_array_size(v->u.j) : v->u.seq->n;
}

static jv seq_at(const jv *v, size_t i)
{
    return v->isj ? of_json(json_array_get(v->u.j, i)) : v->u.seq->v[i];
}

static size_t dict_len(const jv *v)
{
    return v->isj ? json_object_size(v->u.j) : v->u.dict->n;
}

/* Looks key up in the dict d: 1 found (*out set), 0 not. */
static int dict_get(const jv *d, const char *key, size_t n, jv *out)
{
    if (d->isj) {
        const json_t *j = json_object_getn(d->u.j, key, n);
        if (j == NULL)
            return 0;
        *out = of_json(j);
        return 1;
    }
    const jdict *dd = d->u.dict;
    for (size_t i = 0; i < dd->n; i++) {
        if (dd->keys[i].u.s.n == n && memcmp(dd->keys[i].u.s.p, key, n) == 0) {
            *out = dd->vals[i];
            return 1;
        }
    }
    return 0;
}

/* The keys and values of d in order, in the arena (a JSON object's too). */
static int dict_items(jx *x, const jv *d, const jv **keys, const jv **vals, size_t *n)
{
    if (!d->isj) {
        *keys = d->u.dict->keys;
        *vals = d->u.dict->vals;
        *n = d->u.dict->n;
        return 0;
    }
    size_t m = json_object_size(d->u.j);
    jv *k = m > 0 ? xalloc(x, m * sizeof(jv)) : NULL;
    jv *v = m > 0 ? xalloc(x, m * sizeof(jv)) : NULL;
    if (m > 0 && (k == NULL || v == NULL))
        return R_NOROOM;
    size_t i = 0;
    const char *key;
    size_t keylen;
    json_t *val;
    json_object_keylen_foreach((json_t *)d->u.j, key, keylen, val)
    {
        if (i == m)
            break;
        k[i] = mk_str(key, keylen);
        v[i] = of_json(val);
        i++;
    }
    *keys = k;
    *vals = v;
    *n = i;
    return 0;
}

/* Sets key (a str) to val in the arena dict d, keeping its place if there. */
static int dict_set(jx *x, jdict *d, jv key, jv val)
{
    for (size_t i = 0; i < d->n; i++) {
        if (d->keys[i].u.s.n == key.u.s.n && memcmp(d->keys[i].u.s.p, key.u.s.p, key.u.s.n) == 0) {
            d->vals[i] = val;
            return 0;
        }
    }
    if (d->n == d->cap) {
        size_t cap = d->cap > 0 ? d->cap * 2 : 4;
        if (cap > SIZE_MAX / sizeof(jv) / 2)
            return R_NOROOM;
        jv *nk = xalloc(x, cap * sizeof(jv));
        jv *nv = xalloc(x, cap * sizeof(jv));
        if (nk == NULL || nv == NULL)
            return R_NOROOM;
        if (d->n > 0) {
            memcpy(nk, d->keys, d->n * sizeof(jv));
            memcpy(nv, d->vals, d->n * sizeof(jv));
        }
        d->keys = nk;
        d->vals = nv;
        d->cap = cap;
    }
    key.markup = 0;
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    return 0;
}

static int new_dict(jx *x, jv *out)
{
    jdict *d = xalloc(x, sizeof(jdict));
    if (d == NULL)
        return R_NOROOM;
    memset(d, 0, sizeof(*d));
    *out = mk_undef();
    out->k = K_DICT;
    out->u.dict = d;
    return 0;
}

/* The keys of a dict as a sequence value (a tuple, never shown). */
static int dict_keys_seq(jx *x, const jv *d, jv *out)
{
    const jv *keys, *vals;
    size_t n;
    TRY(dict_items(x, d, &keys, &vals, &n));
    jseq *s = xalloc(x, sizeof(jseq));
    if (s == NULL)
        return R_NOROOM;
    s->n = n;
    s->v = (jv *)keys;
    *out = mk_seq(K_TUPLE, s);
    return 0;
}

/* ---- text ------------------------------------------------------------------ */

static uint32_t next_cp(const char *s, size_t n, size_t *i)
{
    return pyfmt_utf8_next(s, n, i);
}

/* Code points in the n bytes of s. */
static size_t cp_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Byte offset of code point k (k <= count). */
static size_t cp_offset(const char *s, size_t n, size_t k)
{
    size_t i = 0;
    while (k > 0 && i < n) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        k--;
    }
    return i;
}

/* Python's str.isspace() for one code point. */
static int py_space(uint32_t cp)
{
    if (cp < 0x80)
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
    return unicase_space(cp);
}

/* Length in bytes of the Python whitespace that starts s (n bytes). */
static size_t space_run(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        if (!py_space(next_cp(s, n, &j)))
            break;
        i = j;
    }
    return i;
}

/* Bytes of s left once its trailing Python whitespace is stripped. */
static size_t rstrip_len(const char *s, size_t n)
{
    size_t end = n;
    while (end > 0) {
        size_t k = end - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--;
        size_t j = k;
        if (!py_space(next_cp(s, n, &j)))
            break;
        end = k;
    }
    return end;
}

enum { CASE_UPPER, CASE_LOWER, CASE_TITLE };

/* Is the capital sigma at byte i of s (n bytes) final, as str.lower() sees it? */
static int final_sigma(const char *s, size_t n, size_t i)
{
    size_t j = i;
    uint32_t c = 0;
    int found = 0;
    while (j > 0) { /* back over case-ignorables */
        size_t k = j - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--;
        size_t t = k;
        c = next_cp(s, n, &t);
        j = k;
        if (!unicase_ignorable(c)) {
            found = 1;
            break;
        }
    }
    if (!found || !unicase_cased(c))
        return 0;
    j = i;
    (void)next_cp(s, n, &j); /* past the sigma */
    while (j < n) {
        size_t t = j;
        c = next_cp(s, n, &t);
        if (!unicase_ignorable(c))
            return !unicase_cased(c);
        j = t;
    }
    return 1;
}

/* Appends the mapping of the code point at s[*i] (moved past it). */
static int put_case(buf *b, const char *s, size_t n, size_t *i, int how)
{
    size_t at = *i;
    uint32_t cp = next_cp(s, n, i);
    uint32_t m[3];
    int k;
    if (how == CASE_LOWER && cp == 0x3A3) {
        m[0] = final_sigma(s, n, at) ? 0x3C2 : 0x3C3;
        k = 1;
    } else if (how == CASE_UPPER) {
        k = unicase_upper(cp, m);
    } else if (how == CASE_LOWER) {
        k = unicase_lower(cp, m);
    } else {
        k = unicase_title(cp, m);
    }
    for (int t = 0; t < k; t++)
        TRY(put_cp(b, m[t]));
    return 0;
}

/* str.upper() / str.lower() of s[from..to) (the context of a sigma is s[from..to)). */
static int put_mapped(buf *b, const char *s, size_t n, int how)
{
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            char c = s[i++];
            if (how == CASE_UPPER && c >= 'a' && c <= 'z')
                c = (char)(c - 32);
            else if (how == CASE_LOWER && c >= 'A' && c <= 'Z')
                c = (char)(c + 32);
            TRY(put(b, &c, 1));
            continue;
        }
        TRY(put_case(b, s, n, &i, how));
    }
    return 0;
}

/* ---- the lexer --------------------------------------------------------- */

typedef enum tk {
    TK_EOF,
    TK_DATA,
    TK_VBEGIN,
    TK_VEND,
    TK_BBEGIN,
    TK_BEND,
    TK_NAME,
    TK_STRING,
    TK_INT,
    TK_FLOAT,
    TK_ADD,
    TK_SUB,
    TK_DIV,
    TK_FLOORDIV,
    TK_MUL,
    TK_MOD,
    TK_POW,
    TK_TILDE,
    TK_LBRACKET,
    TK_RBRACKET,
    TK_LPAREN,
    TK_RPAREN,
    TK_LBRACE,
    TK_RBRACE,
    TK_EQ,
    TK_NE,
    TK_GT,
    TK_GTEQ,
    TK_LT,
    TK_LTEQ,
    TK_ASSIGN,
    TK_DOT,
    TK_COLON,
    TK_PIPE,
    TK_COMMA,
    TK_SEMICOLON,
} tk;

typedef struct token {
    tk t;
    const char *p; /* TK_DATA, TK_NAME: the text; TK_STRING: the decoded value */
    size_t n;
    long long i; /* TK_INT */
    double d;    /* TK_FLOAT */
} token;

enum { LX_ROOT, LX_VAR, LX_BLOCK };

typedef struct lexer {
    jx *x;
    const char *s; /* the source, newlines made "\n", one trailing newline dropped */
    size_t n;
    size_t pos;
    int mode;
    int pending; /* pend is the next token: given after the data before it */
    token pend;
    char bal[MAX_BALANCE];
    size_t nbal;
} lexer;

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int at(const lexer *L, size_t i, const char *lit)
{
    size_t m = strlen(lit);
    return i <= L->n && L->n - i >= m && memcmp(L->s + i, lit, m) == 0;
}

/* The code point at i (0 at the end). */
static uint32_t cp_at(const lexer *L, size_t i)
{
    return i < L->n ? next_cp(L->s, L->n, &i) : 0;
}

/* Past Python whitespace from i. */
static size_t skip_space(const lexer *L, size_t i)
{
    return i + space_run(L->s + i, L->n - i);
}

/* The block end `(?:\+%}|\-%}\s*|%})` at i: its end, or 0. */
static size_t block_end_at(const lexer *L, size_t i)
{
    if (at(L, i, "+%}"))
        return i + 3;
    if (at(L, i, "-%}"))
        return skip_space(L, i + 3);
    if (at(L, i, "%}"))
        return i + 2;
    return 0;
}

/* `{%(\-|\+|)\s*raw\s*(?:\-%}\s*|%})` at q: 1 with the end and the sign set. */
static int raw_begin_at(const lexer *L, size_t q, size_t *end, char *sign)
{
    size_t i = q + 2;
    *sign = 0;
    if (i < L->n && (L->s[i] == '-' || L->s[i] == '+'))
        *sign = L->s[i++];
    i = skip_space(L, i);
    if (!at(L, i, "raw"))
        return 0;
    i = skip_space(L, i + 3);
    if (at(L, i, "-%}")) {
        *end = skip_space(L, i + 3);
        return 1;
    }
    if (at(L, i, "%}")) {
        *end = i + 2;
        return 1;
    }
    return 0;
}

/* The end of a raw block from i: `{%(\-|\+|)\s*endraw\s*(?:\+%}|\-%}\s*|%})`.
 * 1 with where it starts, where it ends and its sign; 0 when there is none. */
static int raw_end_from(const lexer *L, size_t i, size_t *start, size_t *end, char *sign)
{
    for (size_t q = i; q + 1 < L->n; q++) {
        if (L->s[q] != '{' || L->s[q + 1] != '%')
            continue;
        size_t k = q + 2;
        char sg = 0;
        if (k < L->n && (L->s[k] == '-' || L->s[k] == '+'))
            sg = L->s[k++];
        k = skip_space(L, k);
        if (!at(L, k, "endraw"))
            continue;
        size_t e = block_end_at(L, skip_space(L, k + 6));
        if (e == 0)
            continue;
        *start = q;
        *end = e;
        *sign = sg;
        return 1;
    }
    return 0;
}

/* Decodes the \x, \u or \U escape of `digits` hex digits at p[*ip] into b,
 * moving *ip past them. */
static int hex_escape(buf *b, const char *p, size_t n, size_t *ip, int digits)
{
    size_t i = *ip;
    uint32_t v = 0;
    for (int k = 0; k < digits; k++) {
        char h = i < n ? p[i] : 0;
        int d = is_digit(h)              ? h - '0'
                : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                         : -1;
        if (d < 0)
            return R_RAISE; /* truncated \xXX / \uXXXX escape */
        v = v * 16 + (uint32_t)d;
        i++;
    }
    *ip = i;
    if (v > 0x10FFFF)
        return R_RAISE; /* illegal Unicode character */
    if (v >= 0xD800 && v < 0xE000)
        return R_UNSUP; /* a lone surrogate: no UTF-8 for it */
    return put_cp(b, v);
}

/* Decodes the escape whose backslash is p[*ip] into b, moving *ip past it. */
static int lex_escape(buf *b, const char *p, size_t n, size_t *ip)
{
    char c = p[*ip + 1]; /* the string rule never ends on a lone backslash */
    *ip += 2;
    const char *simple = strchr("\\'\"abfnrtv", c);
    if (c != 0 && simple != NULL) {
        static const char to[] = "\\'\"\a\b\f\n\r\t\v";
        return put(b, &to[simple - "\\'\"abfnrtv"], 1);
    }
    if (c == '\n')
        return 0; /* a line continuation */
    if (c >= '0' && c <= '7') {
        uint32_t v = (uint32_t)(c - '0');
        for (int k = 0; k < 2 && *ip < n && p[*ip] >= '0' && p[*ip] <= '7'; k++)
            v = v * 8 + (uint32_t)(p[(*ip)++] - '0');
        return put_cp(b, v);
    }
    if (c == 'x' || c == 'u' || c == 'U')
        return hex_escape(b, p, n, ip, c == 'x' ? 2 : c == 'u' ? 4 : 8);
    if ((unsigned char)c >= 0x80 || c == 'N')
        return R_UNSUP; /* backslashreplace meets it first; \N{...} by name */
    char two[2] = {'\\', c};
    return put(b, two, 2); /* unknown escapes stay */
}

/* Decodes a string literal's body as .encode("ascii", "backslashreplace")
 * .decode("unicode-escape") does. */
static int lex_string(lexer *L, const char *p, size_t n, token *t)
{
    buf b;
    buf_init(&b, L->x->textmax);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        if (p[i] != '\\') {
            size_t j = i + 1;
            while (j < n && p[j] != '\\')
                j++;
            rc = put(&b, p + i, j - i);
            i = j;
            continue;
        }
        rc = lex_escape(&b, p, n, &i);
    }
    if (rc == 0) {
        jv v;
        rc = buf_str(L->x, &b, &v);
        if (rc == 0) {
            t->t = TK_STRING;
            t->p = v.u.s.p;
            t->n = v.u.s.n;
        }
    }
    buf_free(&b);
    return rc;
}

/* Digits with single underscores between them, `(\d+_)*\d+`, from i: the end, or i. */
static size_t digits_at(const lexer *L, size_t i, int (*ok)(char))
{
    size_t j = i;
    if (j >= L->n || !ok(L->s[j]))
        return i;
    while (j < L->n) {
        if (ok(L->s[j])) {
            j++;
        } else if (L->s[j] == '_' && j + 1 < L->n && ok(L->s[j + 1])) {
            j++;
        } else {
            break;
        }
    }
    return j;
}

static int dec_ok(char c)
{
    return is_digit(c);
}

static int bin_ok(char c)
{
    return c == '0' || c == '1';
}

static int oct_ok(char c)
{
    return c >= '0' && c <= '7';
}

static int hex_ok(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A float (float_re) at digit i: 1 with the token, 0 when there is none
 * (no fraction nor exponent, or i follows a '.'), or R_UNSUP. */
static int lex_float(lexer *L, size_t i, token *t, size_t *end)
{
    const char *s = L->s;
    size_t n = L->n;
    if (i > 0 && s[i - 1] == '.')
        return 0;
    size_t j = digits_at(L, i, dec_ok);
    size_t e = 0;
    int frac = 0;
    if (j < n && s[j] == '.' && j + 1 < n && is_digit(s[j + 1])) {
        j = digits_at(L, j + 1, dec_ok);
        frac = 1;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        size_t m = digits_at(L, k, dec_ok);
        if (m > k)
            e = m;
    }
    if (e == 0 && !frac)
        return 0;
    size_t stop = e > 0 ? e : j;
    if (stop < n && (unsigned char)s[stop] >= 0x80 && uniprint_decimal(cp_at(L, stop)) >= 0)
        return R_UNSUP; /* \d is any script's digit */
    char tmp[512];
    size_t k = 0;
    for (size_t q = i; q < stop; q++) {
        if (s[q] == '_')
            continue;
        if (k + 1 >= sizeof(tmp))
            return R_UNSUP;
        tmp[k++] = s[q];
    }
    tmp[k] = 0;
    t->t = TK_FLOAT;
    t->d = strtod(tmp, NULL); /* correctly rounded, as Python's float() */
    *end = stop;
    return 1;
}

/* The end of the integer (integer_re) at digit i, with its base and where
 * its digits start (past a 0b/0o/0x prefix). */
static size_t int_span(const lexer *L, size_t i, int *base, size_t *from)
{
    const char *s = L->s;
    size_t n = L->n, stop = i;
    *base = 10;
    *from = i;
    if (s[i] == '0' && i + 1 < n &&
        (s[i + 1] == 'b' || s[i + 1] == 'B' || s[i + 1] == 'o' || s[i + 1] == 'O' ||
         s[i + 1] == 'x' || s[i + 1] == 'X')) {
        char p = (char)(s[i + 1] | 0x20);
        int (*ok)(char) = p == 'b' ? bin_ok : p == 'o' ? oct_ok : hex_ok;
        size_t k = i + 2;
        if (k < n && s[k] == '_')
            k++;
        size_t m = digits_at(L, k, ok);
        if (m > k) {
            *base = p == 'b' ? 2 : p == 'o' ? 8 : 16;
            *from = i + 2;
            stop = m;
        }
    }
    if (stop == i) {
        if (s[i] == '0') { /* 0(_?0)* */
            stop = i + 1;
            while (stop < n &&
                   (s[stop] == '0' || (s[stop] == '_' && stop + 1 < n && s[stop + 1] == '0')))
                stop++;
        } else {
            stop = digits_at(L, i, dec_ok);
        }
    }
    return stop;
}

/* An integer (integer_re) at digit i: 1 with the token, or R_UNSUP past
 * 63 bits. */
static int lex_int(lexer *L, size_t i, token *t, size_t *end)
{
    const char *s = L->s;
    int base;
    size_t from, stop = int_span(L, i, &base, &from);
    if (stop < L->n && (unsigned char)s[stop] >= 0x80 && uniprint_decimal(cp_at(L, stop)) >= 0)
        return R_UNSUP; /* \d is any script's digit */
    unsigned long long v = 0;
    for (size_t q = from; q < stop; q++) {
        if (s[q] == '_')
            continue;
        int d = is_digit(s[q]) ? s[q] - '0' : (s[q] | 0x20) - 'a' + 10;
        if (v > (ULLONG_MAX - (unsigned)d) / (unsigned)base)
            return R_UNSUP; /* past 64 bits */
        v = v * (unsigned)base + (unsigned)d;
    }
    if (v > (unsigned long long)LLONG_MAX)
        return R_UNSUP;
    t->t = TK_INT;
    t->i = (long long)v;
    *end = stop;
    return 1;
}

/* A number (float_re, then integer_re) at i; 0 when none. */
static int lex_number(lexer *L, size_t i, token *t, size_t *end)
{
    *end = i;
    if (!is_digit(L->s[i]))
        return 0;
    int r = lex_float(L, i, t, end);
    if (r != 0)
        return r;
    return lex_int(L, i, t, end);
}

static const struct {
    const char *s;
    tk t;
} operators[] = {
    {"//", TK_FLOORDIV}, {"**", TK_POW},   {"==", TK_EQ},      {"!=", TK_NE},      {">=", TK_GTEQ},
    {"<=", TK_LTEQ},     {"+", TK_ADD},    {"-", TK_SUB},      {"/", TK_DIV},      {"*", TK_MUL},
    {"%", TK_MOD},       {"~", TK_TILDE},  {"[", TK_LBRACKET}, {"]", TK_RBRACKET}, {"(", TK_LPAREN},
    {")", TK_RPAREN},    {"{", TK_LBRACE}, {"}", TK_RBRACE},   {">", TK_GT},       {"<", TK_LT},
    {"=", TK_ASSIGN},    {".", TK_DOT},    {":", TK_COLON},    {"|", TK_PIPE},     {",", TK_COMMA},
    {";", TK_SEMICOLON},
};

/* The end of the tag at i (`}}`, `-}}` or a block end) when no bracket is
 * open: 1 with the token, back to the data state; else 0. */
static int lex_tag_end(lexer *L, size_t i, token *t)
{
    if (L->nbal != 0)
        return 0;
    if (L->mode == LX_VAR) {
        if (at(L, i, "-}}")) {
            L->pos = skip_space(L, i + 3);
            L->mode = LX_ROOT;
            t->t = TK_VEND;
            return 1;
        }
        if (at(L, i, "}}")) {
            L->pos = i + 2;
            L->mode = LX_ROOT;
            t->t = TK_VEND;
            return 1;
        }
        return 0;
    }
    size_t e = block_end_at(L, i);
    if (e > 0) {
        L->pos = e;
        L->mode = LX_ROOT;
        t->t = TK_BEND;
        return 1;
    }
    return 0;
}

/* The name (name_re) whose first char is at i. */
static int lex_name(lexer *L, size_t i, token *t)
{
    const char *s = L->s;
    size_t j = i + 1;
    while (j < L->n && (is_alpha_(s[j]) || is_digit(s[j])))
        j++;
    if (j < L->n && (unsigned char)s[j] >= 0x80 && unicase_ident(cp_at(L, j)))
        return R_UNSUP; /* a name in other scripts */
    t->t = TK_NAME;
    t->p = s + i;
    t->n = j - i;
    L->pos = j;
    return 0;
}

/* The string literal whose opening quote is at i. */
static int lex_quoted(lexer *L, size_t i, token *t)
{
    const char *s = L->s;
    size_t j = i + 1;
    while (j < L->n && s[j] != s[i]) {
        if (s[j] == '\\')
            j++;
        j++;
    }
    if (j < L->n) {
        L->pos = j + 1;
        return lex_string(L, s + i + 1, j - i - 1, t);
    }
    return R_RAISE; /* no string: unexpected char */
}

/* The operator at i (the longest first, as jinja2's operator_re), keeping
 * the stack of open brackets. */
static int lex_operator(lexer *L, size_t i, token *t)
{
    for (size_t k = 0; k < sizeof(operators) / sizeof(operators[0]); k++) {
        if (!at(L, i, operators[k].s))
            continue;
        char c = operators[k].s[0];
        if (c == '(' || c == '[' || c == '{') {
            if (L->nbal == MAX_BALANCE)
                return R_UNSUP;
            L->bal[L->nbal++] = c == '(' ? ')' : c == '[' ? ']' : '}';
        } else if (c == ')' || c == ']' || c == '}') {
            if (L->nbal == 0 || L->bal[L->nbal - 1] != c)
                return R_RAISE; /* unexpected ')' */
            L->nbal--;
        }
        t->t = operators[k].t;
        L->pos = i + strlen(operators[k].s);
        return 0;
    }
    return R_RAISE; /* unexpected char */
}

/* One token inside {{ }} or {% %}. */
static int lex_tag(lexer *L, token *t)
{
    for (;;) {
        size_t i = L->pos;
        if (i >= L->n) {
            t->t = TK_EOF; /* the lexer just stops: the parser raises */
            return 0;
        }
        if (lex_tag_end(L, i, t))
            return 0;
        size_t w = skip_space(L, i);
        if (w > i) {
            L->pos = w;
            continue;
        }
        const char *s = L->s;
        size_t end;
        int r = lex_number(L, i, t, &end);
        if (r < 0 || r > 1)
            return r;
        if (r == 1) {
            L->pos = end;
            return 0;
        }
        if (is_alpha_(s[i]))
            return lex_name(L, i, t);
        if (s[i] == '\'' || s[i] == '"')
            return lex_quoted(L, i, t);
        if ((unsigned char)s[i] >= 0x80)
            return unicase_ident(cp_at(L, i)) ? R_UNSUP : R_RAISE; /* a name, or no rule */
        return lex_operator(L, i, t);
    }
}

/* The next token. */
/* Long on purpose: The lexer's states (data, comment, raw, whitespace control) in one loop, as
 * jinja2/lexer.py has them: splitting would hide how one state hands over to the next. */
static int lex_next(lexer *L, token *t)
{
    memset(t, 0, sizeof(*t));
    if (L->pending) {
        L->pending = 0;
        *t = L->pend;
        return 0;
    }
    if (L->mode != LX_ROOT)
        return lex_tag(L, t);
    for (;;) {
        size_t i = L->pos;
        if (i >= L->n) {
            t->t = TK_EOF;
            return 0;
        }
        const char *s = L->s;
        size_t q = i;
        while (q + 1 < L->n &&
               !(s[q] == '{' && (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#')))
            q++;
        if (q + 1 >= L->n) { /* data to the end */
            L->pos = L->n;
            t->t = TK_DATA;
            t->p = s + i;
            t->n = L->n - i;
            return 0;
        }
        size_t rend = 0;
        char sign = 0;
        int raw = s[q + 1] == '%' && raw_begin_at(L, q, &rend, &sign);
        if (!raw)
            sign = q + 2 < L->n && (s[q + 2] == '-' || s[q + 2] == '+') ? s[q + 2] : 0;
        size_t textlen = q - i;
        if (sign == '-')
            textlen = rstrip_len(s + i, textlen);
        t->t = TK_DATA;
        t->p = s + i;
        t->n = textlen;
        size_t after = q + 2 + (sign != 0);
        if (raw) {
            size_t st, en;
            char sg;
            if (!raw_end_from(L, rend, &st, &en, &sg)) {
                if (rend < L->n)
                    return R_RAISE; /* missing end of raw directive */
                L->pos = L->n;
                if (textlen == 0)
                    continue;
                return 0;
            }
            size_t rawlen = st - rend;
            if (sg == '-')
                rawlen = rstrip_len(s + rend, rawlen);
            L->pos = en;
            if (rawlen > 0) {
                token d;
                memset(&d, 0, sizeof(d));
                d.t = TK_DATA;
                d.p = s + rend;
                d.n = rawlen;
                if (textlen == 0) {
                    *t = d;
                    return 0;
                }
                L->pending = 1;
                L->pend = d;
            } else if (textlen == 0) {
                continue;
            }
            return 0;
        }
        if (s[q + 1] == '#') {
            /* a comment: up to the first +#}, -#}\s* or #} */
            size_t c0 = after, m = c0;
            while (m + 1 < L->n && !(s[m] == '#' && s[m + 1] == '}'))
                m++;
            if (m + 1 >= L->n) {
                if (c0 < L->n)
                    return R_RAISE; /* missing end of comment tag */
                L->pos = L->n;
            } else if (m > c0 && s[m - 1] == '-') {
                L->pos = skip_space(L, m + 2);
            } else {
                L->pos = m + 2;
            }
            if (textlen == 0)
                continue;
            return 0;
        }
        L->pos = after;
        L->mode = s[q + 1] == '{' ? LX_VAR : LX_BLOCK;
        tk begin = s[q + 1] == '{' ? TK_VBEGIN : TK_BBEGIN;
        if (textlen == 0) {
            t->t = begin;
            return 0;
        }
        L->pending = 1;
        memset(&L->pend, 0, sizeof(L->pend));
        L->pend.t = begin;
        return 0;
    }
}

/* ---- the tree ------------------------------------------------------------ */

enum {
    N_CONST,   /* val */
    N_NAME,    /* name; store: a target */
    N_GETATTR, /* a.name */
    N_GETITEM, /* a[b] */
    N_SLICE,   /* a:b:c, each may be NULL */
    N_CALL,    /* a(kids, kw) */
    N_FILTER,  /* a|name(kids, kw); a NULL in a set block */
    N_TEST,    /* a is name(kids, kw) */
    N_NOT,
    N_NEG,
    N_POS,
    N_BIN,     /* a op b */
    N_CONCAT,  /* kids joined with ~ */
    N_COMPARE, /* a, then kids: N_OPERAND op a */
    N_OPERAND,
    N_AND,
    N_OR,
    N_COND,  /* b if a else c (c may be NULL) */
    N_TUPLE, /* kids */
    N_LIST,  /* kids */
    N_DICT,  /* kids: N_PAIR a: b */
    N_PAIR,
    N_KEYWORD, /* name=a */
    N_NSREF,   /* name.attr, a set target */
    N_DATA,    /* name: text */
    N_OUTPUT,  /* kids: N_DATA or expressions */
    N_IF,      /* a, body, elifs (N_IF), els */
    N_FOR,     /* a target, b iter, c test; body, els */
    N_SET,     /* a target = b */
    N_SETBLOCK /* a target, c filter chain (innermost a NULL), body */
};

enum { OP_IN = 100, OP_NOTIN };

struct node {
    int t;
    int op;     /* N_BIN, N_OPERAND: a tk or OP_IN / OP_NOTIN */
    int store;  /* N_NAME, N_TUPLE: an assignment target */
    int fid;    /* N_FILTER, N_TEST: which one (see the tables) */
    int dyn;    /* N_CALL, N_FILTER, N_TEST: *args or **kwargs given */
    int depth;  /* of the expression tree below */
    int cst;    /* jinja2 may fold it at compile time (Node.as_const may succeed) */
    int fdepth; /* N_NAME, N_NSREF: frames up to the slot of the name */
    int fslot;
    int loopslot; /* N_FOR: the slot of "loop" in its body's frame, or -1 */
    syms *fbody;  /* N_FOR, N_SETBLOCK: the frames */
    syms *felse;  /* N_FOR */
    syms *ftest;  /* N_FOR */
    node *a, *b, *c;
    node **kids;
    size_t nkids;
    node **kw;
    size_t nkw;
    const char *name;
    size_t len;
    const char *attr;
    size_t alen;
    jv val;
    node **body;
    size_t nbody;
    node **elifs;
    size_t nelifs;
    node **els;
    size_t nels;
};

/* Node lists while they grow. */
typedef struct nlist {
    node **v;
    size_t n, cap;
} nlist;

typedef struct parser {
    jx *x;
    lexer L;
    token cur;
    int has_look;
    token look;
    int depth; /* recursion of the expression parser */
    int nest;  /* statements open */
} parser;

static int nl_push(jx *x, nlist *l, node *n)
{
    if (l->n == l->cap) {
        size_t cap = l->cap > 0 ? l->cap * 2 : 4;
        if (cap > SIZE_MAX / sizeof(node *) / 2)
            return R_NOROOM;
        node **nv = xalloc(x, cap * sizeof(node *));
        if (nv == NULL)
            return R_NOROOM;
        if (l->n > 0)
            memcpy(nv, l->v, l->n * sizeof(node *));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = n;
    return 0;
}

static int new_node(parser *P, int t, node **out)
{
    node *n = xalloc(P->x, sizeof(node));
    if (n == NULL)
        return R_NOROOM;
    memset(n, 0, sizeof(*n));
    n->t = t;
    n->depth = 1;
    *out = n;
    return 0;
}

/* Counts n's expression depth from its children; unsupported past the limit. */
static int deepen(node *n)
{
    int d = 0;
    node *one[3] = {n->a, n->b, n->c};
    for (int i = 0; i < 3; i++) {
        if (one[i] != NULL && one[i]->depth > d)
            d = one[i]->depth;
    }
    for (size_t i = 0; i < n->nkids; i++) {
        if (n->kids[i]->depth > d)
            d = n->kids[i]->depth;
    }
    for (size_t i = 0; i < n->nkw; i++) {
        if (n->kw[i]->depth > d)
            d = n->kw[i]->depth;
    }
    n->depth = d + 1;
    return n->depth > JINJA_MAX_DEPTH ? R_UNSUP : 0;
}

static int p_advance(parser *P)
{
    if (P->has_look) {
        P->cur = P->look;
        P->has_look = 0;
        return 0;
    }
    return lex_next(&P->L, &P->cur); /* at the end it keeps giving TK_EOF */
}

static int p_peek(parser *P, token **t)
{
    if (!P->has_look) {
        TRY(lex_next(&P->L, &P->look));
        P->has_look = 1;
    }
    *t = &P->look;
    return 0;
}

static int is_name(const token *t, const char *s)
{
    return t->t == TK_NAME && bytes_eq(t->p, t->n, s);
}

static int p_expect(parser *P, tk t)
{
    if (P->cur.t != t)
        return R_RAISE;
    return p_advance(P);
}

static int p_expect_name(parser *P, const char *s)
{
    if (!is_name(&P->cur, s))
        return R_RAISE;
    return p_advance(P);
}

/* The extra end rules of parse_tuple: names that end a tuple too. */
static int is_tuple_end(const parser *P, const char *const *extra)
{
    tk t = P->cur.t;
    if (t == TK_VEND || t == TK_BEND || t == TK_RPAREN)
        return 1;
    for (; extra != NULL && *extra != NULL; extra++) {
        if (is_name(&P->cur, *extra))
            return 1;
    }
    return 0;
}

static int parse_expression(parser *P, int with_condexpr, node **out);
static int parse_tuple(parser *P, int simplified, int with_condexpr, const char *const *extra,
                       int explicit_parens, node **out);
static int parse_unary(parser *P, int with_filter, node **out);
static int parse_primary(parser *P, node **out);
static int parse_postfix(parser *P, node **n);
static int parse_filter_expr(parser *P, node **n);
static int parse_filter(parser *P, node **n, int start_inline);
static int subparse(parser *P, const char *const *end, nlist *body);

static int enter(parser *P)
{
    return ++P->depth > JINJA_MAX_DEPTH ? R_UNSUP : 0;
}

static int parse_list_or_dict(parser *P, node **out)
{
    int dict = P->cur.t == TK_LBRACE;
    tk close = dict ? TK_RBRACE : TK_RBRACKET;
    node *n;
    nlist items = {0};
    TRY(new_node(P, dict ? N_DICT : N_LIST, &n));
    TRY(p_advance(P));
    while (P->cur.t != close) {
        if (items.n > 0)
            TRY(p_expect(P, TK_COMMA));
        if (P->cur.t == close)
            break;
        node *item;
        TRY(parse_expression(P, 1, &item));
        if (dict) {
            node *pair;
            TRY(new_node(P, N_PAIR, &pair));
            pair->a = item;
            TRY(p_expect(P, TK_COLON));
            TRY(parse_expression(P, 1, &pair->b));
            TRY(deepen(pair));
            item = pair;
        }
        TRY(nl_push(P->x, &items, item));
    }
    TRY(p_expect(P, close));
    n->kids = items.v;
    n->nkids = items.n;
    TRY(deepen(n));
    *out = n;
    return 0;
}

/* A name: the constants true, false and none (either case), else N_NAME. */
static int parse_name(parser *P, node **out)
{
    token *t = &P->cur;
    node *n;
    TRY(new_node(P, N_CONST, &n));
    if (is_name(t, "true") || is_name(t, "True")) {
        n->val = mk_bool(1);
    } else if (is_name(t, "false") || is_name(t, "False")) {
        n->val = mk_bool(0);
    } else if (is_name(t, "none") || is_name(t, "None")) {
        n->val = mk_none();
    } else {
        n->t = N_NAME;
        n->name = t->p;
        n->len = t->n;
    }
    TRY(p_advance(P));
    *out = n;
    return 0;
}

/* A string constant: adjacent string literals are one. */
static int parse_string(parser *P, node **out)
{
    node *n;
    TRY(new_node(P, N_CONST, &n));
    const char *p = P->cur.p;
    size_t len = P->cur.n;
    TRY(p_advance(P));
    if (P->cur.t == TK_STRING) { /* adjacent strings are one */
        buf b;
        buf_init(&b, P->x->textmax);
        int rc = put(&b, p, len);
        while (rc == 0 && P->cur.t == TK_STRING) {
            rc = put(&b, P->cur.p, P->cur.n);
            if (rc == 0)
                rc = p_advance(P);
        }
        jv v = mk_none();
        if (rc == 0)
            rc = buf_str(P->x, &b, &v);
        buf_free(&b);
        TRY(rc);
        p = v.u.s.p;
        len = v.u.s.n;
    }
    n->val = mk_str(p, len);
    *out = n;
    return 0;
}

static int parse_primary(parser *P, node **out)
{
    token *t = &P->cur;
    node *n;
    TRY(enter(P));
    if (t->t == TK_NAME) {
        TRY(parse_name(P, &n));
    } else if (t->t == TK_STRING) {
        TRY(parse_string(P, &n));
    } else if (t->t == TK_INT || t->t == TK_FLOAT) {
        TRY(new_node(P, N_CONST, &n));
        n->val = t->t == TK_INT ? mk_int(t->i) : mk_float(t->d);
        TRY(p_advance(P));
    } else if (t->t == TK_LPAREN) {
        TRY(p_advance(P));
        TRY(parse_tuple(P, 0, 1, NULL, 1, &n));
        TRY(p_expect(P, TK_RPAREN));
    } else if (t->t == TK_LBRACKET || t->t == TK_LBRACE) {
        TRY(parse_list_or_dict(P, &n));
    } else {
        return R_RAISE; /* unexpected token */
    }
    P->depth--;
    *out = n;
    return 0;
}

static int parse_tuple(parser *P, int simplified, int with_condexpr, const char *const *extra,
                       int explicit_parens, node **out)
{
    nlist args = {0};
    int is_tuple = 0;
    TRY(enter(P));
    for (;;) {
        if (args.n > 0)
            TRY(p_expect(P, TK_COMMA));
        if (is_tuple_end(P, extra))
            break;
        node *item;
        if (simplified)
            TRY(parse_primary(P, &item));
        else
            TRY(parse_expression(P, with_condexpr, &item));
        TRY(nl_push(P->x, &args, item));
        if (P->cur.t == TK_COMMA)
            is_tuple = 1;
        else
            break;
    }
    P->depth--;
    if (!is_tuple) {
        if (args.n > 0) {
            *out = args.v[0];
            return 0;
        }
        if (!explicit_parens)
            return R_RAISE; /* expected an expression */
    }
    node *n;
    TRY(new_node(P, N_TUPLE, &n));
    n->kids = args.v;
    n->nkids = args.n;
    TRY(deepen(n));
    *out = n;
    return 0;
}

/* `*args` or `**kwargs` at the current token: parsed, then dropped (the
 * call is marked dyn and not reproduced). */
static int parse_dyn_arg(parser *P)
{
    TRY(p_advance(P));
    node *ignored;
    return parse_expression(P, 1, &ignored);
}

/* `name=expression`, pushed onto kwargs as an N_KEYWORD. */
static int parse_keyword(parser *P, nlist *kwargs)
{
    node *k;
    TRY(new_node(P, N_KEYWORD, &k));
    k->name = P->cur.p;
    k->len = P->cur.n;
    TRY(p_advance(P));
    TRY(p_advance(P));
    TRY(parse_expression(P, 1, &k->a));
    TRY(deepen(k));
    return nl_push(P->x, kwargs, k);
}

/* parse_call_args: fills n's kids (positional) and kw (N_KEYWORD). */
static int parse_call_args(parser *P, node *n)
{
    nlist args = {0}, kwargs = {0};
    int dyn_args = 0, dyn_kwargs = 0, require_comma = 0;
    TRY(p_expect(P, TK_LPAREN));
    while (P->cur.t != TK_RPAREN) {
        if (require_comma) {
            TRY(p_expect(P, TK_COMMA));
            if (P->cur.t == TK_RPAREN)
                break;
        }
        token *look;
        if (P->cur.t == TK_MUL) {
            if (dyn_args || dyn_kwargs)
                return R_RAISE;
            TRY(parse_dyn_arg(P));
            dyn_args = 1;
        } else if (P->cur.t == TK_POW) {
            if (dyn_kwargs)
                return R_RAISE;
            TRY(parse_dyn_arg(P));
            dyn_kwargs = 1;
        } else {
            int kw = 0;
            if (P->cur.t == TK_NAME) {
                TRY(p_peek(P, &look));
                kw = look->t == TK_ASSIGN;
            }
            if (kw) {
                if (dyn_kwargs)
                    return R_RAISE;
                TRY(parse_keyword(P, &kwargs));
            } else {
                if (dyn_args || dyn_kwargs || kwargs.n > 0)
                    return R_RAISE; /* invalid syntax for function call expression */
                node *a;
                TRY(parse_expression(P, 1, &a));
                TRY(nl_push(P->x, &args, a));
            }
        }
        require_comma = 1;
    }
    TRY(p_expect(P, TK_RPAREN));
    n->kids = args.v;
    n->nkids = args.n;
    n->kw = kwargs.v;
    n->nkw = kwargs.n;
    n->dyn = dyn_args || dyn_kwargs;
    return 0;
}

static int parse_subscribed(parser *P, node **out)
{
    node *parts[3] = {NULL, NULL, NULL};
    if (P->cur.t == TK_COLON) {
        TRY(p_advance(P));
    } else {
        node *e;
        TRY(parse_expression(P, 1, &e));
        if (P->cur.t != TK_COLON) {
            *out = e;
            return 0;
        }
        TRY(p_advance(P));
        parts[0] = e;
    }
    if (P->cur.t != TK_COLON && P->cur.t != TK_RBRACKET && P->cur.t != TK_COMMA)
        TRY(parse_expression(P, 1, &parts[1]));
    if (P->cur.t == TK_COLON) {
        TRY(p_advance(P));
        if (P->cur.t != TK_RBRACKET && P->cur.t != TK_COMMA)
            TRY(parse_expression(P, 1, &parts[2]));
    }
    node *n;
    TRY(new_node(P, N_SLICE, &n));
    n->a = parts[0];
    n->b = parts[1];
    n->c = parts[2];
    TRY(deepen(n));
    *out = n;
    return 0;
}

static int parse_subscript(parser *P, node **np)
{
    node *n;
    if (P->cur.t == TK_DOT) {
        TRY(p_advance(P));
        token attr = P->cur;
        TRY(p_advance(P));
        if (attr.t == TK_NAME) {
            TRY(new_node(P, N_GETATTR, &n));
            n->a = *np;
            n->name = attr.p;
            n->len = attr.n;
        } else if (attr.t == TK_INT) {
            TRY(new_node(P, N_GETITEM, &n));
            n->a = *np;
            TRY(new_node(P, N_CONST, &n->b));
            n->b->val = mk_int(attr.i);
        } else {
            return R_RAISE; /* expected name or number */
        }
    } else {
        nlist args = {0};
        TRY(p_advance(P));
        while (P->cur.t != TK_RBRACKET) {
            if (args.n > 0)
                TRY(p_expect(P, TK_COMMA));
            node *a;
            TRY(parse_subscribed(P, &a));
            TRY(nl_push(P->x, &args, a));
        }
        TRY(p_expect(P, TK_RBRACKET));
        TRY(new_node(P, N_GETITEM, &n));
        n->a = *np;
        if (args.n == 1) {
            n->b = args.v[0];
        } else {
            /* A slice inside a tuple of subscripts is written into the
             * generated Python as "(a:b, c)", a SyntaxError, unless jinja2
             * folds it or something around it away: not reproduced. */
            for (size_t i = 0; i < args.n; i++) {
                if (args.v[i]->t == N_SLICE)
                    return R_UNSUP;
            }
            TRY(new_node(P, N_TUPLE, &n->b));
            n->b->kids = args.v;
            n->b->nkids = args.n;
            TRY(deepen(n->b));
        }
    }
    TRY(deepen(n));
    *np = n;
    return 0;
}

static int parse_call(parser *P, node **np)
{
    node *n;
    TRY(new_node(P, N_CALL, &n));
    n->a = *np;
    TRY(parse_call_args(P, n));
    TRY(deepen(n));
    *np = n;
    return 0;
}

static int parse_postfix(parser *P, node **n)
{
    for (;;) {
        if (P->cur.t == TK_DOT || P->cur.t == TK_LBRACKET)
            TRY(parse_subscript(P, n));
        else if (P->cur.t == TK_LPAREN)
            TRY(parse_call(P, n));
        else
            return 0;
    }
}

/* A dotted name after '|' or 'is'. */
static int parse_dotted(parser *P, const char **name, size_t *len)
{
    if (P->cur.t != TK_NAME)
        return R_RAISE;
    *name = P->cur.p;
    *len = P->cur.n;
    TRY(p_advance(P));
    while (P->cur.t == TK_DOT) {
        TRY(p_advance(P));
        if (P->cur.t != TK_NAME)
            return R_RAISE;
        *len = 0; /* no filter or test has a dot in its name */
        TRY(p_advance(P));
    }
    return 0;
}

static int lookup_filter(const char *name, size_t len);
static int lookup_test(const char *name, size_t len);

static int parse_filter(parser *P, node **np, int start_inline)
{
    while (P->cur.t == TK_PIPE || start_inline) {
        if (!start_inline)
            TRY(p_advance(P));
        node *n;
        TRY(new_node(P, N_FILTER, &n));
        n->a = *np;
        TRY(parse_dotted(P, &n->name, &n->len));
        n->fid = lookup_filter(n->name, n->len);
        if (P->cur.t == TK_LPAREN)
            TRY(parse_call_args(P, n));
        TRY(deepen(n));
        *np = n;
        start_inline = 0;
    }
    return 0;
}

static int parse_test(parser *P, node **np)
{
    int negated = 0;
    TRY(p_advance(P)); /* "is" */
    if (is_name(&P->cur, "not")) {
        TRY(p_advance(P));
        negated = 1;
    }
    node *n;
    TRY(new_node(P, N_TEST, &n));
    n->a = *np;
    TRY(parse_dotted(P, &n->name, &n->len));
    n->fid = lookup_test(n->name, n->len);
    tk t = P->cur.t;
    if (t == TK_LPAREN) {
        TRY(parse_call_args(P, n));
    } else if ((t == TK_NAME || t == TK_STRING || t == TK_INT || t == TK_FLOAT ||
                t == TK_LBRACKET || t == TK_LBRACE) &&
               !is_name(&P->cur, "else") && !is_name(&P->cur, "or") && !is_name(&P->cur, "and")) {
        if (is_name(&P->cur, "is"))
            return R_RAISE; /* you cannot chain multiple tests with is */
        node *arg;
        TRY(parse_primary(P, &arg));
        TRY(parse_postfix(P, &arg));
        node **kids = xalloc(P->x, sizeof(node *));
        if (kids == NULL)
            return R_NOROOM;
        kids[0] = arg;
        n->kids = kids;
        n->nkids = 1;
    }
    TRY(deepen(n));
    if (negated) {
        node *m;
        TRY(new_node(P, N_NOT, &m));
        m->a = n;
        TRY(deepen(m));
        n = m;
    }
    *np = n;
    return 0;
}

static int parse_filter_expr(parser *P, node **n)
{
    for (;;) {
        if (P->cur.t == TK_PIPE)
            TRY(parse_filter(P, n, 0));
        else if (is_name(&P->cur, "is"))
            TRY(parse_test(P, n));
        else if (P->cur.t == TK_LPAREN)
            TRY(parse_call(P, n));
        else
            return 0;
    }
}

static int parse_unary(parser *P, int with_filter, node **out)
{
    node *n;
    TRY(enter(P));
    if (P->cur.t == TK_SUB || P->cur.t == TK_ADD) {
        TRY(new_node(P, P->cur.t == TK_SUB ? N_NEG : N_POS, &n));
        TRY(p_advance(P));
        TRY(parse_unary(P, 0, &n->a));
        TRY(deepen(n));
    } else {
        TRY(parse_primary(P, &n));
    }
    TRY(parse_postfix(P, &n));
    if (with_filter)
        TRY(parse_filter_expr(P, &n));
    P->depth--;
    *out = n;
    return 0;
}

static int binary(parser *P, int t, int op, node *a, node *b, node **out)
{
    node *n;
    TRY(new_node(P, t, &n));
    n->op = op;
    n->a = a;
    n->b = b;
    TRY(deepen(n));
    *out = n;
    return 0;
}

static int parse_pow(parser *P, node **out)
{
    node *left;
    TRY(parse_unary(P, 1, &left));
    while (P->cur.t == TK_POW) {
        node *right;
        TRY(p_advance(P));
        TRY(parse_unary(P, 1, &right));
        TRY(binary(P, N_BIN, TK_POW, left, right, &left));
    }
    *out = left;
    return 0;
}

static int parse_math2(parser *P, node **out)
{
    node *left;
    TRY(parse_pow(P, &left));
    while (P->cur.t == TK_MUL || P->cur.t == TK_DIV || P->cur.t == TK_FLOORDIV ||
           P->cur.t == TK_MOD) {
        int op = P->cur.t;
        node *right;
        TRY(p_advance(P));
        TRY(parse_pow(P, &right));
        TRY(binary(P, N_BIN, op, left, right, &left));
    }
    *out = left;
    return 0;
}

static int parse_concat(parser *P, node **out)
{
    nlist args = {0};
    node *first;
    TRY(parse_math2(P, &first));
    if (P->cur.t != TK_TILDE) {
        *out = first;
        return 0;
    }
    TRY(nl_push(P->x, &args, first));
    while (P->cur.t == TK_TILDE) {
        node *more;
        TRY(p_advance(P));
        TRY(parse_math2(P, &more));
        TRY(nl_push(P->x, &args, more));
    }
    node *n;
    TRY(new_node(P, N_CONCAT, &n));
    n->kids = args.v;
    n->nkids = args.n;
    TRY(deepen(n));
    *out = n;
    return 0;
}

static int parse_math1(parser *P, node **out)
{
    node *left;
    TRY(parse_concat(P, &left));
    while (P->cur.t == TK_ADD || P->cur.t == TK_SUB) {
        int op = P->cur.t;
        node *right;
        TRY(p_advance(P));
        TRY(parse_concat(P, &right));
        TRY(binary(P, N_BIN, op, left, right, &left));
    }
    *out = left;
    return 0;
}

static int parse_compare(parser *P, node **out)
{
    node *expr;
    nlist ops = {0};
    TRY(parse_math1(P, &expr));
    for (;;) {
        int op;
        tk t = P->cur.t;
        if (t == TK_EQ || t == TK_NE || t == TK_LT || t == TK_LTEQ || t == TK_GT || t == TK_GTEQ) {
            op = t;
            TRY(p_advance(P));
        } else if (is_name(&P->cur, "in")) {
            op = OP_IN;
            TRY(p_advance(P));
        } else if (is_name(&P->cur, "not")) {
            token *look;
            TRY(p_peek(P, &look));
            if (!is_name(look, "in"))
                break;
            op = OP_NOTIN;
            TRY(p_advance(P));
            TRY(p_advance(P));
        } else {
            break;
        }
        node *operand;
        TRY(new_node(P, N_OPERAND, &operand));
        operand->op = op;
        TRY(parse_math1(P, &operand->a));
        TRY(deepen(operand));
        TRY(nl_push(P->x, &ops, operand));
    }
    if (ops.n == 0) {
        *out = expr;
        return 0;
    }
    node *n;
    TRY(new_node(P, N_COMPARE, &n));
    n->a = expr;
    n->kids = ops.v;
    n->nkids = ops.n;
    TRY(deepen(n));
    *out = n;
    return 0;
}

static int parse_not(parser *P, node **out)
{
    if (is_name(&P->cur, "not")) {
        node *n;
        TRY(enter(P));
        TRY(new_node(P, N_NOT, &n));
        TRY(p_advance(P));
        TRY(parse_not(P, &n->a));
        TRY(deepen(n));
        P->depth--;
        *out = n;
        return 0;
    }
    return parse_compare(P, out);
}

static int parse_and(parser *P, node **out)
{
    node *left;
    TRY(parse_not(P, &left));
    while (is_name(&P->cur, "and")) {
        node *right;
        TRY(p_advance(P));
        TRY(parse_not(P, &right));
        TRY(binary(P, N_AND, 0, left, right, &left));
    }
    *out = left;
    return 0;
}

static int parse_or(parser *P, node **out)
{
    node *left;
    TRY(parse_and(P, &left));
    while (is_name(&P->cur, "or")) {
        node *right;
        TRY(p_advance(P));
        TRY(parse_and(P, &right));
        TRY(binary(P, N_OR, 0, left, right, &left));
    }
    *out = left;
    return 0;
}

static int parse_condexpr(parser *P, node **out)
{
    node *expr1;
    TRY(parse_or(P, &expr1));
    while (is_name(&P->cur, "if")) {
        node *n;
        TRY(new_node(P, N_COND, &n));
        TRY(p_advance(P));
        TRY(parse_or(P, &n->a));
        if (is_name(&P->cur, "else")) {
            TRY(p_advance(P));
            TRY(enter(P));
            TRY(parse_condexpr(P, &n->c));
            P->depth--;
        }
        n->b = expr1;
        TRY(deepen(n));
        expr1 = n;
    }
    *out = expr1;
    return 0;
}

static int parse_expression(parser *P, int with_condexpr, node **out)
{
    TRY(enter(P));
    TRY(with_condexpr ? parse_condexpr(P, out) : parse_or(P, out));
    P->depth--;
    return 0;
}

/* ---- statements ------------------------------------------------------------ */

/* Name.can_assign / Tuple.can_assign: names and tuples of them. */
static int can_assign(node *n)
{
    if (n->t == N_NAME) {
        n->store = 1;
        return 1;
    }
    if (n->t != N_TUPLE)
        return 0;
    n->store = 1;
    for (size_t i = 0; i < n->nkids; i++) {
        if (!can_assign(n->kids[i]))
            return 0;
    }
    return 1;
}

static int parse_assign_target(parser *P, const char *const *extra, int with_namespace, node **out)
{
    if (with_namespace) {
        token *look;
        TRY(p_peek(P, &look));
        if (look->t == TK_DOT) {
            node *n;
            TRY(new_node(P, N_NSREF, &n));
            if (P->cur.t != TK_NAME)
                return R_RAISE;
            n->name = P->cur.p;
            n->len = P->cur.n;
            TRY(p_advance(P));
            TRY(p_advance(P));
            if (P->cur.t != TK_NAME)
                return R_RAISE;
            n->attr = P->cur.p;
            n->alen = P->cur.n;
            TRY(p_advance(P));
            *out = n;
            return 0;
        }
    }
    node *n;
    TRY(parse_tuple(P, 1, 1, extra, 0, &n));
    if (!can_assign(n))
        return R_RAISE; /* can't assign to ... */
    *out = n;
    return 0;
}

/* parse_statements: an optional colon, the end of the tag, then the body up
 * to one of the end names (the current token then). */
static int parse_statements(parser *P, const char *const *end, int drop_needle, nlist *body)
{
    if (P->cur.t == TK_COLON)
        TRY(p_advance(P));
    TRY(p_expect(P, TK_BEND));
    TRY(subparse(P, end, body));
    if (P->cur.t == TK_EOF)
        return R_RAISE; /* unexpected end of template */
    if (drop_needle)
        TRY(p_advance(P));
    return 0;
}

static const char *const END_FOR[] = {"endfor", "else", NULL};
static const char *const END_FOR_ELSE[] = {"endfor", NULL};
static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_IF_ELSE[] = {"endif", NULL};
static const char *const END_SET[] = {"endset", NULL};
static const char *const FOR_TARGET_END[] = {"in", NULL};
static const char *const FOR_ITER_END[] = {"recursive", NULL};

static int parse_for(parser *P, node **out)
{
    node *n;
    nlist body = {0}, els = {0};
    TRY(new_node(P, N_FOR, &n));
    TRY(p_advance(P));
    TRY(parse_assign_target(P, FOR_TARGET_END, 0, &n->a));
    TRY(p_expect_name(P, "in"));
    TRY(parse_tuple(P, 0, 0, FOR_ITER_END, 0, &n->b));
    if (is_name(&P->cur, "if")) {
        TRY(p_advance(P));
        TRY(parse_expression(P, 1, &n->c));
    }
    if (is_name(&P->cur, "recursive"))
        return R_UNSUP; /* recursive loops */
    TRY(parse_statements(P, END_FOR, 0, &body));
    int has_else = is_name(&P->cur, "else");
    TRY(p_advance(P));
    if (has_else)
        TRY(parse_statements(P, END_FOR_ELSE, 1, &els));
    n->body = body.v;
    n->nbody = body.n;
    n->els = els.v;
    n->nels = els.n;
    *out = n;
    return 0;
}

static int parse_if(parser *P, node **out)
{
    node *result, *n;
    nlist elifs = {0};
    TRY(new_node(P, N_IF, &result));
    TRY(p_advance(P));
    n = result;
    for (;;) {
        nlist body = {0};
        TRY(parse_tuple(P, 0, 0, NULL, 0, &n->a));
        TRY(parse_statements(P, END_IF, 0, &body));
        n->body = body.v;
        n->nbody = body.n;
        int elif = is_name(&P->cur, "elif"), els = is_name(&P->cur, "else");
        TRY(p_advance(P));
        if (elif) {
            TRY(new_node(P, N_IF, &n));
            TRY(nl_push(P->x, &elifs, n));
            continue;
        }
        if (els) {
            nlist eb = {0};
            TRY(parse_statements(P, END_IF_ELSE, 1, &eb));
            result->els = eb.v;
            result->nels = eb.n;
        }
        break;
    }
    result->elifs = elifs.v;
    result->nelifs = elifs.n;
    *out = result;
    return 0;
}

static int parse_set(parser *P, node **out)
{
    node *n;
    TRY(p_advance(P));
    TRY(new_node(P, N_SET, &n));
    TRY(parse_assign_target(P, NULL, 1, &n->a));
    if (P->cur.t == TK_ASSIGN) {
        TRY(p_advance(P));
        TRY(parse_tuple(P, 0, 1, NULL, 0, &n->b));
        *out = n;
        return 0;
    }
    nlist body = {0};
    n->t = N_SETBLOCK;
    node *chain = NULL;
    TRY(parse_filter(P, &chain, 0));
    n->c = chain;
    TRY(parse_statements(P, END_SET, 1, &body));
    n->body = body.v;
    n->nbody = body.n;
    *out = n;
    return 0;
}

static int parse_print(parser *P, node **out)
{
    node *n;
    nlist items = {0};
    TRY(new_node(P, N_OUTPUT, &n));
    TRY(p_advance(P));
    while (P->cur.t != TK_BEND) {
        if (items.n > 0)
            TRY(p_expect(P, TK_COMMA));
        node *e;
        TRY(parse_expression(P, 1, &e));
        TRY(nl_push(P->x, &items, e));
    }
    n->kids = items.v;
    n->nkids = items.n;
    *out = n;
    return 0;
}

static int parse_statement(parser *P, node **out)
{
    token *t = &P->cur;
    if (t->t != TK_NAME)
        return R_RAISE; /* tag name expected */
    if (++P->nest > JINJA_MAX_NEST)
        return R_UNSUP;
    int rc;
    if (is_name(t, "for"))
        rc = parse_for(P, out);
    else if (is_name(t, "if"))
        rc = parse_if(P, out);
    else if (is_name(t, "set"))
        rc = parse_set(P, out);
    else if (is_name(t, "print"))
        rc = parse_print(P, out);
    else if (is_name(t, "block") || is_name(t, "extends") || is_name(t, "macro") ||
             is_name(t, "include") || is_name(t, "from") || is_name(t, "import") ||
             is_name(t, "with") || is_name(t, "autoescape") || is_name(t, "call") ||
             is_name(t, "filter"))
        rc = R_UNSUP; /* tags jinja2 has that this module does not render */
    else
        rc = R_RAISE; /* encountered unknown tag */
    P->nest--;
    return rc;
}

static int is_end(const parser *P, const char *const *end)
{
    for (; end != NULL && *end != NULL; end++) {
        if (is_name(&P->cur, *end))
            return 1;
    }
    return 0;
}

static int subparse(parser *P, const char *const *end, nlist *body)
{
    nlist data = {0};
    while (P->cur.t != TK_EOF) {
        if (P->cur.t == TK_DATA) {
            if (P->cur.n > 0) {
                node *d;
                TRY(new_node(P, N_DATA, &d));
                d->name = P->cur.p;
                d->len = P->cur.n;
                TRY(nl_push(P->x, &data, d));
            }
            TRY(p_advance(P));
        } else if (P->cur.t == TK_VBEGIN) {
            node *e;
            TRY(p_advance(P));
            TRY(parse_tuple(P, 0, 1, NULL, 0, &e));
            TRY(p_expect(P, TK_VEND));
            TRY(nl_push(P->x, &data, e));
        } else if (P->cur.t == TK_BBEGIN) {
            if (data.n > 0) {
                node *o;
                TRY(new_node(P, N_OUTPUT, &o));
                o->kids = data.v;
                o->nkids = data.n;
                TRY(nl_push(P->x, body, o));
                memset(&data, 0, sizeof(data));
            }
            TRY(p_advance(P));
            if (end != NULL && is_end(P, end))
                return 0;
            node *s = NULL;
            TRY(parse_statement(P, &s));
            TRY(nl_push(P->x, body, s));
            TRY(p_expect(P, TK_BEND));
        } else {
            return R_RAISE; /* cannot happen: the lexer gives no other token here */
        }
    }
    if (data.n > 0) {
        node *o;
        TRY(new_node(P, N_OUTPUT, &o));
        o->kids = data.v;
        o->nkids = data.n;
        TRY(nl_push(P->x, body, o));
    }
    return 0;
}

/* ---- Python's protocols over jv ------------------------------------------ */

static int py_str(jx *x, const jv *v, buf *b);
static int py_repr(jx *x, const jv *v, buf *b, int depth);
static int py_eq(jx *x, const jv *a, const jv *b, int *eq, int depth);
static int it_open(jx *x, const jv *v, jiter **out);
static int it_next(jx *x, jiter *it, jv *out, int *has);
static int loop_length(jx *x, jloop *l, long long *out);

#define REPR_DEPTH 200 /* containers built here nest far less; JSON has pyfmt's bound */

static int from_pyfmt(int rc)
{
    return rc == PYFMT_OK ? 0 : rc == PYFMT_NOROOM ? R_NOROOM : R_UNSUP;
}

static size_t range_len(const jrange *r)
{
    long long lo = r->start, hi = r->stop, st = r->step;
    if (st > 0 && lo < hi)
        return (size_t)(((unsigned long long)hi - (unsigned long long)lo - 1) /
                        (unsigned long long)st) +
               1;
    if (st < 0 && lo > hi)
        return (size_t)(((unsigned long long)lo - (unsigned long long)hi - 1) /
                        (0ULL - (unsigned long long)st)) +
               1;
    return 0;
}

/* len(v): 0, R_RAISE where Python has no len, R_UNSUP. */
static int py_len(jx *x, const jv *v, size_t *n)
{
    switch (v->k) {
    case K_UNDEF:
        *n = 0;
        return 0;
    case K_STR:
        *n = cp_count(v->u.s.p, v->u.s.n);
        return 0;
    case K_LIST:
    case K_TUPLE:
    case K_VIEW:
        *n = seq_len(v);
        return 0;
    case K_DICT:
        *n = dict_len(v);
        return 0;
    case K_RANGE:
        *n = range_len(v->u.rg);
        return 0;
    case K_LOOP: {
        long long len;
        TRY(loop_length(x, v->u.loop, &len));
        *n = (size_t)len;
        return 0;
    }
    default:
        return R_RAISE; /* numbers, None, methods, generators, namespaces */
    }
}

static int py_truthy(jx *x, const jv *v, int *t)
{
    switch (v->k) {
    case K_UNDEF:
    case K_NONE:
        *t = 0;
        return 0;
    case K_BOOL:
    case K_INT:
        *t = v->u.i != 0;
        return 0;
    case K_FLOAT:
        *t = v->u.d != 0.0;
        return 0;
    case K_STR:
        *t = v->u.s.n > 0;
        return 0;
    case K_LIST:
    case K_TUPLE:
    case K_VIEW:
        *t = seq_len(v) > 0;
        return 0;
    case K_DICT:
        *t = dict_len(v) > 0;
        return 0;
    case K_RANGE:
        *t = range_len(v->u.rg) > 0;
        return 0;
    case K_LOOP: {
        long long len; /* LoopContext has __len__ */
        TRY(loop_length(x, v->u.loop, &len));
        *t = len > 0;
        return 0;
    }
    default:
        *t = 1; /* generators, namespaces, methods */
        return 0;
    }
}

static int put_int(buf *b, long long i)
{
    return buf_printf(b, "%lld", i) == 0 ? 0 : R_NOROOM;
}

static int repr_items(jx *x, const jv *v, buf *b, int depth)
{
    size_t n = seq_len(v);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            TRY(puts_(b, ", "));
        jv item = seq_at(v, i);
        TRY(py_repr(x, &item, b, depth + 1));
    }
    return 0;
}

static int repr_dict(jx *x, const jv *d, buf *b, int depth)
{
    const jv *keys, *vals;
    size_t n;
    TRY(dict_items(x, d, &keys, &vals, &n));
    TRY(puts_(b, "{"));
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            TRY(puts_(b, ", "));
        TRY(py_repr(x, &keys[i], b, depth + 1));
        TRY(puts_(b, ": "));
        TRY(py_repr(x, &vals[i], b, depth + 1));
    }
    return puts_(b, "}");
}

/* repr(range): range(start, stop[, step]). */
static int repr_range(const jrange *r, buf *b)
{
    if (r->step == 1)
        return buf_printf(b, "range(%lld, %lld)", r->start, r->stop) == 0 ? 0 : R_NOROOM;
    return buf_printf(b, "range(%lld, %lld, %lld)", r->start, r->stop, r->step) == 0 ? 0 : R_NOROOM;
}

/* repr of jinja2's LoopContext: <LoopContext index/length>. */
static int repr_loop(jx *x, jloop *l, buf *b)
{
    long long len;
    TRY(loop_length(x, l, &len));
    return buf_printf(b, "<LoopContext %lld/%lld>", l->index0 + 1, len) == 0 ? 0 : R_NOROOM;
}

/* repr of jinja2's Namespace: <Namespace {attrs}>. */
static int repr_ns(jx *x, jns *ns, buf *b, int depth)
{
    jv d = mk_undef();
    d.k = K_DICT;
    d.u.dict = &ns->attrs;
    TRY(puts_(b, "<Namespace "));
    TRY(repr_dict(x, &d, b, depth));
    return puts_(b, ">");
}

static int py_repr(jx *x, const jv *v, buf *b, int depth)
{
    if (depth > REPR_DEPTH)
        return R_UNSUP;
    TRY(step(x));
    switch (v->k) {
    case K_UNDEF:
        return puts_(b, "Undefined");
    case K_NONE:
        return puts_(b, "None");
    case K_BOOL:
        return puts_(b, v->u.i ? "True" : "False");
    case K_INT:
        return put_int(b, v->u.i);
    case K_FLOAT:
        return from_pyfmt(pyfmt_float_repr(b, v->u.d));
    case K_STR:
        if (v->markup)
            TRY(puts_(b, "Markup("));
        TRY(from_pyfmt(pyfmt_repr_text(b, v->u.s.p, v->u.s.n, 0)));
        return v->markup ? puts_(b, ")") : 0;
    case K_LIST:
        if (v->isj)
            return from_pyfmt(pyfmt_repr(b, v->u.j));
        TRY(puts_(b, "["));
        TRY(repr_items(x, v, b, depth));
        return puts_(b, "]");
    case K_TUPLE:
        TRY(puts_(b, "("));
        TRY(repr_items(x, v, b, depth));
        return puts_(b, seq_len(v) == 1 ? ",)" : ")");
    case K_DICT:
        if (v->isj)
            return from_pyfmt(pyfmt_repr(b, v->u.j));
        return repr_dict(x, v, b, depth);
    case K_VIEW:
        TRY(puts_(b, v->sub == VIEW_KEYS     ? "dict_keys(["
                     : v->sub == VIEW_VALUES ? "dict_values(["
                                             : "dict_items(["));
        TRY(repr_items(x, v, b, depth));
        return puts_(b, "])");
    case K_RANGE:
        return repr_range(v->u.rg, b);
    case K_LOOP:
        return repr_loop(x, v->u.loop, b);
    case K_NS:
        return repr_ns(x, v->u.ns, b, depth);
    default:
        return R_UNSUP; /* printed with its address */
    }
}

/* str(v), appended. */
static int py_str(jx *x, const jv *v, buf *b)
{
    if (v->k == K_UNDEF)
        return 0;
    if (v->k == K_STR)
        return put(b, v->u.s.p, v->u.s.n);
    if (v->k == K_LIST && v->isj)
        return from_pyfmt(pyfmt_str(b, v->u.j));
    return py_repr(x, v, b, 0);
}

/* str(v) as a value (plain str). */
static int str_of(jx *x, const jv *v, jv *out)
{
    if (v->k == K_STR) {
        *out = *v;
        out->markup = 0;
        return 0;
    }
    buf b;
    buf_init(&b, x->textmax);
    int rc = py_str(x, v, &b);
    if (rc == 0)
        rc = buf_str(x, &b, out);
    buf_free(&b);
    return rc;
}

/* markupsafe's soft_str: a str (Markup kept) as it is, anything else str(). */
static int soft_str(jx *x, const jv *v, jv *out)
{
    if (v->k == K_STR) {
        *out = *v;
        return 0;
    }
    return str_of(x, v, out);
}

/* ---- comparisons ------------------------------------------------------------ */

static double num_d(const jv *v)
{
    return v->k == K_FLOAT ? v->u.d : (double)v->u.i;
}

/* Python's exact comparison of two numbers: -1, 0, 1, or 2 when unordered (NaN). */
static int num_cmp(const jv *a, const jv *b)
{
    if (a->k != K_FLOAT && b->k != K_FLOAT)
        return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
    if (a->k == K_FLOAT && b->k == K_FLOAT) {
        if (isnan(a->u.d) || isnan(b->u.d))
            return 2;
        return a->u.d < b->u.d ? -1 : a->u.d > b->u.d;
    }
    int flip = a->k == K_FLOAT;
    long long i = flip ? b->u.i : a->u.i;
    double d = flip ? a->u.d : b->u.d;
    int r;
    if (isnan(d))
        return 2;
    if (d >= 9223372036854775808.0) {
        r = -1;
    } else if (d < -9223372036854775808.0) {
        r = 1;
    } else {
        double t = trunc(d);
        long long ti = (long long)t;
        if (i != ti)
            r = i < ti ? -1 : 1;
        else
            r = d > t ? -1 : d < t ? 1 : 0;
    }
    return flip ? -r : r;
}

static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return an < bn ? -1 : an > bn;
}

static int has_nan(const jv *v)
{
    return v->k == K_FLOAT && isnan(v->u.d);
}

static int seq_eq(jx *x, const jv *a, const jv *b, int *eq, int depth)
{
    size_t n = seq_len(a);
    if (n != seq_len(b)) {
        *eq = 0;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        jv p = seq_at(a, i), q = seq_at(b, i);
        if (has_nan(&p) || has_nan(&q))
            return R_UNSUP; /* identity decides for the same NaN object */
        TRY(py_eq(x, &p, &q, eq, depth + 1));
        if (!*eq)
            return 0;
    }
    *eq = 1;
    return 0;
}

/* a == b of two dicts: the same keys, each with equal values. */
static int dict_eq(jx *x, const jv *a, const jv *b, int *eq, int depth)
{
    if (dict_len(a) != dict_len(b))
        return 0;
    const jv *keys, *vals;
    size_t n;
    TRY(dict_items(x, a, &keys, &vals, &n));
    for (size_t i = 0; i < n; i++) {
        jv other;
        if (!dict_get(b, keys[i].u.s.p, keys[i].u.s.n, &other))
            return 0;
        if (has_nan(&vals[i]) || has_nan(&other))
            return R_UNSUP;
        TRY(py_eq(x, &vals[i], &other, eq, depth + 1));
        if (!*eq)
            return 0;
    }
    *eq = 1;
    return 0;
}

/* p == q of two ranges: the same sequence of numbers, as CPython's
 * range_equals. */
static int range_eq(const jrange *p, const jrange *q)
{
    size_t n = range_len(p);
    return n == range_len(q) &&
           (n == 0 || (p->start == q->start && (n == 1 || p->step == q->step)));
}

static int py_eq(jx *x, const jv *a, const jv *b, int *eq, int depth)
{
    if (depth > REPR_DEPTH)
        return R_UNSUP;
    TRY(step(x));
    *eq = 0;
    if (is_num(a) && is_num(b)) {
        *eq = num_cmp(a, b) == 0;
        return 0;
    }
    if ((a->k == K_VIEW && a->sub == VIEW_VALUES) || (b->k == K_VIEW && b->sub == VIEW_VALUES)) {
        *eq = a->k == b->k && a->sub == b->sub && a->u.seq == b->u.seq; /* identity */
        return 0;
    }
    if ((a->k == K_METHOD && b->k == K_METHOD) || a->k == K_VIEW || b->k == K_VIEW)
        return R_UNSUP; /* bound methods compare their selves; keys views are sets */
    if (a->k != b->k)
        return 0;
    switch (a->k) {
    case K_UNDEF:
    case K_NONE:
        *eq = 1;
        return 0;
    case K_STR:
        *eq = a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
        return 0;
    case K_LIST:
    case K_TUPLE:
        return seq_eq(x, a, b, eq, depth);
    case K_DICT:
        return dict_eq(x, a, b, eq, depth);
    case K_RANGE:
        *eq = range_eq(a->u.rg, b->u.rg);
        return 0;
    case K_ITER:
    case K_LOOP:
    case K_NS:
        *eq = a->u.it == b->u.it; /* identity: the union's pointers alias */
        return 0;
    default:
        return R_UNSUP;
    }
}

enum { CMP_LT, CMP_LE, CMP_GT, CMP_GE };

static int cmp_holds(int c, int op)
{
    switch (op) {
    case CMP_LT:
        return c < 0;
    case CMP_LE:
        return c <= 0;
    case CMP_GT:
        return c > 0;
    default:
        return c >= 0;
    }
}

/* a < b, a <= b, a > b, a >= b as Python orders them; R_RAISE where it raises. */
static int py_order(jx *x, const jv *a, const jv *b, int op, int *res, int depth)
{
    if (depth > REPR_DEPTH)
        return R_UNSUP;
    TRY(step(x));
    if (is_num(a) && is_num(b)) {
        int c = num_cmp(a, b);
        *res = c != 2 && cmp_holds(c, op);
        return 0;
    }
    if (a->k == K_STR && b->k == K_STR) {
        *res = cmp_holds(bytes_cmp(a->u.s.p, a->u.s.n, b->u.s.p, b->u.s.n), op);
        return 0;
    }
    if ((a->k == K_LIST && b->k == K_LIST) || (a->k == K_TUPLE && b->k == K_TUPLE)) {
        size_t n = seq_len(a), m = seq_len(b);
        for (size_t i = 0; i < n && i < m; i++) {
            jv p = seq_at(a, i), q = seq_at(b, i);
            int eq;
            if (has_nan(&p) || has_nan(&q))
                return R_UNSUP;
            TRY(py_eq(x, &p, &q, &eq, depth + 1));
            if (!eq)
                return py_order(x, &p, &q, op, res, depth + 1);
        }
        *res = cmp_holds(n < m ? -1 : n > m, op);
        return 0;
    }
    if (a->k == K_VIEW || b->k == K_VIEW)
        return R_UNSUP; /* keys and items views order as sets */
    return R_RAISE;     /* TypeError, or UndefinedError */
}

/* hash(v) would work (v can be a dict key or a set member). */
static int py_hashable(const jv *v)
{
    if (v->k == K_LIST || v->k == K_DICT || (v->k == K_VIEW && v->sub != VIEW_VALUES))
        return 0; /* keys and items views are sets; a values view hashes by identity */
    if (v->k == K_TUPLE) {
        for (size_t i = 0; i < seq_len(v); i++) {
            jv item = seq_at(v, i);
            if (!py_hashable(&item))
                return 0;
        }
    }
    return 1;
}

/* `item in dict-like d` (a key test). */
static int dict_has(const jv *d, const jv *item, int *res)
{
    *res = 0;
    if (!py_hashable(item))
        return R_RAISE; /* unhashable type */
    jv ignored;
    if (item->k == K_STR)
        *res = dict_get(d, item->u.s.p, item->u.s.n, &ignored);
    return 0;
}

/* `item in s`, s a str: a substring test. */
static int str_contains(const jv *c, const jv *item, int *res)
{
    if (item->k != K_STR)
        return R_RAISE; /* 'in <string>' requires string as left operand */
    const char *h = c->u.s.p, *nd = item->u.s.p;
    size_t hn = c->u.s.n, nn = item->u.s.n;
    if (nn == 0) {
        *res = 1;
        return 0;
    }
    for (size_t i = 0; i + nn <= hn; i++) {
        if (memcmp(h + i, nd, nn) == 0) {
            *res = 1;
            return 0;
        }
    }
    return 0;
}

/* `item in keys`, keys a dict's keys view: a hashable item compared by ==. */
static int keys_contains(jx *x, const jv *c, const jv *item, int *res)
{
    if (!py_hashable(item))
        return R_RAISE;
    for (size_t i = 0; i < seq_len(c); i++) {
        jv e = seq_at(c, i);
        TRY(py_eq(x, &e, item, res, 0));
        if (*res)
            return 0;
    }
    return 0;
}

/* `item in c`, c a list, tuple or view: compared by == in order. */
static int seq_contains(jx *x, const jv *c, const jv *item, int *res)
{
    if (c->k == K_VIEW && c->sub == VIEW_KEYS)
        return keys_contains(x, c, item, res);
    if (c->k == K_VIEW && c->sub == VIEW_ITEMS)
        return R_UNSUP;
    if (has_nan(item))
        return R_UNSUP;
    size_t n = seq_len(c);
    for (size_t i = 0; i < n; i++) {
        jv e = seq_at(c, i);
        if (has_nan(&e))
            return R_UNSUP;
        TRY(py_eq(x, &e, item, res, 0));
        if (*res)
            return 0;
    }
    return 0;
}

/* `item in r`, r a range: arithmetic, no iteration; a float counts when it
 * is integral. */
static int range_contains(const jv *c, const jv *item, int *res)
{
    const jrange *r = c->u.rg;
    long long v;
    if (item->k == K_INT || item->k == K_BOOL) {
        v = item->u.i;
    } else if (item->k == K_FLOAT) {
        double d = item->u.d;
        if (!(d == trunc(d)) || fabs(d) >= 9.2e18)
            return 0;
        v = (long long)d;
    } else {
        return 0;
    }
    if (range_len(r) == 0)
        return 0;
    if (r->step > 0)
        *res = v >= r->start && v < r->stop && (v - r->start) % r->step == 0;
    else
        *res = v <= r->start && v > r->stop && (r->start - v) % (-r->step) == 0;
    return 0;
}

/* `item in it`, it an iterator: consumes it up to the first equal item. */
static int iter_contains(jx *x, const jv *c, const jv *item, int *res)
{
    jiter *it = c->u.it;
    for (;;) {
        jv e;
        int has;
        TRY(it_next(x, it, &e, &has));
        if (!has)
            return 0;
        if (has_nan(&e) || has_nan(item))
            return R_UNSUP;
        TRY(py_eq(x, &e, item, res, 0));
        if (*res)
            return 0;
    }
}

/* `item in c`. */
static int py_contains(jx *x, const jv *c, const jv *item, int *res)
{
    *res = 0;
    switch (c->k) {
    case K_UNDEF:
        return 0;
    case K_STR:
        return str_contains(c, item, res);
    case K_LIST:
    case K_TUPLE:
    case K_VIEW:
        return seq_contains(x, c, item, res);
    case K_DICT:
        return dict_has(c, item, res);
    case K_RANGE:
        return range_contains(c, item, res);
    case K_ITER:
        return iter_contains(x, c, item, res);
    case K_LOOP:
        return R_UNSUP; /* iterating it moves the loop on */
    default:
        return R_RAISE; /* not iterable */
    }
}

/* ---- iteration ------------------------------------------------------------- */

static int call_filter_id(jx *x, int fid, const jv *value, const callargs *a, jv *out);
static int call_test_id(jx *x, int tid, const jv *value, const callargs *a, int *out);
static int find_filter(const jv *name, int *fid);
static int find_test(const jv *name, int *tid);
static int attr_path(jx *x, const jv *item, const jv *attr, int has_dflt, const jv *dflt, jv *out);
static int eval(jx *x, scope *sc, const node *n, jv *out);
static int assign(jx *x, scope *sc, const node *target, const jv *v);
static int enter_frame(jx *x, const syms *info, scope *parent, scope **out);
static jv *slot_of(scope *sc, const node *n);
static int lower_str(jx *x, const jv *v, jv *out);

static int it_new(jx *x, int kind, const jv *src, jiter **out)
{
    jiter *it = xalloc(x, sizeof(jiter));
    if (it == NULL)
        return R_NOROOM;
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    it->src = src != NULL ? *src : mk_none();
    it->fid = -1;
    *out = it;
    return 0;
}

static jv iter_value(jiter *it)
{
    jv v = mk_undef();
    v.k = K_ITER;
    v.u.it = it;
    return v;
}

/* iter(v). A generator is its own iterator, so the jiter is shared. */
static int it_open(jx *x, const jv *v, jiter **out)
{
    switch (v->k) {
    case K_ITER:
        *out = v->u.it;
        return 0;
    case K_UNDEF:
        return it_new(x, IT_EMPTY, NULL, out);
    case K_LIST:
    case K_TUPLE:
    case K_VIEW:
        TRY(it_new(x, IT_SEQ, v, out));
        (*out)->len = seq_len(v);
        return 0;
    case K_STR:
        TRY(it_new(x, IT_STR, v, out));
        (*out)->src.markup = 0;
        return 0;
    case K_DICT: {
        jv keys;
        TRY(dict_keys_seq(x, v, &keys));
        TRY(it_new(x, IT_SEQ, &keys, out));
        (*out)->len = seq_len(&keys);
        return 0;
    }
    case K_RANGE:
        TRY(it_new(x, IT_RANGE, v, out));
        (*out)->len = range_len(v->u.rg);
        return 0;
    case K_LOOP:
        return R_UNSUP; /* iterating a LoopContext moves the loop on */
    default:
        return R_RAISE; /* not iterable */
    }
}

/* The value the target of a for loop with a test yields: the target rebuilt. */
static int target_value(jx *x, scope *sc, const node *t, jv *out)
{
    if (t->t == N_NAME) {
        *out = *slot_of(sc, t);
        return 0;
    }
    jseq *s = new_seq(x, t->nkids);
    if (s == NULL)
        return R_NOROOM;
    for (size_t i = 0; i < t->nkids; i++)
        TRY(target_value(x, sc, t->kids[i], &s->v[i]));
    *out = mk_seq(K_TUPLE, s);
    return 0;
}

/* The (key, value) tuples of a dict's n items into v[0..n). */
static int item_pairs(jx *x, const jv *keys, const jv *vals, size_t n, jv *v)
{
    for (size_t i = 0; i < n; i++) {
        jseq *pair = new_seq(x, 2);
        if (pair == NULL)
            return R_NOROOM;
        pair->v[0] = keys[i];
        pair->v[1] = vals[i];
        v[i] = mk_seq(K_TUPLE, pair);
    }
    return 0;
}

/* dictsort's and items' generator: it->in iterates the (key, value) pairs
 * of the mapping; an undefined one yields nothing. */
static int items_start(jx *x, jiter *it)
{
    if (it->src.k == K_UNDEF) {
        it->done = 1;
        return 0;
    }
    if (it->src.k != K_DICT)
        return R_RAISE; /* can only get item pairs from a mapping */
    const jv *keys, *vals;
    size_t n;
    TRY(dict_items(x, &it->src, &keys, &vals, &n));
    jseq *s = new_seq(x, n);
    if (s == NULL)
        return R_NOROOM;
    TRY(item_pairs(x, keys, vals, n, s->v));
    jv seq = mk_seq(K_TUPLE, s);
    TRY(it_new(x, IT_SEQ, &seq, &it->in));
    it->in->len = n;
    return 0;
}

/* map's arguments, as jinja2's prepare_map: attribute= (and default=) for
 * a lookup, else the filter to call. */
static int map_args(jiter *it)
{
    const callargs *a = &it->args;
    if (a->npos == 0) {
        for (size_t i = 0; i < a->nkw; i++) {
            if (bytes_eq(a->kwname[i], a->kwlen[i], "attribute")) {
                it->lookup = 1;
                it->attr = a->kw[i];
            } else if (bytes_eq(a->kwname[i], a->kwlen[i], "default")) {
                it->has_dflt = !(a->kw[i].k == K_NONE);
                it->dflt = a->kw[i];
            }
        }
        if (it->lookup) {
            for (size_t i = 0; i < a->nkw; i++) {
                if (!bytes_eq(a->kwname[i], a->kwlen[i], "attribute") &&
                    !bytes_eq(a->kwname[i], a->kwlen[i], "default"))
                    return R_RAISE; /* unexpected keyword argument */
            }
        }
    }
    if (!it->lookup) {
        if (a->npos == 0)
            return R_RAISE; /* map requires a filter argument */
        TRY(find_filter(&a->pos[0], &it->fid));
    }
    return 0;
}

/* select's (and reject's, selectattr's, ...) arguments, as jinja2's
 * prepare_select_or_reject: the attribute, then the test (none: bool). */
static int select_args(jiter *it)
{
    const callargs *a = &it->args;
    size_t off = 0;
    if (it->lookup) {
        if (a->npos == 0)
            return R_RAISE; /* missing parameter for attribute name */
        it->attr = a->pos[0];
        off = 1;
    }
    if (a->npos > off)
        TRY(find_test(&a->pos[off], &it->fid));
    else
        it->fid = -1; /* bool */
    return 0;
}

/* The generators' bodies. */
static int gen_start(jx *x, jiter *it)
{
    it->started = 1;
    int t = 1;
    switch (it->kind) {
    case IT_MAP:
    case IT_SELECT:
        TRY(py_truthy(x, &it->src, &t)); /* `if value:` */
        if (!t) {
            it->done = 1;
            return 0;
        }
        break;
    case IT_ITEMS:
        return items_start(x, it);
    default:
        break;
    }
    if (it->kind == IT_MAP)
        TRY(map_args(it));
    else if (it->kind == IT_SELECT)
        TRY(select_args(it));
    if (it->kind == IT_TEST)
        return enter_frame(x, it->tinfo, it->sc, &it->sc); /* when the generator starts */
    return it_open(x, &it->src, &it->in);
}

/* What map makes of item: its attribute, or the filter's result. */
static int map_item(jx *x, jiter *it, const jv *item, jv *out)
{
    if (it->lookup)
        return attr_path(x, item, &it->attr, it->has_dflt, &it->dflt, out);
    callargs rest = it->args;
    rest.npos--;
    rest.pos++;
    return call_filter_id(x, it->fid, item, &rest, out);
}

/* Whether select (or reject) keeps item. */
static int select_keeps(jx *x, jiter *it, const jv *item, int *keep)
{
    jv v = *item;
    int t;
    if (it->lookup)
        TRY(attr_path(x, item, &it->attr, 0, NULL, &v));
    if (it->fid < 0) {
        TRY(py_truthy(x, &v, &t));
    } else {
        callargs rest = it->args;
        size_t skip = (size_t)it->lookup + 1;
        rest.npos -= skip;
        rest.pos += skip;
        TRY(call_test_id(x, it->fid, &v, &rest, &t));
    }
    *keep = t != it->negate;
    return 0;
}

/* Whether unique has not seen item's key yet; a new key is remembered. */
static int unique_fresh(jx *x, jiter *it, const jv *item, int *fresh)
{
    jv key = *item;
    *fresh = 0;
    if (it->attr.k != K_NONE)
        TRY(attr_path(x, item, &it->attr, 0, NULL, &key));
    if (!it->case_sens && key.k == K_STR)
        TRY(lower_str(x, &key, &key));
    if (!py_hashable(&key))
        return R_RAISE; /* unhashable type */
    if (has_nan(&key))
        return R_UNSUP;
    int seen = 0;
    for (size_t i = 0; i < it->seen.n && !seen; i++)
        TRY(py_eq(x, &it->seen.v[i], &key, &seen, 0));
    if (seen)
        return 0;
    TRY(vec_push(x, &it->seen, key));
    *fresh = 1;
    return 0;
}

/* One more item of a generator: *has 0 when it is exhausted. */
static int gen_next(jx *x, jiter *it, jv *out, int *has)
{
    if (!it->started) {
        TRY(gen_start(x, it));
        if (it->done) {
            *has = 0;
            return 0;
        }
    }
    for (;;) {
        jv item;
        int yes;
        TRY(it_next(x, it->in, &item, has));
        if (!*has) {
            it->done = 1;
            return 0;
        }
        switch (it->kind) {
        case IT_ITEMS:
            *out = item;
            return 0;
        case IT_MAP:
            return map_item(x, it, &item, out);
        case IT_SELECT:
            TRY(select_keeps(x, it, &item, &yes));
            break;
        case IT_UNIQUE:
            TRY(unique_fresh(x, it, &item, &yes));
            break;
        case IT_TEST: {
            jv t;
            TRY(assign(x, it->sc, it->target, &item));
            TRY(eval(x, it->sc, it->test, &t));
            TRY(py_truthy(x, &t, &yes));
            if (yes)
                return target_value(x, it->sc, it->target, out);
            continue;
        }
        default:
            return R_UNSUP;
        }
        if (yes) {
            *out = item;
            return 0;
        }
    }
}

static int it_next(jx *x, jiter *it, jv *out, int *has)
{
    TRY(step(x));
    *has = 0;
    if (it->done)
        return 0;
    switch (it->kind) {
    case IT_SEQ:
        if (it->pos < it->len) {
            *out = seq_at(&it->src, it->pos++);
            *has = 1;
        }
        break;
    case IT_STR:
        if (it->pos < it->src.u.s.n) {
            size_t start = it->pos;
            (void)next_cp(it->src.u.s.p, it->src.u.s.n, &it->pos);
            *out = mk_str(it->src.u.s.p + start, it->pos - start);
            *has = 1;
        }
        break;
    case IT_RANGE:
        if (it->pos < it->len) {
            const jrange *r = it->src.u.rg;
            *out = mk_int(r->start + (long long)it->pos * r->step);
            it->pos++;
            *has = 1;
        }
        break;
    case IT_REVERSE:
        if (it->pos > 0) {
            it->pos--;
            if (it->src.k == K_RANGE)
                *out = mk_int(it->src.u.rg->start + (long long)it->pos * it->src.u.rg->step);
            else
                *out = seq_at(&it->src, it->pos);
            *has = 1;
        }
        break;
    case IT_EMPTY:
        break;
    default:
        return gen_next(x, it, out, has);
    }
    if (!*has)
        it->done = 1;
    return 0;
}

/* list(v): every item, as a list value. */
static int list_of(jx *x, const jv *v, jv *out)
{
    if ((v->k == K_LIST && !v->isj) || v->k == K_TUPLE || v->k == K_VIEW) {
        *out = *v;
        out->k = K_LIST;
        out->sub = 0;
        return 0;
    }
    if (v->k == K_LIST) {
        *out = *v;
        return 0;
    }
    jiter *it;
    vec a = {0};
    TRY(it_open(x, v, &it));
    for (;;) {
        jv item;
        int has;
        TRY(it_next(x, it, &item, &has));
        if (!has)
            break;
        TRY(vec_push(x, &a, item));
    }
    return vec_seq(x, &a, K_LIST, out);
}

/* ---- the loop context ------------------------------------------------------ */

static int loop_next(jx *x, jloop *l, jv *out, int *has)
{
    if (l->has_after) {
        *out = l->after;
        l->has_after = 0;
        *has = 1;
    } else {
        TRY(it_next(x, l->it, out, has));
    }
    if (*has) {
        l->index0++;
        l->before = l->current;
        l->current = *out;
    }
    return 0;
}

/* _peek_next: 1 in *has with the next item, or 0. */
static int loop_peek(jx *x, jloop *l, jv *out, int *has)
{
    if (!l->has_after) {
        TRY(it_next(x, l->it, &l->after, &l->has_after));
    }
    *has = l->has_after;
    if (*has)
        *out = l->after;
    return 0;
}

static int loop_length(jx *x, jloop *l, long long *out)
{
    if (!l->has_length) {
        size_t n;
        int rc = l->iterable.k == K_ITER ? R_RAISE : py_len(x, &l->iterable, &n);
        if (rc == R_RAISE) { /* no len(): the rest is read into a list */
            jv rest, itv = iter_value(l->it);
            TRY(list_of(x, &itv, &rest));
            TRY(it_open(x, &rest, &l->it));
            n = seq_len(&rest) + (size_t)(l->index0 + 1) + (size_t)l->has_after;
        } else if (rc != 0) {
            return rc;
        }
        l->length = (long long)n;
        l->has_length = 1;
    }
    *out = l->length;
    return 0;
}

/* ---- attributes and items --------------------------------------------------- */

static const char *const STR_ATTRS[] = {
    "capitalize",   "casefold",    "center",    "count",      "encode",       "endswith",
    "expandtabs",   "find",        "format",    "format_map", "index",        "isalnum",
    "isalpha",      "isascii",     "isdecimal", "isdigit",    "isidentifier", "islower",
    "isnumeric",    "isprintable", "isspace",   "istitle",    "isupper",      "join",
    "ljust",        "lower",       "lstrip",    "maketrans",  "partition",    "removeprefix",
    "removesuffix", "replace",     "rfind",     "rindex",     "rjust",        "rpartition",
    "rsplit",       "rstrip",      "split",     "splitlines", "startswith",   "strip",
    "swapcase",     "title",       "translate", "upper",      "zfill",        NULL};
static const char *const DICT_ATTRS[] = {"clear",      "copy",   "fromkeys", "get",
                                         "items",      "keys",   "pop",      "popitem",
                                         "setdefault", "update", "values",   NULL};
static const char *const DICT_DUNDERS[] = {"__class__",
                                           "__class_getitem__",
                                           "__contains__",
                                           "__delattr__",
                                           "__delitem__",
                                           "__dir__",
                                           "__doc__",
                                           "__eq__",
                                           "__format__",
                                           "__ge__",
                                           "__getattribute__",
                                           "__getitem__",
                                           "__getstate__",
                                           "__gt__",
                                           "__hash__",
                                           "__init__",
                                           "__init_subclass__",
                                           "__ior__",
                                           "__iter__",
                                           "__le__",
                                           "__len__",
                                           "__lt__",
                                           "__ne__",
                                           "__new__",
                                           "__or__",
                                           "__reduce__",
                                           "__reduce_ex__",
                                           "__repr__",
                                           "__reversed__",
                                           "__ror__",
                                           "__setattr__",
                                           "__setitem__",
                                           "__sizeof__",
                                           "__str__",
                                           "__subclasshook__",
                                           NULL};
static const char *const LIST_ATTRS[] = {"append", "clear", "copy",   "count",   "extend", "index",
                                         "insert", "pop",   "remove", "reverse", "sort",   NULL};
static const char *const TUPLE_ATTRS[] = {"count", "index", NULL};
static const char *const INT_ATTRS[] = {"as_integer_ratio", "bit_count", "bit_length", "conjugate",
                                        "from_bytes",       "to_bytes",  NULL};
static const char *const FLOAT_ATTRS[] = {"as_integer_ratio", "conjugate", "fromhex", "hex",
                                          "is_integer",       NULL};
static const char *const ITER_ATTRS[] = {"send",       "throw",        "close",
                                         "gi_running", "gi_yieldfrom", "gi_suspended",
                                         "gi_code",    "gi_frame",     NULL};

static const struct {
    const char *name;
    int id;
} METHOD_IDS[] = {
    {"upper", M_UPPER},     {"lower", M_LOWER},           {"strip", M_STRIP},
    {"lstrip", M_LSTRIP},   {"rstrip", M_RSTRIP},         {"split", M_SPLIT},
    {"rsplit", M_RSPLIT},   {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH},
    {"replace", M_REPLACE}, {"title", M_TITLE},           {"capitalize", M_CAPITALIZE},
    {"join", M_JOIN},       {"count", M_COUNT},           {"find", M_FIND},
    {"index", M_INDEX},
};

static int in_names(const char *const *names, const char *s, size_t n)
{
    for (; *names != NULL; names++) {
        if (bytes_eq(s, n, *names))
            return 1;
    }
    return 0;
}

static int mk_method(jx *x, int id, const jv *self, jv *out)
{
    jmeth *m = xalloc(x, sizeof(jmeth));
    if (m == NULL)
        return R_NOROOM;
    m->id = id;
    m->self = self != NULL ? *self : mk_undef();
    *out = mk_undef();
    out->k = K_METHOD;
    out->u.m = m;
    return 0;
}

static int str_method_id(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof(METHOD_IDS) / sizeof(METHOD_IDS[0]); i++) {
        if (bytes_eq(s, n, METHOD_IDS[i].name))
            return METHOD_IDS[i].id;
    }
    return M_OTHER;
}

/* Python's getattr(obj, name), then the sandbox's safety check: *found 0 on
 * AttributeError; an unsafe attribute is found and undefined. */
/* Long on purpose: One branch per Python type, as CPython's own getattr dispatches on the type:
 * kept together so the sandbox check below sees every attribute. */
static int py_getattr(jx *x, const jv *obj, const char *s, size_t n, jv *out, int *found)
{
    int unsafe = n > 0 && s[0] == '_';
    *found = 0;
    *out = mk_undef();
    switch (obj->k) {
    case K_UNDEF:
        *found = 1; /* ChainableUndefined gives itself */
        return 0;
    case K_STR:
        if (obj->markup)
            return R_UNSUP; /* Markup's own methods */
        if (unsafe) {
            *found = 1; /* found or not, the answer is undefined */
            return 0;
        }
        if (!in_names(STR_ATTRS, s, n))
            return 0;
        *found = 1;
        return mk_method(x, str_method_id(s, n), obj, out);
    case K_DICT:
        if (unsafe) {
            *found = in_names(DICT_DUNDERS, s, n);
            return 0;
        }
        if (!in_names(DICT_ATTRS, s, n))
            return 0;
        *found = 1;
        return mk_method(x,
                         bytes_eq(s, n, "get")      ? M_GET
                         : bytes_eq(s, n, "items")  ? M_ITEMS
                         : bytes_eq(s, n, "keys")   ? M_KEYS
                         : bytes_eq(s, n, "values") ? M_VALUES
                                                    : M_OTHER,
                         obj, out);
    case K_LIST:
    case K_TUPLE:
        if (unsafe) {
            *found = 1;
            return 0;
        }
        if (!in_names(obj->k == K_LIST ? LIST_ATTRS : TUPLE_ATTRS, s, n))
            return 0;
        *found = 1;
        return mk_method(x,
                         bytes_eq(s, n, "count")   ? M_COUNT
                         : bytes_eq(s, n, "index") ? M_INDEX
                                                   : M_OTHER,
                         obj, out);
    case K_BOOL:
    case K_INT:
        if (unsafe) {
            *found = 1;
            return 0;
        }
        *found = 1;
        if (bytes_eq(s, n, "real") || bytes_eq(s, n, "numerator")) {
            *out = mk_int(obj->u.i);
            return 0;
        }
        if (bytes_eq(s, n, "imag")) {
            *out = mk_int(0);
            return 0;
        }
        if (bytes_eq(s, n, "denominator")) {
            *out = mk_int(1);
            return 0;
        }
        if (in_names(INT_ATTRS, s, n))
            return mk_method(x, M_OTHER, obj, out);
        *found = 0;
        return 0;
    case K_FLOAT:
        *found = 1;
        if (unsafe)
            return 0;
        if (bytes_eq(s, n, "real")) {
            *out = *obj;
            return 0;
        }
        if (bytes_eq(s, n, "imag")) {
            *out = mk_float(0.0);
            return 0;
        }
        if (in_names(FLOAT_ATTRS, s, n))
            return mk_method(x, M_OTHER, obj, out);
        *found = 0;
        return 0;
    case K_NONE:
        *found = unsafe;
        return 0;
    case K_VIEW:
        if (unsafe) {
            *found = 1;
            return 0;
        }
        if (bytes_eq(s, n, "mapping") || bytes_eq(s, n, "isdisjoint"))
            return R_UNSUP;
        return 0;
    case K_ITER:
        if (unsafe) {
            *found = 1;
            return 0;
        }
        if (in_names(ITER_ATTRS, s, n))
            return R_UNSUP;
        return 0;
    case K_RANGE: {
        const jrange *r = obj->u.rg;
        if (unsafe) {
            *found = 1;
            return 0;
        }
        *found = 1;
        if (bytes_eq(s, n, "start"))
            *out = mk_int(r->start);
        else if (bytes_eq(s, n, "stop"))
            *out = mk_int(r->stop);
        else if (bytes_eq(s, n, "step"))
            *out = mk_int(r->step);
        else if (bytes_eq(s, n, "count") || bytes_eq(s, n, "index"))
            return mk_method(x, M_OTHER, obj, out);
        else
            *found = 0;
        return 0;
    }
    case K_LOOP: {
        jloop *l = obj->u.loop;
        if (unsafe) {
            *found = 1;
            return 0;
        }
        *found = 1;
        long long len;
        if (bytes_eq(s, n, "index")) {
            *out = mk_int(l->index0 + 1);
        } else if (bytes_eq(s, n, "index0")) {
            *out = mk_int(l->index0);
        } else if (bytes_eq(s, n, "first")) {
            *out = mk_bool(l->index0 == 0);
        } else if (bytes_eq(s, n, "depth")) {
            *out = mk_int(1);
        } else if (bytes_eq(s, n, "depth0")) {
            *out = mk_int(0);
        } else if (bytes_eq(s, n, "length")) {
            TRY(loop_length(x, l, &len));
            *out = mk_int(len);
        } else if (bytes_eq(s, n, "revindex")) {
            TRY(loop_length(x, l, &len));
            *out = mk_int(len - l->index0);
        } else if (bytes_eq(s, n, "revindex0")) {
            TRY(loop_length(x, l, &len));
            *out = mk_int(len - l->index0 - 1);
        } else if (bytes_eq(s, n, "last") || bytes_eq(s, n, "nextitem")) {
            jv next;
            int has;
            TRY(loop_peek(x, l, &next, &has));
            if (s[0] == 'l')
                *out = mk_bool(!has);
            else
                *out = has ? next : mk_undef();
        } else if (bytes_eq(s, n, "previtem")) {
            *out = l->index0 == 0 ? mk_undef() : l->before;
        } else if (bytes_eq(s, n, "cycle") || bytes_eq(s, n, "changed")) {
            return mk_method(x, s[1] == 'y' ? M_CYCLE : M_CHANGED, obj, out);
        } else {
            *found = 0;
        }
        return 0;
    }
    case K_NS:
        if (unsafe) {
            *found = 1;
            return 0;
        }
        {
            jv d = mk_undef();
            d.k = K_DICT;
            d.u.dict = &obj->u.ns->attrs;
            *found = dict_get(&d, s, n, out);
        }
        return 0;
    default:
        if (unsafe) {
            *found = 1;
            return 0;
        }
        return R_UNSUP; /* attributes of functions and methods */
    }
}

/* obj[key] for a str key, without the attribute fallback: 1 found. */
static int item_by_str(const jv *obj, const char *s, size_t n, jv *out)
{
    return obj->k == K_DICT && dict_get(obj, s, n, out);
}

/* The sandbox's getattr: attribute first, then item. out may be obj. */
static int get_attr(jx *x, const jv *objp, const char *s, size_t n, jv *out)
{
    int found;
    jv o = *objp;
    const jv *obj = &o;
    TRY(py_getattr(x, obj, s, n, out, &found));
    if (found) {
        if (n > 0 && s[0] == '_')
            *out = mk_undef(); /* unsafe */
        return 0;
    }
    if (!item_by_str(obj, s, n, out))
        *out = mk_undef();
    return 0;
}

/* Python's index normalization: 1 with *i in range, 0 out of range. */
static int norm_index(long long k, size_t len, size_t *i)
{
    if (k < 0) {
        if ((unsigned long long)(-(k + 1)) >= len)
            return 0;
        *i = len - (size_t)(-(k + 1)) - 1;
        return 1;
    }
    if ((unsigned long long)k >= len)
        return 0;
    *i = (size_t)k;
    return 1;
}

/* The sandbox's getitem: item first, then attribute for a str key. */
static int get_item_(jx *x, const jv *obj, const jv *key, jv *out)
{
    *out = mk_undef();
    if (obj->k == K_UNDEF)
        return 0;
    if (is_intlike(key)) {
        size_t i;
        switch (obj->k) {
        case K_STR: {
            size_t len = cp_count(obj->u.s.p, obj->u.s.n);
            if (!norm_index(key->u.i, len, &i))
                return 0;
            size_t a = cp_offset(obj->u.s.p, obj->u.s.n, i);
            size_t b = a;
            (void)next_cp(obj->u.s.p, obj->u.s.n, &b);
            *out = mk_str(obj->u.s.p + a, b - a);
            out->markup = obj->markup;
            return 0;
        }
        case K_LIST:
        case K_TUPLE:
            if (norm_index(key->u.i, seq_len(obj), &i))
                *out = seq_at(obj, i);
            return 0;
        case K_RANGE:
            if (norm_index(key->u.i, range_len(obj->u.rg), &i))
                *out = mk_int(obj->u.rg->start + (long long)i * obj->u.rg->step);
            return 0;
        default:
            return 0; /* KeyError or TypeError: undefined */
        }
    }
    if (key->k != K_STR)
        return 0; /* KeyError, TypeError: undefined */
    if (item_by_str(obj, key->u.s.p, key->u.s.n, out))
        return 0;
    int found;
    TRY(py_getattr(x, obj, key->u.s.p, key->u.s.n, out, &found));
    if (!found || (key->u.s.n > 0 && key->u.s.p[0] == '_'))
        *out = mk_undef();
    return 0;
}

/* out may be obj or key. */
static int get_item(jx *x, const jv *obj, const jv *key, jv *out)
{
    jv o = *obj, k = *key;
    return get_item_(x, &o, &k, out);
}

/* The indices PySlice_AdjustIndices gives: start, step and count. */
static int slice_indices(const jv *lo, const jv *hi, const jv *st, size_t len, long long *start,
                         long long *stepv, size_t *count)
{
    long long step = 1, a, b, n = (long long)len;
    if (st->k != K_NONE) {
        step = st->u.i;
        if (step == 0)
            return R_RAISE; /* slice step cannot be zero */
        if (step < -LLONG_MAX)
            step = -LLONG_MAX;
    }
    if (lo->k == K_NONE) {
        a = step < 0 ? n - 1 : 0;
    } else {
        a = lo->u.i;
        if (a < 0) {
            a += n;
            if (a < 0)
                a = step < 0 ? -1 : 0;
        } else if (a >= n) {
            a = step < 0 ? n - 1 : n;
        }
    }
    if (hi->k == K_NONE) {
        b = step < 0 ? -1 : n;
    } else {
        b = hi->u.i;
        if (b < 0) {
            b += n;
            if (b < 0)
                b = step < 0 ? -1 : 0;
        } else if (b >= n) {
            b = step < 0 ? n - 1 : n;
        }
    }
    long long c = 0;
    if (step < 0) {
        if (b < a)
            c = (a - b - 1) / (-step) + 1;
    } else if (a < b) {
        c = (b - a - 1) / step + 1;
    }
    *start = a;
    *stepv = step;
    *count = (size_t)c;
    return 0;
}

/* s[lo:hi:st] of a str, by code points; a Markup stays Markup. */
static int slice_str(jx *x, const jv *obj, const jv *lo, const jv *hi, const jv *st, jv *out)
{
    long long start, step;
    size_t count;
    size_t len = cp_count(obj->u.s.p, obj->u.s.n);
    TRY(slice_indices(lo, hi, st, len, &start, &step, &count));
    size_t *off = xalloc(x, (len + 1) * sizeof(size_t));
    if (off == NULL)
        return R_NOROOM;
    size_t i = 0, k = 0;
    while (i < obj->u.s.n) {
        off[k++] = i;
        (void)next_cp(obj->u.s.p, obj->u.s.n, &i);
    }
    off[k] = obj->u.s.n;
    buf b;
    buf_init(&b, x->textmax);
    int rc = 0;
    for (size_t j = 0; j < count && rc == 0; j++) {
        size_t c = (size_t)(start + (long long)j * step);
        rc = put(&b, obj->u.s.p + off[c], off[c + 1] - off[c]);
    }
    if (rc == 0)
        rc = buf_str(x, &b, out);
    buf_free(&b);
    out->markup = obj->markup;
    return rc;
}

/* obj[lo:hi:st]. raw: Python's own subscription, as jinja2 compiles a
 * slice (TypeError raises); else the sandbox's getitem, as jinja2 folds a
 * constant one (TypeError gives undefined). out may be obj. */
static int get_slice(jx *x, const jv *objp, const jv *lo, const jv *hi, const jv *st, int raw,
                     jv *out)
{
    jv o = *objp;
    const jv *obj = &o;
    *out = mk_undef();
    if (obj->k == K_UNDEF)
        return 0; /* ChainableUndefined.__getitem__ */
    const jv *parts[3] = {lo, hi, st};
    for (int i = 0; i < 3; i++) {
        if (parts[i]->k != K_NONE && !is_intlike(parts[i])) {
            if (obj->k == K_STR || obj->k == K_LIST || obj->k == K_TUPLE || obj->k == K_RANGE)
                return raw ? R_RAISE : 0; /* slice indices must be integers */
            break;
        }
    }
    long long start, step;
    size_t count;
    switch (obj->k) {
    case K_STR:
        return slice_str(x, obj, lo, hi, st, out);
    case K_LIST:
    case K_TUPLE: {
        TRY(slice_indices(lo, hi, st, seq_len(obj), &start, &step, &count));
        jseq *s = new_seq(x, count);
        if (s == NULL)
            return R_NOROOM;
        for (size_t j = 0; j < count; j++)
            s->v[j] = seq_at(obj, (size_t)(start + (long long)j * step));
        *out = mk_seq(obj->k, s);
        return 0;
    }
    case K_RANGE:
        return R_UNSUP;
    default:
        return raw ? R_RAISE : 0; /* not subscriptable, or an unhashable slice */
    }
}

/* The environment's attribute getter (make_attrgetter): attr split on dots,
 * digit parts as integers, each looked up with getitem. */
static int attr_path(jx *x, const jv *item, const jv *attr, int has_dflt, const jv *dflt, jv *out)
{
    jv cur = *item;
    if (attr->k == K_NONE) {
        *out = cur;
        return 0;
    }
    if (attr->k != K_STR) {
        TRY(get_item(x, &cur, attr, &cur));
        if (has_dflt && cur.k == K_UNDEF)
            cur = *dflt;
        *out = cur;
        return 0;
    }
    const char *s = attr->u.s.p;
    size_t n = attr->u.s.n, i = 0;
    for (;;) {
        size_t j = i;
        while (j < n && s[j] != '.')
            j++;
        int digits = j > i;
        for (size_t k = i; k < j; k++) {
            if ((unsigned char)s[k] >= 0x80)
                return R_UNSUP; /* str.isdigit() knows other scripts */
            if (!is_digit(s[k]))
                digits = 0;
        }
        jv key;
        if (digits) {
            unsigned long long v = 0;
            for (size_t k = i; k < j; k++) {
                if (v > (ULLONG_MAX - 9) / 10)
                    return R_UNSUP;
                v = v * 10 + (unsigned)(s[k] - '0');
            }
            if (v > (unsigned long long)LLONG_MAX)
                return R_UNSUP;
            key = mk_int((long long)v);
        } else {
            key = mk_str(s + i, j - i);
        }
        TRY(get_item(x, &cur, &key, &cur));
        if (has_dflt && cur.k == K_UNDEF)
            cur = *dflt;
        if (j >= n)
            break;
        i = j + 1;
    }
    *out = cur;
    return 0;
}

/* ---- operators -------------------------------------------------------------- */

/* markupsafe.escape of a str's text, appended. */
static int put_escaped(buf *b, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '&' && s[j] != '<' && s[j] != '>' && s[j] != '\'' && s[j] != '"')
            j++;
        TRY(put(b, s + i, j - i));
        if (j >= n)
            break;
        const char *rep = s[j] == '&'    ? "&amp;"
                          : s[j] == '<'  ? "&lt;"
                          : s[j] == '>'  ? "&gt;"
                          : s[j] == '\'' ? "&#39;"
                                         : "&#34;";
        TRY(puts_(b, rep));
        i = j + 1;
    }
    return 0;
}

/* markupsafe.escape(v): a Markup. */
static int escape_of(jx *x, const jv *v, jv *out)
{
    if (v->k == K_STR && v->markup) {
        *out = *v;
        return 0;
    }
    if (v->k == K_UNDEF) { /* __html__ gives str(self) */
        *out = mk_str("", 0);
        out->markup = 1;
        return 0;
    }
    jv s;
    TRY(str_of(x, v, &s));
    buf b;
    buf_init(&b, x->textmax);
    int rc = put_escaped(&b, s.u.s.p, s.u.s.n);
    if (rc == 0)
        rc = buf_str(x, &b, out);
    buf_free(&b);
    out->markup = 1;
    return rc;
}

static int concat2(jx *x, const char *a, size_t an, const char *b, size_t bn, jv *out)
{
    if (an > x->textmax || bn > x->textmax - an)
        return R_NOROOM;
    char *p = xalloc(x, an + bn + 1);
    if (p == NULL)
        return R_NOROOM;
    if (an > 0)
        memcpy(p, a, an);
    if (bn > 0)
        memcpy(p + an, b, bn);
    p[an + bn] = 0;
    *out = mk_str(p, an + bn);
    return 0;
}

static int repeat_seq(jx *x, const jv *s, long long times, jv *out)
{
    size_t n = seq_len(s);
    size_t t = times > 0 ? (size_t)times : 0;
    if (n > 0 && t > (size_t)(LLONG_MAX / 8) / n)
        return R_RAISE; /* MemoryError, whatever the machine */
    if (n > 0 && t > x->textmax / n)
        return R_NOROOM;
    jseq *r = new_seq(x, n * t);
    if (r == NULL)
        return R_NOROOM;
    for (size_t k = 0; k < t; k++) {
        TRY(step(x));
        for (size_t i = 0; i < n; i++)
            r->v[k * n + i] = seq_at(s, i);
    }
    *out = mk_seq(s->k, r);
    return 0;
}

static int repeat_str(jx *x, const jv *s, long long times, jv *out)
{
    size_t n = s->u.s.n;
    size_t t = times > 0 ? (size_t)times : 0;
    size_t chars = cp_count(s->u.s.p, n);
    if (chars > 0 && t > (size_t)LLONG_MAX / chars)
        return R_RAISE; /* OverflowError: repeated string is too long */
    if (n > 0 && t > x->textmax / n)
        return R_NOROOM;
    char *p = xalloc(x, n * t + 1);
    if (p == NULL)
        return R_NOROOM;
    for (size_t k = 0; k < t; k++)
        memcpy(p + k * n, s->u.s.p, n);
    p[n * t] = 0;
    *out = mk_str(p, n * t);
    out->markup = s->markup;
    return 0;
}

static int float_result(double d, jv *out)
{
    *out = mk_float(d);
    return 0;
}

/* CPython's float floor division and modulo. */
static void float_divmod(double vx, double wx, double *floordiv, double *mod)
{
    double div;
    *mod = fmod(vx, wx);
    div = (vx - *mod) / wx;
    if (*mod != 0.0) {
        if ((wx < 0) != (*mod < 0)) {
            *mod += wx;
            div -= 1.0;
        }
    } else {
        *mod = copysign(0.0, wx);
    }
    if (div != 0.0) {
        *floordiv = floor(div);
        if (div - *floordiv > 0.5)
            *floordiv += 1.0;
    } else {
        *floordiv = copysign(0.0, vx / wx);
    }
}

#define EXACT_INT 9007199254740992LL /* 2**53: ints exact as doubles up to here */

static int float_pow(double a, double b, jv *out)
{
    if (!isfinite(a) || !isfinite(b))
        return R_UNSUP;
    if (b == 0.0)
        return float_result(1.0, out);
    if (a == 0.0 && b < 0)
        return R_RAISE; /* ZeroDivisionError */
    if (a < 0 && b != trunc(b))
        return R_UNSUP; /* a complex number */
    double r = pow(a, b);
    if (isinf(r))
        return R_RAISE; /* OverflowError */
    return float_result(r, out);
}

/* p ** q of ints, q >= 0 by squaring; R_UNSUP past 64 bits. */
static int int_pow(long long p, long long q, jv *out)
{
    long long acc = 1, base = p;
    while (q > 0) {
        if (q & 1) {
            if (__builtin_mul_overflow(acc, base, &acc))
                return R_UNSUP;
        }
        q >>= 1;
        if (q > 0 && __builtin_mul_overflow(base, base, &base))
            return R_UNSUP;
    }
    *out = mk_int(acc);
    return 0;
}

/* p // q or p % q of ints, rounding toward minus infinity as Python. */
static int int_floordiv(int op, long long p, long long q, jv *out)
{
    if (q == 0)
        return R_RAISE;
    if (p == LLONG_MIN && q == -1)
        return R_UNSUP;
    long long d = p / q, m = p % q;
    if (m != 0 && ((m < 0) != (q < 0))) {
        d--;
        m += q;
    }
    *out = mk_int(op == TK_FLOORDIV ? d : m);
    return 0;
}

/* p op q of ints (or bools); R_UNSUP where Python's big ints would go past
 * 64 bits. */
static int int_binop(int op, long long p, long long q, jv *out)
{
    long long r;
    switch (op) {
    case TK_ADD:
        if (__builtin_add_overflow(p, q, &r))
            return R_UNSUP;
        *out = mk_int(r);
        return 0;
    case TK_SUB:
        if (__builtin_sub_overflow(p, q, &r))
            return R_UNSUP;
        *out = mk_int(r);
        return 0;
    case TK_MUL:
        if (__builtin_mul_overflow(p, q, &r))
            return R_UNSUP;
        *out = mk_int(r);
        return 0;
    case TK_DIV:
        if (q == 0)
            return R_RAISE;
        if (p > EXACT_INT || p < -EXACT_INT || q > EXACT_INT || q < -EXACT_INT)
            return R_UNSUP; /* Python divides big ints exactly */
        return float_result((double)p / (double)q, out);
    case TK_FLOORDIV:
    case TK_MOD:
        return int_floordiv(op, p, q, out);
    case TK_POW:
        if (q < 0) {
            if (p == 0)
                return R_RAISE;
            return float_pow((double)p, (double)q, out);
        }
        return int_pow(p, q, out);
    default:
        return R_UNSUP;
    }
}

/* p op q of floats (either side was a float). */
static int float_binop(int op, double p, double q, jv *out)
{
    switch (op) {
    case TK_ADD:
        return float_result(p + q, out);
    case TK_SUB:
        return float_result(p - q, out);
    case TK_MUL:
        return float_result(p * q, out);
    case TK_DIV:
        if (q == 0.0)
            return R_RAISE;
        return float_result(p / q, out);
    case TK_FLOORDIV:
    case TK_MOD: {
        if (q == 0.0)
            return R_RAISE;
        double fd, m;
        float_divmod(p, q, &fd, &m);
        return float_result(op == TK_FLOORDIV ? fd : m, out);
    }
    case TK_POW:
        return float_pow(p, q, out);
    default:
        return R_UNSUP;
    }
}

static int num_binop(int op, const jv *a, const jv *b, jv *out)
{
    if (a->k != K_FLOAT && b->k != K_FLOAT)
        return int_binop(op, a->u.i, b->u.i, out);
    return float_binop(op, num_d(a), num_d(b), out);
}

static int binop_(jx *x, int op, const jv *a, const jv *b, jv *out);

/* a op b; out may be a or b. */
static int binop(jx *x, int op, const jv *a, const jv *b, jv *out)
{
    jv p = *a, q = *b;
    return binop_(x, op, &p, &q, out);
}

/* a + b of two strs: Markup + str escapes the str, and str + Markup too. */
static int add_str(jx *x, const jv *a, const jv *b, jv *out)
{
    if (a->markup == b->markup) {
        TRY(concat2(x, a->u.s.p, a->u.s.n, b->u.s.p, b->u.s.n, out));
        out->markup = a->markup;
        return 0;
    }
    jv e;
    TRY(escape_of(x, a->markup ? b : a, &e));
    if (a->markup)
        TRY(concat2(x, a->u.s.p, a->u.s.n, e.u.s.p, e.u.s.n, out));
    else
        TRY(concat2(x, e.u.s.p, e.u.s.n, b->u.s.p, b->u.s.n, out));
    out->markup = 1;
    return 0;
}

/* a + b of two lists or two tuples. */
static int add_seq(jx *x, const jv *a, const jv *b, jv *out)
{
    size_t n = seq_len(a), m = seq_len(b);
    jseq *s = new_seq(x, n + m);
    if (s == NULL)
        return R_NOROOM;
    for (size_t i = 0; i < n; i++)
        s->v[i] = seq_at(a, i);
    for (size_t i = 0; i < m; i++)
        s->v[n + i] = seq_at(b, i);
    *out = mk_seq(a->k, s);
    return 0;
}

static int binop_(jx *x, int op, const jv *a, const jv *b, jv *out)
{
    if (a->k == K_UNDEF)
        return R_RAISE; /* UndefinedError, before anything else */
    if (op == TK_MOD && a->k == K_STR)
        return R_UNSUP; /* printf-style formatting */
    if ((a->k == K_VIEW || b->k == K_VIEW) && op == TK_SUB)
        return R_UNSUP; /* dict views are sets */
    if (a->k == K_METHOD || b->k == K_METHOD || a->k == K_VIEW || b->k == K_VIEW)
        return R_RAISE; /* unsupported operand types */
    if (is_num(a) && is_num(b))
        return num_binop(op, a, b, out);
    if (b->k == K_UNDEF) {
        /* Markup + undefined escapes its __html__ (""); the rest raises */
        if (op == TK_ADD && a->k == K_STR && a->markup) {
            *out = *a;
            return 0;
        }
        return R_RAISE;
    }
    if (op == TK_ADD && a->k == K_STR && b->k == K_STR)
        return add_str(x, a, b, out);
    if (op == TK_ADD && a->k == b->k && (a->k == K_LIST || a->k == K_TUPLE))
        return add_seq(x, a, b, out);
    if (op == TK_MUL) {
        const jv *seq = is_intlike(b) ? a : is_intlike(a) ? b : NULL;
        const jv *times = seq == a ? b : a;
        if (seq != NULL && seq->k == K_STR)
            return repeat_str(x, seq, times->u.i, out);
        if (seq != NULL && (seq->k == K_LIST || seq->k == K_TUPLE))
            return repeat_seq(x, seq, times->u.i, out);
    }
    return R_RAISE; /* TypeError: unsupported operand types */
}

static int unop(int neg, const jv *a, jv *out)
{
    if (a->k == K_FLOAT) {
        *out = mk_float(neg ? -a->u.d : a->u.d);
        return 0;
    }
    if (is_intlike(a)) {
        if (neg && a->u.i == LLONG_MIN)
            return R_UNSUP;
        *out = mk_int(neg ? -a->u.i : a->u.i);
        return 0;
    }
    return R_RAISE; /* bad operand type, or undefined */
}

/* ---- calls ------------------------------------------------------------------ */

/* Binds a's arguments to the parameters names[0..n) (the first nreq
 * required) as Python does; R_RAISE for its TypeErrors. */
static int bind_args(const callargs *a, const char *const *names, size_t n, size_t nreq, jv *slots,
                     int *given)
{
    if (a->npos > n)
        return R_RAISE; /* takes at most n arguments */
    for (size_t i = 0; i < n; i++)
        given[i] = 0;
    for (size_t i = 0; i < a->npos; i++) {
        slots[i] = a->pos[i];
        given[i] = 1;
    }
    for (size_t k = 0; k < a->nkw; k++) {
        size_t i = 0;
        while (i < n && !bytes_eq(a->kwname[k], a->kwlen[k], names[i]))
            i++;
        if (i == n || given[i])
            return R_RAISE; /* unexpected keyword, or given twice */
        slots[i] = a->kw[k];
        given[i] = 1;
    }
    for (size_t i = 0; i < nreq; i++) {
        if (!given[i])
            return R_RAISE; /* missing a required argument */
    }
    return 0;
}

/* No arguments at all. */
static int no_args(const callargs *a)
{
    return a->npos == 0 && a->nkw == 0 ? 0 : R_RAISE;
}

/* Positional arguments only, between lo and hi of them. */
static int pos_args(const callargs *a, size_t lo, size_t hi)
{
    return a->nkw == 0 && a->npos >= lo && a->npos <= hi ? 0 : R_RAISE;
}

static int upper_lower(jx *x, const jv *s, int how, jv *out)
{
    int markup = s->markup;
    buf b;
    buf_init(&b, x->textmax);
    int rc = put_mapped(&b, s->u.s.p, s->u.s.n, how);
    if (rc == 0)
        rc = buf_str(x, &b, out);
    buf_free(&b);
    out->markup = (unsigned char)markup;
    return rc;
}

static int lower_str(jx *x, const jv *v, jv *out)
{
    return upper_lower(x, v, CASE_LOWER, out);
}

/* str.capitalize() (first character titled) or str.title(). */
static int title_like(jx *x, const jv *s, int capitalize, jv *out)
{
    int markup = s->markup;
    buf b;
    buf_init(&b, x->textmax);
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0;
    int prev_cased = 0, first = 1, rc = 0;
    while (i < n && rc == 0) {
        size_t at = i;
        uint32_t cp = next_cp(p, n, &at);
        int how =
            capitalize ? (first ? CASE_TITLE : CASE_LOWER) : (prev_cased ? CASE_LOWER : CASE_TITLE);
        prev_cased = unicase_cased(cp);
        first = 0;
        rc = put_case(&b, p, n, &i, how);
    }
    if (rc == 0)
        rc = buf_str(x, &b, out);
    buf_free(&b);
    out->markup = (unsigned char)markup;
    return rc;
}

/* Is cp one of the code points of chars? */
static int cp_in(uint32_t cp, const jv *chars)
{
    size_t i = 0;
    while (i < chars->u.s.n) {
        if (next_cp(chars->u.s.p, chars->u.s.n, &i) == cp)
            return 1;
    }
    return 0;
}

/* str.strip/lstrip/rstrip(chars): which 1 left, 2 right, 3 both. */
static int strip_str(const jv *s, const jv *chars, int which, jv *out)
{
    const char *p = s->u.s.p;
    size_t a = 0, b = s->u.s.n;
    if (which & 1) {
        while (a < b) {
            size_t j = a;
            uint32_t cp = next_cp(p, b, &j);
            if (chars != NULL ? !cp_in(cp, chars) : !py_space(cp))
                break;
            a = j;
        }
    }
    if (which & 2) {
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)p[k] & 0xC0) == 0x80)
                k--;
            size_t j = k;
            uint32_t cp = next_cp(p, b, &j);
            if (chars != NULL ? !cp_in(cp, chars) : !py_space(cp))
                break;
            b = k;
        }
    }
    *out = mk_str(p + a, b - a);
    out->markup = s->markup;
    return 0;
}

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn)
{
    if (nn == 0)
        return h;
    for (size_t i = 0; i + nn <= hn; i++) {
        if (memcmp(h + i, nd, nn) == 0)
            return h + i;
    }
    return NULL;
}

static const char *rfind_bytes(const char *h, size_t hn, const char *nd, size_t nn)
{
    if (nn > hn)
        return NULL;
    for (size_t i = hn - nn + 1; i-- > 0;) {
        if (memcmp(h + i, nd, nn) == 0)
            return h + i;
    }
    return NULL;
}

/* str.split(d, maxsplit) of p[0..n) into parts, from the left. */
static int split_sep(jx *x, vec *parts, const char *p, size_t n, const char *d, size_t dn,
                     long long maxsplit)
{
    size_t i = 0;
    while (maxsplit > 0) {
        const char *f = find_bytes(p + i, n - i, d, dn);
        if (f == NULL)
            break;
        TRY(vec_push(x, parts, mk_str(p + i, (size_t)(f - (p + i)))));
        i = (size_t)(f - p) + dn;
        maxsplit--;
    }
    return vec_push(x, parts, mk_str(p + i, n - i));
}

/* str.rsplit(d, maxsplit) of p[0..n) into parts, last part first. */
static int rsplit_sep(jx *x, vec *parts, const char *p, size_t n, const char *d, size_t dn,
                      long long maxsplit)
{
    size_t end = n;
    while (maxsplit > 0) {
        const char *f = rfind_bytes(p, end, d, dn);
        if (f == NULL)
            break;
        size_t at = (size_t)(f - p);
        TRY(vec_push(x, parts, mk_str(p + at + dn, end - at - dn)));
        end = at;
        maxsplit--;
    }
    return vec_push(x, parts, mk_str(p, end));
}

/* str.split(None, maxsplit) of p[0..n) into parts: runs of white space. */
static int split_space(jx *x, vec *parts, const char *p, size_t n, long long maxsplit)
{
    size_t i = 0;
    for (;;) {
        i += space_run(p + i, n - i);
        if (i >= n)
            return 0;
        if (maxsplit == 0)
            return vec_push(x, parts, mk_str(p + i, n - i));
        size_t j = i;
        while (j < n) {
            size_t k = j;
            if (py_space(next_cp(p, n, &k)))
                break;
            j = k;
        }
        TRY(vec_push(x, parts, mk_str(p + i, j - i)));
        maxsplit--;
        i = j;
    }
}

/* str.rsplit(None, maxsplit) of p[0..n) into parts, last part first. */
static int rsplit_space(jx *x, vec *parts, const char *p, size_t n, long long maxsplit)
{
    size_t end = n;
    for (;;) {
        end = rstrip_len(p, end);
        if (end == 0)
            return 0;
        if (maxsplit == 0)
            return vec_push(x, parts, mk_str(p, end));
        size_t j = end;
        while (j > 0) {
            size_t k = j - 1;
            while (k > 0 && ((unsigned char)p[k] & 0xC0) == 0x80)
                k--;
            size_t t = k;
            if (py_space(next_cp(p, n, &t)))
                break;
            j = k;
        }
        TRY(vec_push(x, parts, mk_str(p + j, end - j)));
        maxsplit--;
        end = j;
    }
}

/* str.split / str.rsplit. */
static int split_str(jx *x, const jv *s, const jv *sep, long long maxsplit, int right, jv *out)
{
    vec parts = {0};
    const char *p = s->u.s.p;
    size_t n = s->u.s.n;
    if (sep->k == K_STR && sep->u.s.n == 0)
        return R_RAISE; /* empty separator */
    if (maxsplit < 0)
        maxsplit = LLONG_MAX;
    if (sep->k == K_STR && !right)
        TRY(split_sep(x, &parts, p, n, sep->u.s.p, sep->u.s.n, maxsplit));
    else if (sep->k == K_STR)
        TRY(rsplit_sep(x, &parts, p, n, sep->u.s.p, sep->u.s.n, maxsplit));
    else if (!right)
        TRY(split_space(x, &parts, p, n, maxsplit));
    else
        TRY(rsplit_space(x, &parts, p, n, maxsplit));
    if (right) { /* built from the right */
        for (size_t i = 0, j = parts.n; i + 1 < j; i++, j--) {
            jv t = parts.v[i];
            parts.v[i] = parts.v[j - 1];
            parts.v[j - 1] = t;
        }
    }
    return vec_seq(x, &parts, K_LIST, out);
}

/* str.replace(old, new, count). */
static int replace_str(jx *x, const jv *s, const jv *old, const jv *new, long long count, jv *out)
{
    buf b;
    buf_init(&b, x->textmax);
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0;
    int rc = 0;
    if (count < 0)
        count = LLONG_MAX;
    if (old->u.s.n == 0) { /* new goes before every character and at the end */
        for (;;) {
            if (count > 0) {
                rc = put(&b, new->u.s.p, new->u.s.n);
                count--;
            }
            if (rc != 0 || i >= n)
                break;
            size_t j = i;
            (void)next_cp(p, n, &j);
            rc = put(&b, p + i, j - i);
            i = j;
        }
    } else {
        while (rc == 0 && count > 0) {
            const char *f = find_bytes(p + i, n - i, old->u.s.p, old->u.s.n);
            if (f == NULL)
                break;
            rc = put(&b, p + i, (size_t)(f - (p + i)));
            if (rc == 0)
                rc = put(&b, new->u.s.p, new->u.s.n);
            i = (size_t)(f - p) + old->u.s.n;
            count--;
        }
        if (rc == 0)
            rc = put(&b, p + i, n - i);
    }
    if (rc == 0)
        rc = step(x);
    if (rc == 0)
        rc = buf_str(x, &b, out);
    buf_free(&b);
    return rc;
}

/* str.startswith / str.endswith with a str or a tuple of them. */
static int affix(const jv *s, const jv *what, int end, int *res)
{
    if (what->k == K_TUPLE) {
        *res = 0;
        for (size_t i = 0; i < seq_len(what) && !*res; i++) {
            jv one = seq_at(what, i);
            TRY(affix(s, &one, end, res));
        }
        return 0;
    }
    if (what->k != K_STR)
        return R_RAISE;
    size_t n = what->u.s.n;
    *res = n <= s->u.s.n && memcmp(end ? s->u.s.p + s->u.s.n - n : s->u.s.p, what->u.s.p, n) == 0;
    return 0;
}

/* Long on purpose: One case per str method, a dispatch table kept as one switch beside Python's
 * own order. */
static int str_method(jx *x, const jmeth *m, const callargs *a, jv *out)
{
    const jv *s = &m->self;
    switch (m->id) {
    case M_UPPER:
    case M_LOWER:
        TRY(no_args(a));
        return upper_lower(x, s, m->id == M_UPPER ? CASE_UPPER : CASE_LOWER, out);
    case M_TITLE:
    case M_CAPITALIZE:
        TRY(no_args(a));
        return title_like(x, s, m->id == M_CAPITALIZE, out);
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP: {
        TRY(pos_args(a, 0, 1));
        const jv *chars = a->npos == 1 && a->pos[0].k != K_NONE ? &a->pos[0] : NULL;
        if (chars != NULL && chars->k != K_STR)
            return R_RAISE;
        return strip_str(s, chars, m->id == M_STRIP ? 3 : m->id == M_LSTRIP ? 1 : 2, out);
    }
    case M_SPLIT:
    case M_RSPLIT: {
        static const char *const names[] = {"sep", "maxsplit"};
        jv slot[2];
        int given[2];
        TRY(bind_args(a, names, 2, 0, slot, given));
        jv sep = given[0] ? slot[0] : mk_none();
        long long maxsplit = -1;
        if (sep.k != K_NONE && sep.k != K_STR)
            return R_RAISE;
        if (given[1]) {
            if (!is_intlike(&slot[1]))
                return R_RAISE;
            maxsplit = slot[1].u.i;
        }
        return split_str(x, s, &sep, maxsplit, m->id == M_RSPLIT, out);
    }
    case M_STARTSWITH:
    case M_ENDSWITH: {
        int res;
        if (a->nkw > 0 || a->npos == 0 || a->npos > 3)
            return R_RAISE;
        if (a->npos > 1)
            return R_UNSUP; /* start and end */
        TRY(affix(s, &a->pos[0], m->id == M_ENDSWITH, &res));
        *out = mk_bool(res);
        return 0;
    }
    case M_REPLACE: {
        TRY(pos_args(a, 2, 3));
        const jv *old = &a->pos[0], *new = &a->pos[1];
        if (old->k != K_STR || new->k != K_STR)
            return R_RAISE;
        long long count = -1;
        if (a->npos == 3) {
            if (!is_intlike(&a->pos[2]))
                return R_RAISE;
            count = a->pos[2].u.i;
        }
        return replace_str(x, s, old, new, count, out);
    }
    case M_JOIN: {
        TRY(pos_args(a, 1, 1));
        jiter *it;
        buf b;
        TRY(it_open(x, &a->pos[0], &it));
        buf_init(&b, x->textmax);
        int rc = 0, firstone = 1;
        while (rc == 0) {
            jv item;
            int has;
            rc = it_next(x, it, &item, &has);
            if (rc != 0 || !has)
                break;
            if (item.k != K_STR) {
                rc = R_RAISE; /* sequence item: expected str */
                break;
            }
            if (!firstone)
                rc = put(&b, s->u.s.p, s->u.s.n);
            if (rc == 0)
                rc = put(&b, item.u.s.p, item.u.s.n);
            firstone = 0;
        }
        if (rc == 0)
            rc = buf_str(x, &b, out);
        buf_free(&b);
        return rc;
    }
    case M_COUNT:
    case M_FIND:
    case M_INDEX: {
        if (a->nkw > 0 || a->npos == 0 || a->npos > 3)
            return R_RAISE;
        if (a->npos > 1)
            return R_UNSUP; /* start and end */
        const jv *sub = &a->pos[0];
        if (sub->k != K_STR)
            return R_RAISE;
        if (m->id != M_COUNT) {
            const char *f = find_bytes(s->u.s.p, s->u.s.n, sub->u.s.p, sub->u.s.n);
            if (f == NULL && m->id == M_INDEX)
                return R_RAISE; /* substring not found */
            *out = mk_int(f == NULL ? -1 : (long long)cp_count(s->u.s.p, (size_t)(f - s->u.s.p)));
            return 0;
        }
        if (sub->u.s.n == 0) {
            *out = mk_int((long long)cp_count(s->u.s.p, s->u.s.n) + 1);
            return 0;
        }
        long long c = 0;
        size_t i = 0;
        for (;;) {
            const char *f = find_bytes(s->u.s.p + i, s->u.s.n - i, sub->u.s.p, sub->u.s.n);
            if (f == NULL)
                break;
            c++;
            i = (size_t)(f - s->u.s.p) + sub->u.s.n;
        }
        *out = mk_int(c);
        return 0;
    }
    default:
        return R_UNSUP;
    }
}

static int view_of(jx *x, const jv *d, int sub, jv *out)
{
    const jv *keys, *vals;
    size_t n;
    TRY(dict_items(x, d, &keys, &vals, &n));
    jseq *s = xalloc(x, sizeof(jseq));
    if (s == NULL)
        return R_NOROOM;
    s->n = n;
    if (sub == VIEW_KEYS) {
        s->v = (jv *)keys;
    } else if (sub == VIEW_VALUES) {
        s->v = (jv *)vals;
    } else {
        s->v = n > 0 ? xalloc(x, n * sizeof(jv)) : NULL;
        if (n > 0 && s->v == NULL)
            return R_NOROOM;
        TRY(item_pairs(x, keys, vals, n, s->v));
    }
    *out = mk_seq(K_VIEW, s);
    out->sub = (unsigned char)sub;
    return 0;
}

/* Keyword arguments as a new dict (dict(**kw), namespace(**kw)). */
static int kwargs_dict(jx *x, const callargs *a, jdict *d)
{
    for (size_t i = 0; i < a->nkw; i++) {
        jv key = mk_str(a->kwname[i], a->kwlen[i]);
        TRY(dict_set(x, d, key, a->kw[i]));
    }
    return 0;
}

/* Long on purpose: One case per method of the types templates see (dict, list, str, ...), a
 * dispatch table kept as one switch. */
static int call_method(jx *x, const jmeth *m, const callargs *a, jv *out)
{
    const jv *self = &m->self;
    switch (m->id) {
    case M_RANGE: {
        long long v[3] = {0, 0, 1};
        TRY(pos_args(a, 1, 3));
        for (size_t i = 0; i < a->npos; i++) {
            if (!is_intlike(&a->pos[i]))
                return R_RAISE;
        }
        if (a->npos == 1) {
            v[1] = a->pos[0].u.i;
        } else {
            v[0] = a->pos[0].u.i;
            v[1] = a->pos[1].u.i;
            if (a->npos == 3)
                v[2] = a->pos[2].u.i;
        }
        if (v[2] == 0)
            return R_RAISE; /* range() arg 3 must not be zero */
        jrange *r = xalloc(x, sizeof(jrange));
        if (r == NULL)
            return R_NOROOM;
        r->start = v[0];
        r->stop = v[1];
        r->step = v[2];
        if (range_len(r) > 100000)
            return R_RAISE; /* the sandbox's MAX_RANGE */
        *out = mk_undef();
        out->k = K_RANGE;
        out->u.rg = r;
        return 0;
    }
    case M_DICT:
    case M_NAMESPACE: {
        if (a->npos > 0)
            return R_UNSUP;
        if (m->id == M_DICT) {
            TRY(new_dict(x, out));
            return kwargs_dict(x, a, out->u.dict);
        }
        jns *ns = xalloc(x, sizeof(jns));
        if (ns == NULL)
            return R_NOROOM;
        memset(ns, 0, sizeof(*ns));
        TRY(kwargs_dict(x, a, &ns->attrs));
        *out = mk_undef();
        out->k = K_NS;
        out->u.ns = ns;
        return 0;
    }
    case M_CYCLE: {
        if (a->nkw > 0 || a->npos == 0)
            return R_RAISE; /* no items for cycling given */
        long long i = self->u.loop->index0 % (long long)a->npos;
        *out = a->pos[i < 0 ? i + (long long)a->npos : i];
        return 0;
    }
    case M_CHANGED: {
        jloop *l = self->u.loop;
        if (a->nkw > 0)
            return R_RAISE;
        jseq *s = new_seq(x, a->npos);
        if (s == NULL)
            return R_NOROOM;
        for (size_t i = 0; i < a->npos; i++)
            s->v[i] = a->pos[i];
        jv value = mk_seq(K_TUPLE, s);
        int same = 0;
        if (l->has_changed)
            TRY(py_eq(x, &l->last_changed, &value, &same, 0));
        if (!same) {
            l->last_changed = value;
            l->has_changed = 1;
        }
        *out = mk_bool(!same);
        return 0;
    }
    case M_GET: {
        TRY(pos_args(a, 1, 2));
        const jv *key = &a->pos[0];
        if (!py_hashable(key))
            return R_RAISE;
        if (key->k == K_STR && dict_get(self, key->u.s.p, key->u.s.n, out))
            return 0;
        *out = a->npos == 2 ? a->pos[1] : mk_none();
        return 0;
    }
    case M_ITEMS:
    case M_KEYS:
    case M_VALUES:
        TRY(no_args(a));
        return view_of(x, self,
                       m->id == M_ITEMS  ? VIEW_ITEMS
                       : m->id == M_KEYS ? VIEW_KEYS
                                         : VIEW_VALUES,
                       out);
    case M_COUNT:
    case M_INDEX:
        if (self->k == K_STR)
            return str_method(x, m, a, out);
        {
            if (a->nkw > 0 || a->npos == 0 || (m->id == M_COUNT && a->npos > 1) || a->npos > 3)
                return R_RAISE;
            if (a->npos > 1)
                return R_UNSUP; /* start and stop */
            const jv *item = &a->pos[0];
            if (has_nan(item))
                return R_UNSUP;
            long long c = 0;
            for (size_t i = 0; i < seq_len(self); i++) {
                jv e = seq_at(self, i);
                int eq;
                if (has_nan(&e))
                    return R_UNSUP;
                TRY(py_eq(x, &e, item, &eq, 0));
                if (eq && m->id == M_INDEX) {
                    *out = mk_int((long long)i);
                    return 0;
                }
                c += eq;
            }
            if (m->id == M_INDEX)
                return R_RAISE; /* x is not in list */
            *out = mk_int(c);
            return 0;
        }
    case M_OTHER:
    case M_LIPSUM:
    case M_CYCLER:
    case M_JOINER:
        return R_UNSUP;
    default:
        return str_method(x, m, a, out);
    }
}

static int call_value(jx *x, const jv *fn, const callargs *a, jv *out)
{
    if (fn->k == K_METHOD)
        return call_method(x, fn->u.m, a, out);
    if (fn->k == K_LOOP)
        return R_UNSUP; /* loop(...) of recursive loops */
    return R_RAISE;     /* not callable, or undefined */
}

/* ---- filters -------------------------------------------------------------- */

enum {
    F_UNKNOWN = -1, /* not a jinja2 filter: jinja2 raises */
    F_UNIMPL = 0,   /* a jinja2 filter this module does not run */
    F_ABS,
    F_ATTR,
    F_CAPITALIZE,
    F_CENTER,
    F_DEFAULT,
    F_DICTSORT,
    F_ESCAPE,
    F_FIRST,
    F_FLOAT,
    F_FORCEESCAPE,
    F_INDENT,
    F_INT,
    F_ITEMS,
    F_JOIN,
    F_LAST,
    F_LENGTH,
    F_LIST,
    F_LOWER,
    F_MAP,
    F_MAX,
    F_MIN,
    F_REJECT,
    F_REJECTATTR,
    F_REPLACE,
    F_REVERSE,
    F_ROUND,
    F_SAFE,
    F_SELECT,
    F_SELECTATTR,
    F_SORT,
    F_STRING,
    F_SUM,
    F_TITLE,
    F_TOJSON,
    F_TRIM,
    F_TRUNCATE,
    F_UNIQUE,
    F_UPPER,
    F_WORDCOUNT,
};

static const struct {
    const char *name;
    int id;
} FILTERS[] = {
    {"abs", F_ABS},
    {"attr", F_ATTR},
    {"batch", F_UNIMPL},
    {"capitalize", F_CAPITALIZE},
    {"center", F_CENTER},
    {"count", F_LENGTH},
    {"d", F_DEFAULT},
    {"default", F_DEFAULT},
    {"dictsort", F_DICTSORT},
    {"e", F_ESCAPE},
    {"escape", F_ESCAPE},
    {"filesizeformat", F_UNIMPL},
    {"first", F_FIRST},
    {"float", F_FLOAT},
    {"forceescape", F_FORCEESCAPE},
    {"format", F_UNIMPL},
    {"groupby", F_UNIMPL},
    {"indent", F_INDENT},
    {"int", F_INT},
    {"items", F_ITEMS},
    {"join", F_JOIN},
    {"last", F_LAST},
    {"length", F_LENGTH},
    {"list", F_LIST},
    {"lower", F_LOWER},
    {"map", F_MAP},
    {"max", F_MAX},
    {"min", F_MIN},
    {"pprint", F_UNIMPL},
    {"random", F_UNIMPL},
    {"reject", F_REJECT},
    {"rejectattr", F_REJECTATTR},
    {"replace", F_REPLACE},
    {"reverse", F_REVERSE},
    {"round", F_ROUND},
    {"safe", F_SAFE},
    {"select", F_SELECT},
    {"selectattr", F_SELECTATTR},
    {"slice", F_UNIMPL},
    {"sort", F_SORT},
    {"string", F_STRING},
    {"striptags", F_UNIMPL},
    {"sum", F_SUM},
    {"title", F_TITLE},
    {"tojson", F_TOJSON},
    {"trim", F_TRIM},
    {"truncate", F_TRUNCATE},
    {"unique", F_UNIQUE},
    {"upper", F_UPPER},
    {"urlencode", F_UNIMPL},
    {"urlize", F_UNIMPL},
    {"wordcount", F_WORDCOUNT},
    {"wordwrap", F_UNIMPL},
    {"xmlattr", F_UNIMPL},
};

static int lookup_filter(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(FILTERS) / sizeof(FILTERS[0]); i++) {
        if (bytes_eq(name, len, FILTERS[i].name))
            return FILTERS[i].id;
    }
    return F_UNKNOWN;
}

/* environment.filters[name] for a name given at run time (map). */
static int find_filter(const jv *name, int *fid)
{
    if (name->k != K_STR)
        return R_RAISE; /* no filter named ..., or unhashable */
    *fid = lookup_filter(name->u.s.p, name->u.s.n);
    if (*fid == F_UNKNOWN)
        return R_RAISE;
    return *fid == F_UNIMPL ? R_UNSUP : 0;
}

/* ---- sorting ---------------------------------------------------------------- */

enum { CL_NUM, CL_STR, CL_NONE, CL_UNDEF, CL_UNORD, CL_OTHER };

static int key_class(const jv *v)
{
    if (is_num(v))
        return has_nan(v) ? CL_OTHER : CL_NUM;
    if (v->k == K_STR)
        return CL_STR;
    if (v->k == K_NONE)
        return CL_NONE;
    if (v->k == K_UNDEF)
        return CL_UNDEF;
    if (v->k == K_DICT || v->k == K_NS || v->k == K_ITER || v->k == K_METHOD || v->k == K_RANGE ||
        v->k == K_LOOP)
        return CL_UNORD; /* no '<' at all */
    return CL_OTHER;
}

typedef struct skey {
    jv item;
    jv *keys; /* nk of them */
} skey;

static int key_cmp(const skey *a, const skey *b, size_t nk)
{
    for (size_t i = 0; i < nk; i++) {
        const jv *p = &a->keys[i], *q = &b->keys[i];
        int c = 0;
        if (is_num(p))
            c = num_cmp(p, q);
        else if (p->k == K_STR)
            c = bytes_cmp(p->u.s.p, p->u.s.n, q->u.s.p, q->u.s.n);
        if (c != 0)
            return c;
    }
    return 0;
}

/* A stable merge sort of v[0..n) with tmp as scratch. */
static void merge_sort(skey *v, skey *tmp, size_t n, size_t nk, int reverse)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    merge_sort(v, tmp, h, nk, reverse);
    merge_sort(v + h, tmp, n - h, nk, reverse);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int c = key_cmp(&v[j], &v[i], nk);
        if (reverse ? c > 0 : c < 0)
            tmp[k++] = v[j++];
        else
            tmp[k++] = v[i++];
    }
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof(skey));
}

/* Checks that Python would sort these keys without raising, and the way
 * key_cmp does. wrapped: each key is a list (the sort filter's attrgetter),
 * so equal keys are never ordered; else the keys themselves are compared. */
static int keys_orderable(const skey *v, size_t n, size_t nk, int wrapped)
{
    if (n < 2)
        return 0;
    for (size_t p = 0; p < nk; p++) {
        int seen[6] = {0, 0, 0, 0, 0, 0};
        for (size_t i = 0; i < n; i++)
            seen[key_class(&v[i].keys[p])] = 1;
        int classes = seen[CL_NUM] + seen[CL_STR] + seen[CL_NONE] + seen[CL_UNDEF] +
                      seen[CL_UNORD] + seen[CL_OTHER];
        if (!wrapped && (seen[CL_NONE] || seen[CL_UNDEF] || seen[CL_UNORD]))
            return R_RAISE; /* every key is compared with '<' at least once */
        if (seen[CL_OTHER] || seen[CL_UNORD])
            return R_UNSUP;
        if (classes > 1)
            return nk == 1 ? R_RAISE : R_UNSUP; /* '<' not supported between ... */
    }
    return 0;
}

/* Items of v with their keys: the attribute paths of attr (split on commas
 * when multi), lowered unless case_sens. */
static int sort_keys(jx *x, const jv *v, const jv *attr, int multi, int case_sens, skey **out,
                     size_t *n, size_t *nk)
{
    jv all;
    TRY(list_of(x, v, &all));
    size_t count = seq_len(&all);
    jv parts[64];
    size_t np = 1;
    parts[0] = *attr;
    if (multi && attr->k == K_STR) {
        np = 0;
        size_t i = 0;
        const char *s = attr->u.s.p;
        for (;;) {
            size_t j = i;
            while (j < attr->u.s.n && s[j] != ',')
                j++;
            if (np == sizeof(parts) / sizeof(parts[0]))
                return R_UNSUP;
            parts[np++] = mk_str(s + i, j - i);
            if (j >= attr->u.s.n)
                break;
            i = j + 1;
        }
    }
    skey *keys = count > 0 ? xalloc(x, count * sizeof(skey)) : NULL;
    if (count > 0 && keys == NULL)
        return R_NOROOM;
    for (size_t i = 0; i < count; i++) {
        keys[i].item = seq_at(&all, i);
        keys[i].keys = xalloc(x, np * sizeof(jv));
        if (keys[i].keys == NULL)
            return R_NOROOM;
        for (size_t p = 0; p < np; p++) {
            jv k;
            TRY(attr_path(x, &keys[i].item, &parts[p], 0, NULL, &k));
            if (!case_sens && k.k == K_STR)
                TRY(lower_str(x, &k, &k));
            keys[i].keys[p] = k;
        }
    }
    *out = keys;
    *n = count;
    *nk = np;
    return 0;
}

static int as_flag(jx *x, const jv *v, int *flag)
{
    return py_truthy(x, v, flag);
}

/* ---- tojson ------------------------------------------------------------------ */

static int json_text(buf *b, const char *s, size_t n)
{
    TRY(puts_(b, "\""));
    size_t i = 0;
    while (i < n) {
        uint32_t cp = next_cp(s, n, &i);
        char t[16];
        if (cp == '"' || cp == '\\') {
            t[0] = '\\';
            t[1] = (char)cp;
            TRY(put(b, t, 2));
        } else if (cp == '\n') {
            TRY(puts_(b, "\\n"));
        } else if (cp == '\r') {
            TRY(puts_(b, "\\r"));
        } else if (cp == '\t') {
            TRY(puts_(b, "\\t"));
        } else if (cp == '\b') {
            TRY(puts_(b, "\\b"));
        } else if (cp == '\f') {
            TRY(puts_(b, "\\f"));
        } else if (cp == '<' || cp == '>' || cp == '&' || cp == '\'') {
            TRY(buf_printf(b, "\\u%04x", (unsigned)cp) == 0 ? 0 : R_NOROOM);
        } else if (cp >= 0x20 && cp < 0x7F) {
            t[0] = (char)cp;
            TRY(put(b, t, 1));
        } else if (cp < 0x10000) {
            TRY(buf_printf(b, "\\u%04x", (unsigned)cp) == 0 ? 0 : R_NOROOM);
        } else {
            uint32_t v = cp - 0x10000;
            TRY(buf_printf(b, "\\u%04x\\u%04x", (unsigned)(0xD800 + (v >> 10)),
                           (unsigned)(0xDC00 + (v & 0x3FF))) == 0
                    ? 0
                    : R_NOROOM);
        }
    }
    return puts_(b, "\"");
}

static int json_indent(buf *b, const jv *ind, int level)
{
    TRY(puts_(b, "\n"));
    for (int i = 0; i < level; i++)
        TRY(put(b, ind->u.s.p, ind->u.s.n));
    return 0;
}

static int json_dump(jx *x, const jv *v, const jv *ind, int level, buf *b);

/* A list or tuple as a JSON array, its items at level + 1. */
static int tojson_list(jx *x, const jv *v, const jv *ind, int level, buf *b)
{
    size_t n = seq_len(v);
    if (n == 0)
        return puts_(b, "[]");
    TRY(puts_(b, "["));
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            TRY(puts_(b, ind != NULL ? "," : ", "));
        if (ind != NULL)
            TRY(json_indent(b, ind, level + 1));
        jv item = seq_at(v, i);
        TRY(json_dump(x, &item, ind, level + 1, b));
    }
    if (ind != NULL)
        TRY(json_indent(b, ind, level));
    return puts_(b, "]");
}

/* A dict as a JSON object, its keys sorted (tojson's sort_keys=True), its
 * values at level + 1. */
static int tojson_dict(jx *x, const jv *v, const jv *ind, int level, buf *b)
{
    const jv *keys, *vals;
    size_t n;
    TRY(dict_items(x, v, &keys, &vals, &n));
    if (n == 0)
        return puts_(b, "{}");
    skey *order = xalloc(x, 2 * n * sizeof(skey));
    if (order == NULL)
        return R_NOROOM;
    for (size_t i = 0; i < n; i++) {
        order[i].item = vals[i];
        order[i].keys = (jv *)&keys[i];
    }
    merge_sort(order, order + n, n, 1, 0);
    TRY(puts_(b, "{"));
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            TRY(puts_(b, ind != NULL ? "," : ", "));
        if (ind != NULL)
            TRY(json_indent(b, ind, level + 1));
        TRY(json_text(b, order[i].keys[0].u.s.p, order[i].keys[0].u.s.n));
        TRY(puts_(b, ": "));
        TRY(json_dump(x, &order[i].item, ind, level + 1, b));
    }
    if (ind != NULL)
        TRY(json_indent(b, ind, level));
    return puts_(b, "}");
}

/* json.dumps(v, sort_keys=True, indent=ind) then htmlsafe: <>&' escaped
 * (inside strings, the only place they can be). ind NULL: no indent. */
static int json_dump(jx *x, const jv *v, const jv *ind, int level, buf *b)
{
    if (level > REPR_DEPTH)
        return R_UNSUP;
    TRY(step(x));
    switch (v->k) {
    case K_NONE:
        return puts_(b, "null");
    case K_BOOL:
        return puts_(b, v->u.i ? "true" : "false");
    case K_INT:
        return put_int(b, v->u.i);
    case K_FLOAT:
        if (isnan(v->u.d))
            return puts_(b, "NaN");
        if (isinf(v->u.d))
            return puts_(b, v->u.d > 0 ? "Infinity" : "-Infinity");
        return from_pyfmt(pyfmt_float_repr(b, v->u.d));
    case K_STR:
        return json_text(b, v->u.s.p, v->u.s.n);
    case K_LIST:
    case K_TUPLE:
        return tojson_list(x, v, ind, level, b);
    case K_DICT:
        return tojson_dict(x, v, ind, level, b);
    default:
        return R_RAISE; /* Object of type ... is not JSON serializable */
    }
}

/* ---- text filters ------------------------------------------------------------ */

static int is_line_break(uint32_t cp)
{
    return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D ||
           cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

/* str.splitlines(): the lines of s, without their breaks. */
static int split_lines(jx *x, const char *s, size_t n, vec *lines)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i, end;
        for (;;) {
            if (i >= n) {
                end = n;
                break;
            }
            size_t j = i;
            uint32_t cp = next_cp(s, n, &j);
            if (is_line_break(cp)) {
                end = i;
                i = j;
                if (cp == '\r' && i < n && s[i] == '\n')
                    i++;
                break;
            }
            i = j;
        }
        TRY(vec_push(x, lines, mk_str(s + start, end - start)));
    }
    return 0;
}

static int do_indent(jx *x, const jv *s, const jv *width, int first, int blank, jv *out)
{
    if (s->k == K_LIST)
        return R_UNSUP; /* s += "\n" extends the list (the caller's too), then raises */
    if (s->k != K_STR)
        return R_RAISE; /* s += "\n" */
    jv ind;
    if (width->k == K_STR) {
        ind = *width;
    } else if (is_intlike(width)) {
        long long w = width->u.i > 0 ? width->u.i : 0;
        if ((unsigned long long)w > x->textmax)
            return R_NOROOM;
        char *p = xalloc(x, (size_t)w + 1);
        if (p == NULL)
            return R_NOROOM;
        memset(p, ' ', (size_t)w);
        ind = mk_str(p, (size_t)w);
    } else {
        return R_RAISE;
    }
    vec lines = {0};
    jv withnl;
    TRY(concat2(x, s->u.s.p, s->u.s.n, "\n", 1, &withnl));
    TRY(split_lines(x, withnl.u.s.p, withnl.u.s.n, &lines));
    buf b;
    buf_init(&b, x->textmax);
    int rc = 0;
    if (first)
        rc = put(&b, ind.u.s.p, ind.u.s.n);
    for (size_t i = 0; i < lines.n && rc == 0; i++) {
        const jv *l = &lines.v[i];
        if (i > 0) {
            rc = puts_(&b, "\n");
            if (rc == 0 && (blank || l->u.s.n > 0))
                rc = put(&b, ind.u.s.p, ind.u.s.n);
        }
        if (rc == 0)
            rc = put(&b, l->u.s.p, l->u.s.n);
    }
    if (rc == 0)
        rc = buf_str(x, &b, out);
    buf_free(&b);
    out->markup = s->markup;
    return rc;
}

static int do_truncate(jx *x, const jv *s, const jv *slot, const int *given, jv *out)
{
    long long length = 255, leeway = 5;
    int killwords = 0;
    jv end = mk_str("...", 3);
    if (given[0]) {
        if (!is_intlike(&slot[0]))
            return R_UNSUP;
        length = slot[0].u.i;
    }
    if (given[1])
        TRY(as_flag(x, &slot[1], &killwords));
    if (given[2]) {
        if (slot[2].k != K_STR)
            return R_UNSUP;
        end = slot[2];
    }
    if (given[3] && slot[3].k != K_NONE) {
        if (!is_intlike(&slot[3]))
            return R_UNSUP;
        leeway = slot[3].u.i;
    }
    long long endlen = (long long)cp_count(end.u.s.p, end.u.s.n);
    if (length < endlen || leeway < 0)
        return R_RAISE; /* AssertionError */
    if (s->k == K_UNDEF) {
        *out = *s; /* len() is 0 */
        return 0;
    }
    if (s->k == K_NONE || is_num(s) || s->k == K_METHOD || s->k == K_NS || s->k == K_ITER)
        return R_RAISE; /* len() */
    if (s->k != K_STR)
        return R_UNSUP;
    long long len = (long long)cp_count(s->u.s.p, s->u.s.n);
    if (length > LLONG_MAX - leeway || len <= length + leeway) {
        *out = *s;
        return 0;
    }
    size_t cut = cp_offset(s->u.s.p, s->u.s.n, (size_t)(length - endlen));
    if (!killwords) {
        const char *sp = rfind_bytes(s->u.s.p, cut, " ", 1);
        if (sp != NULL)
            cut = (size_t)(sp - s->u.s.p);
    }
    jv tail = end;
    if (s->markup)
        TRY(escape_of(x, &end, &tail)); /* Markup + end escapes end */
    TRY(concat2(x, s->u.s.p, cut, tail.u.s.p, tail.u.s.n, out));
    out->markup = s->markup;
    return 0;
}

static int do_wordcount(jx *x, const jv *s, jv *out)
{
    jv t;
    TRY(soft_str(x, s, &t));
    long long words = 0;
    int in = 0;
    size_t i = 0;
    while (i < t.u.s.n) {
        uint32_t cp = next_cp(t.u.s.p, t.u.s.n, &i);
        int w = cp < 0x80 ? (is_alpha_((char)cp) || is_digit((char)cp)) : unicase_word(cp);
        if (w && !in)
            words++;
        in = w;
    }
    *out = mk_int(words);
    return 0;
}

/* The jinja2 title filter: each run of non-separators (separators: '-',
 * whitespace, '(', '{', '[', '<') gets its first character upper-cased and
 * the rest lower-cased. */
static int do_title(jx *x, const jv *s, jv *out)
{
    buf b;
    buf_init(&b, x->textmax);
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        size_t j = i;
        uint32_t cp = next_cp(p, n, &j);
        int sep = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || py_space(cp);
        size_t k = j;
        while (k < n) {
            size_t t = k;
            uint32_t c = next_cp(p, n, &t);
            int s2 = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_space(c);
            if (s2 != sep)
                break;
            k = t;
        }
        if (sep) {
            rc = put(&b, p + i, k - i);
        } else {
            size_t f = 0;
            rc = put_case(&b, p + i, j - i, &f, CASE_UPPER);
            if (rc == 0)
                rc = put_mapped(&b, p + j, k - j, CASE_LOWER);
        }
        i = k;
    }
    if (rc == 0)
        rc = buf_str(x, &b, out);
    buf_free(&b);
    return rc;
}

static int do_center(jx *x, const jv *s, const jv *width, jv *out)
{
    if (!is_intlike(width))
        return R_RAISE;
    long long len = (long long)cp_count(s->u.s.p, s->u.s.n), w = width->u.i;
    if (w <= len) {
        *out = *s;
        return 0;
    }
    long long marg = w - len, left = marg / 2 + (marg & w & 1);
    if ((unsigned long long)marg > x->textmax)
        return R_NOROOM;
    buf b;
    buf_init(&b, x->textmax);
    int rc = 0;
    for (long long i = 0; i < left && rc == 0; i++)
        rc = puts_(&b, " ");
    if (rc == 0)
        rc = put(&b, s->u.s.p, s->u.s.n);
    for (long long i = left; i < marg && rc == 0; i++)
        rc = puts_(&b, " ");
    if (rc == 0)
        rc = buf_str(x, &b, out);
    buf_free(&b);
    out->markup = s->markup;
    return rc;
}

static int ascii_ieq(const char *a, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = a[i] >= 'A' && a[i] <= 'Z' ? (char)(a[i] + 32) : a[i];
        if (c != lit[i])
            return 0;
    }
    return 1;
}

/* The digits, '_' separators, '.' and exponent of s[i..b) copied to tmp
 * from *k on (a sign may be there already) without the separators, and
 * ended with NUL: 1 when they are int (or float, want_float) syntax, 0 when
 * not, -1 when longer than tmp (size cap). */
static int number_text(const char *s, size_t i, size_t b, int want_float, char *tmp, size_t cap,
                       size_t *kp)
{
    size_t k = *kp;
    int digits = 0, dot = 0, exp = 0, prev_digit = 0;
    for (; i < b; i++) {
        char c = s[i];
        if (k + 2 >= cap)
            return -1;
        if (is_digit(c)) {
            tmp[k++] = c;
            digits++;
            prev_digit = 1;
            continue;
        }
        if (c == '_' && prev_digit && i + 1 < b && is_digit(s[i + 1])) {
            prev_digit = 0;
            continue;
        }
        if (!want_float)
            return 0;
        if (c == '.' && !dot && !exp) {
            dot = 1;
            tmp[k++] = c;
            prev_digit = 0;
            continue;
        }
        if ((c == 'e' || c == 'E') && digits > 0 && !exp) {
            exp = 1;
            tmp[k++] = 'e';
            prev_digit = 0;
            if (i + 1 < b && (s[i + 1] == '+' || s[i + 1] == '-'))
                tmp[k++] = s[++i];
            if (!(i + 1 < b && is_digit(s[i + 1])))
                return 0;
            continue;
        }
        return 0;
    }
    if (digits == 0 || (k > 0 && !is_digit(tmp[k - 1]) && tmp[k - 1] != '.'))
        return 0;
    tmp[k] = 0;
    *kp = k;
    return 1;
}

/* Python's int(str) and float(str) syntax over ASCII: 1 parsed (*out), 0 not,
 * -1 where this module cannot tell (other scripts, past 64 bits). */
static int parse_number(const char *s, size_t n, int want_float, jv *out)
{
    size_t a = space_run(s, n), b = rstrip_len(s, n);
    char tmp[512];
    size_t k = 0, i = a;
    if (b <= a)
        return 0;
    for (size_t q = a; q < b;) {
        uint32_t cp = next_cp(s, b, &q);
        if (cp >= 0x80)
            return uniprint_decimal(cp) >= 0 ? -1 : 0; /* other scripts' digits */
    }
    if (s[i] == '+' || s[i] == '-')
        tmp[k++] = s[i++];
    if (want_float) {
        size_t rest = b - i;
        const char *w = s + i;
        if ((rest == 3 && (ascii_ieq(w, "inf", 3) || ascii_ieq(w, "nan", 3))) ||
            (rest == 8 && ascii_ieq(w, "infinity", 8))) {
            double d = (w[0] | 0x20) == 'n' ? NAN : INFINITY;
            *out = mk_float(tmp[0] == '-' ? -d : d);
            return 1;
        }
    }
    int r = number_text(s, i, b, want_float, tmp, sizeof(tmp), &k);
    if (r != 1)
        return r;
    if (want_float) {
        *out = mk_float(strtod(tmp, NULL));
        return 1;
    }
    errno = 0;
    char *endp;
    long long v = strtoll(tmp, &endp, 10);
    if (errno != 0 || *endp != 0)
        return -1; /* past 64 bits */
    *out = mk_int(v);
    return 1;
}

/* int(d) for a finite double: R_UNSUP past 64 bits. */
static int int_of_double(double d, jv *out)
{
    double t = trunc(d);
    if (!(t >= -9223372036854775808.0 && t < 9223372036854775808.0))
        return R_UNSUP;
    *out = mk_int((long long)t);
    return 0;
}

static int do_int(jx *x, const jv *v, const jv *dflt, const jv *base, jv *out)
{
    (void)x;
    switch (v->k) {
    case K_UNDEF:
        return R_RAISE; /* UndefinedError */
    case K_BOOL:
    case K_INT:
        *out = mk_int(v->u.i);
        return 0;
    case K_FLOAT:
        if (isinf(v->u.d))
            return R_RAISE; /* OverflowError is not caught */
        if (isnan(v->u.d)) {
            *out = *dflt;
            return 0;
        }
        return int_of_double(v->u.d, out);
    case K_STR: {
        if (!(is_intlike(base) && base->u.i == 10))
            return R_UNSUP;
        int r = parse_number(v->u.s.p, v->u.s.n, 0, out);
        if (r < 0)
            return R_UNSUP;
        if (r == 1)
            return 0;
        jv f;
        r = parse_number(v->u.s.p, v->u.s.n, 1, &f);
        if (r < 0)
            return R_UNSUP;
        if (r == 0 || isnan(f.u.d)) {
            *out = *dflt;
            return 0;
        }
        if (isinf(f.u.d))
            return R_RAISE;
        return int_of_double(f.u.d, out);
    }
    default:
        *out = *dflt; /* TypeError, caught */
        return 0;
    }
}

static int do_float(const jv *v, const jv *dflt, jv *out)
{
    switch (v->k) {
    case K_UNDEF:
        return R_RAISE;
    case K_BOOL:
    case K_INT:
        *out = mk_float((double)v->u.i);
        return 0;
    case K_FLOAT:
        *out = *v;
        return 0;
    case K_STR: {
        int r = parse_number(v->u.s.p, v->u.s.n, 1, out);
        if (r < 0)
            return R_UNSUP;
        if (r == 0)
            *out = *dflt;
        return 0;
    }
    default:
        *out = *dflt;
        return 0;
    }
}

/* round(i, p) of an int: itself for p >= 0, else to a multiple of 10**-p,
 * half to even. */
static int round_int(long long i, long long p, jv *out)
{
    if (p >= 0) {
        *out = mk_int(i);
        return 0;
    }
    if (p < -18)
        return R_UNSUP;
    long long m = 1;
    for (long long k = 0; k < -p; k++)
        m *= 10;
    long long q = i / m, r = i % m;
    if (r < 0) {
        q--;
        r += m;
    }
    if (2 * r > m || (2 * r == m && (q & 1)))
        q++;
    long long res;
    if (__builtin_mul_overflow(q, m, &res))
        return R_UNSUP;
    *out = mk_int(res);
    return 0;
}

/* round(v, p), jinja2's "common" method: Python's round. */
static int round_common(const jv *v, long long p, jv *out)
{
    if (v->k != K_FLOAT)
        return round_int(v->u.i, p, out);
    double d = v->u.d;
    if (!isfinite(d) || p > 323) {
        *out = *v;
        return 0;
    }
    if (p < 0)
        return R_UNSUP;
    char tmp[1200];
    snprintf(tmp, sizeof(tmp), "%.*f", (int)p, d); /* correctly rounded, half to even */
    *out = mk_float(strtod(tmp, NULL));
    return 0;
}

/* jinja2's "ceil" (how 1) or "floor" (how 2) method at p decimals:
 * math.ceil / math.floor of v * 10**p, over 10**p, a float. */
static int round_toward(const jv *v, long long p, int how, jv *out)
{
    if (p < 0 || p > 22)
        return R_UNSUP;
    double m = 1.0;
    long long mi = 1;
    for (long long i = 0; i < p; i++) {
        m *= 10.0;
        if (mi <= LLONG_MAX / 10)
            mi *= 10;
    }
    if (v->k != K_FLOAT) {
        long long prod;
        if (p > 18 || __builtin_mul_overflow(v->u.i, mi, &prod))
            return R_UNSUP;
        if (prod > EXACT_INT || prod < -EXACT_INT)
            return R_UNSUP;
        *out = mk_float((double)prod / m);
        return 0;
    }
    double prod = v->u.d * m;
    if (isinf(prod))
        return R_RAISE; /* OverflowError */
    if (isnan(prod))
        return R_RAISE; /* ValueError */
    double c = how == 1 ? ceil(prod) : floor(prod);
    *out = mk_float(c / m);
    return 0;
}

/* round(value, precision) and the ceil / floor methods. */
static int do_round(const jv *v, const jv *prec, const jv *method, jv *out)
{
    int how; /* 0 common, 1 ceil, 2 floor */
    if (str_eq(method, "common"))
        how = 0;
    else if (str_eq(method, "ceil"))
        how = 1;
    else if (str_eq(method, "floor"))
        how = 2;
    else
        return R_RAISE; /* FilterArgumentError */
    if (!is_num(v))
        return R_RAISE;
    if (prec->k == K_NONE && how == 0) { /* round(x, None) is round(x) */
        if (v->k != K_FLOAT) {
            *out = mk_int(v->u.i);
            return 0;
        }
        if (!isfinite(v->u.d))
            return R_RAISE;
        return int_of_double(nearbyint(v->u.d), out);
    }
    if (!is_intlike(prec))
        return R_RAISE;
    if (how == 0)
        return round_common(v, prec->u.i, out);
    return round_toward(v, prec->u.i, how, out);
}

/* A running sum with Python's +. */
static int do_sum(jx *x, const jv *seq, const jv *attr, const jv *start, jv *out)
{
    if (start->k == K_STR)
        return R_RAISE; /* sum() can't sum strings */
    jiter *it;
    jv acc = *start;
    TRY(it_open(x, seq, &it));
    for (;;) {
        jv item;
        int has;
        TRY(it_next(x, it, &item, &has));
        if (!has)
            break;
        if (attr->k != K_NONE)
            TRY(attr_path(x, &item, attr, 0, NULL, &item));
        TRY(binop(x, TK_ADD, &acc, &item, &acc));
    }
    *out = acc;
    return 0;
}

static int do_minmax(jx *x, const jv *seq, int max, int case_sens, const jv *attr, jv *out)
{
    skey *keys;
    size_t n, nk;
    TRY(sort_keys(x, seq, attr, 0, case_sens, &keys, &n, &nk));
    if (n == 0) {
        *out = mk_undef(); /* no aggregated item */
        return 0;
    }
    TRY(keys_orderable(keys, n, 1, 0));
    size_t best = 0;
    for (size_t i = 1; i < n; i++) {
        int c = key_cmp(&keys[i], &keys[best], 1);
        if (max ? c > 0 : c < 0)
            best = i;
    }
    *out = keys[best].item;
    return 0;
}

static int do_sort(jx *x, const jv *seq, int reverse, int case_sens, const jv *attr, jv *out)
{
    skey *keys;
    size_t n, nk;
    TRY(sort_keys(x, seq, attr, 1, case_sens, &keys, &n, &nk));
    TRY(keys_orderable(keys, n, nk, 1));
    skey *tmp = n > 0 ? xalloc(x, n * sizeof(skey)) : NULL;
    if (n > 0 && tmp == NULL)
        return R_NOROOM;
    merge_sort(keys, tmp, n, nk, reverse);
    jseq *s = new_seq(x, n);
    if (s == NULL)
        return R_NOROOM;
    for (size_t i = 0; i < n; i++)
        s->v[i] = keys[i].item;
    *out = mk_seq(K_LIST, s);
    return 0;
}

static int do_dictsort(jx *x, const jv *d, int case_sens, const jv *by, int reverse, jv *out)
{
    int pos;
    if (str_eq(by, "key"))
        pos = 0;
    else if (str_eq(by, "value"))
        pos = 1;
    else
        return R_RAISE; /* only by key or value */
    if (d->k != K_DICT)
        return R_RAISE; /* no .items() */
    jv items;
    TRY(view_of(x, d, VIEW_ITEMS, &items));
    size_t n = seq_len(&items);
    skey *keys = n > 0 ? xalloc(x, 2 * n * sizeof(skey)) : NULL;
    if (n > 0 && keys == NULL)
        return R_NOROOM;
    for (size_t i = 0; i < n; i++) {
        keys[i].item = seq_at(&items, i);
        keys[i].keys = xalloc(x, sizeof(jv));
        if (keys[i].keys == NULL)
            return R_NOROOM;
        jv k = seq_at(&keys[i].item, (size_t)pos);
        if (!case_sens && k.k == K_STR)
            TRY(lower_str(x, &k, &k));
        keys[i].keys[0] = k;
    }
    TRY(keys_orderable(keys, n, 1, 0));
    if (n > 0)
        merge_sort(keys, keys + n, n, 1, reverse);
    jseq *s = new_seq(x, n);
    if (s == NULL)
        return R_NOROOM;
    for (size_t i = 0; i < n; i++)
        s->v[i] = keys[i].item;
    *out = mk_seq(K_LIST, s);
    return 0;
}

static int do_join(jx *x, const jv *seq, const jv *d, const jv *attr, jv *out)
{
    jv sep;
    jiter *it;
    TRY(str_of(x, d, &sep));
    TRY(it_open(x, seq, &it));
    buf b;
    buf_init(&b, x->textmax);
    int rc = 0, first = 1;
    while (rc == 0) {
        jv item;
        int has;
        rc = it_next(x, it, &item, &has);
        if (rc != 0 || !has)
            break;
        if (attr->k != K_NONE)
            rc = attr_path(x, &item, attr, 0, NULL, &item);
        if (rc == 0 && !first)
            rc = put(&b, sep.u.s.p, sep.u.s.n);
        if (rc == 0)
            rc = py_str(x, &item, &b);
        first = 0;
    }
    if (rc == 0)
        rc = buf_str(x, &b, out);
    buf_free(&b);
    return rc;
}

static int do_last(jx *x, const jv *v, jv *out)
{
    size_t n;
    switch (v->k) {
    case K_STR:
    case K_LIST:
    case K_TUPLE:
    case K_VIEW:
    case K_RANGE:
    case K_DICT: {
        jv seq = *v;
        if (v->k == K_DICT)
            TRY(dict_keys_seq(x, v, &seq));
        if (v->k == K_STR) {
            n = v->u.s.n;
            if (n == 0) {
                *out = mk_undef();
                return 0;
            }
            size_t k = n - 1;
            while (k > 0 && ((unsigned char)v->u.s.p[k] & 0xC0) == 0x80)
                k--;
            *out = mk_str(v->u.s.p + k, n - k);
            return 0;
        }
        if (v->k == K_RANGE) {
            n = range_len(v->u.rg);
            *out =
                n == 0 ? mk_undef() : mk_int(v->u.rg->start + (long long)(n - 1) * v->u.rg->step);
            return 0;
        }
        n = seq_len(&seq);
        *out = n == 0 ? mk_undef() : seq_at(&seq, n - 1);
        return 0;
    }
    case K_UNDEF:
        *out = mk_undef();
        return 0;
    default:
        return R_RAISE; /* not reversible */
    }
}

static int do_reverse(jx *x, const jv *v, jv *out)
{
    if (v->k == K_STR) {
        jv none = mk_none(), minus = mk_int(-1);
        return get_slice(x, v, &none, &none, &minus, 1, out);
    }
    jiter *it;
    switch (v->k) {
    case K_LIST:
    case K_TUPLE:
    case K_VIEW:
    case K_DICT: {
        jv seq = *v;
        if (v->k == K_DICT)
            TRY(dict_keys_seq(x, v, &seq));
        TRY(it_new(x, IT_REVERSE, &seq, &it));
        it->pos = seq_len(&seq);
        break;
    }
    case K_RANGE:
        TRY(it_new(x, IT_REVERSE, v, &it));
        it->pos = range_len(v->u.rg);
        break;
    case K_UNDEF:
        TRY(it_new(x, IT_EMPTY, NULL, &it));
        break;
    case K_ITER: { /* reversed() refuses it: list(value) reversed */
        jv all;
        TRY(list_of(x, v, &all));
        size_t n = seq_len(&all);
        jseq *s = new_seq(x, n);
        if (s == NULL)
            return R_NOROOM;
        for (size_t i = 0; i < n; i++)
            s->v[i] = seq_at(&all, n - 1 - i);
        *out = mk_seq(K_LIST, s);
        return 0;
    }
    case K_LOOP:
        return R_UNSUP; /* list(loop) moves the loop on */
    default:
        return R_RAISE; /* argument must be iterable */
    }
    *out = iter_value(it);
    return 0;
}

static int gen_filter(jx *x, int kind, const jv *v, const callargs *a, int negate, int lookup,
                      jv *out)
{
    jiter *it;
    TRY(it_new(x, kind, v, &it));
    it->args = *a;
    it->negate = negate;
    it->lookup = lookup;
    it->attr = mk_none();
    *out = iter_value(it);
    return 0;
}

/* Calls filter fid on value with the arguments a. */
/* Long on purpose: One case per jinja2 filter, in the order of jinja2/filters.py: a dispatch
 * table kept as one switch so that a filter reads next to its Python source, not a long
 * function to split. */
static int call_filter_id(jx *x, int fid, const jv *value, const callargs *a, jv *out)
{
    jv slot[4];
    int given[4];
    jv vcopy = *value; /* out may be value */
    const jv *v = &vcopy;
    jv t;
    TRY(step(x));
    switch (fid) {
    case F_ABS:
        TRY(pos_args(a, 0, 0));
        if (v->k == K_FLOAT) {
            *out = mk_float(fabs(v->u.d));
            return 0;
        }
        if (is_intlike(v))
            return unop(v->u.i < 0, v, out);
        return R_RAISE;
    case F_ATTR: {
        static const char *const names[] = {"name"};
        TRY(bind_args(a, names, 1, 1, slot, given));
        if (slot[0].k != K_STR)
            return R_RAISE;
        int found;
        TRY(py_getattr(x, v, slot[0].u.s.p, slot[0].u.s.n, out, &found));
        if (!found || (slot[0].u.s.n > 0 && slot[0].u.s.p[0] == '_'))
            *out = mk_undef();
        return 0;
    }
    case F_CAPITALIZE:
    case F_LOWER:
    case F_UPPER:
    case F_TITLE: {
        static const char *const names[] = {"s"};
        TRY(bind_args(a, names, 0, 0, slot, given));
        TRY(soft_str(x, v, &t));
        if (fid == F_CAPITALIZE)
            return title_like(x, &t, 1, out);
        if (fid == F_TITLE) {
            TRY(do_title(x, &t, out));
            return 0;
        }
        return upper_lower(x, &t, fid == F_UPPER ? CASE_UPPER : CASE_LOWER, out);
    }
    case F_CENTER: {
        static const char *const names[] = {"width"};
        TRY(bind_args(a, names, 1, 0, slot, given));
        jv w = given[0] ? slot[0] : mk_int(80);
        TRY(soft_str(x, v, &t));
        return do_center(x, &t, &w, out);
    }
    case F_DEFAULT: {
        static const char *const names[] = {"default_value", "boolean"};
        TRY(bind_args(a, names, 2, 0, slot, given));
        int boolean = 0, truth = 1;
        if (given[1])
            TRY(py_truthy(x, &slot[1], &boolean));
        if (boolean && v->k != K_UNDEF)
            TRY(py_truthy(x, v, &truth));
        if (v->k == K_UNDEF || (boolean && !truth))
            *out = given[0] ? slot[0] : mk_str("", 0);
        else
            *out = *v;
        return 0;
    }
    case F_DICTSORT: {
        static const char *const names[] = {"case_sensitive", "by", "reverse"};
        TRY(bind_args(a, names, 3, 0, slot, given));
        int cs = 0, rev = 0;
        if (given[0])
            TRY(as_flag(x, &slot[0], &cs));
        if (given[2])
            TRY(as_flag(x, &slot[2], &rev));
        jv by = given[1] ? slot[1] : mk_str("key", 3);
        return do_dictsort(x, v, cs, &by, rev, out);
    }
    case F_ESCAPE:
        TRY(pos_args(a, 0, 0));
        return escape_of(x, v, out);
    case F_FORCEESCAPE: {
        TRY(pos_args(a, 0, 0));
        jv s = *v;
        s.markup = 0;
        if (v->k == K_UNDEF)
            s = mk_str("", 0);
        return escape_of(x, &s, out);
    }
    case F_SAFE:
        TRY(pos_args(a, 0, 0));
        if (v->k == K_UNDEF)
            *out = mk_str("", 0);
        else
            TRY(str_of(x, v, out));
        out->markup = 1;
        return 0;
    case F_FIRST: {
        jiter *it;
        int has;
        TRY(pos_args(a, 0, 0));
        TRY(it_open(x, v, &it));
        TRY(it_next(x, it, out, &has));
        if (!has)
            *out = mk_undef();
        return 0;
    }
    case F_LAST:
        TRY(pos_args(a, 0, 0));
        return do_last(x, v, out);
    case F_FLOAT: {
        static const char *const names[] = {"default"};
        TRY(bind_args(a, names, 1, 0, slot, given));
        jv d = given[0] ? slot[0] : mk_float(0.0);
        return do_float(v, &d, out);
    }
    case F_INT: {
        static const char *const names[] = {"default", "base"};
        TRY(bind_args(a, names, 2, 0, slot, given));
        jv d = given[0] ? slot[0] : mk_int(0), base = given[1] ? slot[1] : mk_int(10);
        return do_int(x, v, &d, &base, out);
    }
    case F_INDENT: {
        static const char *const names[] = {"width", "first", "blank"};
        TRY(bind_args(a, names, 3, 0, slot, given));
        int first = 0, blank = 0;
        jv w = given[0] ? slot[0] : mk_int(4);
        if (given[1])
            TRY(as_flag(x, &slot[1], &first));
        if (given[2])
            TRY(as_flag(x, &slot[2], &blank));
        return do_indent(x, v, &w, first, blank, out);
    }
    case F_ITEMS:
        TRY(pos_args(a, 0, 0));
        return gen_filter(x, IT_ITEMS, v, a, 0, 0, out);
    case F_JOIN: {
        static const char *const names[] = {"d", "attribute"};
        TRY(bind_args(a, names, 2, 0, slot, given));
        jv d = given[0] ? slot[0] : mk_str("", 0), attr = given[1] ? slot[1] : mk_none();
        return do_join(x, v, &d, &attr, out);
    }
    case F_LENGTH: {
        size_t n;
        TRY(pos_args(a, 0, 0));
        TRY(py_len(x, v, &n));
        *out = mk_int((long long)n);
        return 0;
    }
    case F_LIST:
        TRY(pos_args(a, 0, 0));
        return list_of(x, v, out);
    case F_MAP:
        return gen_filter(x, IT_MAP, v, a, 0, 0, out);
    case F_SELECT:
    case F_REJECT:
    case F_SELECTATTR:
    case F_REJECTATTR:
        return gen_filter(x, IT_SELECT, v, a, fid == F_REJECT || fid == F_REJECTATTR,
                          fid == F_SELECTATTR || fid == F_REJECTATTR, out);
    case F_MAX:
    case F_MIN: {
        static const char *const names[] = {"case_sensitive", "attribute"};
        TRY(bind_args(a, names, 2, 0, slot, given));
        int cs = 0;
        if (given[0])
            TRY(as_flag(x, &slot[0], &cs));
        jv attr = given[1] ? slot[1] : mk_none();
        return do_minmax(x, v, fid == F_MAX, cs, &attr, out);
    }
    case F_REPLACE: {
        static const char *const names[] = {"old", "new", "count"};
        TRY(bind_args(a, names, 3, 2, slot, given));
        jv s, old, new;
        long long count = -1;
        if (given[2] && slot[2].k != K_NONE) {
            if (!is_intlike(&slot[2]))
                return R_RAISE;
            count = slot[2].u.i;
        }
        TRY(str_of(x, v, &s));
        TRY(str_of(x, &slot[0], &old));
        TRY(str_of(x, &slot[1], &new));
        return replace_str(x, &s, &old, &new, count, out);
    }
    case F_REVERSE:
        TRY(pos_args(a, 0, 0));
        return do_reverse(x, v, out);
    case F_ROUND: {
        static const char *const names[] = {"precision", "method"};
        TRY(bind_args(a, names, 2, 0, slot, given));
        jv p = given[0] ? slot[0] : mk_int(0), m = given[1] ? slot[1] : mk_str("common", 6);
        return do_round(v, &p, &m, out);
    }
    case F_SORT: {
        static const char *const names[] = {"reverse", "case_sensitive", "attribute"};
        TRY(bind_args(a, names, 3, 0, slot, given));
        int rev = 0, cs = 0;
        if (given[0]) {
            if (!is_intlike(&slot[0]))
                return R_UNSUP;
            rev = slot[0].u.i != 0;
        }
        if (given[1])
            TRY(as_flag(x, &slot[1], &cs));
        jv attr = given[2] ? slot[2] : mk_none();
        return do_sort(x, v, rev, cs, &attr, out);
    }
    case F_STRING:
        TRY(pos_args(a, 0, 0));
        return soft_str(x, v, out);
    case F_SUM: {
        static const char *const names[] = {"attribute", "start"};
        TRY(bind_args(a, names, 2, 0, slot, given));
        jv attr = given[0] ? slot[0] : mk_none(), start = given[1] ? slot[1] : mk_int(0);
        return do_sum(x, v, &attr, &start, out);
    }
    case F_TOJSON: {
        static const char *const names[] = {"indent"};
        TRY(bind_args(a, names, 1, 0, slot, given));
        jv ind, *indp = NULL;
        if (given[0] && slot[0].k != K_NONE) {
            if (slot[0].k == K_STR) {
                ind = slot[0];
            } else if (is_intlike(&slot[0])) {
                long long w = slot[0].u.i > 0 ? slot[0].u.i : 0;
                if (w > 1024)
                    return R_UNSUP;
                char *p = xalloc(x, (size_t)w + 1);
                if (p == NULL)
                    return R_NOROOM;
                memset(p, ' ', (size_t)w);
                ind = mk_str(p, (size_t)w);
            } else {
                return R_UNSUP;
            }
            indp = &ind;
        }
        buf b;
        buf_init(&b, x->textmax);
        int rc = json_dump(x, v, indp, 0, &b);
        if (rc == 0)
            rc = buf_str(x, &b, out);
        buf_free(&b);
        out->markup = 1;
        return rc;
    }
    case F_TRIM: {
        static const char *const names[] = {"chars"};
        TRY(bind_args(a, names, 1, 0, slot, given));
        const jv *chars = given[0] && slot[0].k != K_NONE ? &slot[0] : NULL;
        if (chars != NULL && chars->k != K_STR)
            return R_RAISE;
        TRY(soft_str(x, v, &t));
        return strip_str(&t, chars, 3, out);
    }
    case F_TRUNCATE: {
        static const char *const names[] = {"length", "killwords", "end", "leeway"};
        TRY(bind_args(a, names, 4, 0, slot, given));
        return do_truncate(x, v, slot, given, out);
    }
    case F_UNIQUE: {
        static const char *const names[] = {"case_sensitive", "attribute"};
        TRY(bind_args(a, names, 2, 0, slot, given));
        jiter *it;
        TRY(it_new(x, IT_UNIQUE, v, &it));
        if (given[0])
            TRY(as_flag(x, &slot[0], &it->case_sens));
        it->attr = given[1] ? slot[1] : mk_none();
        it->started = 0;
        /* the generator's body runs at the first next(): open then */
        *out = iter_value(it);
        return 0;
    }
    case F_WORDCOUNT:
        TRY(pos_args(a, 0, 0));
        return do_wordcount(x, v, out);
    default:
        return R_UNSUP;
    }
}

/* ---- tests ------------------------------------------------------------------ */

enum {
    T_UNKNOWN = -1,
    T_ODD = 1,
    T_EVEN,
    T_DIVISIBLEBY,
    T_DEFINED,
    T_UNDEFINED,
    T_FILTER,
    T_TEST,
    T_NONE,
    T_BOOLEAN,
    T_FALSE,
    T_TRUE,
    T_INTEGER,
    T_FLOAT,
    T_LOWER,
    T_UPPER,
    T_STRING,
    T_MAPPING,
    T_NUMBER,
    T_SEQUENCE,
    T_ITERABLE,
    T_CALLABLE,
    T_SAMEAS,
    T_ESCAPED,
    T_IN,
    T_EQ,
    T_NE,
    T_GT,
    T_GE,
    T_LT,
    T_LE,
};

static const struct {
    const char *name;
    int id;
} TESTS[] = {
    {"odd", T_ODD},
    {"even", T_EVEN},
    {"divisibleby", T_DIVISIBLEBY},
    {"defined", T_DEFINED},
    {"undefined", T_UNDEFINED},
    {"filter", T_FILTER},
    {"test", T_TEST},
    {"none", T_NONE},
    {"boolean", T_BOOLEAN},
    {"false", T_FALSE},
    {"true", T_TRUE},
    {"integer", T_INTEGER},
    {"float", T_FLOAT},
    {"lower", T_LOWER},
    {"upper", T_UPPER},
    {"string", T_STRING},
    {"mapping", T_MAPPING},
    {"number", T_NUMBER},
    {"sequence", T_SEQUENCE},
    {"iterable", T_ITERABLE},
    {"callable", T_CALLABLE},
    {"sameas", T_SAMEAS},
    {"escaped", T_ESCAPED},
    {"in", T_IN},
    {"==", T_EQ},
    {"eq", T_EQ},
    {"equalto", T_EQ},
    {"!=", T_NE},
    {"ne", T_NE},
    {">", T_GT},
    {"gt", T_GT},
    {"greaterthan", T_GT},
    {"ge", T_GE},
    {">=", T_GE},
    {"<", T_LT},
    {"lt", T_LT},
    {"lessthan", T_LT},
    {"<=", T_LE},
    {"le", T_LE},
};

static int lookup_test(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(TESTS) / sizeof(TESTS[0]); i++) {
        if (bytes_eq(name, len, TESTS[i].name))
            return TESTS[i].id;
    }
    return T_UNKNOWN;
}

static int find_test(const jv *name, int *tid)
{
    if (name->k != K_STR)
        return R_RAISE;
    *tid = lookup_test(name->u.s.p, name->u.s.n);
    return *tid == T_UNKNOWN ? R_RAISE : 0;
}

/* value % num == want */
static int mod_is(jx *x, const jv *v, const jv *num, long long want, int *res)
{
    jv r, w = mk_int(want);
    TRY(binop(x, TK_MOD, v, num, &r));
    return py_eq(x, &r, &w, res, 0);
}

/* str(value).islower() / .isupper() */
static int case_test(jx *x, const jv *v, int upper, int *res)
{
    jv s;
    TRY(str_of(x, v, &s));
    int cased = 0;
    size_t i = 0;
    *res = 0;
    while (i < s.u.s.n) {
        uint32_t cp = next_cp(s.u.s.p, s.u.s.n, &i);
        int lo = cp < 0x80 ? (cp >= 'a' && cp <= 'z') : unicase_islower(cp);
        int up = cp < 0x80 ? (cp >= 'A' && cp <= 'Z') : unicase_isupper(cp);
        int ti = cp >= 0x80 && unicase_istitle(cp);
        if ((upper ? lo : up) || ti)
            return 0;
        if (upper ? up : lo)
            cased = 1;
    }
    *res = cased;
    return 0;
}

/* Long on purpose: One case per jinja2 test (jinja2/tests.py), a dispatch table kept as one
 * switch. */
static int call_test_id(jx *x, int tid, const jv *value, const callargs *a, int *res)
{
    const jv *v = value;
    TRY(step(x));
    *res = 0;
    if (tid == T_DIVISIBLEBY || tid == T_SAMEAS || tid == T_IN || tid >= T_EQ) {
        static const char *const num[] = {"num"}, *const other[] = {"other"},
                                 *const seq[] = {"seq"};
        jv slot[1];
        int given[1];
        if (tid >= T_EQ) {
            TRY(pos_args(a, 1, 1)); /* operator.eq and friends: positional only */
            slot[0] = a->pos[0];
        } else {
            TRY(bind_args(a,
                          tid == T_DIVISIBLEBY ? num
                          : tid == T_SAMEAS    ? other
                                               : seq,
                          1, 1, slot, given));
        }
        const jv *o = &slot[0];
        switch (tid) {
        case T_DIVISIBLEBY:
            return mod_is(x, v, o, 0, res);
        case T_SAMEAS:
            if (v->k == K_NONE || o->k == K_NONE || v->k == K_BOOL || o->k == K_BOOL) {
                *res = v->k == o->k && (v->k == K_NONE || v->u.i == o->u.i);
                return 0;
            }
            return R_UNSUP; /* identity of other objects */
        case T_IN:
            return py_contains(x, o, v, res);
        case T_EQ:
        case T_NE:
            TRY(py_eq(x, v, o, res, 0));
            if (tid == T_NE)
                *res = !*res;
            return 0;
        default:
            return py_order(x, v, o,
                            tid == T_GT   ? CMP_GT
                            : tid == T_GE ? CMP_GE
                            : tid == T_LT ? CMP_LT
                                          : CMP_LE,
                            res, 0);
        }
    }
    if (tid == T_CALLABLE)
        TRY(pos_args(a, 0, 0));
    else if (a->npos > 0 || a->nkw > 0)
        return R_RAISE; /* takes 1 positional argument */
    switch (tid) {
    case T_ODD:
        return mod_is(x, v, &(jv){K_INT, 0, 0, 0, {.i = 2}}, 1, res);
    case T_EVEN:
        return mod_is(x, v, &(jv){K_INT, 0, 0, 0, {.i = 2}}, 0, res);
    case T_DEFINED:
        *res = v->k != K_UNDEF;
        return 0;
    case T_UNDEFINED:
        *res = v->k == K_UNDEF;
        return 0;
    case T_FILTER:
    case T_TEST:
        if (!py_hashable(v))
            return R_RAISE;
        if (v->k == K_STR)
            *res = tid == T_FILTER ? lookup_filter(v->u.s.p, v->u.s.n) != F_UNKNOWN
                                   : lookup_test(v->u.s.p, v->u.s.n) != T_UNKNOWN;
        return 0;
    case T_NONE:
        *res = v->k == K_NONE;
        return 0;
    case T_BOOLEAN:
        *res = v->k == K_BOOL;
        return 0;
    case T_FALSE:
        *res = v->k == K_BOOL && !v->u.i;
        return 0;
    case T_TRUE:
        *res = v->k == K_BOOL && v->u.i;
        return 0;
    case T_INTEGER:
        *res = v->k == K_INT;
        return 0;
    case T_FLOAT:
        *res = v->k == K_FLOAT;
        return 0;
    case T_LOWER:
    case T_UPPER:
        return case_test(x, v, tid == T_UPPER, res);
    case T_STRING:
        *res = v->k == K_STR;
        return 0;
    case T_MAPPING:
        *res = v->k == K_DICT;
        return 0;
    case T_NUMBER:
        *res = is_num(v);
        return 0;
    case T_SEQUENCE:
        if (v->k == K_LOOP) {
            long long len;
            TRY(loop_length(x, v->u.loop, &len)); /* len() runs, __getitem__ is missing */
            return 0;
        }
        *res = v->k == K_UNDEF || v->k == K_STR || v->k == K_LIST || v->k == K_TUPLE ||
               v->k == K_DICT || v->k == K_RANGE;
        return 0;
    case T_ITERABLE:
        *res = !(v->k == K_NONE || is_num(v) || v->k == K_NS || v->k == K_METHOD);
        return 0;
    case T_CALLABLE:
        *res = v->k == K_METHOD || v->k == K_UNDEF || v->k == K_LOOP;
        return 0;
    case T_ESCAPED:
        *res = v->k == K_UNDEF || (v->k == K_STR && v->markup);
        return 0;
    default:
        return R_UNSUP;
    }
}

/* ---- evaluation --------------------------------------------------------------- */

static const struct {
    const char *name;
    int id;
} GLOBALS[] = {
    {"range", M_RANGE},   {"dict", M_DICT},     {"lipsum", M_LIPSUM},
    {"cycler", M_CYCLER}, {"joiner", M_JOINER}, {"namespace", M_NAMESPACE},
};

/* context.resolve_or_missing: the variables, then jinja2's globals;
 * undefined when neither has the name. */
static int resolve(jx *x, const char *name, size_t len, jv *out)
{
    if (x->vars != NULL) {
        const json_t *j = json_object_getn(x->vars, name, len);
        if (j != NULL) {
            *out = of_json(j);
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof(GLOBALS) / sizeof(GLOBALS[0]); i++) {
        if (bytes_eq(name, len, GLOBALS[i].name))
            return mk_method(x, GLOBALS[i].id, NULL, out);
    }
    *out = mk_undef();
    return 0;
}

static scope *frame_up(scope *sc, int depth)
{
    while (depth-- > 0)
        sc = sc->parent;
    return sc;
}

/* (Re)starts a frame: its slots start as its symbols say (the code
 * generator's enter_frame). A loop body runs in one frame re-entered at
 * every iteration, as Python reuses the same locals. */
static int reenter_frame(jx *x, scope *s)
{
    const syms *info = s->info;
    for (size_t i = 0; i < info->n; i++) {
        const sym *y = &info->v[i];
        if (y->load == LD_PARAM)
            continue;
        s->slot[i] = mk_undef();
        if (y->load == LD_RESOLVE)
            TRY(resolve(x, y->name, y->len, &s->slot[i]));
        else if (y->load == LD_ALIAS)
            s->slot[i] = frame_up(s->parent, y->adepth - 1)->slot[y->aslot];
    }
    return 0;
}

static int enter_frame(jx *x, const syms *info, scope *parent, scope **out)
{
    scope *s = xalloc(x, sizeof(scope));
    if (s == NULL)
        return R_NOROOM;
    s->parent = parent;
    s->info = info;
    s->slot = info->n > 0 ? xalloc(x, info->n * sizeof(jv)) : NULL;
    if (info->n > 0 && s->slot == NULL)
        return R_NOROOM;
    for (size_t i = 0; i < info->n; i++)
        s->slot[i] = mk_undef();
    *out = s;
    return reenter_frame(x, s);
}

static jv *slot_of(scope *sc, const node *n)
{
    return &frame_up(sc, n->fdepth)->slot[n->fslot];
}

static int eval_args(jx *x, scope *sc, const node *n, callargs *a)
{
    memset(a, 0, sizeof(*a));
    if (n->dyn)
        return R_UNSUP; /* *args, **kwargs */
    a->npos = n->nkids;
    a->nkw = n->nkw;
    if (n->nkids > 0) {
        a->pos = xalloc(x, n->nkids * sizeof(jv));
        if (a->pos == NULL)
            return R_NOROOM;
    }
    if (n->nkw > 0) {
        a->kw = xalloc(x, n->nkw * sizeof(jv));
        a->kwname = xalloc(x, n->nkw * sizeof(char *));
        a->kwlen = xalloc(x, n->nkw * sizeof(size_t));
        if (a->kw == NULL || a->kwname == NULL || a->kwlen == NULL)
            return R_NOROOM;
    }
    for (size_t i = 0; i < n->nkids; i++)
        TRY(eval(x, sc, n->kids[i], &a->pos[i]));
    for (size_t i = 0; i < n->nkw; i++) {
        a->kwname[i] = n->kw[i]->name;
        a->kwlen[i] = n->kw[i]->len;
        TRY(eval(x, sc, n->kw[i]->a, &a->kw[i]));
    }
    return 0;
}

/* A filter node on value (its own node evaluated, or the set block's text). */
static int apply_filter(jx *x, scope *sc, const node *n, const jv *value, jv *out)
{
    callargs a;
    TRY(eval_args(x, sc, n, &a));
    if (n->fid == F_UNKNOWN)
        return R_RAISE; /* no filter named ... (found at run time) */
    if (n->fid == F_UNIMPL)
        return R_UNSUP;
    return call_filter_id(x, n->fid, value, &a, out);
}

/* A filter chain whose innermost node has no operand: it takes base. */
static int filter_chain(jx *x, scope *sc, const node *n, const jv *base, jv *out)
{
    jv v = *base;
    if (n->a != NULL)
        TRY(filter_chain(x, sc, n->a, base, &v));
    return apply_filter(x, sc, n, &v, out);
}

static int compare(jx *x, int op, const jv *l, const jv *r, int *res)
{
    switch (op) {
    case TK_EQ:
    case TK_NE:
        if (has_nan(l) || has_nan(r)) {
            *res = op == TK_NE;
            return 0;
        }
        TRY(py_eq(x, l, r, res, 0));
        if (op == TK_NE)
            *res = !*res;
        return 0;
    case TK_LT:
        return py_order(x, l, r, CMP_LT, res, 0);
    case TK_LTEQ:
        return py_order(x, l, r, CMP_LE, res, 0);
    case TK_GT:
        return py_order(x, l, r, CMP_GT, res, 0);
    case TK_GTEQ:
        return py_order(x, l, r, CMP_GE, res, 0);
    case OP_IN:
    case OP_NOTIN:
        TRY(py_contains(x, r, l, res));
        if (op == OP_NOTIN)
            *res = !*res;
        return 0;
    default:
        return R_UNSUP;
    }
}

static int eval_seq(jx *x, scope *sc, const node *n, int kind, jv *out)
{
    jseq *s = new_seq(x, n->nkids);
    if (s == NULL)
        return R_NOROOM;
    for (size_t i = 0; i < n->nkids; i++)
        TRY(eval(x, sc, n->kids[i], &s->v[i]));
    *out = mk_seq(kind, s);
    return 0;
}

static int eval_opt(jx *x, scope *sc, const node *n, jv *out)
{
    if (n == NULL) {
        *out = mk_none();
        return 0;
    }
    return eval(x, sc, n, out);
}

static int fold(jx *x, scope *sc, const node *n, jv *out);

/* Long on purpose: One case per node kind (the interpreter's main switch, as in CPython's
 * ceval): splitting it would scatter the evaluation order. */
static int eval_node(jx *x, scope *sc, const node *n, jv *out)
{
    jv a, b;
    int t;
    TRY(step(x));
    if (x->constmode && (n->t == N_NAME || n->t == N_CALL))
        return R_IMPOSSIBLE;
    switch (n->t) {
    case N_CONST:
        *out = n->val;
        return 0;
    case N_NAME:
        *out = *slot_of(sc, n);
        return 0;
    case N_GETATTR:
        TRY(eval(x, sc, n->a, &a));
        return get_attr(x, &a, n->name, n->len, out);
    case N_GETITEM: {
        TRY(eval(x, sc, n->a, &a));
        const node *k = n->b;
        if (k->t == N_SLICE) {
            jv lo, hi, st;
            TRY(eval_opt(x, sc, k->a, &lo));
            TRY(eval_opt(x, sc, k->b, &hi));
            TRY(eval_opt(x, sc, k->c, &st));
            return get_slice(x, &a, &lo, &hi, &st, !x->constmode, out);
        }
        TRY(eval(x, sc, k, &b));
        return get_item(x, &a, &b, out);
    }
    case N_CALL: {
        callargs ca;
        TRY(eval(x, sc, n->a, &a));
        TRY(eval_args(x, sc, n, &ca));
        return call_value(x, &a, &ca, out);
    }
    case N_FILTER:
        if (x->constmode && !n->cst)
            return R_IMPOSSIBLE; /* unknown, or a filter that takes the context */
        TRY(eval(x, sc, n->a, &a));
        return apply_filter(x, sc, n, &a, out);
    case N_TEST: {
        callargs ca;
        if (x->constmode && n->fid == T_UNKNOWN)
            return R_IMPOSSIBLE;
        TRY(eval(x, sc, n->a, &a));
        TRY(eval_args(x, sc, n, &ca));
        if (n->fid == T_UNKNOWN)
            return R_RAISE;
        TRY(call_test_id(x, n->fid, &a, &ca, &t));
        *out = mk_bool(t);
        return 0;
    }
    case N_NOT:
        TRY(eval(x, sc, n->a, &a));
        TRY(py_truthy(x, &a, &t));
        *out = mk_bool(!t);
        return 0;
    case N_NEG:
    case N_POS:
        TRY(eval(x, sc, n->a, &a));
        return unop(n->t == N_NEG, &a, out);
    case N_BIN:
        if (n->op == TK_POW && !x->constmode && n->a->cst) {
            /* A folded negative number is written back as "-2", and
             * "(-2 ** y)" is Python's -(2 ** y). */
            int rc = fold(x, sc, n->a, &a);
            if (rc != 0 && rc != R_IMPOSSIBLE)
                return rc;
            if (rc == 0 && is_num(&a) && !isnan(num_d(&a)) &&
                (a.k == K_FLOAT ? signbit(a.u.d) != 0 : a.u.i < 0)) {
                if (!isfinite(a.u.d) && a.k == K_FLOAT)
                    return R_RAISE; /* NameError: name 'inf' is not defined */
                jv pos;
                TRY(eval(x, sc, n->b, &b));
                TRY(unop(1, &a, &pos));
                TRY(binop(x, TK_POW, &pos, &b, &a));
                return unop(1, &a, out);
            }
        }
        TRY(eval(x, sc, n->a, &a));
        TRY(eval(x, sc, n->b, &b));
        return binop(x, n->op, &a, &b, out);
    case N_CONCAT: {
        jv *parts = xalloc(x, n->nkids * sizeof(jv));
        if (parts == NULL)
            return R_NOROOM;
        for (size_t i = 0; i < n->nkids; i++)
            TRY(eval(x, sc, n->kids[i], &parts[i]));
        buf bb;
        buf_init(&bb, x->textmax);
        int rc = 0;
        for (size_t i = 0; i < n->nkids && rc == 0; i++)
            rc = py_str(x, &parts[i], &bb);
        if (rc == 0)
            rc = buf_str(x, &bb, out);
        buf_free(&bb);
        return rc;
    }
    case N_COMPARE:
        TRY(eval(x, sc, n->a, &a));
        for (size_t i = 0; i < n->nkids; i++) {
            TRY(eval(x, sc, n->kids[i]->a, &b));
            TRY(compare(x, n->kids[i]->op, &a, &b, &t));
            if (!t) {
                *out = mk_bool(0);
                return 0;
            }
            a = b;
        }
        *out = mk_bool(1);
        return 0;
    case N_AND:
    case N_OR:
        TRY(eval(x, sc, n->a, &a));
        TRY(py_truthy(x, &a, &t));
        if (t == (n->t == N_OR)) {
            *out = a;
            return 0;
        }
        return eval(x, sc, n->b, out);
    case N_COND:
        TRY(eval(x, sc, n->a, &a));
        TRY(py_truthy(x, &a, &t));
        if (t)
            return eval(x, sc, n->b, out);
        if (n->c != NULL)
            return eval(x, sc, n->c, out);
        if (x->constmode)
            return R_IMPOSSIBLE;
        *out = mk_undef();
        return 0;
    case N_TUPLE:
        return eval_seq(x, sc, n, K_TUPLE, out);
    case N_LIST:
        return eval_seq(x, sc, n, K_LIST, out);
    case N_DICT: {
        TRY(new_dict(x, out));
        for (size_t i = 0; i < n->nkids; i++) {
            TRY(eval(x, sc, n->kids[i]->a, &a));
            TRY(eval(x, sc, n->kids[i]->b, &b));
            if (a.k != K_STR)
                return py_hashable(&a) ? R_UNSUP : R_RAISE;
            TRY(dict_set(x, out->u.dict, a, b));
        }
        return 0;
    }
    default:
        return R_UNSUP;
    }
}

/* compiler.has_safe_repr: what jinja2 can write back into its generated code. */
static int safe_repr(const jv *v)
{
    switch (v->k) {
    case K_NONE:
    case K_BOOL:
    case K_INT:
    case K_FLOAT:
    case K_STR:
    case K_RANGE:
        return 1;
    case K_LIST:
    case K_TUPLE:
        if (v->isj)
            return 1;
        for (size_t i = 0; i < seq_len(v); i++) {
            jv item = seq_at(v, i);
            if (!safe_repr(&item))
                return 0;
        }
        return 1;
    case K_DICT:
        if (v->isj)
            return 1;
        for (size_t i = 0; i < v->u.dict->n; i++) {
            if (!safe_repr(&v->u.dict->vals[i]))
                return 0;
        }
        return 1;
    default:
        return 0;
    }
}

/* A float that is inf or nan somewhere in v (JSON holds none). */
static int has_nonfinite(const jv *v)
{
    if (v->k == K_FLOAT)
        return !isfinite(v->u.d);
    if ((v->k == K_LIST || v->k == K_TUPLE) && !v->isj) {
        for (size_t i = 0; i < seq_len(v); i++) {
            if (has_nonfinite(&v->u.seq->v[i]))
                return 1;
        }
    }
    if (v->k == K_DICT && !v->isj) {
        for (size_t i = 0; i < v->u.dict->n; i++) {
            if (has_nonfinite(&v->u.dict->vals[i]))
                return 1;
        }
    }
    return 0;
}

/* Evaluates n in constant mode: 0 with *out, R_IMPOSSIBLE when jinja2 would
 * not fold it (its as_const raises), or R_UNSUP / R_NOROOM. */
static int fold(jx *x, scope *sc, const node *n, jv *out)
{
    int saved = x->constmode;
    x->constmode = 1;
    int rc = eval_node(x, sc, n, out);
    x->constmode = saved;
    return rc == R_RAISE ? R_IMPOSSIBLE : rc;
}

/* Evaluates n as jinja2's generated code does. jinja2 folds constant
 * subexpressions at compile time and writes the value back into Python
 * source (when it has a safe repr): the value is the same, except that a
 * float inf or nan is written as a bare `inf` / `nan`, a NameError when that
 * code runs. Slices of constants that raise are not folded (their value,
 * undefined, has no safe repr) and raise at run time. */
static int eval(jx *x, scope *sc, const node *n, jv *out)
{
    if (x->constmode)
        return eval_node(x, sc, n, out);
    if (n->t == N_CONST) {
        TRY(step(x));
        if (has_nonfinite(&n->val))
            return R_RAISE; /* NameError: name 'inf' is not defined */
        *out = n->val;
        return 0;
    }
    if (n->cst) {
        int rc = fold(x, sc, n, out);
        if (rc == 0 && safe_repr(out))
            return has_nonfinite(out) ? R_RAISE : 0;
        if (rc != 0 && rc != R_IMPOSSIBLE)
            return rc;
    }
    return eval_node(x, sc, n, out);
}

/* ---- statements --------------------------------------------------------------- */

static int assign(jx *x, scope *sc, const node *target, const jv *v)
{
    if (target->t == N_NAME) {
        *slot_of(sc, target) = *v;
        return 0;
    }
    if (target->t == N_NSREF) {
        jv ns = *slot_of(sc, target);
        if (ns.k != K_NS)
            return R_RAISE; /* cannot assign attribute on non-namespace object */
        return dict_set(x, &ns.u.ns->attrs, mk_str(target->attr, target->alen), *v);
    }
    /* a tuple: unpack, as Python's iter() and next() */
    jiter *it;
    jv *items = xalloc(x, (target->nkids + 1) * sizeof(jv));
    if (items == NULL)
        return R_NOROOM;
    TRY(it_open(x, v, &it));
    for (size_t i = 0; i <= target->nkids; i++) {
        int has;
        TRY(it_next(x, it, &items[i], &has));
        if (!has) {
            if (i < target->nkids)
                return R_RAISE; /* not enough values to unpack */
            break;
        }
        if (i == target->nkids)
            return R_RAISE; /* too many values to unpack */
    }
    for (size_t i = 0; i < target->nkids; i++)
        TRY(assign(x, sc, target->kids[i], &items[i]));
    return 0;
}

static int exec_body(jx *x, scope *sc, node *const *body, size_t n);

static int exec_for(jx *x, scope *sc, const node *n)
{
    jv iterable;
    jiter *it;
    TRY(eval(x, sc, n->b, &iterable));
    TRY(it_open(x, &iterable, &it));
    if (n->c != NULL) {
        jiter *test;
        TRY(it_new(x, IT_TEST, &iterable, &test));
        test->in = it;
        test->test = n->c;
        test->target = n->a;
        test->sc = sc;
        test->tinfo = n->ftest;
        it = test;
        iterable = iter_value(test);
    }
    jloop *l = xalloc(x, sizeof(jloop));
    if (l == NULL)
        return R_NOROOM;
    memset(l, 0, sizeof(*l));
    l->it = it;
    l->iterable = iterable;
    l->index0 = -1;
    l->before = l->current = mk_undef();
    jv lv = mk_undef();
    lv.k = K_LOOP;
    lv.u.loop = l;
    int iterated = 0;
    scope *body = NULL;
    for (;;) {
        jv item;
        int has;
        TRY(loop_next(x, l, &item, &has));
        if (!has)
            break;
        if (body == NULL)
            TRY(enter_frame(x, n->fbody, sc, &body));
        else
            TRY(reenter_frame(x, body));
        TRY(assign(x, body, n->a, &item));
        if (n->loopslot >= 0)
            body->slot[n->loopslot] = lv;
        TRY(exec_body(x, body, n->body, n->nbody));
        iterated = 1;
    }
    if (!iterated && n->nels > 0) {
        scope *els;
        TRY(enter_frame(x, n->felse, sc, &els));
        TRY(exec_body(x, els, n->els, n->nels));
    }
    return 0;
}

/* {{ ... }} and template data: each child printed with str(). */
static int exec_output(jx *x, scope *sc, const node *n)
{
    jv v;
    for (size_t i = 0; i < n->nkids; i++) {
        const node *k = n->kids[i];
        if (k->t == N_DATA) {
            TRY(put(x->out, k->name, k->len));
            continue;
        }
        /* a constant child is printed at compile time, whatever its value */
        int rc = k->cst ? fold(x, sc, k, &v) : R_IMPOSSIBLE;
        if (rc == R_IMPOSSIBLE)
            rc = eval(x, sc, k, &v);
        TRY(rc);
        TRY(py_str(x, &v, x->out));
    }
    return 0;
}

/* {% if %} ... {% elif %} ... {% else %}: the first true branch runs. */
static int exec_if(jx *x, scope *sc, const node *n)
{
    jv v;
    int t;
    TRY(eval(x, sc, n->a, &v));
    TRY(py_truthy(x, &v, &t));
    if (t)
        return exec_body(x, sc, n->body, n->nbody);
    for (size_t i = 0; i < n->nelifs; i++) {
        const node *e = n->elifs[i];
        TRY(eval(x, sc, e->a, &v));
        TRY(py_truthy(x, &v, &t));
        if (t)
            return exec_body(x, sc, e->body, e->nbody);
    }
    return exec_body(x, sc, n->els, n->nels);
}

/* {% set name | filters %}body{% endset %}: the body's output, filtered,
 * assigned. */
static int exec_setblock(jx *x, scope *sc, const node *n)
{
    jv v;
    scope *inner;
    buf b, *saved = x->out;
    TRY(enter_frame(x, n->fbody, sc, &inner));
    buf_init(&b, x->textmax);
    x->out = &b;
    int rc = exec_body(x, inner, n->body, n->nbody);
    x->out = saved;
    if (rc == 0)
        rc = buf_str(x, &b, &v);
    buf_free(&b);
    TRY(rc);
    if (n->c != NULL)
        TRY(filter_chain(x, inner, n->c, &v, &v));
    return assign(x, sc, n->a, &v);
}

static int exec_node(jx *x, scope *sc, const node *n)
{
    jv v;
    TRY(step(x));
    switch (n->t) {
    case N_OUTPUT:
        return exec_output(x, sc, n);
    case N_IF:
        return exec_if(x, sc, n);
    case N_FOR:
        return exec_for(x, sc, n);
    case N_SET:
        TRY(eval(x, sc, n->b, &v));
        return assign(x, sc, n->a, &v);
    case N_SETBLOCK:
        return exec_setblock(x, sc, n);
    default:
        return R_UNSUP;
    }
}

static int exec_body(jx *x, scope *sc, node *const *body, size_t n)
{
    for (size_t i = 0; i < n; i++)
        TRY(exec_node(x, sc, body[i]));
    return 0;
}

/* ---- what jinja2's code generator refuses --------------------------------------- */

/* Which nodes jinja2 may fold (nodes.Node.as_const): none below a name or a
 * call, a filter that takes the context, an unknown filter or test; and/or
 * and conditional expressions as soon as what they test is constant (they
 * fold without looking at a branch they do not take). */
static int set_cst(node *n)
{
    if (n == NULL)
        return 1;
    int all = 1;
    all &= set_cst(n->a);
    all &= set_cst(n->b);
    all &= set_cst(n->c);
    for (size_t i = 0; i < n->nkids; i++)
        all &= set_cst(n->kids[i]);
    for (size_t i = 0; i < n->nkw; i++)
        all &= set_cst(n->kw[i]);
    for (size_t i = 0; i < n->nbody; i++)
        (void)set_cst(n->body[i]);
    for (size_t i = 0; i < n->nelifs; i++)
        (void)set_cst(n->elifs[i]);
    for (size_t i = 0; i < n->nels; i++)
        (void)set_cst(n->els[i]);
    switch (n->t) {
    case N_CONST:
        n->cst = 1;
        break;
    case N_NAME:
    case N_CALL:
    case N_NSREF:
    case N_DATA:
    case N_OUTPUT:
    case N_IF:
    case N_FOR:
    case N_SET:
    case N_SETBLOCK:
        n->cst = 0;
        break;
    case N_FILTER:
        n->cst = all && n->a != NULL && !n->dyn && n->fid != F_UNKNOWN && n->fid != F_MAP &&
                 n->fid != F_SELECT && n->fid != F_REJECT && n->fid != F_SELECTATTR &&
                 n->fid != F_REJECTATTR && !bytes_eq(n->name, n->len, "random");
        break;
    case N_TEST:
        n->cst = all && !n->dyn && n->fid != T_UNKNOWN;
        break;
    case N_AND:
    case N_OR:
    case N_COND:
    case N_COMPARE:
        n->cst = n->a->cst; /* they stop at the first operand that decides */
        break;
    default:
        n->cst = all;
        break;
    }
    return n->cst;
}

static int check_list(jx *x, node *const *v, size_t n, int soft);
static int fold(jx *x, scope *sc, const node *n, jv *out);
static int safe_repr(const jv *v);

/* Is "loop" assigned anywhere below n (a for loop's target or body)? */
static int stores_loop(const node *n)
{
    if (n == NULL)
        return 0;
    if (n->t == N_NAME)
        return n->store && bytes_eq(n->name, n->len, "loop");
    if (stores_loop(n->a) || stores_loop(n->b) || stores_loop(n->c))
        return 1;
    node *const *lists[4] = {n->kids, n->body, n->els, n->elifs};
    size_t counts[4] = {n->nkids, n->nbody, n->nels, n->nelifs};
    for (int l = 0; l < 4; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            if (stores_loop(lists[l][i]))
                return 1;
        }
    }
    return 0;
}

/* A filter or test jinja2 does not know, below n. */
static int has_unknown(const node *n)
{
    if (n == NULL)
        return 0;
    if ((n->t == N_FILTER && n->fid == F_UNKNOWN) || (n->t == N_TEST && n->fid == T_UNKNOWN))
        return 1;
    if (has_unknown(n->a) || has_unknown(n->b) || has_unknown(n->c))
        return 1;
    for (size_t i = 0; i < n->nkids; i++) {
        if (has_unknown(n->kids[i]))
            return 1;
    }
    for (size_t i = 0; i < n->nkw; i++) {
        if (has_unknown(n->kw[i]))
            return 1;
    }
    return 0;
}

/* An expression as the code generator meets it. A subexpression jinja2
 * folds at compile time (as_const succeeds with a value it can write back:
 * safe_repr; a whole child of an output: any value) is never generated, and
 * what it holds cannot fail to compile: `{{ none and x is nosuch }}` renders.
 * Otherwise an unknown filter or test fails to compile, except inside an if
 * statement or a conditional expression ("soft" frames), where it fails when
 * it is called. */
static int check_expr(jx *x, const node *n, int soft, int top)
{
    if (n == NULL)
        return 0;
    if (n->cst && has_unknown(n)) {
        jv v;
        int rc = fold(x, NULL, n, &v);
        if (rc == 0 && (top || safe_repr(&v)))
            return 0;
        if (rc != 0 && rc != R_IMPOSSIBLE)
            return rc;
    }
    if (!soft &&
        ((n->t == N_FILTER && n->fid == F_UNKNOWN) || (n->t == N_TEST && n->fid == T_UNKNOWN)))
        return R_RAISE; /* no filter (test) named ... */
    if (n->t == N_COND)
        soft = 1;
    TRY(check_expr(x, n->a, soft, 0));
    TRY(check_expr(x, n->b, soft, 0));
    TRY(check_expr(x, n->c, soft, 0));
    for (size_t i = 0; i < n->nkids; i++)
        TRY(check_expr(x, n->kids[i], soft, 0));
    for (size_t i = 0; i < n->nkw; i++)
        TRY(check_expr(x, n->kw[i], soft, 0));
    return 0;
}

/* What jinja2's code generator refuses, statement by statement: a for
 * loop's body, test and else, and a set block's body, are new (not soft)
 * frames. */
static int check(jx *x, const node *n, int soft)
{
    switch (n->t) {
    case N_OUTPUT:
        for (size_t i = 0; i < n->nkids; i++)
            TRY(check_expr(x, n->kids[i], soft, 1));
        return 0;
    case N_IF:
        TRY(check_expr(x, n->a, 1, 0));
        TRY(check_list(x, n->body, n->nbody, 1));
        for (size_t i = 0; i < n->nelifs; i++)
            TRY(check(x, n->elifs[i], 1));
        return check_list(x, n->els, n->nels, 1);
    case N_FOR:
        if (stores_loop(n))
            return R_RAISE; /* can't assign to special loop variable */
        TRY(check_expr(x, n->b, soft, 0));
        TRY(check_expr(x, n->c, 0, 0));
        TRY(check_list(x, n->body, n->nbody, 0));
        return check_list(x, n->els, n->nels, 0);
    case N_SET:
        return check_expr(x, n->b, soft, 0);
    case N_SETBLOCK:
        TRY(check_list(x, n->body, n->nbody, 0));
        return check_expr(x, n->c, 0, 0);
    default:
        return 0;
    }
}

static int check_list(jx *x, node *const *v, size_t n, int soft)
{
    for (size_t i = 0; i < n; i++)
        TRY(check(x, v[i], soft));
    return 0;
}

/* ---- scoping: jinja2's symbol tables ----------------------------------------------- */

static int sym_find(const syms *S, const char *name, size_t len)
{
    for (size_t i = 0; i < S->n; i++) {
        if (S->v[i].len == len && memcmp(S->v[i].name, name, len) == 0)
            return (int)i;
    }
    return -1;
}

/* Symbols.find_ref: the frame (levels up) and slot of name, or 0. */
static int find_ref(const syms *S, const char *name, size_t len, int *depth, int *slot)
{
    for (int d = 0; S != NULL; S = S->parent, d++) {
        int i = sym_find(S, name, len);
        if (i >= 0) {
            *depth = d;
            *slot = i;
            return 1;
        }
    }
    return 0;
}

/* Adds name with the load instruction ld, or changes it; its index. */
static int sym_define(jx *x, syms *S, const char *name, size_t len, int ld, int *idx)
{
    int i = sym_find(S, name, len);
    if (i < 0) {
        if (S->n == S->cap) {
            size_t cap = S->cap > 0 ? S->cap * 2 : 8;
            sym *nv = xalloc(x, cap * sizeof(sym));
            if (nv == NULL)
                return R_NOROOM;
            if (S->n > 0)
                memcpy(nv, S->v, S->n * sizeof(sym));
            S->v = nv;
            S->cap = cap;
        }
        i = (int)S->n++;
        memset(&S->v[i], 0, sizeof(sym));
        S->v[i].name = name;
        S->v[i].len = len;
    }
    S->v[i].load = ld;
    if (idx != NULL)
        *idx = i;
    return 0;
}

static int sym_load(jx *x, syms *S, const char *name, size_t len)
{
    int d, i;
    if (find_ref(S, name, len, &d, &i))
        return 0;
    return sym_define(x, S, name, len, LD_RESOLVE, NULL);
}

static int outer_ld(const syms *S, const char *name, size_t len, int otherwise)
{
    int d, i;
    return S->parent != NULL && find_ref(S->parent, name, len, &d, &i) ? LD_ALIAS : otherwise;
}

static int sym_store(jx *x, syms *S, const char *name, size_t len)
{
    int i = sym_find(S, name, len);
    if (i < 0)
        TRY(sym_define(x, S, name, len, outer_ld(S, name, len, LD_UNDEF), &i));
    S->v[i].stored = 1;
    return 0;
}

static int sym_param(jx *x, syms *S, const char *name, size_t len, int *idx)
{
    int i;
    TRY(sym_define(x, S, name, len, LD_PARAM, &i));
    S->v[i].stored = 1;
    if (idx != NULL)
        *idx = i;
    return 0;
}

static int syms_copy(jx *x, const syms *S, syms *out)
{
    *out = *S;
    out->cap = S->n;
    out->v = S->n > 0 ? xalloc(x, S->n * sizeof(sym)) : NULL;
    if (S->n > 0 && out->v == NULL)
        return R_NOROOM;
    if (S->n > 0)
        memcpy(out->v, S->v, S->n * sizeof(sym));
    return 0;
}

/* Symbols.branch_update: the branches of an if merged back; a name assigned
 * in some branches only starts as the enclosing frame has it, or resolved. */
static int branch_update(jx *x, syms *S, syms *br, int nbr)
{
    size_t before = S->n;
    int *was_stored = before > 0 ? xalloc(x, before * sizeof(int)) : NULL;
    if (before > 0 && was_stored == NULL)
        return R_NOROOM;
    for (size_t i = 0; i < before; i++)
        was_stored[i] = S->v[i].stored;
    for (int b = 0; b < nbr; b++) {
        for (size_t k = 0; k < br[b].n; k++) {
            const sym *y = &br[b].v[k];
            int i;
            int old = sym_find(S, y->name, y->len);
            int stored = y->stored || (old >= 0 && S->v[old].stored);
            TRY(sym_define(x, S, y->name, y->len, y->load, &i));
            S->v[i].stored = stored;
        }
    }
    for (size_t i = 0; i < S->n; i++) {
        const sym *y = &S->v[i];
        if (i < before && was_stored[i])
            continue;
        int count = 0;
        for (int b = 0; b < nbr; b++) {
            int k = sym_find(&br[b], y->name, y->len);
            count += k >= 0 && br[b].v[k].stored;
        }
        if (count > 0 && count < nbr)
            S->v[i].load = outer_ld(S, y->name, y->len, LD_RESOLVE);
    }
    return 0;
}

/* FrameSymbolVisitor over an expression: loads, and stores of targets. */
static int fsv_expr(jx *x, syms *S, const node *n)
{
    if (n == NULL)
        return 0;
    if (n->t == N_NAME) {
        if (!n->store && bytes_eq(n->name, n->len, "self"))
            return R_UNSUP; /* the TemplateReference */
        return n->store ? sym_store(x, S, n->name, n->len) : sym_load(x, S, n->name, n->len);
    }
    if (n->t == N_NSREF)
        return sym_load(x, S, n->name, n->len);
    TRY(fsv_expr(x, S, n->a));
    TRY(fsv_expr(x, S, n->b));
    TRY(fsv_expr(x, S, n->c));
    for (size_t i = 0; i < n->nkids; i++)
        TRY(fsv_expr(x, S, n->kids[i]));
    for (size_t i = 0; i < n->nkw; i++)
        TRY(fsv_expr(x, S, n->kw[i]));
    return 0;
}

static int fsv_params(jx *x, syms *S, const node *t)
{
    if (t->t == N_NAME)
        return sym_param(x, S, t->name, t->len, NULL);
    for (size_t i = 0; i < t->nkids; i++)
        TRY(fsv_params(x, S, t->kids[i]));
    return 0;
}

static int fsv_body(jx *x, syms *S, node *const *v, size_t n);

static int fsv_if(jx *x, syms *S, const node *n)
{
    syms br[3];
    TRY(fsv_expr(x, S, n->a));
    for (int b = 0; b < 3; b++)
        TRY(syms_copy(x, S, &br[b]));
    TRY(fsv_body(x, &br[0], n->body, n->nbody));
    for (size_t i = 0; i < n->nelifs; i++)
        TRY(fsv_if(x, &br[1], n->elifs[i]));
    TRY(fsv_body(x, &br[2], n->els, n->nels));
    return branch_update(x, S, br, 3);
}

static int fsv_stmt(jx *x, syms *S, const node *n)
{
    switch (n->t) {
    case N_OUTPUT:
        for (size_t i = 0; i < n->nkids; i++)
            TRY(fsv_expr(x, S, n->kids[i]));
        return 0;
    case N_IF:
        return fsv_if(x, S, n);
    case N_FOR:
        return fsv_expr(x, S, n->b); /* the rest is the loop's own frames */
    case N_SET:
        TRY(fsv_expr(x, S, n->b));
        return fsv_expr(x, S, n->a);
    case N_SETBLOCK:
        return fsv_expr(x, S, n->a);
    default:
        return 0;
    }
}

static int fsv_body(jx *x, syms *S, node *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        TRY(fsv_stmt(x, S, v[i]));
    return 0;
}

/* Binds every name of an expression to its slot (the code generator's
 * symbols.ref: a name no frame knows fails to compile). */
static int bind_expr(const syms *S, node *n)
{
    if (n == NULL)
        return 0;
    if (n->t == N_NAME || n->t == N_NSREF) {
        if (!find_ref(S, n->name, n->len, &n->fdepth, &n->fslot))
            return R_RAISE; /* tried to resolve a name to a reference that was unknown */
        return 0;
    }
    TRY(bind_expr(S, n->a));
    TRY(bind_expr(S, n->b));
    TRY(bind_expr(S, n->c));
    for (size_t i = 0; i < n->nkids; i++)
        TRY(bind_expr(S, n->kids[i]));
    for (size_t i = 0; i < n->nkw; i++)
        TRY(bind_expr(S, n->kw[i]));
    return 0;
}

/* Any load of "loop" below n (find_undeclared for an extended loop). */
static int loads_loop(const node *n)
{
    if (n == NULL)
        return 0;
    if (n->t == N_NAME)
        return !n->store && bytes_eq(n->name, n->len, "loop");
    if (loads_loop(n->a) || loads_loop(n->b) || loads_loop(n->c))
        return 1;
    node *const *lists[5] = {n->kids, n->kw, n->body, n->els, n->elifs};
    size_t counts[5] = {n->nkids, n->nkw, n->nbody, n->nels, n->nelifs};
    for (int l = 0; l < 5; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            if (loads_loop(lists[l][i]))
                return 1;
        }
    }
    return 0;
}

static int new_syms(jx *x, syms *parent, syms **out)
{
    syms *S = xalloc(x, sizeof(syms));
    if (S == NULL)
        return R_NOROOM;
    memset(S, 0, sizeof(*S));
    S->parent = parent;
    *out = S;
    return 0;
}

/* The slots an alias reads from, now that the enclosing frames are known. */
static void bind_aliases(syms *S)
{
    for (size_t i = 0; i < S->n; i++) {
        sym *y = &S->v[i];
        if (y->load == LD_ALIAS && find_ref(S->parent, y->name, y->len, &y->adepth, &y->aslot))
            y->adepth++;
    }
}

static int bind_body(jx *x, syms *S, node *const *v, size_t n);

/* A new frame for body, analyzed, then its names bound. */
static int frame(jx *x, syms *parent, const node *target, int with_loop, node *const *body,
                 size_t n, const node *test, syms **out, int *loopslot)
{
    syms *S;
    TRY(new_syms(x, parent, &S));
    if (target != NULL)
        TRY(fsv_params(x, S, target));
    if (with_loop)
        TRY(sym_param(x, S, "loop", 4, loopslot));
    TRY(fsv_body(x, S, body, n));
    TRY(fsv_expr(x, S, test));
    bind_aliases(S);
    *out = S;
    return 0;
}

static int bind_stmt(jx *x, syms *S, node *n)
{
    switch (n->t) {
    case N_OUTPUT:
        for (size_t i = 0; i < n->nkids; i++)
            TRY(bind_expr(S, n->kids[i]));
        return 0;
    case N_IF:
        TRY(bind_expr(S, n->a));
        TRY(bind_body(x, S, n->body, n->nbody));
        for (size_t i = 0; i < n->nelifs; i++)
            TRY(bind_stmt(x, S, n->elifs[i]));
        return bind_body(x, S, n->els, n->nels);
    case N_FOR: {
        int extended = 0;
        for (size_t i = 0; i < n->nbody && !extended; i++)
            extended = loads_loop(n->body[i]);
        n->loopslot = -1;
        TRY(bind_expr(S, n->b));
        TRY(frame(x, S, n->a, extended, n->body, n->nbody, NULL, &n->fbody, &n->loopslot));
        TRY(bind_expr(n->fbody, n->a));
        TRY(bind_body(x, n->fbody, n->body, n->nbody));
        if (n->nels > 0) {
            TRY(frame(x, S, NULL, 0, n->els, n->nels, NULL, &n->felse, NULL));
            TRY(bind_body(x, n->felse, n->els, n->nels));
        }
        if (n->c != NULL) { /* the target has the same slots there: declared first */
            TRY(frame(x, S, n->a, 0, NULL, 0, n->c, &n->ftest, NULL));
            TRY(bind_expr(n->ftest, n->c));
        }
        return 0;
    }
    case N_SET:
        TRY(bind_expr(S, n->b));
        return bind_expr(S, n->a);
    case N_SETBLOCK:
        TRY(bind_expr(S, n->a));
        TRY(frame(x, S, NULL, 0, n->body, n->nbody, NULL, &n->fbody, NULL));
        TRY(bind_body(x, n->fbody, n->body, n->nbody));
        return bind_expr(n->fbody, n->c); /* the filter: only what the body knows */
    default:
        return 0;
    }
}

static int bind_body(jx *x, syms *S, node *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        TRY(bind_stmt(x, S, v[i]));
    return 0;
}

/* ---- the render --------------------------------------------------------------- */

/* The source as the lexer reads it: "\r\n" and "\r" made "\n", and one
 * newline at the very end dropped (keep_trailing_newline is off). */
static int normalize(jx *x, const char *text, size_t len, const char **src, size_t *n)
{
    char *s = xalloc(x, len + 1);
    if (s == NULL)
        return R_NOROOM;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\r') {
            if (i + 1 < len && text[i + 1] == '\n')
                i++;
            s[k++] = '\n';
        } else {
            s[k++] = text[i];
        }
    }
    if (k > 0 && s[k - 1] == '\n')
        k--;
    s[k] = 0;
    *src = s;
    *n = k;
    return 0;
}

static int render(jx *x, const char *text, size_t len)
{
    parser P;
    nlist body = {0};
    scope *root;
    memset(&P, 0, sizeof(P));
    P.x = x;
    P.L.x = x;
    P.L.mode = LX_ROOT;
    TRY(normalize(x, text, len, &P.L.s, &P.L.n));
    TRY(p_advance(&P));
    TRY(subparse(&P, NULL, &body));
    for (size_t i = 0; i < body.n; i++)
        (void)set_cst(body.v[i]);
    TRY(check_list(x, body.v, body.n, 0));
    syms *top;
    TRY(frame(x, NULL, NULL, 0, body.v, body.n, NULL, &top, NULL));
    TRY(bind_body(x, top, body.v, body.n));
    TRY(enter_frame(x, top, NULL, &root));
    return exec_body(x, root, body.v, body.n);
}

int jinja_render(buf *out, const char *text, size_t len, const json_t *vars)
{
    jx x;
    if (vars != NULL && !json_is_object(vars))
        return JINJA_UNSUPPORTED;
    if (!pyfmt_utf8_valid(text, len))
        return JINJA_UNSUPPORTED;
    if (vars != NULL && json_object_getn(vars, "self", 4) != NULL)
        return JINJA_RAISES; /* render() got multiple values for argument 'self' */
    memset(&x, 0, sizeof(x));
    x.vars = vars;
    x.textmax = out->max;
    x.ar.max =
        out->max > (SIZE_MAX - ((size_t)1 << 20)) / 4 ? SIZE_MAX : out->max * 4 + ((size_t)1 << 20);
    x.out = out;
    size_t start = out->len;
    int rc = render(&x, text, len);
    if (rc != 0) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = 0;
    }
    arena_free(&x.ar);
    return rc;
}
