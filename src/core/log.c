/* log.c -- logfmt lines on stderr. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static log_level g_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level level)
{
    g_level = level;
}
log_level log_get_level(void)
{
    return g_level;
}

int log_parse_level(const char *s, log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    return -1;
}

/* Appends `v` to buf at *pos, quoted when needed; truncates silently. */
static void put_value(char *buf, size_t cap, size_t *pos, const char *v)
{
    int quote = (*v == '\0');
    for (const char *p = v; *p && !quote; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == '"' || c == '=' || c == 0x7f)
            quote = 1;
    }
    if (quote && *pos < cap)
        buf[(*pos)++] = '"';
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        size_t n;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            n = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", c);
        } else {
            esc[0] = (char)c;
            n = 1;
        }
        if (*pos + n >= cap)
            break;
        memcpy(buf + *pos, esc, n);
        *pos += n;
    }
    if (quote && *pos < cap)
        buf[(*pos)++] = '"';
}

void log_msg(log_level level, const char *msg, ...)
{
    if (level < g_level)
        return;
    char buf[2048];
    size_t pos = 0;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(buf, sizeof(buf),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L, level_names[level]);
    pos = (size_t)n;
    put_value(buf, sizeof(buf) - 1, &pos, msg);

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (k == NULL)
            break;
        const char *v = va_arg(ap, const char *);
        if (pos + 2 >= sizeof(buf) - 1)
            break;
        buf[pos++] = ' ';
        put_value(buf, sizeof(buf) - 1, &pos, k);
        if (pos < sizeof(buf) - 1)
            buf[pos++] = '=';
        put_value(buf, sizeof(buf) - 1, &pos, v ? v : "");
    }
    va_end(ap);
    buf[pos++] = '\n';
    fwrite(buf, 1, pos, stderr);
}
