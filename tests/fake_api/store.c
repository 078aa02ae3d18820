/* store.c -- the fake API's prompt templates, in memory.
 *
 * Templates live in one array sorted by id, so the listing walks it from
 * the end. Lookups by name or id are linear scans: a test holds tens or
 * thousands of templates, not millions. Each template owns its `versions`
 * object (canonical decimal keys "1", "2", ... mapping to deep copies of what
 * the caller gave, each checked against the "version_content" schema), its
 * `created` object (the same keys -> the ISO time each version was written)
 * and its `labels` object (label -> integer version); every label points at
 * an existing version, which every edit keeps true. Edits that replace a
 * whole template or the whole state build the new value first and swap it
 * in, so a refused edit changes nothing. Answers are deep copies, so a
 * caller may change them (expand snippets, render) without touching the
 * store.
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snippet.h"
#include "text.h"

#define MAX_VERSION 1000000000000LL

typedef struct tmpl {
    int64_t id;
    char *name;       /* owned */
    json_t *versions; /* owned reference */
    json_t *created;  /* owned reference: version key -> ISO time written */
    json_t *labels;   /* owned reference */
} tmpl;

struct store {
    tmpl *items; /* owned, sorted by id, ids and names unique */
    size_t len;
    size_t cap;
    const schema_set *schemas; /* borrowed */
    json_t *default_pt;        /* owned: STORE_DEFAULT_TEMPLATE */
};

static void tmpl_clear(tmpl *t)
{
    free(t->name);
    json_decref(t->versions);
    json_decref(t->created);
    json_decref(t->labels);
    t->name = NULL;
    t->versions = NULL;
    t->created = NULL;
    t->labels = NULL;
}

