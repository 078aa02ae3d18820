/* schema.c -- checks JSON values against schemas in a compact notation.
 *
 * Loading turns every schema into its object form (a short string such as
 * "string?" or "@template" becomes {"type": "string", "nullable": true} or
 * {"ref": "template"}) and checks the notation once, so a typo in a schema
 * fails when the set is loaded, not when a request happens to reach it.
 * Checking walks the value and the schema together, keeping the current
 * location in a JSON array used as a stack; each problem becomes one
 * FastAPI-style error object, until SCHEMA_MAX_ERRORS of them. An anyOf
 * tries each member into a scratch array and keeps the errors only when no
 * member passes. The walk goes as deep as the value; a depth bound stops a
 * reference that loops without descending into the value.
 */
#include "schema.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deepest walk allowed (jansson itself refuses values nested deeper than
 * 2048, so only a looping reference reaches this). */
#define MAX_DEPTH 4096
/* Longest error message built, in bytes. */
#define MAX_MSG 2048

struct schema_set {
    json_t *defs; /* owned: name -> schema in object form */
};

static const char *const KEYWORDS[] = {
    "type",
    "nullable",
    "required",
    "properties",
    "additionalProperties",
    "propertyNames",
    "items",
    "enum",
    "literal",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "union",
    "of",
    "anyOf",
    "ref",
    "optional",
    "title",
    "doc",
    NULL,
};

static const char *const TYPES[] = {
    "object", "array", "string", "integer", "number", "boolean", "null", "any", "datetime", NULL,
};

static int in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(s, list[i]) == 0)
            return 1;
    }
    return 0;
}

/* -- loading -------------------------------------------------------------- */

typedef struct loader {
    const json_t *raw; /* the set as given, to resolve references */
    char *err;
    size_t errlen;
} loader;

static json_t *normalize(loader *l, const json_t *sch, const char *where, int depth);

static json_t *fail(loader *l, const char *where, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(l->err, l->errlen, "schema %s: %s", where, what);
    return NULL;
}

static int check_ref(loader *l, const char *name, const char *where)
{
    if (json_object_get(l->raw, name) == NULL) {
        fail(l, where, "no schema named \"%s\"", name);
        return -1;
    }
    return 0;
}

/* "string?", "@name" ... -> object form. */
static json_t *normalize_short(loader *l, const char *s, const char *where)
{
    char name[128];
    size_t n = strlen(s);
    int nullable = (n > 0 && s[n - 1] == '?');
    if (nullable)
        n--;
    if (n == 0 || n >= sizeof(name))
        return fail(l, where, "bad short form \"%s\"", s);
    memcpy(name, s, n);
    name[n] = '\0';
    json_t *o = NULL;
    if (name[0] == '@') {
        if (check_ref(l, name + 1, where) != 0)
            return NULL;
        o = json_pack("{s:s}", "ref", name + 1);
    } else {
        if (!in_list(name, TYPES))
            return fail(l, where, "unknown type \"%s\"", name);
        o = json_pack("{s:s}", "type", name);
    }
    if (o != NULL && nullable && json_object_set_new(o, "nullable", json_true()) != 0) {
        json_decref(o);
        o = NULL;
    }
    if (o == NULL)
        snprintf(l->err, l->errlen, "out of memory");
    return o;
}

static int is_strings(const json_t *a)
{
    if (!json_is_array(a))
        return 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        if (!json_is_string(json_array_get(a, i)))
            return 0;
    }
    return 1;
}

/* Replaces o[key] (a schema) by its normalized form. */
static int normalize_member(loader *l, json_t *o, const char *key, const char *where, int depth)
{
    char sub[512];
    snprintf(sub, sizeof(sub), "%s.%s", where, key);
    json_t *n = normalize(l, json_object_get(o, key), sub, depth + 1);
    return (n != NULL && json_object_set_new(o, key, n) == 0) ? 0 : -1;
}

/* Normalizes every value of the object o[key] (properties, of). */
static int normalize_map(loader *l, json_t *o, const char *key, const char *where, int depth)
{
    json_t *map = json_object_get(o, key);
    if (!json_is_object(map)) {
        fail(l, where, "%s must be an object", key);
        return -1;
    }
    json_t *copy = json_object();
    if (copy == NULL)
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach(map, k, v)
    {
        char sub[512];
        snprintf(sub, sizeof(sub), "%s.%s.%s", where, key, k);
        json_t *n = normalize(l, v, sub, depth + 1);
        if (n == NULL || json_object_set_new(copy, k, n) != 0) {
            json_decref(copy);
            return -1;
        }
    }
    return json_object_set_new(o, key, copy);
}

