/* options.h -- the settings rows every program shares (DESIGN.md section 2).
 *
 * Each macro is one cfg_opt row; the argument is the offsetof() of the field
 * the value lands in (and of the file path, for secrets). Defaults and help
 * live here once, so the programs cannot drift apart.
 */
#ifndef PLCACHE_OPTIONS_H
#define PLCACHE_OPTIONS_H

#include "core/config.h"
#include "core/rurl.h"

/* The start every daemon shares: loads the settings (cfg_load), applies the
 * log level and parses and resolves the Redis URL into *url (release it with
 * rurl_free). Returns -1 when the program should exit now, with *status set
 * (0 after --help/--version, 2 after one line on stderr naming the bad
 * setting), or 0 to go on. Blocks on name resolution: call it at start only. */
int opt_start(const cfg_program *prog, int argc, char **argv, void *settings,
              char *const *level_field, char *const *url_field, rurl *url, int *status);

/* Validators shared by the programs. */
int opt_check_log_level(const char *value, char *err, size_t errlen);
int opt_check_http_url(const char *value, char *err, size_t errlen);

#define OPT_REDIS_URL(off)                                                                         \
    {                                                                                              \
        "PLCACHE_REDIS_URL", CFG_STRING, "redis://127.0.0.1:6379/0", 0, 0, 0, rurl_check, (off),   \
            0, "URL",                                                                              \
            "Redis: redis://[user:pass@]host:port/db, unix:///path.sock?db=N or "                  \
            "redis-sentinel://[user:pass@]host:port,host:port/master?db=N"                         \
    }
#define OPT_PREFIX(off)                                                                            \
    {                                                                                              \
        "PLCACHE_PREFIX", CFG_STRING, "pl:", 0, 0, 0, NULL, (off), 0, "TEXT",                      \
            "prefix of every Redis key"                                                            \
    }
#define OPT_API_KEY(off, file_off)                                                                 \
    {                                                                                              \
        "PROMPTLAYER_API_KEY", CFG_SECRET, NULL, 1, 0, 0, NULL, (off), (file_off), "KEY",          \
            "PromptLayer API key (never logged)"                                                   \
    }
#define OPT_BASE_URL(off)                                                                          \
    {                                                                                              \
        "PROMPTLAYER_BASE_URL", CFG_STRING, "https://api.promptlayer.com", 0, 0, 0,                \
            opt_check_http_url, (off), 0, "URL", "PromptLayer API base"                            \
    }
#define OPT_LLM_KWARGS(off)                                                                        \
    {                                                                                              \
        "PLCACHE_LLM_KWARGS", CFG_BOOL, "true", 0, 0, 0, NULL, (off), 0, "BOOL",                   \
            "cache each version with its provider-ready llm_kwargs (include_llm_kwargs=true, "     \
            "asked again without it when the API refuses it); false: without"                     \
    }
#define OPT_SHUTDOWN_TIMEOUT(off)                                                                  \
    {                                                                                              \
        "PLCACHE_SHUTDOWN_TIMEOUT", CFG_INT, "30", 0, 0, 3600, NULL, (off), 0, "SECONDS",          \
            "on SIGTERM, how long work in flight may take"                                         \
    }
#define OPT_LOG_LEVEL(off)                                                                         \
    {                                                                                              \
        "PLCACHE_LOG_LEVEL", CFG_STRING, "info", 0, 0, 0, opt_check_log_level, (off), 0, "LEVEL",  \
            "debug, info, warn or error"                                                           \
    }
#define OPT_REDIS_TIMEOUT(off)                                                                     \
    {                                                                                              \
        "PLCACHE_REDIS_TIMEOUT", CFG_INT, "5", 0, 1, 3600, NULL, (off), 0, "SECONDS",              \
            "a Redis command unanswered this long drops the link (then reconnect)"                 \
    }
#define OPT_MIN_REPLICAS(off)                                                                      \
    {                                                                                              \
        "PLCACHE_MIN_REPLICAS", CFG_INT, "0", 0, 0, 100, NULL, (off), 0, "N",                      \
            "replicas that must hold a write (WAIT, at most half PLCACHE_REDIS_TIMEOUT) before "   \
            "it is acknowledged"                                                                   \
    }

#endif
