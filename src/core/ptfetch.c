/* ptfetch.c -- a template GET that drops include_llm_kwargs when refused. */
#include "core/ptfetch.h"

#include <stdlib.h>
#include <string.h>

#include "model/pturl.h"

#define PTFETCH_MAX_HEADERS 16

typedef struct ptfetch {
    fetcher *f;
    char *without;                          /* owned: the URL of the second try */
    char *headers[PTFETCH_MAX_HEADERS + 1]; /* owned copies, NULL-terminated */
    fetch_done_fn cb;
    void *arg;
} ptfetch;

static void ptfetch_free(ptfetch *p)
{
    free(p->without);
    for (size_t i = 0; p->headers[i] != NULL; i++)
        free(p->headers[i]);
    free(p);
}

static void first_done(const fetch_result *r, void *arg)
{
    ptfetch *p = arg;
    if (pturl_flag_refused(r->status) &&
        fetch_get(p->f, p->without, (const char *const *)p->headers, p->without, p->cb, p->arg) ==
            0) {
        ptfetch_free(p);
        return;
    }
    /* Not refused, or the second try cannot start: the caller gets this answer
     * (a refusal then counts as an error answer, never as content). */
    p->cb(r, p->arg);
    ptfetch_free(p);
}

int ptfetch_get(fetcher *f, const char *with_flag, const char *without, const char *const *headers,
                fetch_done_fn cb, void *arg)
{
    if (with_flag == NULL)
        return fetch_get(f, without, headers, without, cb, arg);
    ptfetch *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -1;
    p->f = f;
    p->cb = cb;
    p->arg = arg;
    p->without = strdup(without);
    int ok = p->without != NULL;
    for (size_t i = 0; ok && headers != NULL && headers[i] != NULL; i++) {
        ok = i < PTFETCH_MAX_HEADERS;
        if (ok) {
            p->headers[i] = strdup(headers[i]);
            ok = p->headers[i] != NULL;
        }
    }
    if (!ok || fetch_get(f, with_flag, headers, with_flag, first_done, p) != 0) {
        ptfetch_free(p);
        return -1;
    }
    return 0;
}