static int check_number(loader *l, const json_t *o, const char *key, const char *where)
{
    const json_t *v = json_object_get(o, key);
    if (v != NULL && !json_is_number(v)) {
        fail(l, where, "%s must be a number", key);
        return -1;
    }
    return 0;
}

static int check_count(loader *l, const json_t *o, const char *key, const char *where)
{
    const json_t *v = json_object_get(o, key);
    if (v != NULL && !(json_is_integer(v) && json_integer_value(v) >= 0)) {
        fail(l, where, "%s must be a non-negative integer", key);
        return -1;
    }
    return 0;
}

static json_t *normalize(loader *l, const json_t *sch, const char *where, int depth)
{
    if (depth > 64)
        return fail(l, where, "nested too deep");
    if (json_is_string(sch))
        return normalize_short(l, json_string_value(sch), where);
    if (!json_is_object(sch))
        return fail(l, where, "a schema must be a string or an object");

    json_t *o = json_copy((json_t *)sch);
    if (o == NULL)
        return fail(l, where, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (!in_list(k, KEYWORDS)) {
            fail(l, where, "unknown keyword \"%s\"", k);
            goto bad;
        }
    }

    const json_t *type = json_object_get(o, "type");
    if (json_is_string(type)) {
        if (!in_list(json_string_value(type), TYPES)) {
            fail(l, where, "unknown type \"%s\"", json_string_value(type));
            goto bad;
        }
    } else if (type != NULL) {
        if (!is_strings(type) || json_array_size(type) == 0) {
            fail(l, where, "type must be a type name or a list of them");
            goto bad;
        }
        for (size_t i = 0; i < json_array_size(type); i++) {
            if (!in_list(json_string_value(json_array_get(type, i)), TYPES)) {
                fail(l, where, "unknown type in list");
                goto bad;
            }
        }
    }
    const json_t *nullable = json_object_get(o, "nullable");
    if (nullable != NULL && !json_is_boolean(nullable)) {
        fail(l, where, "nullable must be a boolean");
        goto bad;
    }
    if (json_object_get(o, "properties") != NULL &&
        normalize_map(l, o, "properties", where, depth) != 0)
        goto bad;
    const json_t *req = json_object_get(o, "required");
    if (req != NULL) {
        const json_t *props = json_object_get(o, "properties");
        if (!is_strings(req) || props == NULL) {
            fail(l, where, "required must be a list of names, with properties");
            goto bad;
        }
        for (size_t i = 0; i < json_array_size(req); i++) {
            const char *name = json_string_value(json_array_get(req, i));
            if (json_object_get(props, name) == NULL) {
                fail(l, where, "required \"%s\" is not a property", name);
                goto bad;
            }
        }
    }
    const json_t *addl = json_object_get(o, "additionalProperties");
    if (addl != NULL && !json_is_boolean(addl) &&
        normalize_member(l, o, "additionalProperties", where, depth) != 0)
        goto bad;
    if (json_object_get(o, "propertyNames") != NULL &&
        normalize_member(l, o, "propertyNames", where, depth) != 0)
        goto bad;
    if (json_object_get(o, "items") != NULL && normalize_member(l, o, "items", where, depth) != 0)
        goto bad;
    for (int i = 0; i < 2; i++) {
        const char *key = (i == 0) ? "enum" : "literal";
        const json_t *vals = json_object_get(o, key);
        if (vals != NULL && !(json_is_array(vals) && json_array_size(vals) > 0)) {
            fail(l, where, "%s must be a non-empty list", key);
            goto bad;
        }
    }
    if (check_number(l, o, "minimum", where) != 0 || check_number(l, o, "maximum", where) != 0 ||
        check_number(l, o, "exclusiveMinimum", where) != 0 ||
        check_number(l, o, "exclusiveMaximum", where) != 0 ||
        check_count(l, o, "minLength", where) != 0 || check_count(l, o, "maxLength", where) != 0)
        goto bad;
    const json_t *uni = json_object_get(o, "union");
    if (uni != NULL || json_object_get(o, "of") != NULL) {
        if (!json_is_string(uni) || normalize_map(l, o, "of", where, depth) != 0) {
            if (!json_is_string(uni))
                fail(l, where, "union names the tag member and needs of");
            goto bad;
        }
    }
    json_t *any = json_object_get(o, "anyOf");
    if (any != NULL) {
        if (!json_is_array(any) || json_array_size(any) < 2) {
            fail(l, where, "anyOf must list at least two schemas");
            goto bad;
        }
        json_t *copy = json_array();
        if (copy == NULL || json_object_set_new(o, "anyOf", copy) != 0)
            goto bad;
        for (size_t i = 0; i < json_array_size(any); i++) {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s.anyOf.%zu", where, i);
            json_t *n = normalize(l, json_array_get(any, i), sub, depth + 1);
            if (n == NULL || json_array_append_new(copy, n) != 0)
                goto bad;
        }
    }
    const json_t *ref = json_object_get(o, "ref");
    if (ref != NULL && (!json_is_string(ref) || check_ref(l, json_string_value(ref), where) != 0)) {
        if (!json_is_string(ref))
            fail(l, where, "ref must be a name");
        goto bad;
    }
    const json_t *opt = json_object_get(o, "optional");
    if (opt != NULL && (ref == NULL || !is_strings(opt))) {
        fail(l, where, "optional lists names, with ref");
        goto bad;
    }
    for (int i = 0; i < 2; i++) {
        const json_t *s = json_object_get(o, i == 0 ? "title" : "doc");
        if (s != NULL && !json_is_string(s)) {
            fail(l, where, "title and doc must be strings");
            goto bad;
        }
    }
    return o;
bad:
    json_decref(o);
    return NULL;
}

