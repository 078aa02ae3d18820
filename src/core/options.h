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
    CFG_OPT(.env = "PLCACHE_REDIS_URL", .type = CFG_STRING, .def = "redis://127.0.0.1:6379/0",     \
            .check = rurl_check, .offset = (off), .metavar = "URL",                                \
            .help = "Redis: redis://[user:pass@]host:port/db, unix:///path.sock?db=N or "          \
                    "redis-sentinel://[user:pass@]host:port,host:port/master?db=N")
#define OPT_PREFIX(off)                                                                            \
    CFG_OPT(.env = "PLCACHE_PREFIX", .type = CFG_STRING, .def = "pl:", .offset = (off),            \
            .metavar = "TEXT", .help = "prefix of every Redis key")
#define OPT_API_KEY(off, file_off)                                                                 \
    CFG_OPT(.env = "PROMPTLAYER_API_KEY", .type = CFG_SECRET, .required = 1, .offset = (off),      \
            .file_offset = (file_off), .metavar = "KEY",                                           \
            .help = "PromptLayer API key (never logged)")
#define OPT_BASE_URL(off)                                                                          \
    CFG_OPT(.env = "PROMPTLAYER_BASE_URL", .type = CFG_STRING,                                     \
            .def = "https://api.promptlayer.com", .check = opt_check_http_url, .offset = (off),    \
            .metavar = "URL", .help = "PromptLayer API base")
#define OPT_LLM_KWARGS(off)                                                                        \
    CFG_OPT(.env = "PLCACHE_LLM_KWARGS", .type = CFG_BOOL, .def = "true", .offset = (off),         \
            .metavar = "BOOL",                                                                     \
            .help =                                                                                \
                "cache each version with its provider-ready llm_kwargs (include_llm_kwargs=true, " \
                "asked again without it when the API refuses it); false: without")
#define OPT_SHUTDOWN_TIMEOUT(off)                                                                  \
    CFG_OPT(.env = "PLCACHE_SHUTDOWN_TIMEOUT", .type = CFG_INT, .def = "30", .min = 0,             \
            .max = 3600, .offset = (off), .metavar = "SECONDS",                                    \
            .help = "on SIGTERM, how long work in flight may take")
#define OPT_LOG_LEVEL(off)                                                                         \
    CFG_OPT(.env = "PLCACHE_LOG_LEVEL", .type = CFG_STRING, .def = "info",                         \
            .check = opt_check_log_level, .offset = (off), .metavar = "LEVEL",                     \
            .help = "debug, info, warn or error")
#define OPT_REDIS_TIMEOUT(off)                                                                     \
    CFG_OPT(.env = "PLCACHE_REDIS_TIMEOUT", .type = CFG_INT, .def = "5", .min = 1, .max = 3600,    \
            .offset = (off), .metavar = "SECONDS",                                                 \
            .help = "a Redis command unanswered this long drops the link (then reconnect)")
#define OPT_MIN_REPLICAS(off)                                                                      \
    CFG_OPT(.env = "PLCACHE_MIN_REPLICAS", .type = CFG_INT, .def = "0", .min = 0, .max = 100,      \
            .offset = (off), .metavar = "N",                                                       \
            .help = "replicas that must hold a write (WAIT, at most half "                         \
                    "PLCACHE_REDIS_TIMEOUT) before it is acknowledged")

#endif
