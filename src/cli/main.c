/* main.c -- plcache, the command-line tool: settings and dispatch only.
 *
 *   plcache [--setting VALUE]... COMMAND [ARGS]
 *
 * The settings are the daemons' (DESIGN.md section 2): environment variables
 * and the same-named long flags, which may come before or after the command.
 * Each command lives in cmd_<name>.c; their contract is DESIGN.md section 7.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmds.h"
#include "cli/runenv.h"
#include "core/config.h"
#include "core/options.h"
#include "core/rurl.h"
#include "core/sign.h"

#define S(f) offsetof(cli_settings, f)
static const cfg_opt opts[] = {
    OPT_REDIS_URL(S(redis_url)),
    OPT_PREFIX(S(prefix)),
    /* OPT_API_KEY, but optional: only sync needs it, get reads through with it. */
    CFG_OPT(.env = "PROMPTLAYER_API_KEY", .type = CFG_SECRET, .offset = S(api_key),
            .file_offset = S(api_key_file), .metavar = "KEY",
            .help =
                "PromptLayer API key (never printed); get reads through with it, sync needs it"),
    OPT_BASE_URL(S(base_url)),
    OPT_LLM_KWARGS(S(llm_kwargs)),
    CFG_OPT(.env = "PLCACHE_WEBHOOK_SECRET", .type = CFG_SECRET, .check = sign_check_list,
            .offset = S(secret), .file_offset = S(secret_file), .metavar = "S1[,S2]",
            .help = "webhook signing secret(s), for sign (the first one signs)"),
    /* OPT_LOG_LEVEL, but quieter: a command's stderr is for its errors. */
    CFG_OPT(.env = "PLCACHE_LOG_LEVEL", .type = CFG_STRING, .def = "warn",
            .check = opt_check_log_level, .offset = S(log_level), .metavar = "LEVEL",
            .help = "debug, info, warn or error"),
    OPT_REDIS_TIMEOUT(S(redis_timeout)),
    CFG_OPT(.env = "PLCACHE_FETCH_CONCURRENCY", .type = CFG_INT, .def = "16", .min = 1, .max = 1024,
            .offset = S(fetch_concurrency), .metavar = "N",
            .help = "sync: API requests in flight at most"),
    CFG_OPT(.env = "PLCACHE_FETCH_TIMEOUT", .type = CFG_INT, .def = "10", .min = 1, .max = 600,
            .offset = S(fetch_timeout), .metavar = "SECONDS",
            .help = "one API request, connect to last byte (sync tries it up to 5 times)"),
};
#undef S

static const cfg_program program = {
    .name = "plcache",
    .summary = "reads and warms plcache's prompt cache, pushes and repairs log jobs",
    .opts = opts,
    .nopts = sizeof(opts) / sizeof(opts[0]),
};

static const char commands_help[] =
    "Commands:\n"
    "  get NAME [--label L | --version N]  print a prompt's JSON (reads through with a key);\n"
    "      [--var K=V] [--vars-json JSON]  rendered with input variables\n"
    "  track [FILE|-]                      push one log job; print the queue's length\n"
    "  sync [NAME ...]                     refresh cached templates (all when no NAME)\n"
    "  sign [--secret S] [FILE|-]          print the X-PromptLayer-Signature of a body\n"
    "  dlq list [N]                        the oldest N (100) dead jobs, one JSON a line\n"
    "  dlq retry N | --all                 send the oldest N (or all) dead jobs back\n"
    "  dlq purge                           drop every dead job; print how many\n"
    "  stats [--json]                      queues, workers, cached templates, events\n"
    "  ls [PATTERN] [--json]               cached templates: labels, versions, ages\n"
    "  show NAME [--json]                  one template: its fields, what get returns\n"
    "\n"
    "plcache help COMMAND (or plcache COMMAND --help) tells more about one.\n"
    "Exit status: 0 done, 1 not found or failed, 2 bad usage or settings.\n";

typedef struct command {
    const char *name;
    cli_cmd_fn fn;
    const char *help;
} command;

