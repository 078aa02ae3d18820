/* log.h -- one line per event on stderr: `level=... msg=... key=value`.
 *
 * Values are quoted when they hold spaces, quotes or '=' and control bytes are
 * escaped, so a line is always one line whatever a client sent. Never pass a
 * secret, a signature or a body to these functions.
 */
#ifndef PLCACHE_LOG_H
#define PLCACHE_LOG_H

typedef enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
} log_level;

/* Sets the lowest level written (default LOG_INFO). */
void log_set_level(log_level level);
log_level log_get_level(void);

/* Parses "debug", "info", "warn", "error". Returns 0, or -1 when unknown. */
int log_parse_level(const char *s, log_level *out);

/* Writes one line: level=L msg=MSG followed by the key/value pairs given as
 * alternating `const char *` arguments, terminated by NULL. A NULL value is
 * written as an empty string. Never fails, never blocks for long (stderr). */
void log_msg(log_level level, const char *msg, ...);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__, (const char *)0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__, (const char *)0)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__, (const char *)0)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__, (const char *)0)

#endif
