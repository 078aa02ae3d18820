/* keys.h -- the Redis key names of DESIGN.md section 4 (contract).
 *
 * Every key is PLCACHE_PREFIX (default "pl:") followed by one of these names;
 * they are spelled here only (the daemons, the command and libplcache alike).
 * KEYS_LEASE is libplcache's own (not in DESIGN.md): a fill in progress.
 */
#ifndef PLCACHE_KEYS_H
#define PLCACHE_KEYS_H

#include <stddef.h>

#define KEYS_EVENTS "events"         /* stream of authentic events */
#define KEYS_EVENTS_DEAD "events:dead" /* stream of events given up after MAX deliveries */
#define KEYS_SEEN "seen:"            /* + sha256 hex: duplicate guard, 24 h */
#define KEYS_PROMPT "prompt:"        /* + template name: hash */
#define KEYS_PROMPT_IDS "prompt-ids" /* hash id -> name */
#define KEYS_PROMPT_GONE "prompt-gone" /* sorted set: dropped name -> when (us), a day */
#define KEYS_INVALIDATE "invalidate" /* pub/sub channel */
#define KEYS_TRACK "track"           /* list of log jobs */
#define KEYS_TRACK_PROCESSING "track:processing:" /* + worker id: jobs taken, not finished */
#define KEYS_TRACK_WORKERS "track:workers"        /* sorted set: worker id -> heartbeat (ms) */
#define KEYS_TRACK_RETRY "track:retry"            /* sorted set: jobs by due time (ms) */
#define KEYS_TRACK_DEAD "track:dead"              /* list of dead jobs, wrapped with why */
#define KEYS_LEASE "lease:" /* + name + ":" + field: libplcache's read-through lease */

#define KEYS_SEEN_TTL_S 86400     /* how long a delivery is remembered */
#define KEYS_EVENTS_MAXLEN 100000 /* trimmed near this by the applier */

/* Writes prefix + name (+ suffix, may be NULL) into out. Returns the length,
 * or -1 when it does not fit. */
int keys_make(char *out, size_t outlen, const char *prefix, const char *name, const char *suffix);

/* Writes a SCAN MATCH pattern for every key that starts with prefix + name:
 * both with the glob characters * ? [ ] \\ escaped, then "*". Returns the
 * length, or -1 when it does not fit (never a shorter, wider pattern). */
int keys_match(char *out, size_t outlen, const char *prefix, const char *name);

#endif