schema_set *schema_set_new(const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *raw = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (raw == NULL) {
        snprintf(err, errlen, "schemas: line %d: %s", jerr.line, jerr.text);
        return NULL;
    }
    schema_set *set = NULL;
    json_t *defs = NULL;
    loader l = {.raw = raw, .err = err, .errlen = errlen};
    if (!json_is_object(raw)) {
        snprintf(err, errlen, "schemas: the set must be an object of named schemas");
        goto done;
    }
    defs = json_object();
    if (defs == NULL)
        goto oom;
    const char *k;
    json_t *v;
    json_object_foreach(raw, k, v)
    {
        json_t *n = normalize(&l, v, k, 0);
        if (n == NULL)
            goto done;
        if (json_object_set_new(defs, k, n) != 0)
            goto oom;
    }
    set = calloc(1, sizeof(*set));
    if (set == NULL)
        goto oom;
    set->defs = defs;
    defs = NULL;
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
done:
    json_decref(defs);
    json_decref(raw);
    return set;
}

void schema_set_free(schema_set *set)
{
    if (set == NULL)
        return;
    json_decref(set->defs);
    free(set);
}

/* -- errors --------------------------------------------------------------- */

json_t *schema_error(const char *type, json_t *loc, const char *msg, const json_t *input,
                     json_t *ctx)
{
    json_t *e = json_object();
    if (e == NULL) {
        json_decref(loc);
        json_decref(ctx);
        return NULL;
    }
    /* json_object_set_new takes its value over even when it fails. */
    int bad = json_object_set_new(e, "type", json_string(type));
    bad |= json_object_set_new(e, "loc", loc);
    bad |= json_object_set_new(e, "msg", json_string(msg));
    if (input != NULL)
        bad |= json_object_set(e, "input", (json_t *)input);
    if (ctx != NULL)
        bad |= json_object_set_new(e, "ctx", ctx);
    if (bad) {
        json_decref(e);
        return NULL;
    }
    return e;
}

void schema_summary(const json_t *detail, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    size_t n = json_array_size(detail);
    for (size_t i = 0; i < n && i < 3 && used + 1 < len; i++) {
        const json_t *e = json_array_get(detail, i);
        const json_t *loc = json_object_get(e, "loc");
        int w = snprintf(buf + used, len - used, "%s", i > 0 ? "; " : "");
        used += (w > 0) ? (size_t)w : 0;
        for (size_t j = 0; j < json_array_size(loc) && used + 1 < len; j++) {
            const json_t *p = json_array_get(loc, j);
            if (json_is_string(p))
                w = snprintf(buf + used, len - used, "%s%.80s", j > 0 ? "." : "",
                             json_string_value(p));
            else
                w = snprintf(buf + used, len - used, "%s%lld", j > 0 ? "." : "",
                             (long long)json_integer_value(p));
            used += (w > 0) ? (size_t)w : 0;
        }
        if (used + 1 < len) {
            w = snprintf(buf + used, len - used, "%s%s", json_array_size(loc) > 0 ? ": " : "",
                         json_string_value(json_object_get(e, "msg")));
            used += (w > 0) ? (size_t)w : 0;
        }
    }
    if (n > 3 && used + 1 < len)
        snprintf(buf + used, len - used, " (and %zu more)", n - 3);
}

/* -- date-times ----------------------------------------------------------- */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return days[m - 1];
}

