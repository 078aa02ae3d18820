/* lib.h -- the inside of a libplcache client, shared by the files of src/lib.
 */
#ifndef PLCACHE_LIB_LIB_H
#define PLCACHE_LIB_LIB_H

#include <stdint.h>

#include "core/rurl.h"
#include "core/sconn.h"
#include "lib/api.h"
#include "lib/memcache.h"
#include "lib/sub.h"
#include "model/keys.h"
#include "plcache.h"

/* A Lua script run by EVALSHA, loaded on first use, EVAL on NOSCRIPT. */
typedef struct lib_script {
    const char *text;
    char sha[48]; /* "" until SCRIPT LOAD answered */
} lib_script;

struct plcache {
    plcache_options o; /* strings point at the owned copies below */
    char *prefix, *api_key, *api_base;
    rurl url;
    sconn rc;
    api *api;      /* NULL without an API key */
    memcache *mem; /* NULL without a memory cache */
    sub *sub;      /* its listener */
    lib_script fill, release;
    char errstr[512];
    plcache_stats st; /* this thread's counters (the memory ones live in mem) */
};

/* Sets c's errstr (printf-style) and returns st. */
plcache_status lib_fail(plcache *c, plcache_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Monotonic microseconds. */
int64_t lib_now_us(void);

/* Sleeps ms milliseconds. */
void lib_sleep_ms(int ms);

#endif