static const command commands[] = {
    {"get", cmd_get,
     "Usage: plcache get NAME [--label L | --version N] [--var K=V]... [--vars-json JSON]\n\n"
     "Prints the JSON of template NAME at release label L, version N, or latest\n"
     "(HGET <prefix>prompt:NAME label:L | version:N | latest) on stdout. On a miss,\n"
     "when PROMPTLAYER_API_KEY is set, reads through to the API and fills the cache\n"
     "(one client fetches while others wait for its fill). Exit 1 when not found.\n\n"
     "With --var (a string value; repeat it) or --vars-json (an object), prints the\n"
     "entry with its input variables rendered as PromptLayer's SDKs render them\n"
     "(prompt_template and llm_kwargs; f-string, jinja2). A template the SDKs do not\n"
     "render themselves, or one outside what plcache renders, is rendered by\n"
     "PromptLayer (needs PROMPTLAYER_API_KEY).\n\n"
     "Examples:\n"
     "  plcache get Hello --label prod\n"
     "  plcache get Hello --label prod --var topic=Redis --vars-json '{\"n\": 3}'\n"},
    {"track", cmd_track,
     "Usage: plcache track [FILE|-]\n\n"
     "Pushes one log job from FILE or stdin onto <prefix>track and prints the\n"
     "queue's length. A job is a Log Request (the body of PromptLayer's POST\n"
     "/log-request: provider, model, input and output as Prompt Blueprints, the\n"
     "two request times) or an envelope {\"endpoint\": \"/rest/track-score\",\n"
     "\"body\": {...}, \"then\": [...]} (DESIGN.md section 6). It is checked against\n"
     "PromptLayer's rules first: an invalid job is refused with the field at fault\n"
     "(exit 2) and nothing is pushed.\n\n"
     "Example:\n"
     "  plcache track - <<'EOF'\n"
     "  {\"provider\": \"openai\", \"model\": \"gpt-4o\",\n"
     "   \"input\": {\"type\": \"chat\", \"messages\": [{\"role\": \"user\",\n"
     "             \"content\": [{\"type\": \"text\", \"text\": \"Say hi\"}]}]},\n"
     "   \"output\": {\"type\": \"chat\", \"messages\": [{\"role\": \"assistant\",\n"
     "              \"content\": [{\"type\": \"text\", \"text\": \"Hi!\"}]}]},\n"
     "   \"request_start_time\": \"2026-12-02T10:00:00Z\",\n"
     "   \"request_end_time\": \"2026-12-02T10:00:01Z\"}\n"
     "  EOF\n"},
    {"sync", cmd_sync,
     "Usage: plcache sync [NAME ...]\n\n"
     "Refreshes latest and every cached label and version of the named templates\n"
     "from the API, or of every template when no NAME is given (the API's listing\n"
     "and every template already cached). A 404 removes the field; a 404 for latest\n"
     "removes the template. Writes go through the applier's Lua script, so they are\n"
     "safe next to a running plcache-webhook. At most PLCACHE_FETCH_CONCURRENCY\n"
     "requests in flight. Prints a JSON summary on stdout; a progress line on stderr\n"
     "when it is a terminal. Needs PROMPTLAYER_API_KEY. Exit 1 if any fetch failed.\n\n"
     "Examples:\n"
     "  plcache sync Hello\n"
     "  plcache sync              # every template\n"},
    {"sign", cmd_sign,
     "Usage: plcache sign [--secret S] [FILE|-]\n\n"
     "Prints the X-PromptLayer-Signature PromptLayer would send with the body in\n"
     "FILE or stdin: the hex HMAC-SHA256 of json.dumps(body, sort_keys=True), the\n"
     "canonical text (DESIGN.md section 3). The secret is --secret, or the first of\n"
     "PLCACHE_WEBHOOK_SECRET (or PLCACHE_WEBHOOK_SECRET_FILE). A body that is not\n"
     "JSON is refused (exit 2).\n\n"
     "Example:\n"
     "  sig=$(plcache sign body.json)\n"
     "  curl -H \"X-PromptLayer-Signature: $sig\" --data-binary @body.json \\\n"
     "       http://127.0.0.1:8080/webhooks/promptlayer\n"},
    {"dlq", cmd_dlq,
     "Usage: plcache dlq list [N]\n"
     "       plcache dlq retry N | --all\n"
     "       plcache dlq purge\n\n"
     "list:  the oldest N (default 100) entries of <prefix>track:dead, oldest first,\n"
     "       one JSON object a line ({\"job\", \"error\", \"status\", \"attempts\", "
     "\"failed_at\"}).\n"
     "retry: moves the original job of the oldest N (or all) dead entries back onto\n"
     "       <prefix>track, each in one atomic step; prints how many moved.\n"
     "purge: drops every dead entry; prints how many.\n\n"
     "Examples:\n"
     "  plcache dlq list 10\n"
     "  plcache dlq retry --all\n"},
    {"stats", cmd_stats,
     "Usage: plcache stats [--json]\n\n"
     "Shows the depths of the queue, the retry set, the dead list and every\n"
     "processing list; the workers with their last heartbeat and its age; the\n"
     "number of cached templates; the events stream's length and its consumer\n"
     "groups' pending entries and lag. A readable summary on a terminal; one JSON\n"
     "object with --json or when stdout is not a terminal (keys in the README).\n\n"
     "Examples:\n"
     "  plcache stats\n"
     "  plcache stats --json | jq .track.queued\n"},
    {"ls", cmd_ls,
     "Usage: plcache ls [PATTERN] [--json]\n\n"
     "Lists the cached templates whose name matches PATTERN (a glob: * any text,\n"
     "? one character, [abc] one of; every template without one), sorted by name:\n"
     "the version latest holds, each label with its version, the cached versions,\n"
     "and the age of the newest entry. An entry's age is that of its version's\n"
     "created_at, as PromptLayer answered it: when the version was made, not when\n"
     "it was cached (Redis keeps no write time per field). A table on a terminal;\n"
     "with --json (or when stdout is not a terminal) an array of objects\n"
     "{\"name\", \"id\", \"latest\", \"labels\": {label: version}, \"versions\": [n...],\n"
     "\"ages\": {field: seconds}, \"created_at\", \"age_s\"} (the last two: the newest\n"
     "entry's). plcache show NAME shows each entry. Exit 1 when nothing matches a\n"
     "PATTERN.\n\n"
     "Examples:\n"
     "  plcache ls\n"
     "  plcache ls 'Hel*' --json\n"},
    {"show", cmd_show,
     "Usage: plcache show NAME [--json]\n\n"
     "Shows one cached template: each field of <prefix>prompt:NAME (latest,\n"
     "label:L, version:N) with the version it holds, its created_at and age, and\n"
     "the command that prints it (plcache get NAME --label L, ...); bookkeeping\n"
     "fields (id, gen, at:...) are shown apart. With --json (or when stdout is not\n"
     "a terminal) one object {\"name\", \"id\", \"gen\", \"entries\": [{\"field\",\n"
     "\"selector\", \"version\", \"created_at\", \"age_s\", \"value\"}]}, value being\n"
     "the entry's JSON exactly as get prints it. Reads the cache only (no\n"
     "read-through). Exit 1 when NAME is not cached.\n\n"
     "Examples:\n"
     "  plcache show Hello\n"
     "  plcache show Hello --json | jq '.entries[] | select(.field == \"label:prod\")'\n"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void general_help(void)
{
    char flag[64];
    printf("%s %s -- %s\n\nUsage: plcache [--setting VALUE]... COMMAND [ARGS]\n\n%s\n",
           program.name, PLCACHE_VERSION, program.summary, commands_help);
    printf("Settings: each is an environment variable and the same-named flag (a flag wins);\n"
           "a secret may also be given as NAME_FILE=PATH or --name-file PATH.\n"
           "When PLCACHE_REDIS_URL is given neither way and scripts/run is running, plcache\n"
           "uses that run's settings (its Redis, its PLCACHE_PREFIX, and its fake API when\n"
           "no PromptLayer setting is given), from $XDG_RUNTIME_DIR/plcache-run.env (or\n"
           "/tmp/plcache-run-UID.env), and says so on stderr (not at log level error).\n"
           "scripts/run prints the line that sets them in another shell:\n"
           "  set -a; . <state>/plcache.env; set +a\n\n");
    for (size_t i = 0; i < program.nopts; i++) {
        const cfg_opt *o = &program.opts[i];
        cfg_flag_name(o->env, flag, sizeof(flag));
        printf("  --%s %s\n      %s", flag, o->metavar, o->env);
        if (o->def)
            printf(", default %s", o->def);
        printf("\n      %s\n", o->help);
    }
}

/* 1 when a --flag (without its "--") names a setting (or a secret's file). */
static int is_setting(const char *arg)
{
    char name[64], flag[64];
    size_t n = strcspn(arg, "=");
    if (n >= sizeof(name))
        return 0;
    memcpy(name, arg, n);
    name[n] = '\0';
    for (size_t i = 0; i < program.nopts; i++) {
        cfg_flag_name(program.opts[i].env, flag, sizeof(flag));
        size_t fl = strlen(flag);
        if (strcmp(name, flag) == 0 ||
            (program.opts[i].type == CFG_SECRET && strncmp(name, flag, fl) == 0 &&
             strcmp(name + fl, "-file") == 0))
            return 1;
    }
    return 0;
}

/* Splits argv: settings flags (with their values) go to sargv after argv[0],
 * the command and its arguments to cargv; after "--" everything belongs to
 * the command. Both arrays hold argc + 1 slots; cannot fail. */
static void split_args(int argc, char **argv, char **sargv, int *sargc, char **cargv, int *cargc)
{
    *sargc = 1;
    *cargc = 0;
    sargv[0] = argv[0];
    int rest = 0; /* after "--": everything belongs to the command */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!rest && strcmp(a, "--") == 0) {
            rest = 1;
            cargv[(*cargc)++] = argv[i];
        } else if (!rest && strncmp(a, "--", 2) == 0 && is_setting(a + 2)) {
            sargv[(*sargc)++] = argv[i];
            if (strchr(a, '=') == NULL && i + 1 < argc)
                sargv[(*sargc)++] = argv[++i];
        } else {
            cargv[(*cargc)++] = argv[i];
        }
    }
}