store *store_new(const schema_set *schemas)
{
    store *s = calloc(1, sizeof(store));
    if (s == NULL)
        return NULL;
    s->schemas = schemas;
    s->default_pt = json_loads(STORE_DEFAULT_TEMPLATE, 0, NULL);
    if (s->default_pt == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

void store_free(store *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->len; i++)
        tmpl_clear(&s->items[i]);
    free(s->items);
    json_decref(s->default_pt);
    free(s);
}

static char *dup_str(const char *src)
{
    size_t n = strlen(src);
    char *d = malloc(n + 1);
    if (d != NULL)
        memcpy(d, src, n + 1);
    return d;
}

/* Checks a template name or label: non-empty, bounded, valid UTF-8, no NUL
 * (`len` is the full length, which differs from strlen when a NUL hides). */
static store_rc check_name(const char *what, const char *s, size_t len, char *err, size_t errlen)
{
    if (len == 0 || len > STORE_MAX_NAME || strlen(s) != len || !text_utf8_valid(s, len)) {
        snprintf(err, errlen, "%s must be 1 to %d bytes of UTF-8 without NUL", what,
                 STORE_MAX_NAME);
        return STORE_BAD_REQUEST;
    }
    return STORE_OK;
}

static long find_by_name(const store *s, const char *name)
{
    for (size_t i = 0; i < s->len; i++) {
        if (strcmp(s->items[i].name, name) == 0)
            return (long)i;
    }
    return -1;
}

static long find_by_id(const store *s, int64_t id)
{
    for (size_t i = 0; i < s->len; i++) {
        if (s->items[i].id == id)
            return (long)i;
    }
    return -1;
}

/* Highest version number of t, 0 when it has none. */
static int64_t latest_version(const tmpl *t)
{
    int64_t best = 0;
    for (void *it = json_object_iter(t->versions); it != NULL;
         it = json_object_iter_next(t->versions, it)) {
        int64_t v = 0;
        if (text_parse_i64(json_object_iter_key(it), 1, MAX_VERSION, &v) == 0 && v > best)
            best = v;
    }
    return best;
}

static void version_key(int64_t v, char *buf, size_t cap)
{
    snprintf(buf, cap, "%lld", (long long)v);
}

/* Checks a version's content against the "version_content" schema. */
static store_rc check_content(const store *s, const json_t *content, int64_t v, char *err,
                              size_t errlen)
{
    if (!json_is_object(content)) {
        snprintf(err, errlen, "version %lld must be an object", (long long)v);
        return STORE_BAD_REQUEST;
    }
    json_t *detail = json_array();
    if (detail == NULL)
        return STORE_NO_MEMORY;
    int n = schema_check(s->schemas, "version_content", content, NULL, 0, detail);
    if (n > 0) {
        char why[600];
        schema_summary(detail, why, sizeof(why));
        snprintf(err, errlen, "version %lld is not valid: %s", (long long)v, why);
    }
    json_decref(detail);
    if (n < 0)
        return STORE_NO_MEMORY;
    return (n > 0) ? STORE_BAD_REQUEST : STORE_OK;
}

/* Sets created[key] to now. */
static int stamp(json_t *created, const char *key)
{
    char now[40];
    text_iso_now(now, sizeof(now));
    return json_object_set_new(created, key, json_string(now));
}

/* Copies a versions object, checking keys are positive integers (written
 * canonically in the copy) and values valid contents. *out and *created
 * (each version stamped now) are new references. */
static store_rc parse_versions(const store *s, const json_t *in, json_t **out, json_t **created,
                               char *err, size_t errlen)
{
    *out = NULL;
    *created = NULL;
    if (in != NULL && !json_is_object(in)) {
        snprintf(err, errlen, "versions must be an object");
        return STORE_BAD_REQUEST;
    }
    json_t *copy = json_object();
    json_t *stamps = json_object();
    if (copy == NULL || stamps == NULL) {
        json_decref(copy);
        json_decref(stamps);
        return STORE_NO_MEMORY;
    }
    json_t *src = (json_t *)in; /* jansson's iterators take non-const */
    for (void *it = (src != NULL) ? json_object_iter(src) : NULL; it != NULL;
         it = json_object_iter_next(src, it)) {
        const char *k = json_object_iter_key(it);
        json_t *content = json_object_iter_value(it);
        int64_t v = 0;
        char key[32];
        if (text_parse_i64(k, 1, MAX_VERSION, &v) != 0) {
            snprintf(err, errlen, "version keys must be positive integers");
            goto bad;
        }
        store_rc rc = check_content(s, content, v, err, errlen);
        if (rc == STORE_NO_MEMORY)
            goto oom;
        if (rc != STORE_OK)
            goto bad;
        version_key(v, key, sizeof(key));
        if (json_object_get(copy, key) != NULL) {
            snprintf(err, errlen, "version %lld is given twice", (long long)v);
            goto bad;
        }
        json_t *dup = json_deep_copy(content);
        if (dup == NULL || json_object_set_new(copy, key, dup) != 0 || stamp(stamps, key) != 0)
            goto oom;
    }
    *out = copy;
    *created = stamps;
    return STORE_OK;
oom:
    json_decref(copy);
    json_decref(stamps);
    return STORE_NO_MEMORY;
bad:
    json_decref(copy);
    json_decref(stamps);
    return STORE_BAD_REQUEST;
}

/* Copies a labels object, checking each points at a version in `versions`.
 * *out is a new reference. */
static store_rc parse_labels(const json_t *in, const json_t *versions, json_t **out, char *err,
                             size_t errlen)
{
    *out = NULL;
    if (in != NULL && !json_is_object(in)) {
        snprintf(err, errlen, "labels must be an object");
        return STORE_BAD_REQUEST;
    }
    json_t *copy = json_object();
    if (copy == NULL)
        return STORE_NO_MEMORY;
    json_t *src = (json_t *)in;
    for (void *it = (src != NULL) ? json_object_iter(src) : NULL; it != NULL;
         it = json_object_iter_next(src, it)) {
        const char *label = json_object_iter_key(it);
        json_t *val = json_object_iter_value(it);
        char key[32];
        store_rc rc = check_name("a label", label, strlen(label), err, errlen);
        if (rc != STORE_OK)
            goto bad;
        if (!json_is_integer(val)) {
            snprintf(err, errlen, "label %s must be an integer version", label);
            goto bad;
        }
        version_key((int64_t)json_integer_value(val), key, sizeof(key));
        if (json_object_get(versions, key) == NULL) {
            snprintf(err, errlen, "label %s points at version %s, which does not exist", label,
                     key);
            goto bad;
        }
        json_t *num = json_integer(json_integer_value(val));
        if (num == NULL || json_object_set_new(copy, label, num) != 0) {
            json_decref(copy);
            return STORE_NO_MEMORY;
        }
    }
    *out = copy;
    return STORE_OK;
bad:
    json_decref(copy);
    return STORE_BAD_REQUEST;
}

/* Refuses keys of `obj` outside the NULL-terminated `allowed` list. */
static store_rc check_keys(const json_t *obj, const char *const *allowed, char *err, size_t errlen)
{
    json_t *o = (json_t *)obj;
    for (void *it = json_object_iter(o); it != NULL; it = json_object_iter_next(o, it)) {
        const char *k = json_object_iter_key(it);
        int ok = 0;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = (strcmp(k, allowed[i]) == 0);
        if (!ok) {
            snprintf(err, errlen, "unknown key \"%.64s\"", k);
            return STORE_BAD_REQUEST;
        }
    }
    return STORE_OK;
}

/* Builds a template from a state entry or a PUT body into *out (which the
 * caller clears). `name` NULL takes "prompt_name" from obj; `default_id` < 0
 * makes "id" required. */
static store_rc tmpl_parse(const store *s, const json_t *obj, const char *name, int64_t default_id,
                           tmpl *out, char *err, size_t errlen)
{
    static const char *const keys[] = {"id", "prompt_name", "versions", "labels", NULL};
    memset(out, 0, sizeof(*out));
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "a template must be an object");
        return STORE_BAD_REQUEST;
    }
    store_rc rc = check_keys(obj, keys, err, errlen);
    if (rc != STORE_OK)
        return rc;

    const json_t *jname = json_object_get(obj, "prompt_name");
    if (name == NULL) {
        if (!json_is_string(jname)) {
            snprintf(err, errlen, "prompt_name must be a string");
            return STORE_BAD_REQUEST;
        }
        name = json_string_value(jname);
        rc = check_name("prompt_name", name, json_string_length(jname), err, errlen);
        if (rc != STORE_OK)
            return rc;
    } else if (jname != NULL &&
               !(json_is_string(jname) && strcmp(json_string_value(jname), name) == 0 &&
                 json_string_length(jname) == strlen(name))) {
        snprintf(err, errlen, "prompt_name differs from the name in the path");
        return STORE_BAD_REQUEST;
    }

    const json_t *jid = json_object_get(obj, "id");
    if (jid == NULL && default_id >= 0) {
        out->id = default_id;
    } else if (json_is_integer(jid) && json_integer_value(jid) >= 0) {
        out->id = (int64_t)json_integer_value(jid);
    } else {
        snprintf(err, errlen, "id must be a non-negative integer");
        return STORE_BAD_REQUEST;
    }

    rc = parse_versions(s, json_object_get(obj, "versions"), &out->versions, &out->created, err,
                        errlen);
    if (rc != STORE_OK)
        return rc;
    rc = parse_labels(json_object_get(obj, "labels"), out->versions, &out->labels, err, errlen);
    if (rc != STORE_OK)
        return rc;
    out->name = dup_str(name);
    if (out->name == NULL)
        return STORE_NO_MEMORY;
    return STORE_OK;
}

