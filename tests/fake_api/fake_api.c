/* fake_api.c -- fake-promptlayer: a fake PromptLayer API for plcache's tests.
 *
 * main only reads flags and wires the pieces: the schemas request bodies and
 * templates are checked against (schema.c, schemas.json), the template store
 * (store.c), the HTTP side with its control API, request log and faults
 * (server.c), and the event loop with SIGTERM/SIGINT handling. See README.md for the flags,
 * the fixture format and the control API.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "api_schemas.h"
#include "schema.h"
#include "server.h"
#include "store.h"
#include "text.h"

#define MAX_FIXTURE_BYTES (64L * 1024 * 1024)
#define DEFAULT_MAX_RECORDS 100000
#define MAX_MAX_RECORDS 10000000
#define EXIT_USAGE 2

typedef struct options {
    char host[256];
    int port;
    const char *port_file;
    const char *fixture;
    const char *api_key;
    long delay_ms;
    size_t max_records;
    int64_t workspace_id;
    int no_model;
    int include_flag;
} options;

static void usage(FILE *out)
{
    fputs("usage: fake-promptlayer [options]\n"
          "  --listen HOST:PORT   address to listen on (default 127.0.0.1:0;\n"
          "                       port 0 picks a free one)\n"
          "  --port-file PATH     write the bound port there (atomically) once listening\n"
          "  --fixture FILE.json  initial templates: {\"templates\": [...]}\n"
          "  --api-key KEY        answer 401 to API requests without this X-API-KEY\n"
          "  --delay-ms N         delay every API answer by N ms (0..600000)\n"
          "  --max-records N      requests kept for GET /_fake/requests (default 100000)\n"
          "  --workspace-id N     the workspace_id of template answers (default 1)\n"
          "  --llm-kwargs-without-model null|refuse\n"
          "                       include_llm_kwargs=true on a template without model\n"
          "                       metadata: llm_kwargs null (default) or 400\n"
          "  --include-llm-kwargs accept|refuse\n"
          "                       refuse: answer include_llm_kwargs=true with 422\n"
          "  --help               this text\n"
          "Control API under /_fake/: see tests/fake_api/README.md.\n",
          out);
}

/* Splits "HOST:PORT" ("[v6]:PORT" too). Returns 0, or -1 when malformed. */
static int parse_listen(const char *s, options *o)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return -1;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(o->host))
        return -1;
    int64_t port = 0;
    if (text_parse_i64(colon + 1, 0, 65535, &port) != 0)
        return -1;
    memcpy(o->host, h, hlen);
    o->host[hlen] = '\0';
    o->port = (int)port;
    return 0;
}

/* Returns 0 with *o filled, 1 when --help was given, -1 on a bad flag (the
 * reason is on stderr). */
static int parse_options(int argc, char **argv, options *o)
{
    enum {
        OPT_LISTEN = 1,
        OPT_PORT_FILE,
        OPT_FIXTURE,
        OPT_API_KEY,
        OPT_DELAY,
        OPT_MAX_REC,
        OPT_WORKSPACE,
        OPT_NO_MODEL,
        OPT_INCLUDE,
        OPT_HELP,
    };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"fixture", required_argument, NULL, OPT_FIXTURE},
        {"api-key", required_argument, NULL, OPT_API_KEY},
        {"delay-ms", required_argument, NULL, OPT_DELAY},
        {"max-records", required_argument, NULL, OPT_MAX_REC},
        {"workspace-id", required_argument, NULL, OPT_WORKSPACE},
        {"llm-kwargs-without-model", required_argument, NULL, OPT_NO_MODEL},
        {"include-llm-kwargs", required_argument, NULL, OPT_INCLUDE},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->max_records = DEFAULT_MAX_RECORDS;
    o->workspace_id = 1;
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, "", longopts, NULL);
        if (c == -1)
            break;
        int64_t n = 0;
        switch (c) {
        case OPT_LISTEN:
            if (parse_listen(optarg, o) != 0) {
                fprintf(stderr, "fake-promptlayer: --listen must be HOST:PORT\n");
                return -1;
            }
            break;
        case OPT_PORT_FILE:
            o->port_file = optarg;
            break;
        case OPT_FIXTURE:
            o->fixture = optarg;
            break;
        case OPT_API_KEY:
            if (optarg[0] == '\0') {
                fprintf(stderr, "fake-promptlayer: --api-key must not be empty\n");
                return -1;
            }
            o->api_key = optarg;
            break;
        case OPT_DELAY:
            if (text_parse_i64(optarg, 0, 600000, &n) != 0) {
                fprintf(stderr, "fake-promptlayer: --delay-ms must be 0..600000\n");
                return -1;
            }
            o->delay_ms = (long)n;
            break;
        case OPT_MAX_REC:
            if (text_parse_i64(optarg, 1, MAX_MAX_RECORDS, &n) != 0) {
                fprintf(stderr, "fake-promptlayer: --max-records must be 1..%d\n", MAX_MAX_RECORDS);
                return -1;
            }
            o->max_records = (size_t)n;
            break;
        case OPT_WORKSPACE:
            if (text_parse_i64(optarg, 0, INT64_MAX, &n) != 0) {
                fprintf(stderr, "fake-promptlayer: --workspace-id must be an integer >= 0\n");
                return -1;
            }
            o->workspace_id = n;
            break;
        case OPT_NO_MODEL:
            o->no_model = server_setting("llm_kwargs_without_model", optarg);
            if (o->no_model < 0) {
                fprintf(stderr, "fake-promptlayer: --llm-kwargs-without-model must be null or "
                                "refuse\n");
                return -1;
            }
            break;
        case OPT_INCLUDE:
            o->include_flag = server_setting("include_llm_kwargs", optarg);
            if (o->include_flag < 0) {
                fprintf(stderr, "fake-promptlayer: --include-llm-kwargs must be accept or "
                                "refuse\n");
                return -1;
            }
            break;
        case OPT_HELP:
            return 1;
        default:
            fprintf(stderr, "fake-promptlayer: unknown or incomplete option %s\n",
                    (optind > 0 && optind <= argc) ? argv[optind - 1] : "");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fake-promptlayer: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* Loads the fixture into st. Returns 0, or -1 with the reason on stderr. */
static int load_fixture(store *st, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "fake-promptlayer: --fixture %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (sb.st_size > MAX_FIXTURE_BYTES) {
        fprintf(stderr, "fake-promptlayer: --fixture %s is larger than %ld bytes\n", path,
                MAX_FIXTURE_BYTES);
        return -1;
    }
    json_error_t jerr;
    json_t *state = json_load_file(path, 0, &jerr);
    if (state == NULL) {
        fprintf(stderr, "fake-promptlayer: --fixture %s:%d: %s\n", path, jerr.line, jerr.text);
        return -1;
    }
    char err[512];
    store_rc rc = store_replace(st, state, err, sizeof(err));
    json_decref(state);
    if (rc != STORE_OK) {
        fprintf(stderr, "fake-promptlayer: --fixture %s: %s\n", path, err);
        return -1;
    }
    return 0;
}

