/* cli.h -- what the subcommands of plcache share: settings, errors, input, Redis.
 *
 * plcache is a short-lived command, not a daemon: apart from `sync` (which
 * runs on an event loop with core/fetch), it talks to Redis with hiredis's
 * blocking API, every connect and command bounded by PLCACHE_REDIS_TIMEOUT.
 *
 * Exit statuses (DESIGN.md section 7 and the README): 0 done; 1 not found or
 * the operation failed (Redis down, API down, ...); 2 a usage or settings
 * error. Errors are one line on stderr, `plcache <command>: <why>`; output for
 * programs goes to stdout only.
 */
#ifndef PLCACHE_CLI_H
#define PLCACHE_CLI_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "core/rurl.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Largest FILE or stdin a command reads (a job, a webhook body). */
#define CLI_MAX_INPUT (16u << 20)

/* The settings of plcache (rows in main.c). Strings are owned by the table
 * (cfg_free). */
typedef struct cli_settings {
    char *redis_url;
    char *prefix;
    char *api_key; /* NULL when unset: no read-through, no sync */
    char *api_key_file;
    char *base_url;
    char *secret; /* PLCACHE_WEBHOOK_SECRET, for sign; NULL when unset */
    char *secret_file;
    char *log_level;
    long redis_timeout;     /* seconds */
    long fetch_concurrency; /* sync: API requests in flight at most */
    long fetch_timeout;     /* seconds, one API request */
    long llm_kwargs;        /* ask for include_llm_kwargs (get's read-through, sync) */
} cli_settings;

/* What a command is given: the settings and the parsed Redis URL. */
typedef struct cli_ctx {
    const cli_settings *set;
    const rurl *url;
    const char *cmd; /* "get", "dlq", ... for messages */
} cli_ctx;

/* A subcommand: runs with its own arguments (argv[0] is its name) and
 * returns the exit status. */
typedef int (*cli_cmd_fn)(const cli_ctx *c, int argc, char **argv);

/* Prints "plcache <cmd>: <message>\n" on stderr. */
void cli_error(const cli_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads FILE, or stdin when path is NULL or "-", at most CLI_MAX_INPUT bytes,
 * into a new NUL-terminated buffer owned by the caller (free()); *len is its
 * length (it may hold NUL bytes). NULL with a reason in err when it cannot be
 * read or is too big. Blocks on the file or the pipe. */
char *cli_read_input(const char *path, size_t *len, char *err, size_t errlen);

/* Connects to Redis (AUTH and SELECT from the URL), with the connect and
 * every command bounded by PLCACHE_REDIS_TIMEOUT. Returns the context (free
 * with redisFree), or NULL after printing why (never the password). Blocks. */
redisContext *cli_redis(const cli_ctx *c);

/* Runs one command given as argc strings with lengths (lens NULL: C strings).
 * Returns the reply (freeReplyObject), or NULL after printing why: the link
 * failed or timed out, or Redis answered an error. Blocks. */
redisReply *cli_command(const cli_ctx *c, redisContext *rc, int argc, const char **argv,
                        const size_t *lens);

/* Writes prefix + name (+ suffix, may be NULL) into out; -1 when it does not
 * fit (after printing why). */
int cli_key(const cli_ctx *c, char *out, size_t outlen, const char *name, const char *suffix);

/* Parses a whole decimal number in [min, max]; -1 when it is not one. */
int cli_parse_ll(const char *s, long long min, long long max, long long *out);

/* What to do about a Redis that cannot be reached or refuses the link, as a
 * clause to append to the reason ("check the password ..." when why names an
 * AUTH failure). A static string. */
const char *cli_redis_hint(const char *why);

/* Writes a duration of ms milliseconds as people read it into out: "0.4 s",
 * "12 s", "3 min", "2 h 5 min", "4 days" ("-" for a negative one). */
void cli_duration(long long ms, char *out, size_t outlen);

/* Whether a command prints JSON: when argv (its own arguments) holds
 * "--json" (removed from argv, *argc lowered), or when stdout is not a
 * terminal. Else a readable form. */
int cli_json_mode(int *argc, char **argv);

/* 1 when argv holds "--help" or "-h" (before a "--"). */
int cli_wants_help(int argc, char **argv);

#endif
