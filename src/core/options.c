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

int opt_start(const cfg_program *prog, int argc, char **argv, void *settings,
              char *const *level_field, char *const *url_field, rurl *url, int *status)
{
    char err[512];
    int rc = cfg_load(prog, argc, argv, settings, err, sizeof(err));
    if (rc == CFG_EXIT) {
        *status = 0;
        return -1;
    }
    *status = 2;
    if (rc != CFG_OK) {
        fprintf(stderr, "%s: %s\n", prog->name, err);
        return -1;
    }
    log_level level = LOG_INFO;
    log_parse_level(*level_field, &level);
    log_set_level(level);
    if (rurl_parse(*url_field, url, err, sizeof(err)) != 0 ||
        rurl_resolve(url, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: PLCACHE_REDIS_URL (--redis-url): %s\n", prog->name, err);
        return -1;
    }
    return 0;
}
