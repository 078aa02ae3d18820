/* options.c -- validators of the shared settings. */
#include "core/options.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"

int opt_check_log_level(const char *v, char *err, size_t errlen)
{
    log_level l;
    if (log_parse_level(v, &l) != 0) {
        snprintf(err, errlen, "expected debug, info, warn or error");
        return -1;
    }
    return 0;
}

int opt_check_http_url(const char *v, char *err, size_t errlen)
{
    if ((strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) ||
        strpbrk(v, "?# \t") != NULL || strlen(v) > 2048) {
        snprintf(err, errlen, "expected an http:// or https:// base URL without a query");
        return -1;
    }
    return 0;
}