/* The command cargv names (cargc >= 1), itself or after "help". NULL when
 * there is none to run: general help or the version printed (*status
 * CLI_OK), or an unknown name said on stderr (*status left as it is). */
static const command *pick_command(int cargc, char **cargv, int *status)
{
    const char *name = cargv[0];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
        (strcmp(name, "help") == 0 && cargc == 1)) {
        general_help();
        *status = CLI_OK;
        return NULL;
    }
    if (strcmp(name, "--version") == 0) {
        printf("plcache %s\n", PLCACHE_VERSION);
        *status = CLI_OK;
        return NULL;
    }
    const command *cmd = find_command(strcmp(name, "help") == 0 ? cargv[1] : name);
    if (cmd == NULL) {
        const char *what = strcmp(name, "help") == 0 ? cargv[1] : name;
        fprintf(stderr, "plcache: unknown %s '%.60s' (see plcache --help)\n",
                what[0] == '-' ? "option" : "command", what);
    }
    return cmd;
}

/* 1 when the setting env is given: in the environment (or as env_FILE for
 * a secret) or as its flag among the settings flags. */
static int given(int sargc, char **sargv, const char *env)
{
    char flag[64], file_env[80];
    snprintf(file_env, sizeof(file_env), "%s_FILE", env);
    if (getenv(env) != NULL || getenv(file_env) != NULL)
        return 1;
    cfg_flag_name(env, flag, sizeof(flag));
    size_t fl = strlen(flag);
    for (int i = 1; i < sargc; i++) {
        const char *a = sargv[i];
        if (strncmp(a, "--", 2) == 0 && strncmp(a + 2, flag, fl) == 0 &&
            (a[2 + fl] == '\0' || a[2 + fl] == '=' || strncmp(a + 2 + fl, "-file", 5) == 0))
            return 1;
    }
    return 0;
}

