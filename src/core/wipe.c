/* wipe.c -- erasing secrets with explicit_bzero (see wipe.h). */
#include "core/wipe.h"

#include <stdlib.h>
#include <string.h>

void wipe_mem(void *p, size_t n)
{
    if (p != NULL && n > 0)
        explicit_bzero(p, n);
}

void wipe_free(char *s)
{
    if (s == NULL)
        return;
    wipe_mem(s, strlen(s));
    free(s);
}