int schema_parse_datetime(const char *s, const char **why)
{
    size_t n = strlen(s);
    int y = 0;
    int mo = 0;
    int d = 0;
    int hh = 0;
    int mm = 0;
    int ss = 0;
    if (n < 10) {
        *why = "input is too short";
        return -1;
    }
    if (digits(s, 4, &y) != 0) {
        *why = "invalid character in year";
        return -1;
    }
    if (s[4] != '-' || s[7] != '-') {
        *why = "invalid date separator, expected `-`";
        return -1;
    }
    if (digits(s + 5, 2, &mo) != 0) {
        *why = "invalid character in month";
        return -1;
    }
    if (digits(s + 8, 2, &d) != 0) {
        *why = "invalid character in day";
        return -1;
    }
    if (mo < 1 || mo > 12) {
        *why = "month value is outside expected range of 1-12";
        return -1;
    }
    if (d < 1 || d > days_in_month(y, mo)) {
        *why = "day value is outside expected range";
        return -1;
    }
    if (n < 16) {
        *why = "input is too short";
        return -1;
    }
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') {
        *why = "invalid datetime separator, expected `T`, `t` or space";
        return -1;
    }
    const char *p = s + 11;
    if (digits(p, 2, &hh) != 0) {
        *why = "invalid character in hour";
        return -1;
    }
    if (p[2] != ':') {
        *why = "invalid time separator, expected `:`";
        return -1;
    }
    if (digits(p + 3, 2, &mm) != 0) {
        *why = "invalid character in minute";
        return -1;
    }
    if (hh > 23) {
        *why = "hour value is outside expected range of 0-23";
        return -1;
    }
    if (mm > 59) {
        *why = "minute value is outside expected range of 0-59";
        return -1;
    }
    p += 5;
    if (*p == ':') {
        if (digits(p + 1, 2, &ss) != 0) {
            *why = "invalid character in second";
            return -1;
        }
        if (ss > 59) {
            *why = "second value is outside expected range of 0-59";
            return -1;
        }
        p += 3;
        if (*p == '.' || *p == ',') {
            p++;
            int nd = 0;
            while (p[nd] >= '0' && p[nd] <= '9')
                nd++;
            if (nd == 0) {
                *why = "invalid character in second fraction";
                return -1;
            }
            if (nd > 6) {
                *why = "second fraction value is more than 6 digits long";
                return -1;
            }
            p += nd;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh = 0;
        int om = 0;
        if (digits(p + 1, 2, &oh) != 0) {
            *why = "invalid timezone hour";
            return -1;
        }
        p += 3;
        if (*p == ':')
            p++;
        if (*p >= '0' && *p <= '9') {
            if (digits(p, 2, &om) != 0) {
                *why = "invalid timezone minute";
                return -1;
            }
            p += 2;
        }
        if (oh > 23 || om > 59) {
            *why = "timezone offset must be less than 24 hours";
            return -1;
        }
    } else if (*p != '\0') {
        *why = "invalid timezone sign";
        return -1;
    }
    if (*p != '\0') {
        *why = "unexpected extra characters at the end of the input";
        return -1;
    }
    return 0;
}

/* -- checking ------------------------------------------------------------- */

typedef struct vctx {
    const json_t *defs;
    json_t *detail; /* borrowed: where errors go */
    json_t *loc;    /* owned: the current location, a stack */
    size_t count;   /* errors in detail */
    int flags;
    int depth;
    int oom;
} vctx;

static int full(const vctx *c)
{
    return c->oom || c->count >= SCHEMA_MAX_ERRORS;
}

static void add_error(vctx *c, const char *type, const char *msg, const json_t *input, json_t *ctx)
{
    if (full(c)) {
        json_decref(ctx);
        return;
    }
    json_t *e = schema_error(type, json_copy(c->loc), msg, input, ctx);
    if (e == NULL || json_array_append_new(c->detail, e) != 0) {
        c->oom = 1;
        return;
    }
    c->count++;
}

static void push(vctx *c, json_t *part)
{
    if (part == NULL || json_array_append_new(c->loc, part) != 0)
        c->oom = 1;
}

static void truncate_loc(vctx *c, size_t mark)
{
    while (json_array_size(c->loc) > mark)
        json_array_remove(c->loc, json_array_size(c->loc) - 1);
}