/* Without PLCACHE_REDIS_URL, the settings of a running scripts/run
 * (runenv.h), put into the environment for cfg_load: its Redis, its prefix
 * unless one is given, and its fake API unless any PromptLayer setting is
 * given (a real key never goes to the fake). Returns the run's pid when they
 * are used, 0 when not (after saying why when there is something to say). */
static long long use_run_settings(int sargc, char **sargv, char *path, size_t pathlen)
{
    runenv e;
    char why[700];
    if (given(sargc, sargv, "PLCACHE_REDIS_URL"))
        return 0;
    int rc = runenv_load(&e, why, sizeof(why));
    if (rc <= 0) {
        if (why[0])
            fprintf(stderr, "plcache: %s\n", why);
        return 0;
    }
    runenv_pointer_path(path, pathlen);
    setenv("PLCACHE_REDIS_URL", runenv_get(&e, "PLCACHE_REDIS_URL"), 1);
    const char *prefix = runenv_get(&e, "PLCACHE_PREFIX");
    if (prefix != NULL && !given(sargc, sargv, "PLCACHE_PREFIX"))
        setenv("PLCACHE_PREFIX", prefix, 1);
    const char *base = runenv_get(&e, "PROMPTLAYER_BASE_URL");
    const char *key = runenv_get(&e, "PROMPTLAYER_API_KEY");
    if (base != NULL && key != NULL && !given(sargc, sargv, "PROMPTLAYER_BASE_URL") &&
        !given(sargc, sargv, "PROMPTLAYER_API_KEY")) {
        setenv("PROMPTLAYER_BASE_URL", base, 1);
        setenv("PROMPTLAYER_API_KEY", key, 1);
    }
    long long pid = e.pid;
    runenv_free(&e);
    return pid;
}