static int cmp_id(const void *a, const void *b)
{
    const tmpl *x = a;
    const tmpl *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_name_ptr(const void *a, const void *b)
{
    const tmpl *const *x = a;
    const tmpl *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

store_rc store_replace(store *s, const json_t *state, char *err, size_t errlen)
{
    static const char *const keys[] = {"templates", NULL};
    tmpl *items = NULL;
    const tmpl **by_name = NULL;
    size_t n = 0;
    store_rc rc = STORE_OK;

    if (!json_is_object(state)) {
        snprintf(err, errlen, "the state must be an object {\"templates\": [...]}");
        return STORE_BAD_REQUEST;
    }
    rc = check_keys(state, keys, err, errlen);
    if (rc != STORE_OK)
        return rc;
    const json_t *list = json_object_get(state, "templates");
    if (!json_is_array(list)) {
        snprintf(err, errlen, "templates must be an array");
        return STORE_BAD_REQUEST;
    }
    size_t total = json_array_size(list);
    if (total > STORE_MAX_TEMPLATES) {
        snprintf(err, errlen, "more than %d templates", STORE_MAX_TEMPLATES);
        return STORE_BAD_REQUEST;
    }
    if (total > 0) {
        items = calloc(total, sizeof(*items));
        by_name = calloc(total, sizeof(*by_name));
        if (items == NULL || by_name == NULL) {
            rc = STORE_NO_MEMORY;
            goto done;
        }
    }
    for (n = 0; n < total; n++) {
        rc = tmpl_parse(s, json_array_get(list, n), NULL, -1, &items[n], err, errlen);
        if (rc != STORE_OK) {
            n++; /* items[n] may hold parts: clear it too */
            goto done;
        }
    }
    if (total > 0) {
        qsort(items, total, sizeof(*items), cmp_id);
        for (size_t i = 0; i < total; i++)
            by_name[i] = &items[i];
        qsort(by_name, total, sizeof(*by_name), cmp_name_ptr);
    }
    for (size_t i = 1; i < total; i++) {
        if (items[i].id == items[i - 1].id) {
            snprintf(err, errlen, "id %lld is used twice", (long long)items[i].id);
            rc = STORE_BAD_REQUEST;
            goto done;
        }
        if (strcmp(by_name[i]->name, by_name[i - 1]->name) == 0) {
            snprintf(err, errlen, "prompt_name \"%.64s\" is used twice", by_name[i]->name);
            rc = STORE_BAD_REQUEST;
            goto done;
        }
    }

    /* Swap in; the old items are cleared below. */
    for (size_t i = 0; i < s->len; i++)
        tmpl_clear(&s->items[i]);
    free(s->items);
    s->items = items;
    s->len = total;
    s->cap = total;
    items = NULL;
    n = 0;
    rc = STORE_OK;
done:
    for (size_t i = 0; i < n && items != NULL; i++)
        tmpl_clear(&items[i]);
    free(items);
    free(by_name);
    return rc;
}

static json_t *dump_one(const tmpl *t)
{
    return json_pack("{s:I,s:s,s:o,s:o}", "id", (json_int_t)t->id, "prompt_name", t->name,
                     "versions", json_deep_copy(t->versions), "labels", json_deep_copy(t->labels));
}

json_t *store_dump(const store *s)
{
    json_t *root = json_object();
    json_t *list = json_array();
    if (root == NULL || list == NULL || json_object_set_new(root, "templates", list) != 0) {
        json_decref(root);
        json_decref(list);
        return NULL;
    }
    for (size_t i = 0; i < s->len; i++) {
        json_t *o = dump_one(&s->items[i]);
        if (o == NULL || json_array_append_new(list, o) != 0) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

/* Inserts t (taken over: *t is zeroed) keeping the array sorted by id. */
static store_rc insert_sorted(store *s, tmpl *t)
{
    if (s->len >= STORE_MAX_TEMPLATES)
        return STORE_CONFLICT;
    if (s->len == s->cap) {
        size_t cap = (s->cap == 0) ? 16 : s->cap * 2;
        tmpl *grown = realloc(s->items, cap * sizeof(*grown));
        if (grown == NULL)
            return STORE_NO_MEMORY;
        s->items = grown;
        s->cap = cap;
    }
    size_t pos = 0;
    while (pos < s->len && s->items[pos].id < t->id)
        pos++;
    memmove(&s->items[pos + 1], &s->items[pos], (s->len - pos) * sizeof(*s->items));
    s->items[pos] = *t;
    s->len++;
    memset(t, 0, sizeof(*t));
    return STORE_OK;
}

static void remove_at(store *s, size_t pos)
{
    tmpl_clear(&s->items[pos]);
    memmove(&s->items[pos], &s->items[pos + 1], (s->len - pos - 1) * sizeof(*s->items));
    s->len--;
}

store_rc store_put_template(store *s, const char *name, const json_t *body, char *err,
                            size_t errlen)
{
    tmpl t;
    memset(&t, 0, sizeof(t));
    store_rc rc = check_name("the template name", name, strlen(name), err, errlen);
    if (rc != STORE_OK)
        return rc;
    long existing = find_by_name(s, name);
    int64_t default_id = 1;
    if (existing >= 0) {
        default_id = s->items[existing].id;
    } else if (s->len > 0) {
        default_id = s->items[s->len - 1].id + 1;
    }
    rc = tmpl_parse(s, body, name, default_id, &t, err, errlen);
    if (rc != STORE_OK)
        goto done;
    long same_id = find_by_id(s, t.id);
    if (same_id >= 0 && same_id != existing) {
        snprintf(err, errlen, "id %lld belongs to template \"%.64s\"", (long long)t.id,
                 s->items[same_id].name);
        rc = STORE_CONFLICT;
        goto done;
    }
    if (existing < 0 && s->len >= STORE_MAX_TEMPLATES) {
        snprintf(err, errlen, "the store is full");
        rc = STORE_CONFLICT;
        goto done;
    }
    if (existing >= 0)
        remove_at(s, (size_t)existing);
    rc = insert_sorted(s, &t);
    if (rc == STORE_NO_MEMORY)
        snprintf(err, errlen, "out of memory");
done:
    tmpl_clear(&t);
    return rc;
}

static store_rc not_found_template(const char *name, char *err, size_t errlen)
{
    snprintf(err, errlen, "Prompt template \"%.200s\" not found", name);
    return STORE_NOT_FOUND;
}

store_rc store_dump_template(const store *s, const char *name, json_t **out, char *err,
                             size_t errlen)
{
    *out = NULL;
    long i = find_by_name(s, name);
    if (i < 0)
        return not_found_template(name, err, errlen);
    *out = dump_one(&s->items[i]);
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return STORE_NO_MEMORY;
    }
    return STORE_OK;
}

store_rc store_delete_template(store *s, const char *name, char *err, size_t errlen)
{
    long i = find_by_name(s, name);
    if (i < 0)
        return not_found_template(name, err, errlen);
    remove_at(s, (size_t)i);
    return STORE_OK;
}

store_rc store_rename(store *s, const char *name, const char *new_name, char *err, size_t errlen)
{
    long i = find_by_name(s, name);
    if (i < 0)
        return not_found_template(name, err, errlen);
    store_rc rc = check_name("new_name", new_name, strlen(new_name), err, errlen);
    if (rc != STORE_OK)
        return rc;
    long other = find_by_name(s, new_name);
    if (other >= 0 && other != i) {
        snprintf(err, errlen, "a template named \"%.200s\" exists", new_name);
        return STORE_CONFLICT;
    }
    char *copy = dup_str(new_name);
    if (copy == NULL)
        return STORE_NO_MEMORY;
    free(s->items[i].name);
    s->items[i].name = copy;
    return STORE_OK;
}

store_rc store_put_version(store *s, const char *name, int64_t version, const json_t *content,
                           int64_t *out_version, char *err, size_t errlen)
{
    long i = find_by_name(s, name);
    if (i < 0)
        return not_found_template(name, err, errlen);
    tmpl *t = &s->items[i];
    if (version == 0)
        version = latest_version(t) + 1;
    if (version < 1 || version > MAX_VERSION) {
        snprintf(err, errlen, "version must be a positive integer");
        return STORE_BAD_REQUEST;
    }
    if (!json_is_object(content)) {
        snprintf(err, errlen, "content must be an object");
        return STORE_BAD_REQUEST;
    }
    store_rc rc = check_content(s, content, version, err, errlen);
    if (rc != STORE_OK)
        return rc;
    char key[32];
    version_key(version, key, sizeof(key));
    json_t *dup = json_deep_copy(content);
    if (dup == NULL || json_object_set_new(t->versions, key, dup) != 0 ||
        stamp(t->created, key) != 0)
        return STORE_NO_MEMORY;
    *out_version = version;
    return STORE_OK;
}

store_rc store_put_label(store *s, const char *name, const char *label, int64_t version, char *err,
                         size_t errlen)
{
    long i = find_by_name(s, name);
    if (i < 0)
        return not_found_template(name, err, errlen);
    store_rc rc = check_name("the label", label, strlen(label), err, errlen);
    if (rc != STORE_OK)
        return rc;
    tmpl *t = &s->items[i];
    char key[32];
    version_key(version, key, sizeof(key));
    if (json_object_get(t->versions, key) == NULL) {
        snprintf(err, errlen, "version %s of \"%.200s\" does not exist", key, name);
        return STORE_NOT_FOUND;
    }
    json_t *num = json_integer((json_int_t)version);
    if (num == NULL || json_object_set_new(t->labels, label, num) != 0)
        return STORE_NO_MEMORY;
    return STORE_OK;
}

store_rc store_delete_label(store *s, const char *name, const char *label, char *err, size_t errlen)
{
    long i = find_by_name(s, name);
    if (i < 0)
        return not_found_template(name, err, errlen);
    if (json_object_del(s->items[i].labels, label) != 0) {
        snprintf(err, errlen, "label \"%.200s\" of \"%.200s\" does not exist", label, name);
        return STORE_NOT_FOUND;
    }
    return STORE_OK;
}

/* The version of t that q (or a label, or neither: the latest) selects:
 * 0 and err set when there is none. */
static int64_t pick_version(const tmpl *t, int64_t version, const char *label, char *err,
                            size_t errlen)
{
    char key[32];
    if (version <= 0 && label != NULL) {
        const json_t *v = json_object_get(t->labels, label);
        if (v == NULL) {
            snprintf(err, errlen, "Label \"%.200s\" not found for prompt template \"%.200s\"",
                     label, t->name);
            return 0;
        }
        version = (int64_t)json_integer_value(v);
    } else if (version <= 0) {
        version = latest_version(t);
        if (version == 0) {
            snprintf(err, errlen, "Prompt template \"%.200s\" has no versions", t->name);
            return 0;
        }
    }
    version_key(version, key, sizeof(key));
    if (json_object_get(t->versions, key) == NULL) {
        snprintf(err, errlen, "Version %s not found for prompt template \"%.200s\"", key, t->name);
        return 0;
    }
    return version;
}

/* The prompt_template of version v of t: stored, or the default. */
static const json_t *template_of(const store *s, const tmpl *t, int64_t v)
{
    char key[32];
    version_key(v, key, sizeof(key));
    const json_t *pt = json_object_get(json_object_get(t->versions, key), "prompt_template");
    return (pt != NULL) ? pt : s->default_pt;
}

/* snippet_lookup_fn over the store: templates by exact name. */
static const json_t *lookup_snippet(void *ctx, const char *name, int64_t version, const char *label,
                                    int64_t *out_version)
{
    const store *s = ctx;
    char err[8];
    long i = find_by_name(s, name);
    if (i < 0)
        return NULL;
    int64_t v = pick_version(&s->items[i], version, label, err, sizeof(err));
    if (v == 0)
        return NULL;
    *out_version = v;
    return template_of(s, &s->items[i], v);
}

/* The PromptLayer answer for version v of t (see store_get). */
static json_t *build_answer(const store *s, const tmpl *t, int64_t v, const store_query *q)
{
    char key[32];
    version_key(v, key, sizeof(key));
    const json_t *content = json_object_get(t->versions, key);
    json_t *pt = json_deep_copy(template_of(s, t, v));
    json_t *snippets = (pt != NULL) ? snippet_process(pt, t->name, v, q->resolve_snippets,
                                                      lookup_snippet, (void *)s)
                                    : NULL;
    if (snippets == NULL) {
        json_decref(pt);
        return NULL;
    }
    json_t *o =
        json_pack("{s:I,s:s,s:I,s:I,s:o,s:n,s:n,s:[]}", "id", (json_int_t)t->id, "prompt_name",
                  t->name, "version", (json_int_t)v, "workspace_id", (json_int_t)q->workspace_id,
                  "prompt_template", pt, "metadata", "commit_message", "tags");
    if (o == NULL) {
        json_decref(snippets);
        return NULL;
    }
    int bad = 0;
    const json_t *created = json_object_get(t->created, key);
    if (q->with_created_at)
        bad |= json_object_set_new(o, "created_at",
                                   created != NULL ? json_copy((json_t *)created) : json_null());
    bad |= json_object_set_new(o, "snippets", snippets);
    bad |= json_object_set_new(o, "llm_kwargs", json_null());
    json_t *src = (json_t *)content;
    for (void *it = json_object_iter(src); it != NULL && !bad;
         it = json_object_iter_next(src, it)) {
        const char *k = json_object_iter_key(it);
        static const char *const own[] = {"id",       "prompt_name", "version", "prompt_template",
                                          "snippets", "llm_kwargs",  NULL};
        int skip = 0;
        for (size_t i = 0; own[i] != NULL && !skip; i++)
            skip = (strcmp(k, own[i]) == 0);
        if (!skip)
            bad |= json_object_set_new(o, k, json_deep_copy(json_object_iter_value(it)));
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The template an API path names: its name first, else its id; -1 when
 * neither. */
static long find_ident(const store *s, const char *ident)
{
    long i = find_by_name(s, ident);
    int64_t id = 0;
    if (i < 0 && text_parse_i64(ident, 0, INT64_MAX, &id) == 0)
        i = find_by_id(s, id);
    return i;
}

store_rc store_get(const store *s, const char *ident, const store_query *q, json_t **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    long i = find_ident(s, ident);
    if (i < 0)
        return not_found_template(ident, err, errlen);
    const tmpl *t = &s->items[i];
    int64_t v = pick_version(t, q->version, q->label, err, errlen);
    if (v == 0)
        return STORE_NOT_FOUND;
    *out = build_answer(s, t, v, q);
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return STORE_NO_MEMORY;
    }
    return STORE_OK;
}

store_rc store_labels(const store *s, const char *ident, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    long i = find_ident(s, ident);
    if (i < 0)
        return not_found_template(ident, err, errlen);
    const tmpl *t = &s->items[i];
    json_t *list = json_array();
    const char *label;
    json_t *v;
    json_int_t n = 0;
    json_object_foreach((json_t *)t->labels, label, v)
    {
        json_int_t num = json_integer_value(v);
        if (list == NULL ||
            json_array_append_new(list, json_pack("{s:I, s:I, s:s, s:I}", "prompt_version_id",
                                                  (json_int_t)t->id * 1000 + num,
                                                  "prompt_version_number", num, "release_label",
                                                  label, "release_label_id", ++n)) != 0) {
            json_decref(list);
            snprintf(err, errlen, "out of memory");
            return STORE_NO_MEMORY;
        }
    }
    *out = json_pack("{s:o}", "release_labels", list);
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return STORE_NO_MEMORY;
    }
    return STORE_OK;
}

/* The version t shows in a listing filtered by f, 0 when t is left out. */
static int64_t listed_version(const tmpl *t, const store_filter *f)
{
    if (f->name != NULL && strcasestr(t->name, f->name) == NULL)
        return 0;
    if (f->label != NULL) {
        const json_t *v = json_object_get(t->labels, f->label);
        return (v != NULL) ? (int64_t)json_integer_value(v) : 0;
    }
    return latest_version(t);
}

json_t *store_list(const store *s, int64_t page, int64_t per_page, const store_filter *f)
{
    int64_t total = 0;
    for (size_t i = 0; i < s->len; i++) {
        if (listed_version(&s->items[i], f) > 0)
            total++;
    }
    int64_t pages = (total + per_page - 1) / per_page;
    int64_t skip = 0;
    int past_end = (page - 1 > total / per_page);
    if (!past_end)
        skip = (page - 1) * per_page;

    store_query q = {.resolve_snippets = 1, .with_created_at = 1, .workspace_id = f->workspace_id};
    json_t *items = json_array();
    if (items == NULL)
        return NULL;
    int64_t seen = 0;
    for (size_t n = s->len; n > 0 && !past_end; n--) {
        const tmpl *t = &s->items[n - 1];
        int64_t v = listed_version(t, f);
        if (v == 0)
            continue;
        seen++;
        if (seen <= skip)
            continue;
        if ((int64_t)json_array_size(items) >= per_page)
            break;
        json_t *one = build_answer(s, t, v, &q);
        if (one == NULL || json_array_append_new(items, one) != 0) {
            json_decref(items);
            return NULL;
        }
    }
    int has_next = page < pages;
    int has_prev = page > 1;
    return json_pack("{s:o,s:I,s:I,s:I,s:I,s:b,s:b,s:o,s:o}", "items", items, "page",
                     (json_int_t)page, "per_page", (json_int_t)per_page, "pages", (json_int_t)pages,
                     "total", (json_int_t)total, "has_next", has_next, "has_prev", has_prev,
                     "next_num", has_next ? json_integer((json_int_t)(page + 1)) : json_null(),
                     "prev_num", has_prev ? json_integer((json_int_t)(page - 1)) : json_null());
}