/* Appends one value as pydantic shows it in "expected": 'text', 5, True. */
static void put_value(char *buf, size_t len, const json_t *v)
{
    size_t used = strlen(buf);
    if (used + 1 >= len)
        return;
    if (json_is_string(v)) {
        snprintf(buf + used, len - used, "'%.200s'", json_string_value(v));
    } else if (json_is_true(v)) {
        snprintf(buf + used, len - used, "True");
    } else if (json_is_false(v)) {
        snprintf(buf + used, len - used, "False");
    } else if (json_is_null(v)) {
        snprintf(buf + used, len - used, "None");
    } else {
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(buf + used, len - used, "%.200s", t != NULL ? t : "?");
        free(t);
    }
}

/* 'a', 'b' or 'c' (or_last) / 'a', 'b', 'c'. */
static void expected_list(char *buf, size_t len, const json_t *vals, int or_last)
{
    buf[0] = '\0';
    size_t n = json_array_size(vals);
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(buf);
        if (i > 0 && used + 1 < len)
            snprintf(buf + used, len - used, "%s", (or_last && i == n - 1) ? " or " : ", ");
        put_value(buf, len, json_array_get(vals, i));
    }
}

static void fmt_number(const json_t *v, char *buf, size_t len)
{
    if (json_is_integer(v)) {
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
        return;
    }
    double d = json_number_value(v);
    if (d > -1e15 && d < 1e15 && (double)(long long)d == d)
        snprintf(buf, len, "%lld", (long long)d);
    else
        snprintf(buf, len, "%g", d);
}

static const char *py_name(const char *type)
{
    static const char *const map[][2] = {
        {"string", "str"},        {"integer", "int"},     {"number", "float"},
        {"boolean", "bool"},      {"array", "list[any]"}, {"object", "dict[str,any]"},
        {"datetime", "datetime"}, {"null", "none"},       {"any", "any"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(type, map[i][0]) == 0)
            return map[i][1];
    }
    return type;
}

static int is_integral_real(const json_t *v)
{
    if (!json_is_real(v))
        return 0;
    double d = json_real_value(v);
    if (d > -9.2e18 && d < 9.2e18)
        return (double)(long long)d == d;
    return 1; /* beyond 2^53 every double is a whole number */
}

