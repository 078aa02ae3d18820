/* rargs.c -- a Redis command being built, arguments copied in. */
#include "model/rargs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rargs_init(rargs *a)
{
    memset(a, 0, sizeof(*a));
}

void rargs_add(rargs *a, const void *p, size_t n)
{
    if (a->failed)
        return;
    if (a->argc == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        char **argv = realloc(a->argv, (size_t)cap * sizeof(*argv));
        if (argv != NULL)
            a->argv = argv;
        size_t *lens = argv ? realloc(a->lens, (size_t)cap * sizeof(*lens)) : NULL;
        if (argv == NULL || lens == NULL) {
            a->failed = 1;
            return;
        }
        a->lens = lens;
        a->cap = cap;
    }
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        a->failed = 1;
        return;
    }
    if (n > 0)
        memcpy(copy, p, n);
    copy[n] = '\0';
    a->argv[a->argc] = copy;
    a->lens[a->argc] = n;
    a->argc++;
}

void rargs_adds(rargs *a, const char *s)
{
    rargs_add(a, s, strlen(s));
}

void rargs_addll(rargs *a, long long v)
{
    char n[32];
    int len = snprintf(n, sizeof(n), "%lld", v);
    rargs_add(a, n, (size_t)len);
}

void rargs_free(rargs *a)
{
    for (int i = 0; i < a->argc; i++)
        free(a->argv[i]);
    free(a->argv);
    free(a->lens);
    memset(a, 0, sizeof(*a));
}
