/* config.c -- settings from a table: defaults, environment, flags, --help. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CFG_SECRET_MAX (64 * 1024)

void cfg_flag_name(const char *env, char *out, size_t outlen)
{
    const char *p = env;
    if (strncmp(p, "PLCACHE_", 8) == 0)
        p += 8;
    size_t i = 0;
    for (; *p && i + 1 < outlen; p++, i++)
        out[i] = (*p == '_') ? '-' : (char)tolower((unsigned char)*p);
    out[i] = '\0';
}

static char **str_slot(void *settings, size_t off)
{
    return (char **)((char *)settings + off);
}
static long *int_slot(void *settings, size_t off)
{
    return (long *)((char *)settings + off);
}

static int set_string(char **slot, const char *v)
{
    char *copy = strdup(v);
    if (copy == NULL)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

char *cfg_read_file(const char *path, size_t max, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    data = malloc(max + 2);
    if (data == NULL) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    size_t n = fread(data, 1, max + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto err;
    }
    if (n > max) {
        snprintf(err, errlen, "%s is larger than %zu bytes", path, max);
        goto err;
    }
    data[n] = '\0';
    if (n > 0 && data[n - 1] == '\n') {
        data[--n] = '\0';
        if (n > 0 && data[n - 1] == '\r')
            data[--n] = '\0';
    }
    if (strlen(data) != n) {
        snprintf(err, errlen, "%s holds a NUL byte", path);
        goto err;
    }
    fclose(f);
    return data;
err:
    free(data);
    fclose(f);
    return NULL;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    if (*s == '\0' || isspace((unsigned char)*s))
        return -1;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* 1 or 0 for the words of a yes/no setting, -1 for anything else. */