static int type_matches(const vctx *c, const char *t, const json_t *v)
{
    if (strcmp(t, "any") == 0)
        return 1;
    if (strcmp(t, "null") == 0)
        return json_is_null(v);
    if (strcmp(t, "object") == 0)
        return json_is_object(v);
    if (strcmp(t, "array") == 0)
        return json_is_array(v);
    if (strcmp(t, "string") == 0)
        return json_is_string(v);
    if (strcmp(t, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v) || ((c->flags & SCHEMA_INTS_AS_REALS) && is_integral_real(v));
    if (strcmp(t, "number") == 0)
        return json_is_number(v);
    if (strcmp(t, "datetime") == 0)
        return json_is_string(v) || json_is_number(v);
    return 0;
}

static void type_error(vctx *c, const json_t *sch, const char *t, const json_t *v)
{
    if (strcmp(t, "string") == 0) {
        add_error(c, "string_type", "Input should be a valid string", v, NULL);
    } else if (strcmp(t, "integer") == 0) {
        add_error(c, "int_type", "Input should be a valid integer", v, NULL);
    } else if (strcmp(t, "number") == 0) {
        add_error(c, "float_type", "Input should be a valid number", v, NULL);
    } else if (strcmp(t, "boolean") == 0) {
        add_error(c, "bool_type", "Input should be a valid boolean", v, NULL);
    } else if (strcmp(t, "array") == 0) {
        add_error(c, "list_type", "Input should be a valid list", v, NULL);
    } else if (strcmp(t, "object") == 0) {
        if (json_object_get(sch, "properties") != NULL)
            add_error(c, "model_attributes_type",
                      "Input should be a valid dictionary or object to extract fields from", v,
                      NULL);
        else
            add_error(c, "dict_type", "Input should be a valid dictionary", v, NULL);
    } else if (strcmp(t, "datetime") == 0) {
        add_error(c, "datetime_type", "Input should be a valid datetime", v, NULL);
    } else if (strcmp(t, "null") == 0) {
        add_error(c, "none_required", "Input should be None", v, NULL);
    }
}

static int allows_null(const json_t *sch)
{
    if (json_is_true(json_object_get(sch, "nullable")))
        return 1;
    const json_t *type = json_object_get(sch, "type");
    if (json_is_string(type))
        return strcmp(json_string_value(type), "null") == 0 ||
               strcmp(json_string_value(type), "any") == 0;
    for (size_t i = 0; i < json_array_size(type); i++) {
        const char *t = json_string_value(json_array_get(type, i));
        if (strcmp(t, "null") == 0 || strcmp(t, "any") == 0)
            return 1;
    }
    /* No type and nothing else that could refuse a null: anything goes. */
    return type == NULL && json_object_get(sch, "ref") == NULL &&
           json_object_get(sch, "enum") == NULL && json_object_get(sch, "literal") == NULL &&
           json_object_get(sch, "union") == NULL && json_object_get(sch, "anyOf") == NULL;
}

static void check(vctx *c, const json_t *sch, const json_t *v, const json_t *optional);

static void check_choice(vctx *c, const json_t *sch, const json_t *v)
{
    int is_enum = json_object_get(sch, "enum") != NULL;
    const json_t *vals = json_object_get(sch, is_enum ? "enum" : "literal");
    for (size_t i = 0; i < json_array_size(vals); i++) {
        if (json_equal(json_array_get(vals, i), (json_t *)v))
            return;
    }
    char exp[MAX_MSG];
    char msg[MAX_MSG + 32];
    expected_list(exp, sizeof(exp), vals, 1);
    snprintf(msg, sizeof(msg), "Input should be %s", exp);
    add_error(c, is_enum ? "enum" : "literal_error", msg, v, json_pack("{s:s}", "expected", exp));
}

static void check_union(vctx *c, const json_t *sch, const json_t *v)
{
    const char *prop = json_string_value(json_object_get(sch, "union"));
    const json_t *of = json_object_get(sch, "of");
    char disc[256];
    char msg[MAX_MSG * 2];
    snprintf(disc, sizeof(disc), "'%.200s'", prop);
    if (!json_is_object(v)) {
        add_error(c, "model_attributes_type",
                  "Input should be a valid dictionary or object to extract fields from", v, NULL);
        return;
    }
    const json_t *tag = json_object_get(v, prop);
    if (tag == NULL) {
        snprintf(msg, sizeof(msg), "Unable to extract tag using discriminator %s", disc);
        add_error(c, "union_tag_not_found", msg, v, json_pack("{s:s}", "discriminator", disc));
        return;
    }
    const json_t *target = json_is_string(tag) ? json_object_get(of, json_string_value(tag)) : NULL;
    if (target != NULL) {
        check(c, target, v, NULL);
        return;
    }
    char tagtext[256];
    if (json_is_string(tag)) {
        snprintf(tagtext, sizeof(tagtext), "%.200s", json_string_value(tag));
    } else {
        char *t = json_dumps(tag, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(tagtext, sizeof(tagtext), "%.200s", t != NULL ? t : "?");
        free(t);
    }
    json_t *names = json_array();
    const char *k;
    json_t *unused;
    json_object_foreach((json_t *)of, k, unused)
    {
        if (names != NULL)
            json_array_append_new(names, json_string(k));
    }
    char exp[MAX_MSG];
    expected_list(exp, sizeof(exp), names, 0);
    json_decref(names);
    snprintf(msg, sizeof(msg),
             "Input tag '%s' found using %s does not match any of the expected tags: %s", tagtext,
             disc, exp);
    add_error(
        c, "union_tag_invalid", msg, v,
        json_pack("{s:s,s:s,s:s}", "discriminator", disc, "tag", tagtext, "expected_tags", exp));
}

static const char *member_title(const json_t *m)
{
    const json_t *t = json_object_get(m, "title");
    if (json_is_string(t))
        return json_string_value(t);
    t = json_object_get(m, "type");
    if (json_is_string(t))
        return py_name(json_string_value(t));
    t = json_object_get(m, "ref");
    if (json_is_string(t))
        return json_string_value(t);
    return "member";
}

static void check_any_of(vctx *c, const json_t *sch, const json_t *v)
{
    const json_t *members = json_object_get(sch, "anyOf");
    json_t *saved = c->detail;
    size_t saved_count = c->count;
    json_t *all = json_array();
    if (all == NULL) {
        c->oom = 1;
        return;
    }
    int passed = 0;
    for (size_t i = 0; i < json_array_size(members) && !passed && !c->oom; i++) {
        const json_t *m = json_array_get(members, i);
        json_t *tmp = json_array();
        if (tmp == NULL) {
            c->oom = 1;
            break;
        }
        c->detail = tmp;
        c->count = 0;
        size_t mark = json_array_size(c->loc);
        push(c, json_string(member_title(m)));
        check(c, m, v, NULL);
        truncate_loc(c, mark);
        passed = (json_array_size(tmp) == 0 && !c->oom);
        if (json_array_extend(all, tmp) != 0)
            c->oom = 1;
        json_decref(tmp);
    }
    c->detail = saved;
    c->count = saved_count;
    for (size_t i = 0; i < json_array_size(all) && !passed && !full(c); i++) {
        if (json_array_append(c->detail, json_array_get(all, i)) != 0)
            c->oom = 1;
        else
            c->count++;
    }
    json_decref(all);
}

static size_t code_points(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            count++;
    }
    return count;
}

static void check_string(vctx *c, const json_t *sch, const json_t *v)
{
    size_t len = code_points(json_string_value(v), json_string_length(v));
    const json_t *max = json_object_get(sch, "maxLength");
    const json_t *min = json_object_get(sch, "minLength");
    char msg[128];
    if (max != NULL && len > (size_t)json_integer_value(max)) {
        long long m = (long long)json_integer_value(max);
        snprintf(msg, sizeof(msg), "String should have at most %lld character%s", m,
                 m == 1 ? "" : "s");
        add_error(c, "string_too_long", msg, v, json_pack("{s:I}", "max_length", (json_int_t)m));
    }
    if (min != NULL && len < (size_t)json_integer_value(min)) {
        long long m = (long long)json_integer_value(min);
        snprintf(msg, sizeof(msg), "String should have at least %lld character%s", m,
                 m == 1 ? "" : "s");
        add_error(c, "string_too_short", msg, v, json_pack("{s:I}", "min_length", (json_int_t)m));
    }
}

static int num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b))
        return (json_integer_value(a) > json_integer_value(b)) -
               (json_integer_value(a) < json_integer_value(b));
    double x = json_number_value(a);
    double y = json_number_value(b);
    return (x > y) - (x < y);
}