int main(int argc, char **argv)
{
    cli_settings set;
    rurl url;
    int status = CLI_USAGE;
    /* Settings flags go to sargv, the command and its arguments to cargv. */
    char **sargv = calloc((size_t)argc + 1, sizeof(char *));
    char **cargv = calloc((size_t)argc + 1, sizeof(char *));
    int sargc = 1, cargc = 0;
    memset(&set, 0, sizeof(set));
    memset(&url, 0, sizeof(url));
    if (sargv == NULL || cargv == NULL) {
        fprintf(stderr, "plcache: out of memory\n");
        status = CLI_FAIL;
        goto done;
    }
    split_args(argc, argv, sargv, &sargc, cargv, &cargc);
    if (cargc == 0) {
        fprintf(stderr, "plcache: no command given (see plcache --help)\n");
        goto done;
    }
    const char *name = cargv[0];
    const command *cmd = pick_command(cargc, cargv, &status);
    if (cmd == NULL)
        goto done;
    if (strcmp(name, "help") == 0 || cli_wants_help(cargc, cargv)) {
        fputs(cmd->help, stdout);
        status = CLI_OK;
        goto done;
    }
    char run_path[512] = "";
    /* sign needs no Redis: nothing to find, nothing to say. */
    long long run_pid =
        cmd->fn == cmd_sign ? 0 : use_run_settings(sargc, sargv, run_path, sizeof(run_path));
    if (opt_start(&program, sargc, sargv, &set, &set.log_level, &set.redis_url, &url, &status) != 0)
        goto done;
    if (run_pid > 0 && strcmp(set.log_level, "error") != 0) {
        char where[300];
        rurl_describe(&url, where, sizeof(where));
        fprintf(stderr,
                "plcache: using the Redis of scripts/run (pid %lld): %s (from %s; set "
                "PLCACHE_REDIS_URL to use another)\n",
                run_pid, where, run_path);
    }
    cli_ctx ctx = {&set, &url, cmd->name};
    status = cmd->fn(&ctx, cargc, cargv);
done:
    rurl_free(&url);
    cfg_free(&program, &set);
    free(sargv);
    free(cargv);
    return status;
}
