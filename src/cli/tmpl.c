/* tmpl.c -- reads cached templates for plcache ls and show (tmpl.h). */
#include "cli/tmpl.h"

#include <stdlib.h>
#include <string.h>

#include "core/timeutil.h"
#include "model/keys.h"

void tmpl_free(tmpl *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->e[i].field);
        free(t->e[i].text);
        json_decref(t->e[i].value);
    }
    free(t->e);
    free(t->name);
    free(t->id);
    free(t->gen);
    memset(t, 0, sizeof(*t));
}

static int entry_cmp(const void *pa, const void *pb)
{
    const tmpl_entry *a = pa, *b = pb;
    if (a->kind != b->kind)
        return (int)a->kind - (int)b->kind;
    if (a->kind == TMPL_VERSION)
        return a->number < b->number ? -1 : a->number > b->number;
    return strcmp(a->sel, b->sel);
}

/* Fills e from a content field and its stored text. Returns 0, -1 out of
 * memory. */
static int entry_make(tmpl_entry *e, tmpl_kind kind, const char *field, size_t flen,
                      const redisReply *v, long long now)
{
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->version = e->age_ms = e->number = -1;
    e->field = strndup(field, flen);
    e->text = strndup(v->str, v->len);
    if (e->field == NULL || e->text == NULL)
        return -1;
    e->sel = kind == TMPL_LATEST ? "" : strchr(e->field, ':') + 1;
    if (kind == TMPL_VERSION && cli_parse_ll(e->sel, 0, 1LL << 62, &e->number) != 0)
        e->number = -1;
    e->value = json_loadb(v->str, v->len, 0, NULL);
    if (!json_is_object(e->value)) {
        json_decref(e->value);
        e->value = NULL;
        return 0;
    }
    const json_t *ver = json_object_get(e->value, "version");
    if (json_is_integer(ver))
        e->version = (long long)json_integer_value(ver);
    e->created = json_string_value(json_object_get(e->value, "created_at"));
    int64_t ms = 0;
    if (e->created && time_parse_iso8601(e->created, strlen(e->created), &ms) == 0)
        e->age_ms = now - ms > 0 ? now - ms : 0;
    return 0;
}

int tmpl_read(const cli_ctx *c, redisContext *rc, const char *name, tmpl *t)
{
    char key[1100];
    memset(t, 0, sizeof(*t));
    if (cli_key(c, key, sizeof(key), KEYS_PROMPT, name) != 0)
        return -1;
    const char *av[] = {"HGETALL", key};
    redisReply *r = cli_command(c, rc, 2, av, NULL);
    if (r == NULL)
        return -1;
    int rv = -1;
    if (r->type != REDIS_REPLY_ARRAY) {
        cli_error(c, "unexpected HGETALL reply");
        goto done;
    }
    rv = 0;
    if (r->elements == 0)
        goto done;
    t->name = strdup(name);
    t->e = calloc(r->elements / 2 + 1, sizeof(*t->e));
    rv = -1;
    if (t->name == NULL || t->e == NULL)
        goto oom;
    long long now = time_now_ms();
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        tmpl_kind kind;
        if (strcmp(f->str, "latest") == 0)
            kind = TMPL_LATEST;
        else if (strncmp(f->str, "label:", 6) == 0)
            kind = TMPL_LABEL;
        else if (strncmp(f->str, "version:", 8) == 0)
            kind = TMPL_VERSION;
        else {
            /* Bookkeeping: id and gen are shown; at:... and others are not. */
            char **slot = strcmp(f->str, "id") == 0    ? &t->id
                          : strcmp(f->str, "gen") == 0 ? &t->gen
                                                       : NULL;
            if (slot != NULL && (*slot = strndup(v->str, v->len)) == NULL)
                goto oom;
            continue;
        }
        if (entry_make(&t->e[t->n++], kind, f->str, f->len, v, now) != 0)
            goto oom;
    }
    qsort(t->e, t->n, sizeof(*t->e), entry_cmp);
    rv = 1;
    goto done;
oom:
    cli_error(c, "out of memory");
    tmpl_free(t);
done:
    freeReplyObject(r);
    return rv;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

long tmpl_names(const cli_ctx *c, redisContext *rc, const char *pattern, char ***names)
{
    char match[2200], cursor[32] = "0";
    size_t n = 0, cap = 0;
    char **out = NULL;
    int ml = keys_match(match, sizeof(match), c->set->prefix, KEYS_PROMPT);
    /* The prefix escaped, then the user's glob as it is (its * and ? are meant). */
    if (ml < 0 || (size_t)ml + strlen(pattern ? pattern : "*") >= sizeof(match)) {
        cli_error(c, "the key prefix and the pattern are too long for a SCAN pattern");
        return -1;
    }
    snprintf(match + ml - 1, sizeof(match) - (size_t)ml + 1, "%s", pattern ? pattern : "*");
    size_t plen = strlen(c->set->prefix) + strlen(KEYS_PROMPT);
    do {
        const char *av[] = {"SCAN", cursor, "MATCH", match, "COUNT", "1000", "TYPE", "hash"};
        redisReply *r = cli_command(c, rc, 8, av, NULL);
        if (r == NULL)
            goto err;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            cli_error(c, "unexpected SCAN reply");
            goto err;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            if (k->type != REDIS_REPLY_STRING || k->len <= plen)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                char **grown = realloc(out, cap * sizeof(*out));
                if (grown == NULL) {
                    freeReplyObject(r);
                    goto oom;
                }
                out = grown;
            }
            if ((out[n] = strndup(k->str + plen, k->len - plen)) == NULL) {
                freeReplyObject(r);
                goto oom;
            }
            n++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    if (n > 1)
        qsort(out, n, sizeof(*out), name_cmp);
    *names = out;
    return (long)n;
oom:
    cli_error(c, "out of memory");
err:
    for (size_t i = 0; i < n; i++)
        free(out[i]);
    free(out);
    return -1;
}

const tmpl_entry *tmpl_newest(const tmpl *t)
{
    const tmpl_entry *best = NULL;
    for (size_t i = 0; i < t->n; i++)
        if (t->e[i].age_ms >= 0 && (best == NULL || t->e[i].age_ms < best->age_ms))
            best = &t->e[i];
    return best;
}

int tmpl_width(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

void tmpl_put(FILE *f, const char *s)
{
    for (; s != NULL && *s; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

void tmpl_put_shell(FILE *f, const char *s)
{
    if (s[0] != '\0' && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789_./:@%+=,-") == strlen(s)) {
        tmpl_put(f, s);
        return;
    }
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
    }
    fputc('\'', f);
}