/* Writes "PORT\n" to path through a temporary file and a rename, so a reader
 * never sees a partial file. Returns 0, or -1 with the reason on stderr. */
static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        fprintf(stderr, "fake-promptlayer: --port-file path too long\n");
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "fake-promptlayer: --port-file %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    int bad = (fprintf(f, "%d\n", port) < 0);
    bad |= (fclose(f) != 0);
    if (bad || rename(tmp, path) != 0) {
        fprintf(stderr, "fake-promptlayer: --port-file %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct event_base *base = arg;
    (void)what;
    text_log("info", "stopping", "signal", (sig == SIGTERM) ? "TERM" : "INT", (const char *)NULL);
    event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc == 1) {
        usage(stdout);
        return 0;
    }
    if (rc != 0) {
        usage(stderr);
        return EXIT_USAGE;
    }

    int status = 1;
    int wrote_port_file = 0;
    struct event_base *base = NULL;
    struct event *sigterm = NULL;
    struct event *sigint = NULL;
    server *srv = NULL;
    schema_set *schemas = NULL;
    char err[512];

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    schemas =
        schema_set_new((const char *)api_schemas_json, api_schemas_json_len, err, sizeof(err));
    if (schemas == NULL) {
        fprintf(stderr, "fake-promptlayer: %s\n", err);
        goto done;
    }
    store *st = store_new(schemas);
    if (st == NULL) {
        fprintf(stderr, "fake-promptlayer: out of memory\n");
        goto done;
    }
    if (o.fixture != NULL && load_fixture(st, o.fixture) != 0) {
        store_free(st);
        status = EXIT_USAGE;
        goto done;
    }
    /* A precise clock: libevent's default (CLOCK_MONOTONIC_COARSE) moves by
     * the kernel tick, 4 ms here, and a 20 ms delay came out near 23 ms. */
    struct event_config *ecfg = event_config_new();
    if (ecfg != NULL) {
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    if (base == NULL) {
        store_free(st);
        fprintf(stderr, "fake-promptlayer: cannot create the event base\n");
        goto done;
    }
    server_config cfg = {
        .api_key = o.api_key,
        .delay_ms = o.delay_ms,
        .max_records = o.max_records,
        .schemas = schemas,
        .workspace_id = o.workspace_id,
        .llm_kwargs_without_model = o.no_model,
        .include_llm_kwargs = o.include_flag,
    };
    srv = server_new(base, st, &cfg, err, sizeof(err)); /* takes st over */
    if (srv == NULL) {
        fprintf(stderr, "fake-promptlayer: %s\n", err);
        goto done;
    }
    int port = 0;
    if (server_bind(srv, o.host, o.port, &port, err, sizeof(err)) != 0) {
        fprintf(stderr, "fake-promptlayer: %s\n", err);
        goto done;
    }
    sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    sigint = evsignal_new(base, SIGINT, on_signal, base);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) != 0 ||
        evsignal_add(sigint, NULL) != 0) {
        fprintf(stderr, "fake-promptlayer: cannot watch signals\n");
        goto done;
    }
    if (o.port_file != NULL) {
        if (write_port_file(o.port_file, port) != 0)
            goto done;
        wrote_port_file = 1;
    }
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    text_log("info", "listening", "host", o.host, "port", port_s, (const char *)NULL);

    if (event_base_dispatch(base) < 0) {
        fprintf(stderr, "fake-promptlayer: event loop failed\n");
        goto done;
    }
    status = 0;
done:
    server_free(srv);
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (base != NULL)
        event_base_free(base);
    schema_set_free(schemas);
    if (wrote_port_file)
        unlink(o.port_file);
    libevent_global_shutdown();
    return status;
}
