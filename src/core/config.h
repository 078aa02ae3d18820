/* config.h -- table-driven settings: environment variables, long flags, --help.
 *
 * A program describes its settings once, in an array of cfg_opt rows (as Fluent
 * Bit's config_map does). Each row is an environment variable and the same-named
 * long flag: PLCACHE_LISTEN <=> --listen (the PLCACHE_ prefix is dropped, the
 * rest lower-cased with '_' as '-'; PROMPTLAYER_API_KEY <=> --promptlayer-api-key).
 * A flag wins over the variable. A CFG_SECRET row may also be given as a file,
 * NAME_FILE=/path or --name-file /path, read at start (trailing newline
 * stripped) and again by cfg_reload_secret. The same table prints --help and
 * validates: a bad value stops the program with one line naming the setting.
 */
#ifndef PLCACHE_CONFIG_H
#define PLCACHE_CONFIG_H

#include <stddef.h>

typedef enum cfg_type {
    CFG_STRING, /* char * at offset */
    CFG_SECRET, /* char * at offset, char * (file path or NULL) at file_offset */
    CFG_INT,    /* long at offset, within [min, max] */
    CFG_BOOL,   /* long at offset: 1 for true/yes/on/1, 0 for false/no/off/0 (any case) */
} cfg_type;

/* A validator for string values: returns 0, or -1 with a reason in err. */
typedef int (*cfg_check_fn)(const char *value, char *err, size_t errlen);

typedef struct cfg_opt {
    const char *env; /* PLCACHE_LISTEN */
    cfg_type type;
    const char *def;     /* default, as text; NULL = unset */
    int required;        /* unset is an error */
    long min, max;       /* CFG_INT bounds */
    cfg_check_fn check;  /* optional validator for CFG_STRING / CFG_SECRET */
    size_t offset;       /* where the value lands in the settings struct */
    size_t file_offset;  /* CFG_SECRET: where the file path lands */
    const char *metavar; /* ADDR, N, PATH ... for --help */
    const char *help;
} cfg_opt;

/* One row of a table, its fields named: CFG_OPT(.env = "PLCACHE_LISTEN",
 * .type = CFG_STRING, .def = "127.0.0.1:8080", ...). A field left out is 0 or
 * NULL. The macro is the brace list itself; it only lets a row keep to a few
 * lines where clang-format would give each field a line of its own. */
#define CFG_OPT(...)                                                                               \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }

typedef struct cfg_program {
    const char *name;       /* plcache-webhook */
    const char *summary;    /* one line for --help */
    const char *usage_tail; /* extra --help text after the settings, or NULL */
    const cfg_opt *opts;
    size_t nopts;
} cfg_program;

enum { CFG_OK = 0, CFG_EXIT = 1, CFG_ERROR = -1 };

/* Fills `settings` from defaults, the environment and argv. Returns CFG_OK;
 * CFG_EXIT after printing --help or --version on stdout (exit 0); CFG_ERROR
 * with one line in err naming the setting (exit 2). Strings in `settings` are
 * owned by it: release them with cfg_free. Reads secret files: may block on the
 * file system, so call it only at start. */
int cfg_load(const cfg_program *prog, int argc, char **argv, void *settings, char *err,
             size_t errlen);

/* Reads a secret file again (for SIGHUP). Returns 0 and replaces the value,
 * 1 when the row has no file, -1 with err set (the old value kept). Blocks on
 * the file system for one small read. */
int cfg_reload_secret(const cfg_opt *opt, void *settings, char *err, size_t errlen);

/* Frees every string the table put into `settings`. */
void cfg_free(const cfg_program *prog, void *settings);

/* Reads a whole small file (at most max bytes) into a new NUL-terminated
 * string owned by the caller, one trailing "\n" or "\r\n" removed. Returns NULL
 * with err set on failure. */
char *cfg_read_file(const char *path, size_t max, char *err, size_t errlen);

/* The row of a variable, or NULL. */
const cfg_opt *cfg_find(const cfg_program *prog, const char *env);

/* The long flag of a row, written into out: "listen" for PLCACHE_LISTEN. */
void cfg_flag_name(const char *env, char *out, size_t outlen);

/* Validates "host:port" / "[v6]:port" with a numeric port 0..65535. */
int cfg_check_listen(const char *value, char *err, size_t errlen);

#endif
