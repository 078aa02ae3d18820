/* timeutil.h -- clocks and ISO 8601 timestamps. */
#ifndef PLCACHE_TIMEUTIL_H
#define PLCACHE_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the epoch (wall clock) and on the monotonic clock. */
int64_t time_now_ms(void);
int64_t time_mono_us(void);

/* Parses an ISO 8601 date-time as PromptLayer writes it:
 * YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z|+HH:MM|-HH:MM|+HHMM|+HH], 'T' or ' ' between
 * date and time; a naive one is UTC. `len` bytes at s (no NUL needed).
 * Returns 0 with milliseconds since the epoch in *ms, or -1 when unreadable. */
int time_parse_iso8601(const char *s, size_t len, int64_t *ms);

/* The same, in microseconds (digits past the sixth are ignored). */
int time_parse_iso8601_us(const char *s, size_t len, int64_t *us);

/* Writes now as 2026-11-27T07:21:26.123456Z into out (at least 32 bytes). */
void time_format_now(char *out, size_t outlen);

#endif