static void check_number_bounds(vctx *c, const json_t *sch, const json_t *v)
{
    static const struct {
        const char *key;
        const char *type;
        const char *words;
        const char *ctx;
        int bad_when; /* the value is refused when num_cmp(v, bound) == bad_when or 0 */
        int strict;
    } rules[] = {
        {"minimum", "greater_than_equal", "greater than or equal to", "ge", -1, 0},
        {"exclusiveMinimum", "greater_than", "greater than", "gt", -1, 1},
        {"maximum", "less_than_equal", "less than or equal to", "le", 1, 0},
        {"exclusiveMaximum", "less_than", "less than", "lt", 1, 1},
    };
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        const json_t *bound = json_object_get(sch, rules[i].key);
        if (bound == NULL)
            continue;
        int cmp = num_cmp(v, bound);
        if (cmp != rules[i].bad_when && !(rules[i].strict && cmp == 0))
            continue;
        char num[64];
        char msg[160];
        fmt_number(bound, num, sizeof(num));
        snprintf(msg, sizeof(msg), "Input should be %s %s", rules[i].words, num);
        add_error(c, rules[i].type, msg, v, json_pack("{s:O}", rules[i].ctx, bound));
    }
}

static int listed(const json_t *names, const char *name)
{
    for (size_t i = 0; i < json_array_size(names); i++) {
        if (strcmp(json_string_value(json_array_get(names, i)), name) == 0)
            return 1;
    }
    return 0;
}