static int parse_bool(const char *s)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* Applies one textual value to a row. */
static int apply_value(const cfg_opt *o, const char *flag, const char *v, void *settings, char *err,
                       size_t errlen)
{
    if (o->type == CFG_BOOL) {
        int b = parse_bool(v);
        if (b < 0) {
            snprintf(err, errlen, "%s (--%s): expected true or false", o->env, flag);
            return -1;
        }
        *int_slot(settings, o->offset) = b;
        return 0;
    }
    if (o->type == CFG_INT) {
        long n;
        if (parse_long(v, o->min, o->max, &n) != 0) {
            snprintf(err, errlen, "%s (--%s): expected a whole number from %ld to %ld", o->env,
                     flag, o->min, o->max);
            return -1;
        }
        *int_slot(settings, o->offset) = n;
        return 0;
    }
    if (o->check) {
        char why[200] = "";
        if (o->check(v, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s (--%s): %s", o->env, flag, why);
            return -1;
        }
    }
    if (set_string(str_slot(settings, o->offset), v) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int load_secret_file(const cfg_opt *o, const char *flag, const char *path, void *settings,
                            char *err, size_t errlen)
{
    char why[300] = "";
    char *v = cfg_read_file(path, CFG_SECRET_MAX, why, sizeof(why));
    if (v == NULL) {
        snprintf(err, errlen, "%s_FILE (--%s-file): %s", o->env, flag, why);
        return -1;
    }
    int rc = apply_value(o, flag, v, settings, err, errlen);
    free(v);
    if (rc == 0 && set_string(str_slot(settings, o->file_offset), path) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return rc;
}

static void print_help(const cfg_program *prog)
{
    char flag[64];
    printf("%s %s -- %s\n\nUsage: %s [--setting VALUE]...\n\n", prog->name, PLCACHE_VERSION,
           prog->summary, prog->name);
    printf("Every setting is an environment variable and the same-named flag; a flag wins.\n\n");
    for (size_t i = 0; i < prog->nopts; i++) {
        const cfg_opt *o = &prog->opts[i];
        cfg_flag_name(o->env, flag, sizeof(flag));
        printf("  --%s %s\n      %s", flag, o->metavar ? o->metavar : "VALUE", o->env);
        if (o->required)
            printf(", required");
        else if (o->def)
            printf(", default %s", o->def[0] ? o->def : "\"\"");
        printf("\n      %s\n", o->help);
        if (o->type == CFG_SECRET)
            printf("      Also --%s-file PATH or %s_FILE=PATH (re-read on SIGHUP).\n", flag,
                   o->env);
    }
    printf("\n  --help     this text\n  --version  print the version\n");
    if (prog->usage_tail)
        printf("\n%s", prog->usage_tail);
}

/* Finds the row for a flag name ("listen", "webhook-secret-file"). */
static const cfg_opt *find_flag(const cfg_program *prog, const char *name, int *is_file)
{
    char flag[64];
    for (size_t i = 0; i < prog->nopts; i++) {
        cfg_flag_name(prog->opts[i].env, flag, sizeof(flag));
        if (strcmp(flag, name) == 0) {
            *is_file = 0;
            return &prog->opts[i];
        }
        size_t fl = strlen(flag);
        if (prog->opts[i].type == CFG_SECRET && strncmp(name, flag, fl) == 0 &&
            strcmp(name + fl, "-file") == 0) {
            *is_file = 1;
            return &prog->opts[i];
        }
    }
    return NULL;
}

/* The flags of argv into fval/ffile (by row: the value, and whether it names
 * a file). Returns CFG_OK, CFG_EXIT after --help or --version, or CFG_ERROR
 * with err set. */
static int read_flags(const cfg_program *prog, int argc, char **argv, const char **fval,
                      int *ffile, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(prog);
            return CFG_EXIT;
        }
        if (strcmp(a, "--version") == 0) {
            printf("%s %s\n", prog->name, PLCACHE_VERSION);
            return CFG_EXIT;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%.60s' (see --help)", a);
            return CFG_ERROR;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (nl >= sizeof(name)) {
            snprintf(err, errlen, "unknown flag '%.60s' (see --help)", a);
            return CFG_ERROR;
        }
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        int is_file = 0;
        const cfg_opt *o = find_flag(prog, name, &is_file);
        if (o == NULL) {
            snprintf(err, errlen, "unknown flag --%s (see --help)", name);
            return CFG_ERROR;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (v == NULL) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "%s (--%s): missing value", o->env, name);
                return CFG_ERROR;
            }
            v = argv[++i];
        }
        size_t idx = (size_t)(o - prog->opts);
        fval[idx] = v;
        ffile[idx] = is_file;
    }
    return CFG_OK;
}

/* Sets one setting from its flag value v (NULL: none), else the
 * environment (o->env, or o->env_FILE for a secret), else its default.
 * Returns 0, or -1 with err set. */
static int load_one(const cfg_opt *o, const char *v, int is_file, void *settings, char *err,
                    size_t errlen)
{
    char flag[64];
    cfg_flag_name(o->env, flag, sizeof(flag));
    if (o->type == CFG_INT || o->type == CFG_BOOL)
        *int_slot(settings, o->offset) = 0;
    if (v == NULL) {
        const char *ev = getenv(o->env);
        const char *fv = NULL;
        if (o->type == CFG_SECRET) {
            char fname[128];
            snprintf(fname, sizeof(fname), "%s_FILE", o->env);
            fv = getenv(fname);
            if (fv && *fv == '\0')
                fv = NULL;
        }
        if (ev && fv) {
            snprintf(err, errlen, "%s: give either %s or %s_FILE, not both", o->env, o->env,
                     o->env);
            return -1;
        }
        v = fv ? fv : ev;
        is_file = fv != NULL;
    }
    if (v == NULL || (*v == '\0' && o->type != CFG_STRING))
        v = NULL;
    if (v == NULL) {
        if (o->required) {
            snprintf(err, errlen, "%s (--%s) is required", o->env, flag);
            return -1;
        }
        return o->def ? apply_value(o, flag, o->def, settings, err, errlen) : 0;
    }
    if (is_file)
        return load_secret_file(o, flag, v, settings, err, errlen);
    return apply_value(o, flag, v, settings, err, errlen);
}

int cfg_load(const cfg_program *prog, int argc, char **argv, void *settings, char *err,
             size_t errlen)
{
    /* Flag values, by row: the value and whether it names a file. */
    const char **fval = calloc(prog->nopts ? prog->nopts : 1, sizeof(*fval));
    int *ffile = calloc(prog->nopts ? prog->nopts : 1, sizeof(*ffile));
    int rc = CFG_ERROR;
    if (fval == NULL || ffile == NULL) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    rc = read_flags(prog, argc, argv, fval, ffile, err, errlen);
    for (size_t i = 0; rc == CFG_OK && i < prog->nopts; i++)
        if (load_one(&prog->opts[i], fval[i], ffile[i], settings, err, errlen) != 0)
            rc = CFG_ERROR;
done:
    free(fval);
    free(ffile);
    return rc;
}

const cfg_opt *cfg_find(const cfg_program *prog, const char *env)
{
    for (size_t i = 0; i < prog->nopts; i++)
        if (strcmp(prog->opts[i].env, env) == 0)
            return &prog->opts[i];
    return NULL;
}

int cfg_reload_secret(const cfg_opt *opt, void *settings, char *err, size_t errlen)
{
    char flag[64];
    if (opt == NULL || opt->type != CFG_SECRET)
        return 1;
    const char *path = *str_slot(settings, opt->file_offset);
    if (path == NULL)
        return 1;
    cfg_flag_name(opt->env, flag, sizeof(flag));
    char *p = strdup(path);
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* Validate into a scratch copy so that a bad file keeps the old value. */
    char *old = *str_slot(settings, opt->offset);
    *str_slot(settings, opt->offset) = NULL;
    int rc = load_secret_file(opt, flag, p, settings, err, errlen);
    if (rc == 0)
        free(old);
    else {
        free(*str_slot(settings, opt->offset));
        *str_slot(settings, opt->offset) = old;
    }
    free(p);
    return rc;
}

void cfg_free(const cfg_program *prog, void *settings)
{
    for (size_t i = 0; i < prog->nopts; i++) {
        const cfg_opt *o = &prog->opts[i];
        if (o->type == CFG_INT || o->type == CFG_BOOL)
            continue;
        char **s = str_slot(settings, o->offset);
        free(*s);
        *s = NULL;
        if (o->type == CFG_SECRET) {
            s = str_slot(settings, o->file_offset);
            free(*s);
            *s = NULL;
        }
    }
}

int cfg_check_listen(const char *value, char *err, size_t errlen)
{
    const char *colon;
    if (value[0] == '[') {
        const char *rb = strchr(value, ']');
        if (rb == NULL || rb[1] != ':') {
            snprintf(err, errlen, "expected [v6-address]:port");
            return -1;
        }
        colon = rb + 1;
    } else {
        colon = strrchr(value, ':');
        if (colon == NULL || colon == value) {
            snprintf(err, errlen, "expected host:port, e.g. 127.0.0.1:8080");
            return -1;
        }
    }
    long port;
    if (parse_long(colon + 1, 0, 65535, &port) != 0) {
        snprintf(err, errlen, "port must be a number from 0 to 65535");
        return -1;
    }
    return 0;
}