static void check_object(vctx *c, const json_t *sch, const json_t *v, const json_t *optional)
{
    const json_t *props = json_object_get(sch, "properties");
    const json_t *req = json_object_get(sch, "required");
    const json_t *addl = json_object_get(sch, "additionalProperties");
    const json_t *names = json_object_get(sch, "propertyNames");
    size_t mark = json_array_size(c->loc);
    const char *k;
    json_t *ps;
    json_object_foreach((json_t *)props, k, ps)
    {
        if (full(c))
            return;
        const json_t *val = json_object_get(v, k);
        push(c, json_string(k));
        if (val != NULL)
            check(c, ps, val, NULL);
        else if (listed(req, k) && !listed(optional, k))
            add_error(c, "missing", "Field required", v, NULL);
        truncate_loc(c, mark);
    }
    if (names == NULL && (addl == NULL || json_is_true(addl)))
        return;
    for (void *it = json_object_iter((json_t *)v); it != NULL && !full(c);
         it = json_object_iter_next((json_t *)v, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        json_t *val = json_object_iter_value(it);
        push(c, json_stringn(key, klen));
        if (names != NULL) {
            json_t *ks = json_stringn(key, klen);
            push(c, json_string("[key]"));
            if (ks != NULL)
                check(c, names, ks, NULL);
            json_decref(ks);
            truncate_loc(c, mark + 1);
        }
        if (props == NULL || json_object_get(props, key) == NULL) {
            if (json_is_false(addl))
                add_error(c, "extra_forbidden", "Extra inputs are not permitted", val, NULL);
            else if (json_is_object(addl))
                check(c, addl, val, NULL);
        }
        truncate_loc(c, mark);
    }
}

static void check_typed(vctx *c, const json_t *sch, const json_t *v, const json_t *optional)
{
    const json_t *type = json_object_get(sch, "type");
    const char *matched = NULL;
    if (type == NULL) {
        matched = "any";
    } else if (json_is_string(type)) {
        if (type_matches(c, json_string_value(type), v))
            matched = json_string_value(type);
    } else {
        for (size_t i = 0; i < json_array_size(type) && matched == NULL; i++) {
            const char *t = json_string_value(json_array_get(type, i));
            if (type_matches(c, t, v))
                matched = t;
        }
    }
    if (matched == NULL) {
        if (json_is_string(type)) {
            type_error(c, sch, json_string_value(type), v);
            return;
        }
        size_t nonnull = 0;
        for (size_t i = 0; i < json_array_size(type); i++)
            nonnull += strcmp(json_string_value(json_array_get(type, i)), "null") != 0;
        for (size_t i = 0; i < json_array_size(type); i++) {
            const char *t = json_string_value(json_array_get(type, i));
            if (strcmp(t, "null") == 0)
                continue;
            size_t mark = json_array_size(c->loc);
            if (nonnull > 1)
                push(c, json_string(py_name(t)));
            type_error(c, sch, t, v);
            truncate_loc(c, mark);
        }
        return;
    }
    if (strcmp(matched, "string") == 0) {
        check_string(c, sch, v);
    } else if (strcmp(matched, "integer") == 0 || strcmp(matched, "number") == 0) {
        check_number_bounds(c, sch, v);
    } else if (strcmp(matched, "array") == 0) {
        const json_t *items = json_object_get(sch, "items");
        for (size_t i = 0; items != NULL && i < json_array_size(v) && !full(c); i++) {
            size_t mark = json_array_size(c->loc);
            push(c, json_integer((json_int_t)i));
            check(c, items, json_array_get(v, i), NULL);
            truncate_loc(c, mark);
        }
    } else if (strcmp(matched, "object") == 0) {
        check_object(c, sch, v, optional);
    } else if (strcmp(matched, "datetime") == 0 && json_is_string(v)) {
        const char *why = NULL;
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            why = "unexpected extra characters at the end of the input";
        } else if (schema_parse_datetime(json_string_value(v), &why) == 0) {
            return;
        }
        char msg[256];
        snprintf(msg, sizeof(msg), "Input should be a valid datetime, %s", why);
        add_error(c, "datetime_parsing", msg, v, json_pack("{s:s}", "error", why));
    }
}

static void check(vctx *c, const json_t *sch, const json_t *v, const json_t *optional)
{
    if (full(c))
        return;
    if (c->depth >= MAX_DEPTH) {
        add_error(c, "recursion_loop", "Recursion error - cyclic reference detected", v, NULL);
        return;
    }
    if (json_is_null(v) && allows_null(sch))
        return;
    c->depth++;
    const json_t *ref = json_object_get(sch, "ref");
    if (ref != NULL) {
        check(c, json_object_get(c->defs, json_string_value(ref)), v,
              json_object_get(sch, "optional"));
    } else if (json_object_get(sch, "enum") != NULL || json_object_get(sch, "literal") != NULL) {
        check_choice(c, sch, v);
    } else if (json_object_get(sch, "union") != NULL) {
        check_union(c, sch, v);
    } else if (json_object_get(sch, "anyOf") != NULL) {
        check_any_of(c, sch, v);
    } else {
        check_typed(c, sch, v, optional);
    }
    c->depth--;
}

int schema_check_at(const schema_set *set, const char *name, const json_t *value, const json_t *loc,
                    int flags, json_t *detail)
{
    const json_t *sch = json_object_get(set->defs, name);
    if (sch == NULL || !json_is_array(detail))
        return -1;
    vctx c = {.defs = set->defs, .detail = detail, .flags = flags};
    c.loc = (loc != NULL) ? json_copy((json_t *)loc) : json_array();
    if (c.loc == NULL)
        return -1;
    check(&c, sch, value, NULL);
    json_decref(c.loc);
    return c.oom ? -1 : (int)c.count;
}

int schema_check(const schema_set *set, const char *name, const json_t *value, const char *loc_root,
                 int flags, json_t *detail)
{
    json_t *loc = (loc_root != NULL) ? json_pack("[s]", loc_root) : json_array();
    if (loc == NULL)
        return -1;
    int n = schema_check_at(set, name, value, loc, flags, detail);
    json_decref(loc);
    return n;
}
