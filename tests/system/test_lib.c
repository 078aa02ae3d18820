/* test_lib.c -- libplcache against a real redis-server and the fake API.
 *
 * The group setup starts a throwaway redis-server (a free loopback port, a temp
 * folder, no persistence) and tests/fake_api's fake-promptlayer (FAKE_API_BIN)
 * with a fixture of one template; the teardown stops both by PID. Every test
 * starts from an empty Redis and a reset fake, drives real clients (threads
 * with a client each where it needs concurrency), and checks Redis and the
 * fake's request records. Every wait is bounded and fails the test when it
 * runs out. Control calls use hiredis and libcurl's easy API synchronously.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plcache.h"

#define KEY "k"
/* A job PromptLayer accepts (a Log Request, DESIGN.md section 6). */
#define VALID_JOB                                                                                  \
    "{\"provider\":\"openai\",\"model\":\"gpt-4o\",\"input\":{\"type\":\"chat\",\"messages\":[{"  \
    "\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}]}]},\"output\":{\"type\":"   \
    "\"chat\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":"      \
    "\"Hello\"}]}]},\"request_start_time\":\"2026-12-02T10:00:00Z\",\"request_end_time\":"       \
    "\"2026-12-02T10:00:01Z\",\"tags\":[\"t\"]}"
#define HERD 16

typedef struct server {
    pid_t pid;
    int port;
} server;

static struct {
    char dir[64];
    char fixture[128];
    char port_file[128];
    server redis;
    server fake;
    char redis_url[64];
    char base[64];
    redisContext *r; /* control connection */
} g = {.redis = {-1, 0}, .fake = {-1, 0}};

/* ---- processes ---- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A loopback port nobody listens on right now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void stop(server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    int64_t deadline = now_ms() + 5000;
    pid_t w = 0;
    while (w == 0 && now_ms() < deadline) {
        w = waitpid(s->pid, NULL, WNOHANG);
        if (w == 0)
            sleep_ms(5);
    }
    if (w == 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = -1;
}

/* In a forked child: output to log, then exec argv; never returns. */
static void spawn_exec(const char *log, char *const argv[])
{
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    execvp(argv[0], argv);
    _exit(127);
}

static pid_t spawn(const char *log, char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0)
        spawn_exec(log, argv);
    return pid;
}

static redisContext *connect_port(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c != NULL && c->err == 0 && redisSetTimeout(c, tv) == REDIS_OK)
        return c;
    if (c != NULL)
        redisFree(c);
    return NULL;
}

/* Spawns argv (a server that will listen on s->port) and waits until it
 * answers PING, within 10 s; 0 then. -1 when it exited first (the port was
 * taken) or never answered (then it is stopped). */
static int spawn_and_ping(server *s, const char *log, char *const argv[])
{
    s->pid = spawn(log, argv);
    if (s->pid < 0)
        return -1;
    int64_t deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = -1;
            return -1;
        }
        redisContext *c = connect_port(s->port);
        if (c != NULL) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
            if (r != NULL)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        }
        sleep_ms(10);
    }
    stop(s);
    return -1;
}

/* Starts redis-server on a free port (a few tries, in case another process
 * took the port meanwhile), with its files and <name>.log in dir, as a replica
 * of 127.0.0.1:replicaof when replicaof > 0; 0 once it answers PING. */
static int redis_start(server *s, const char *dir, const char *name, int replicaof)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        s->port = free_port();
        if (s->port < 0)
            return -1;
        char port[16], of[16], log[160];
        snprintf(port, sizeof(port), "%d", s->port);
        snprintf(of, sizeof(of), "%d", replicaof);
        snprintf(log, sizeof(log), "%s/%s.log", dir, name);
        char *replica = replicaof > 0 ? "--replicaof" : NULL; /* NULL ends argv there */
        char *argv[] = {"redis-server",
                        "--port",
                        port,
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        (char *)dir,
                        "--dbfilename",
                        "unused.rdb",
                        "--daemonize",
                        "no",
                        replica,
                        "127.0.0.1",
                        of,
                        NULL};
        if (spawn_and_ping(s, log, argv) == 0)
            return 0;
    }
    fprintf(stderr, "# redis-server did not start, see %s/%s.log\n", dir, name);
    return -1;
}

static int write_fixture(const char *path)
{
    json_t *fx =
        json_pack("{s:[{s:i,s:s,s:{s:{s:{s:s,s:[{s:s,s:s}]}},s:{s:{s:s,s:[]},s:s}},s:{s:i}}]}",
                  "templates", "id", 1, "prompt_name", "Hello", "versions", "1", "prompt_template",
                  "type", "completion", "content", "type", "text", "text", "hi", "2",
                  "prompt_template", "type", "chat", "messages", "commit_message", "second",
                  "labels", "prod", 2);
    if (fx == NULL)
        return -1;
    int rc = json_dump_file(fx, path, JSON_COMPACT);
    json_decref(fx);
    return rc;
}

static int read_port(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return -1;
    char line[32] = "";
    char *got = fgets(line, sizeof(line), fp);
    fclose(fp);
    if (got == NULL)
        return -1;
    errno = 0;
    char *end = NULL;
    long port = strtol(line, &end, 10);
    if (errno != 0 || end == line || (*end != '\n' && *end != '\0') || port <= 0 || port > 65535)
        return -1;
    return (int)port;
}

static int fake_start(void)
{
    const char *bin = getenv("FAKE_API_BIN");
    if (bin == NULL || bin[0] == '\0') {
        fprintf(stderr, "# FAKE_API_BIN is not set: cannot start the fake API\n");
        return -1;
    }
    char log[160];
    snprintf(log, sizeof(log), "%s/fake.log", g.dir);
    char *argv[] = {(char *)bin, "--listen", "127.0.0.1:0", "--port-file", g.port_file,
                    "--fixture", g.fixture,  "--api-key",   KEY,           NULL};
    g.fake.pid = spawn(log, argv);
    if (g.fake.pid < 0)
        return -1;
    int64_t deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
        if (waitpid(g.fake.pid, NULL, WNOHANG) == g.fake.pid) {
            fprintf(stderr, "# fake-promptlayer exited early, see %s\n", log);
            g.fake.pid = -1;
            return -1;
        }
        g.fake.port = read_port(g.port_file);
        if (g.fake.port > 0) {
            snprintf(g.base, sizeof(g.base), "http://127.0.0.1:%d", g.fake.port);
            return 0;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "# fake-promptlayer did not write %s within 10 s\n", g.port_file);
    return -1;
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(g.dir, sizeof(g.dir), "/tmp/test_lib.XXXXXX");
    if (mkdtemp(g.dir) == NULL)
        return -1;
    snprintf(g.fixture, sizeof(g.fixture), "%s/fixture.json", g.dir);
    snprintf(g.port_file, sizeof(g.port_file), "%s/port", g.dir);
    if (write_fixture(g.fixture) != 0 || fake_start() != 0 ||
        redis_start(&g.redis, g.dir, "redis", 0) != 0)
        return -1;
    snprintf(g.redis_url, sizeof(g.redis_url), "redis://127.0.0.1:%d/0", g.redis.port);
    g.r = connect_port(g.redis.port);
    return g.r != NULL ? 0 : -1;
}

/* Removes dir and everything below it. */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            if (unlink(p) != 0 && errno == EISDIR)
                remove_tree(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int group_teardown(void **state)
{
    (void)state;
    if (g.r != NULL)
        redisFree(g.r);
    stop(&g.fake);
    stop(&g.redis);
    remove_tree(g.dir);
    curl_global_cleanup();
    return 0;
}

/* ---- control ---- */

typedef struct body {
    char *p;
    size_t len;
} body;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    body *b = arg;
    char *q = realloc(b->p, b->len + size * n + 1);
    if (q == NULL)
        return 0;
    memcpy(q + b->len, p, size * n);
    b->len += size * n;
    q[b->len] = '\0';
    b->p = q;
    return size * n;
}

/* One synchronous request to the fake; returns the status (0 on failure) and,
 * when out is not NULL, the body (free it). */
static long ctl(const char *method, const char *path, const char *data, char **out)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", g.base, path);
    body b = {NULL, 0};
    long status = 0;
    CURL *e = curl_easy_init();
    if (e == NULL)
        return 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&b);
    if (data != NULL)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, data);
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    if (out != NULL)
        *out = b.p;
    else
        free(b.p);
    return status;
}

/* One request to url (a POST of data with the signature header when sig is
 * not NULL); returns the status, 0 on failure. */
static long http_status(const char *method, const char *url, const char *data, const char *sig)
{
    long status = 0;
    body b = {NULL, 0};
    struct curl_slist *h = NULL;
    char hdr[128];
    CURL *e = curl_easy_init();
    if (e == NULL)
        return 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&b);
    if (sig != NULL) {
        snprintf(hdr, sizeof(hdr), "X-PromptLayer-Signature: %s", sig);
        h = curl_slist_append(h, hdr);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    }
    if (data != NULL)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, data);
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    free(b.p);
    return status;
}

/* The fake's API requests for template paths starting with prefix. */
static json_t *records(const char *prefix)
{
    char path[256], *text = NULL;
    snprintf(path, sizeof(path), "/_fake/requests?path_prefix=%s", prefix);
    assert_int_equal(ctl("GET", path, NULL, &text), 200);
    assert_non_null(text);
    json_t *arr = json_loads(text, 0, NULL);
    free(text);
    assert_true(json_is_array(arr));
    return arr;
}

static size_t count_records(const char *prefix)
{
    json_t *arr = records(prefix);
    size_t n = json_array_size(arr);
    json_decref(arr);
    return n;
}

static void set_delay(int ms)
{
    char cfg[64];
    snprintf(cfg, sizeof(cfg), "{\"delay_ms\":%d}", ms);
    assert_int_equal(ctl("PUT", "/_fake/config", cfg, NULL), 200);
}

/* r, the reply of a command on c (the caller's). Fails the test when the
 * connection broke (r is NULL) or Redis answered an error. */
static redisReply *checked(redisContext *c, redisReply *r)
{
    if (r == NULL)
        fail_msg("control connection: %s", c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", r->str);
    return r;
}

/* A command on another server than the group's (checked). */
static redisReply *cmd_at(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    return checked(c, r);
}

static long long cmd_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(g.r, fmt, ap);
    va_end(ap);
    checked(g.r, r);
    if (r->type != REDIS_REPLY_INTEGER)
        fail_msg("expected an integer, got type %d", r->type);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* The string value of a command (a copy, "" for nil, free it). */
static char *cmd_str(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(g.r, fmt, ap);
    va_end(ap);
    checked(g.r, r);
    char *s = strdup(r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ? r->str : "");
    freeReplyObject(r);
    assert_non_null(s);
    return s;
}

/* The template's gen, checked to be what a write that made the hash sets: a
 * start at Redis' clock (microseconds; model/cachew.h), within a minute. */
static long long made_gen(void)
{
    char *gen = cmd_str("HGET pl:prompt:Hello gen");
    assert_non_null(gen);
    long long g = strtoll(gen, NULL, 10);
    free(gen);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    assert_true(g > now - 60000000LL && g < now + 60000000LL);
    return g;
}

static void cmd_ok(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(g.r, fmt, ap);
    va_end(ap);
    freeReplyObject(checked(g.r, r));
}

static int setup(void **state)
{
    (void)state;
    if (ctl("POST", "/_fake/reset", "{}", NULL) != 200)
        return -1;
    if (ctl("PUT", "/_fake/config", "{\"delay_ms\":0,\"api_key\":\"" KEY "\"}", NULL) != 200)
        return -1;
    /* A test that failed half-way may have left a password set. */
    redisReply *r = redisCommand(g.r, "CONFIG SET requirepass %s", "");
    if (r == NULL)
        return -1;
    freeReplyObject(r);
    r = redisCommand(g.r, "FLUSHALL");
    if (r == NULL)
        return -1;
    freeReplyObject(r);
    return 0;
}

/* ---- clients ---- */

static plcache_options opts(const char *key)
{
    plcache_options o;
    plcache_options_init(&o);
    o.redis_url = g.redis_url;
    o.api_key = key;
    o.api_base_url = g.base;
    return o;
}

static plcache *open_client(const plcache_options *o)
{
    plcache *c = NULL;
    char err[256];
    plcache_status st = plcache_open(&c, o, err, sizeof(err));
    if (st != PLCACHE_OK)
        fail_msg("plcache_open: %s: %s", plcache_status_str(st), err);
    return c;
}

/* Waits (bounded) until the memory cache is usable (or not); 1 when it is as
 * wanted in time. */
static int wait_usable(plcache *c, int want, long timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    plcache_stats s;
    for (;;) {
        plcache_get_stats(c, &s);
        if (s.memory_usable == want)
            return 1;
        if (now_ms() > deadline)
            return 0;
        sleep_ms(2);
    }
}

static char *get_ok(plcache *c, const char *name, plcache_select sel, const char *label,
                    long long version)
{
    char *json = NULL;
    size_t len = 0;
    plcache_status st = plcache_get(c, name, sel, label, version, &json, &len);
    if (st != PLCACHE_OK)
        fail_msg("plcache_get %s: %s: %s", name, plcache_status_str(st), plcache_errstr(c));
    assert_non_null(json);
    assert_int_equal(len, strlen(json));
    return json;
}

/* ---- tests ---- */

static void test_hit_returns_the_stored_json(void **state)
{
    (void)state;
    cmd_ok("HSET pl:prompt:Hello label:prod %s", "{\"stored\":true}");
    plcache_options o = opts(KEY);
    plcache *c = open_client(&o);
    char *json = get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0);
    assert_string_equal(json, "{\"stored\":true}");
    plcache_free(json);
    assert_string_equal(plcache_errstr(c), "");
    plcache_stats s;
    plcache_get_stats(c, &s);
    assert_int_equal(s.redis_hits, 1);
    assert_int_equal(s.api_fetches, 0);
    assert_int_equal(count_records("/prompt-templates"), 0);
    plcache_close(c);
}

static void test_miss_reads_through_fills_and_calls_the_api_once(void **state)
{
    (void)state;
    plcache_options o = opts(KEY);
    plcache *c = open_client(&o);
    char *json = get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0);
    json_t *j = json_loads(json, 0, NULL);
    assert_true(json_is_object(j));
    assert_string_equal(json_string_value(json_object_get(j, "prompt_name")), "Hello");
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 2);
    json_decref(j);
    /* The cache holds exactly what the API said, a new gen, the id both ways. */
    char *stored = cmd_str("HGET pl:prompt:Hello label:prod");
    assert_string_equal(stored, json);
    free(stored);
    made_gen();
    char *id = cmd_str("HGET pl:prompt:Hello id");
    assert_string_equal(id, "1");
    free(id);
    char *name = cmd_str("HGET pl:prompt-ids 1");
    assert_string_equal(name, "Hello");
    free(name);
    assert_int_equal(cmd_int("EXISTS pl:lease:Hello:label:prod"), 0);
    assert_int_equal(cmd_int("DBSIZE"), 2);
    /* Asked the way DESIGN.md section 5 says. */
    json_t *rec = records("/prompt-templates/");
    assert_int_equal(json_array_size(rec), 1);
    json_t *r0 = json_array_get(rec, 0);
    assert_string_equal(json_string_value(json_object_get(r0, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(r0, "path")), "/prompt-templates/Hello");
    assert_string_equal(json_string_value(json_object_get(r0, "query")),
                        "label=prod&include_llm_kwargs=true");
    assert_string_equal(json_string_value(json_object_get(r0, "api_key")), KEY);
    assert_string_equal(json_string_value(json_object_get(r0, "cache_control")), "no-cache");
    json_decref(rec);
    /* The second get is a hit: no second API call. */
    char *again = get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0);
    assert_string_equal(again, json);
    plcache_free(again);
    plcache_free(json);
    assert_int_equal(count_records("/prompt-templates/"), 1);
    plcache_stats s;
    plcache_get_stats(c, &s);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.api_fetches, 1);
    assert_int_equal(s.fills, 1);
    assert_int_equal(s.redis_hits, 1);
    plcache_close(c);
}

static void test_each_selector_fills_its_own_field(void **state)
{
    (void)state;
    plcache_options o = opts(KEY);
    plcache *c = open_client(&o);
    char *latest = get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0);
    long long first = made_gen();
    char *v1 = get_ok(c, "Hello", PLCACHE_SEL_VERSION, NULL, 1);
    json_t *j = json_loads(latest, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 2);
    json_decref(j);
    char *stored = cmd_str("HGET pl:prompt:Hello latest");
    assert_string_equal(stored, latest);
    free(stored);
    stored = cmd_str("HGET pl:prompt:Hello version:1");
    assert_string_equal(stored, v1);
    free(stored);
    assert_true(made_gen() == first + 1); /* the second fill bumped it */
    assert_int_equal(cmd_int("HLEN pl:prompt:Hello"), 4); /* latest, version:1, gen, id */
    json_t *rec = records("/prompt-templates/");
    assert_int_equal(json_array_size(rec), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rec, 0), "query")),
                        "include_llm_kwargs=true");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rec, 1), "query")),
                        "version=1&include_llm_kwargs=true");
    json_decref(rec);
    plcache_free(latest);
    plcache_free(v1);
    plcache_close(c);
}

static void test_miss_without_key_is_not_found(void **state)
{
    (void)state;
    plcache_options o = opts(NULL);
    plcache *c = open_client(&o);
    char *json = (char *)"untouched";
    size_t len = 99;
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0, &json, &len),
                     PLCACHE_NOT_FOUND);
    assert_null(json);
    assert_int_equal(len, 0);
    assert_true(strlen(plcache_errstr(c)) > 0);
    assert_int_equal(count_records("/prompt-templates"), 0);
    assert_int_equal(cmd_int("DBSIZE"), 0);
    plcache_close(c);
}

static void test_not_found_at_the_api_writes_nothing(void **state)
{
    (void)state;
    plcache_options o = opts(KEY);
    plcache *c = open_client(&o);
    char *json = NULL;
    assert_int_equal(plcache_get(c, "Nope", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL),
                     PLCACHE_NOT_FOUND);
    assert_null(json);
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_VERSION, NULL, 99, &json, NULL),
                     PLCACHE_NOT_FOUND);
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LABEL, "nolabel", 0, &json, NULL),
                     PLCACHE_NOT_FOUND);
    /* Nothing written, and the leases were released. */
    assert_int_equal(cmd_int("DBSIZE"), 0);
    assert_int_equal(count_records("/prompt-templates/"), 3);
    plcache_close(c);
}

typedef struct herd_arg {
    plcache *c;
    pthread_barrier_t *start;
    plcache_status st;
    char *json;
    char err[256];
} herd_arg;

static void *herd_get(void *p)
{
    herd_arg *a = p;
    pthread_barrier_wait(a->start);
    a->st = plcache_get(a->c, "Hello", PLCACHE_SEL_LABEL, "prod", 0, &a->json, NULL);
    snprintf(a->err, sizeof(a->err), "%s", plcache_errstr(a->c));
    return NULL;
}

static void test_herd_of_16_misses_makes_one_api_fetch(void **state)
{
    (void)state;
    set_delay(300);
    plcache_options o = opts(KEY);
    o.lease_wait_ms = 5000;
    herd_arg a[HERD];
    pthread_t t[HERD];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, HERD);
    for (int i = 0; i < HERD; i++) {
        memset(&a[i], 0, sizeof(a[i]));
        a[i].c = open_client(&o);
        a[i].start = &start;
    }
    for (int i = 0; i < HERD; i++)
        assert_int_equal(pthread_create(&t[i], NULL, herd_get, &a[i]), 0);
    for (int i = 0; i < HERD; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    unsigned long long fetches = 0, waits = 0, wait_hits = 0, hits = 0;
    for (int i = 0; i < HERD; i++) {
        if (a[i].st != PLCACHE_OK)
            fail_msg("client %d: %s: %s", i, plcache_status_str(a[i].st), a[i].err);
        assert_string_equal(a[i].json, a[0].json);
        plcache_stats s;
        plcache_get_stats(a[i].c, &s);
        fetches += s.api_fetches;
        waits += s.lease_waits;
        wait_hits += s.lease_wait_hits;
        hits += s.redis_hits;
        plcache_close(a[i].c);
    }
    for (int i = HERD - 1; i >= 0; i--)
        plcache_free(a[i].json);
    print_message("# herd of %d: %llu API fetch(es), %llu waited, %llu got the fill, "
                  "%llu came late and hit\n",
                  HERD, fetches, waits, wait_hits, hits);
    assert_int_equal(count_records("/prompt-templates/"), 1);
    assert_int_equal(fetches, 1);
    /* Every other client waited for the fill, or (a slow thread) found it. */
    assert_int_equal(wait_hits, waits);
    assert_int_equal(waits + hits, HERD - 1);
    made_gen();
}

typedef struct one_get {
    plcache *c;
    plcache_status st;
    char *json;
} one_get;

static void *do_get(void *p)
{
    one_get *a = p;
    a->st = plcache_get(a->c, "Hello", PLCACHE_SEL_LABEL, "prod", 0, &a->json, NULL);
    return NULL;
}

/* Waits (bounded) until the fake has received n template requests. */
static void wait_records(size_t n, long timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (count_records("/prompt-templates/") < n) {
        if (now_ms() > deadline)
            fail_msg("the fake did not see %zu request(s) within %ld ms", n, timeout_ms);
        sleep_ms(5);
    }
}

static void test_webhook_write_during_a_slow_fill_wins(void **state)
{
    (void)state;
    set_delay(600);
    plcache_options o = opts(KEY);
    one_get a = {open_client(&o), PLCACHE_E_ARG, NULL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, do_get, &a), 0);
    /* The fill is on its way (the fake holds the answer): a webhook writes. */
    wait_records(1, 5000);
    cmd_ok("HSET pl:prompt:Hello label:prod %s", "{\"from\":\"webhook\"}");
    cmd_ok("HINCRBY pl:prompt:Hello gen 1");
    cmd_ok("PUBLISH pl:invalidate Hello");
    pthread_join(t, NULL);
    /* The caller got what the API said... */
    assert_int_equal(a.st, PLCACHE_OK);
    assert_non_null(strstr(a.json, "\"prompt_name\""));
    /* ... and the cache kept the newer write: nothing of the fill landed. */
    char *stored = cmd_str("HGET pl:prompt:Hello label:prod");
    assert_string_equal(stored, "{\"from\":\"webhook\"}");
    free(stored);
    char *gen = cmd_str("HGET pl:prompt:Hello gen");
    assert_string_equal(gen, "1");
    free(gen);
    assert_int_equal(cmd_int("HEXISTS pl:prompt:Hello id"), 0);
    assert_int_equal(cmd_int("EXISTS pl:prompt-ids"), 0);
    assert_int_equal(cmd_int("EXISTS pl:lease:Hello:label:prod"), 0);
    plcache_stats s;
    plcache_get_stats(a.c, &s);
    assert_int_equal(s.fills, 0);
    assert_int_equal(s.fills_refused, 1);
    plcache_free(a.json);
    plcache_close(a.c);
}

static void test_fill_after_the_hash_appeared_is_refused(void **state)
{
    (void)state;
    /* gen absent at the miss, present at the fill (the template was written
     * meanwhile, even in another field): the fill writes nothing. */
    set_delay(400);
    plcache_options o = opts(KEY);
    one_get a = {open_client(&o), PLCACHE_E_ARG, NULL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, do_get, &a), 0);
    wait_records(1, 5000);
    cmd_ok("HSET pl:prompt:Hello version:1 {}");
    cmd_ok("HINCRBY pl:prompt:Hello gen 1");
    pthread_join(t, NULL);
    assert_int_equal(a.st, PLCACHE_OK);
    assert_int_equal(cmd_int("HEXISTS pl:prompt:Hello label:prod"), 0);
    plcache_free(a.json);
    plcache_close(a.c);
}

static void test_waiter_falls_back_to_the_api_without_writing(void **state)
{
    (void)state;
    set_delay(500);
    plcache_options o = opts(KEY);
    o.lease_wait_ms = 100;
    one_get a = {open_client(&o), PLCACHE_E_ARG, NULL};
    one_get b = {open_client(&o), PLCACHE_E_ARG, NULL};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, do_get, &a), 0);
    wait_records(1, 5000); /* a holds the lease and is fetching */
    int64_t t0 = now_ms();
    assert_int_equal(pthread_create(&tb, NULL, do_get, &b), 0);
    pthread_join(tb, NULL);
    int64_t waited = now_ms() - t0;
    pthread_join(ta, NULL);
    assert_int_equal(a.st, PLCACHE_OK);
    assert_int_equal(b.st, PLCACHE_OK);
    assert_string_equal(a.json, b.json);
    print_message("# the waiter gave up after lease_wait_ms and fetched itself: %lld ms\n",
                  (long long)waited);
    assert_int_equal(count_records("/prompt-templates/"), 2);
    plcache_stats sa, sb;
    plcache_get_stats(a.c, &sa);
    plcache_get_stats(b.c, &sb);
    assert_int_equal(sa.fills, 1);
    assert_int_equal(sb.lease_waits, 1);
    assert_int_equal(sb.lease_wait_hits, 0);
    assert_int_equal(sb.api_fetches, 1);
    assert_int_equal(sb.fills + sb.fills_refused, 0); /* a waiter never writes */
    made_gen();
    plcache_free(a.json);
    plcache_free(b.json);
    plcache_close(a.c);
    plcache_close(b.c);
}

static void test_memory_hit_then_invalidation_drops_it_within_ms(void **state)
{
    (void)state;
    cmd_ok("HSET pl:prompt:Hello label:prod %s", "{\"v\":1}");
    plcache_options o = opts(NULL);
    o.memory_entries = 100;
    plcache *c = open_client(&o);
    assert_true(wait_usable(c, 1, 5000));
    char *json = get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0);
    plcache_free(json);
    json = get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0);
    assert_string_equal(json, "{\"v\":1}");
    plcache_free(json);
    plcache_stats s;
    plcache_get_stats(c, &s);
    assert_int_equal(s.redis_hits, 1);
    assert_int_equal(s.memory_hits, 1);
    assert_int_equal(s.memory_entries, 1);
    /* A change written the applier's way: HSET, gen, PUBLISH. */
    int64_t t0 = now_us();
    cmd_ok("HSET pl:prompt:Hello label:prod %s", "{\"v\":2}");
    cmd_ok("HINCRBY pl:prompt:Hello gen 1");
    cmd_ok("PUBLISH pl:invalidate Hello");
    int64_t dropped_us = -1;
    while (now_us() - t0 < 2000000) {
        plcache_get_stats(c, &s);
        if (s.memory_entries == 0) {
            dropped_us = now_us() - t0;
            break;
        }
        sleep_ms(0);
    }
    print_message("# invalidated %.3f ms after the HSET\n", (double)dropped_us / 1000.0);
    assert_true(dropped_us >= 0);
    assert_true(dropped_us < 100000);
    json = get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0);
    assert_string_equal(json, "{\"v\":2}");
    plcache_free(json);
    /* plcache_memory_clear drops it too. */
    plcache_memory_clear(c);
    plcache_get_stats(c, &s);
    assert_int_equal(s.memory_entries, 0);
    plcache_close(c);
}

/* ---- with the real receiver ---- */

#define SECRET "whsec_lib_test"

/* Starts plcache-webhook (PLCACHE_WEBHOOK_BIN) on this Redis and fake API;
 * its port in *port once /healthz answers, within 10 s. */
static int webhook_start(server *s)
{
    const char *bin = getenv("PLCACHE_WEBHOOK_BIN");
    if (bin == NULL || bin[0] == '\0') {
        fprintf(stderr, "# PLCACHE_WEBHOOK_BIN is not set: cannot start the receiver\n");
        return -1;
    }
    s->port = free_port();
    char listen[32], log[160];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", s->port);
    snprintf(log, sizeof(log), "%s/webhook.log", g.dir);
    s->pid = fork();
    if (s->pid == 0) {
        setenv("PLCACHE_REDIS_URL", g.redis_url, 1);
        setenv("PLCACHE_LISTEN", listen, 1);
        setenv("PLCACHE_WEBHOOK_SECRET", SECRET, 1);
        setenv("PROMPTLAYER_API_KEY", KEY, 1);
        setenv("PROMPTLAYER_BASE_URL", g.base, 1);
        setenv("PLCACHE_RESYNC_INTERVAL", "0", 1);
        char *argv[] = {(char *)bin, NULL};
        spawn_exec(log, argv);
    }
    if (s->pid < 0)
        return -1;
    char url[64];
    snprintf(url, sizeof(url), "http://%s/healthz", listen);
    int64_t deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
        if (http_status("GET", url, NULL, NULL) == 200)
            return 0;
        sleep_ms(10);
    }
    return -1;
}

static server g_wh = {-1, 0}; /* the receiver of the test below */

static int webhook_teardown(void **state)
{
    (void)state;
    stop(&g_wh);
    return 0;
}

static void test_memory_cache_follows_a_webhook_applied_by_the_receiver(void **state)
{
    (void)state;
    server *whp = &g_wh;
    assert_int_equal(webhook_start(whp), 0);
    server wh = *whp;
    /* Until the applier waits on the stream (a client blocked in XREADGROUP). */
    int reading = 0;
    for (int64_t end = now_ms() + 10000; !reading && now_ms() < end; sleep_ms(10)) {
        redisReply *r = redisCommand(g.r, "CLIENT LIST");
        reading = r != NULL && r->type == REDIS_REPLY_STRING && strstr(r->str, "cmd=xreadgroup");
        if (r != NULL)
            freeReplyObject(r);
    }
    assert_true(reading);
    plcache_options o = opts(KEY);
    o.memory_entries = 100;
    plcache *c = open_client(&o);
    assert_true(wait_usable(c, 1, 5000));
    /* prod -> version 2: read through, then served from memory. */
    char *json = get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0);
    assert_non_null(strstr(json, "\"version\": 2") ? json : strstr(json, "\"version\":2"));
    plcache_free(json);
    /* (The fill's own invalidation may drop the first copy: a later get
     * keeps one.) */
    plcache_stats st = {0};
    for (int i = 0; i < 100 && st.memory_hits == 0; i++) {
        plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0));
        plcache_get_stats(c, &st);
        if (st.memory_hits == 0)
            sleep_ms(10);
    }
    assert_true(st.memory_hits >= 1);
    assert_int_equal(st.memory_entries, 1);
    /* PromptLayer moves prod to version 1 and says so by webhook. */
    assert_int_equal(ctl("PUT", "/_fake/templates/Hello/labels/prod", "{\"version\": 1}", NULL),
                     200);
    char body[512], sig[65], url[64], stamp[40];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S.000000", &tm);
    snprintf(body, sizeof(body),
             "{\"details\": {\"prompt_template_id\": 1, \"prompt_template_label\": \"prod\", "
             "\"prompt_template_name\": \"Hello\", \"prompt_template_version_number\": 1}, "
             "\"event_type\": \"prompt_template_label_moved\", \"timestamp\": \"%s\", "
             "\"user_id\": 1, \"workspace_id\": 1}",
             stamp);
    unsigned char d[32];
    unsigned int dl = 0;
    assert_non_null(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)body,
                         strlen(body), d, &dl));
    for (unsigned i = 0; i < 32; i++)
        snprintf(sig + 2 * i, 3, "%02x", d[i]);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/webhooks/promptlayer", wh.port);
    int64_t t0 = now_us();
    assert_int_equal(http_status("POST", url, body, sig), 200);
    /* The applier fetches prod, writes it and publishes the name: the
     * client's memory entry goes, and the next get reads version 1. */
    int64_t dropped_us = -1;
    while (now_us() - t0 < 5000000) {
        plcache_get_stats(c, &st);
        if (st.memory_entries == 0) {
            dropped_us = now_us() - t0;
            break;
        }
        sleep_ms(0);
    }
    print_message("# memory entry dropped %.3f ms after the webhook was posted\n",
                  (double)dropped_us / 1000.0);
    /* Post, verify, record, read, fetch, write, publish, drop: milliseconds
     * (8-15 ms measured); 1 s leaves room for a loaded machine. */
    assert_true(dropped_us >= 0 && dropped_us < 1000000);
    json = get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0);
    assert_non_null(strstr(json, "\"version\": 1") ? json : strstr(json, "\"version\":1"));
    plcache_free(json);
    plcache_close(c);
    /* The receiver stops cleanly (exit 0). */
    kill(wh.pid, SIGTERM);
    int status = -1;
    int64_t deadline = now_ms() + 10000;
    pid_t w = 0;
    while (w == 0 && now_ms() < deadline) {
        w = waitpid(wh.pid, &status, WNOHANG);
        if (w == 0)
            sleep_ms(10);
    }
    if (w == 0) {
        kill(wh.pid, SIGKILL);
        waitpid(wh.pid, NULL, 0);
    }
    g_wh.pid = -1;
    assert_true(w == wh.pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_memory_cleared_and_bypassed_while_subscription_is_down(void **state)
{
    (void)state;
    cmd_ok("HSET pl:prompt:Hello latest %s", "{\"v\":1}");
    plcache_options o = opts(NULL);
    o.memory_entries = 100;
    plcache *c = open_client(&o);
    assert_true(wait_usable(c, 1, 5000));
    plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0));
    plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0));
    plcache_stats s;
    plcache_get_stats(c, &s);
    assert_int_equal(s.memory_hits, 1);
    /* Existing connections stay authenticated; the listener's reconnects will
     * be refused (NOAUTH) until the password goes again. */
    cmd_ok("CONFIG SET requirepass %s", "test-lib-pass");
    cmd_ok("CLIENT KILL TYPE pubsub");
    assert_true(wait_usable(c, 0, 5000));
    plcache_get_stats(c, &s);
    assert_int_equal(s.memory_entries, 0);
    assert_true(s.subscription_drops >= 1);
    /* While down: every get goes to Redis and sees a change at once, even
     * without a PUBLISH; nothing is kept in memory. */
    cmd_ok("HSET pl:prompt:Hello latest %s", "{\"v\":2}");
    for (int i = 0; i < 3; i++) {
        char *json = get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0);
        assert_string_equal(json, "{\"v\":2}");
        plcache_free(json);
    }
    sleep_ms(300); /* the listener tries again meanwhile, and is refused */
    plcache_get_stats(c, &s);
    assert_int_equal(s.memory_usable, 0);
    assert_int_equal(s.memory_hits, 1);
    assert_int_equal(s.memory_entries, 0);
    /* Back: once resubscribed, memory serves again. */
    cmd_ok("CONFIG SET requirepass %s", "");
    assert_true(wait_usable(c, 1, 10000));
    plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0));
    char *json = get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0);
    assert_string_equal(json, "{\"v\":2}");
    plcache_free(json);
    plcache_get_stats(c, &s);
    assert_int_equal(s.memory_hits, 2);
    assert_int_equal(s.memory_entries, 1);
    plcache_close(c);
}

/* ---- through Redis Sentinel ---- */

#define MASTER "m"

/* The failover test's own primary, replica and sentinel, in a folder of the
 * group's; its teardown stops them by PID whatever happened. */
static struct {
    char dir[96];
    server a, b, sentinel;
    redisContext *r; /* control connection to the current primary */
    plcache *c;
} fo = {.a = {-1, 0}, .b = {-1, 0}, .sentinel = {-1, 0}};

/* One command to the server on port, on a connection of its own: the reply
 * (free it), or NULL. For polling: never fails the test. */
static redisReply *ask_port(int port, const char *fmt, ...)
{
    redisContext *c = connect_port(port);
    if (c == NULL)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

/* Polls pred every 20 ms for at most timeout_ms; 1 when it held in time. */
static int wait_for(int (*pred)(void), long timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (!pred()) {
        if (now_ms() > deadline)
            return 0;
        sleep_ms(20);
    }
    return 1;
}

static int replica_synced(void)
{
    redisReply *r = ask_port(fo.b.port, "INFO replication");
    int ok = r != NULL && r->type == REDIS_REPLY_STRING &&
             strstr(r->str, "master_link_status:up") != NULL;
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

/* The sentinel knows the one replica and reaches it (its flags are just
 * "slave": not down, not disconnected), so it can promote it. */
static int sentinel_reaches_replica(void)
{
    redisReply *r = ask_port(fo.sentinel.port, "SENTINEL replicas " MASTER);
    int ok = 0;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY) {
        const redisReply *kv = r->element[0];
        for (size_t i = 0; i + 1 < kv->elements; i += 2)
            if (kv->element[i]->type == REDIS_REPLY_STRING &&
                kv->element[i + 1]->type == REDIS_REPLY_STRING &&
                strcmp(kv->element[i]->str, "flags") == 0)
                ok = strcmp(kv->element[i + 1]->str, "slave") == 0;
    }
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

static int sentinel_names_replica(void)
{
    redisReply *r = ask_port(fo.sentinel.port, "SENTINEL get-master-addr-by-name " MASTER);
    int ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[1]->type == REDIS_REPLY_STRING &&
             strtol(r->element[1]->str, NULL, 10) == fo.b.port;
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

/* Starts redis-sentinel on a free port with its config, log and state in
 * dir, monitoring MASTER at 127.0.0.1:primary alone (quorum 1) and quick to
 * act (down after 500 ms); 0 once it answers PING. */
static int sentinel_start(server *s, const char *dir, int primary)
{
    char conf[160], log[160];
    snprintf(conf, sizeof(conf), "%s/sentinel.conf", dir);
    snprintf(log, sizeof(log), "%s/sentinel.out", dir);
    for (int attempt = 0; attempt < 3; attempt++) {
        s->port = free_port();
        FILE *fp = fopen(conf, "w");
        if (s->port < 0 || fp == NULL) {
            if (fp != NULL)
                fclose(fp);
            return -1;
        }
        fprintf(fp,
                "port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\nlogfile %s/sentinel.log\n"
                "sentinel resolve-hostnames no\n"
                "sentinel monitor " MASTER " 127.0.0.1 %d 1\n"
                "sentinel down-after-milliseconds " MASTER " 500\n"
                "sentinel failover-timeout " MASTER " 5000\n",
                s->port, dir, dir, primary);
        if (fclose(fp) != 0)
            return -1;
        char *argv[] = {"redis-sentinel", conf, NULL};
        if (spawn_and_ping(s, log, argv) == 0)
            return 0;
    }
    fprintf(stderr, "# redis-sentinel did not start, see %s\n", log);
    return -1;
}

static int failover_teardown(void **state)
{
    (void)state;
    plcache_close(fo.c);
    fo.c = NULL;
    if (fo.r != NULL)
        redisFree(fo.r);
    fo.r = NULL;
    stop(&fo.sentinel);
    stop(&fo.b);
    stop(&fo.a);
    remove_tree(fo.dir);
    return 0;
}

/* Primary A, replica B in sync, and one sentinel that can promote B. */
static int failover_setup(void **state)
{
    snprintf(fo.dir, sizeof(fo.dir), "%s/failover", g.dir);
    const char *failed = NULL;
    if (mkdir(fo.dir, 0700) != 0 || redis_start(&fo.a, fo.dir, "a", 0) != 0 ||
        redis_start(&fo.b, fo.dir, "b", fo.a.port) != 0)
        failed = "the primary and the replica did not start";
    else if (!wait_for(replica_synced, 10000))
        failed = "the replica did not sync within 10 s";
    else if (sentinel_start(&fo.sentinel, fo.dir, fo.a.port) != 0)
        failed = "the sentinel did not start";
    else if (!wait_for(sentinel_reaches_replica, 15000))
        failed = "the sentinel did not reach the replica within 15 s";
    if (failed == NULL) {
        fo.r = connect_port(fo.a.port);
        if (fo.r == NULL)
            failed = "cannot connect to the primary";
    }
    if (failed == NULL)
        return 0;
    /* cmocka runs no teardown after a failed setup. */
    fprintf(stderr, "# failover setup: %s (see %s)\n", failed, fo.dir);
    failover_teardown(state);
    return -1;
}

static void test_memory_cache_follows_a_sentinel_failover(void **state)
{
    (void)state;
    freeReplyObject(cmd_at(fo.r, "HSET pl:prompt:Hello label:prod %s gen 1", "{\"v\":1}"));
    char url[96];
    snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d/" MASTER "?db=0", fo.sentinel.port);
    plcache_options o = opts(NULL);
    o.redis_url = url;
    o.memory_entries = 100;
    fo.c = open_client(&o);
    plcache *c = fo.c;
    assert_true(wait_usable(c, 1, 5000));
    plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0));
    plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0));
    plcache_stats s;
    plcache_get_stats(c, &s);
    assert_int_equal(s.memory_hits, 1);
    assert_int_equal(s.memory_entries, 1);
    assert_int_equal(s.subscription_drops, 0);

    /* The primary dies without a word. */
    kill(fo.a.pid, SIGKILL);
    waitpid(fo.a.pid, NULL, 0);
    fo.a.pid = -1;
    int64_t t0 = now_ms();
    assert_true(wait_usable(c, 0, 5000));
    plcache_get_stats(c, &s);
    assert_int_equal(s.memory_entries, 0); /* cleared with the same lock */
    /* Bypassed: a get goes to Redis (none is primary yet, or already the
     * promoted one), never to memory. */
    char *json = NULL;
    plcache_status st = plcache_get(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0, &json, NULL);
    print_message("# get with the primary gone: %s: %s\n", plcache_status_str(st),
                  plcache_errstr(c));
    assert_true(st == PLCACHE_E_REDIS || st == PLCACHE_OK);
    plcache_free(json);
    plcache_get_stats(c, &s);
    assert_int_equal(s.memory_hits, 1);

    /* The sentinel promotes B, and the listener finds it through the
     * sentinel by itself. */
    assert_true(wait_for(sentinel_names_replica, 30000));
    int64_t switched = now_ms() - t0;
    assert_true(wait_usable(c, 1, 30000));
    int64_t back = now_ms() - t0;
    print_message("# the sentinel named the replica %lld ms after the kill; memory usable "
                  "again after %lld ms\n",
                  (long long)switched, (long long)back);
    plcache_get_stats(c, &s);
    assert_true(s.subscription_drops >= 1);

    /* Gets read the new primary: a change made there without a PUBLISH is
     * seen at once (memory was cleared), then served from memory. */
    redisFree(fo.r); /* the sentinel killed B's clients at the promotion */
    fo.r = connect_port(fo.b.port);
    assert_non_null(fo.r);
    freeReplyObject(cmd_at(fo.r, "HSET pl:prompt:Hello label:prod %s", "{\"v\":2}"));
    for (int i = 0; i < 2; i++) {
        json = get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0);
        assert_string_equal(json, "{\"v\":2}");
        plcache_free(json);
    }
    plcache_get_stats(c, &s);
    assert_int_equal(s.memory_hits, 2);
    assert_int_equal(s.memory_entries, 1);
    unsigned long long invalidations = s.invalidations;

    /* A change published on the new primary reaches the listener there (its
     * one subscriber) and drops the memory entry. */
    freeReplyObject(cmd_at(fo.r, "HSET pl:prompt:Hello label:prod %s", "{\"v\":3}"));
    freeReplyObject(cmd_at(fo.r, "HINCRBY pl:prompt:Hello gen 1"));
    redisReply *r = cmd_at(fo.r, "PUBLISH pl:invalidate Hello");
    long long receivers = r->integer;
    freeReplyObject(r);
    assert_int_equal(receivers, 1);
    int seen = 0;
    for (int64_t end = now_ms() + 5000; !seen && now_ms() < end;) {
        json = get_ok(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0);
        seen = strcmp(json, "{\"v\":3}") == 0;
        plcache_free(json);
        if (!seen)
            sleep_ms(2);
    }
    assert_true(seen);
    plcache_get_stats(c, &s);
    assert_true(s.invalidations > invalidations);

    /* And a push lands on the new primary. */
    long long n = 0;
    assert_int_equal(plcache_push(c, VALID_JOB, strlen(VALID_JOB), &n), PLCACHE_OK);
    assert_int_equal(n, 1);
    r = cmd_at(fo.r, "LLEN pl:track");
    long long len = r->integer;
    freeReplyObject(r);
    assert_int_equal(len, 1);
}

/* ---- rendering ---- */

/* plcache_render of entry with vars (NULL: none): the status, and the text
 * when OK (caller frees). */
static plcache_status render(const char *entry, const char *vars, char **out)
{
    *out = NULL;
    return plcache_render(entry, strlen(entry), vars, vars ? strlen(vars) : 0, out, NULL);
}

/* The SDKs' local rendering: when it renders, what, and what it leaves to
 * PromptLayer. */
static void test_render_is_the_sdks_local_rendering(void **state)
{
    (void)state;
    static const char completion[] =
        "{\"id\":1,\"prompt_template\":{\"type\":\"completion\",\"content\":[{\"type\":\"text\","
        "\"text\":\"Hi {name}, {n:>4}|{a.b}|{{x}}\"}]},\"llm_kwargs\":null}";
    static const char with_kwargs[] =
        "{\"prompt_template\":{\"type\":\"chat\",\"messages\":[{\"role\":\"system\",\"content\":"
        "[{\"type\":\"text\",\"text\":\"About {topic}.\"}]}]},\"llm_kwargs\":{\"model\":\"gpt-4o\","
        "\"temperature\":0.7,\"messages\":[{\"role\":\"system\",\"content\":\"About {topic}.\"}]}}";
    static const struct {
        const char *entry, *vars;
        plcache_status st;
        const char *want;
    } rows[] = {
        /* No llm_kwargs and no variables: as it is (the SDKs keep placeholders). */
        {completion, NULL, PLCACHE_OK,
         "{\"id\":1,\"prompt_template\":{\"type\":\"completion\",\"content\":[{\"type\":\"text\","
         "\"text\":\"Hi {name}, {n:>4}|{a.b}|{{x}}\"}]},\"llm_kwargs\":null}"},
        {completion, "{}", PLCACHE_OK,
         "{\"id\":1,\"prompt_template\":{\"type\":\"completion\",\"content\":[{\"type\":\"text\","
         "\"text\":\"Hi {name}, {n:>4}|{a.b}|{{x}}\"}]},\"llm_kwargs\":null}"},
        /* str.format with every field resolved; {a.b} makes Python raise: kept. */
        {completion, "{\"name\":\"Ada\",\"n\":7}", PLCACHE_OK,
         "{\"id\":1,\"prompt_template\":{\"type\":\"completion\",\"content\":[{\"type\":\"text\","
         "\"text\":\"Hi {name}, {n:>4}|{a.b}|{{x}}\"}]},\"llm_kwargs\":null}"},
        {"{\"prompt_template\":{\"type\":\"completion\",\"content\":[{\"type\":\"text\",\"text\":"
         "\"Hi {name}, {n:>4}|{{x}}|{missing}.\"}]}}",
         "{\"name\":\"Ada\",\"n\":7}", PLCACHE_OK,
         "{\"prompt_template\":{\"type\":\"completion\",\"content\":[{\"type\":\"text\",\"text\":"
         "\"Hi Ada,    7|{x}|.\"}]}}"},
        /* With llm_kwargs, even no variables render (placeholders become ""); the
         * temperature stays 0.7. */
        {with_kwargs, NULL, PLCACHE_OK,
         "{\"prompt_template\":{\"type\":\"chat\",\"messages\":[{\"role\":\"system\",\"content\":"
         "[{\"type\":\"text\",\"text\":\"About .\"}]}]},\"llm_kwargs\":{\"model\":\"gpt-4o\","
         "\"temperature\":0.7,\"messages\":[{\"role\":\"system\",\"content\":\"About .\"}]}}"},
        {with_kwargs, "{\"topic\":\"Redis\"}", PLCACHE_OK,
         "{\"prompt_template\":{\"type\":\"chat\",\"messages\":[{\"role\":\"system\",\"content\":"
         "[{\"type\":\"text\",\"text\":\"About Redis.\"}]}]},\"llm_kwargs\":{\"model\":"
         "\"gpt-4o\",\"temperature\":0.7,\"messages\":[{\"role\":\"system\",\"content\":"
         "\"About Redis.\"}]}}"},
        /* The SDKs send these to PromptLayer. */
        {"{\"prompt_template\":{\"type\":\"chat\",\"messages\":[{\"role\":\"placeholder\","
         "\"name\":\"history\"}]}}",
         "{}", PLCACHE_NOT_RENDERABLE, NULL},
        {"{\"prompt_template\":{\"type\":\"chat\",\"messages\":[],\"tools\":[{\"type\":"
         "\"variable\",\"name\":\"t\"}]}}",
         "{}", PLCACHE_NOT_RENDERABLE, NULL},
        /* Bad arguments. */
        {completion, "[1]", PLCACHE_E_ARG, NULL},
        {completion, "{", PLCACHE_E_ARG, NULL},
        {"[]", NULL, PLCACHE_E_ARG, NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *out = NULL;
        plcache_status st = render(rows[i].entry, rows[i].vars, &out);
        if (st != rows[i].st)
            fail_msg("row %zu: %s, want %s", i, plcache_status_str(st),
                     plcache_status_str(rows[i].st));
        if (rows[i].want != NULL && strcmp(out, rows[i].want) != 0)
            fail_msg("row %zu:\n  got  %s\n  want %s", i, out, rows[i].want);
        if (rows[i].want == NULL)
            assert_null(out);
        plcache_free(out);
    }
    assert_int_equal(plcache_render(NULL, 0, NULL, 0, NULL, NULL), PLCACHE_E_ARG);
}

/* A cached entry is rendered here: one Redis command, no API request. */
static void test_get_rendered_renders_cached_entries_here(void **state)
{
    (void)state;
    cmd_ok("HSET pl:prompt:Hello label:prod %s",
           "{\"prompt_template\":{\"type\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":"
           "[{\"type\":\"text\",\"text\":\"{q}?\"}]}]},\"llm_kwargs\":null}");
    plcache_options o = opts(KEY);
    plcache *c = open_client(&o);
    const char vars[] = "{\"q\":\"Why\"}";
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(plcache_get_rendered(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0, vars,
                                          strlen(vars), &json, &len),
                     PLCACHE_OK);
    assert_string_equal(json, "{\"prompt_template\":{\"type\":\"chat\",\"messages\":[{\"role\":"
                              "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Why?\"}]}]},"
                              "\"llm_kwargs\":null}");
    assert_int_equal(len, strlen(json));
    plcache_free(json);
    assert_int_equal(count_records("/prompt-templates/"), 0);
    assert_int_equal(plcache_get_rendered(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0, "[]", 2, &json,
                                          NULL),
                     PLCACHE_E_ARG);
    assert_null(json);
    plcache_close(c);
}

/* What the SDKs do not render themselves, PromptLayer renders: the POST they
 * make, with the variables; without a key, the caller is told. */
static void test_get_rendered_asks_promptlayer_for_what_it_does_not_render(void **state)
{
    (void)state;
    const char *tpl =
        "{\"id\":40,\"versions\":{\"1\":{\"prompt_template\":{\"type\":\"chat\",\"messages\":["
        "{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"Be {tone}.\"}]},"
        "{\"role\":\"placeholder\",\"name\":\"history\"}]}}},\"labels\":{\"prod\":1}}";
    assert_int_equal(ctl("PUT", "/_fake/templates/Ph", tpl, NULL), 200);
    const char vars[] = "{\"tone\":\"brief\",\"history\":[{\"role\":\"user\",\"content\":[{"
                        "\"type\":\"text\",\"text\":\"Hi\"}]}]}";
    plcache_options o = opts(KEY);
    plcache *c = open_client(&o);
    char *json = NULL;
    assert_int_equal(plcache_get_rendered(c, "Ph", PLCACHE_SEL_LABEL, "prod", 0, vars,
                                          strlen(vars), &json, NULL),
                     PLCACHE_OK);
    json_t *ans = json_loads(json, 0, NULL);
    json_t *msgs = json_object_get(json_object_get(ans, "prompt_template"), "messages");
    assert_int_equal(json_array_size(msgs), 2);
    json_t *sys0 = json_array_get(json_object_get(json_array_get(msgs, 0), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(sys0, "text")), "Be brief.");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "role")),
                        "user");
    json_decref(ans);
    plcache_free(json);
    /* The read-through filled the cache (a GET), then PromptLayer rendered (a POST). */
    json_t *rec = records("/prompt-templates/Ph");
    assert_int_equal(json_array_size(rec), 2);
    json_t *post = json_array_get(rec, 1);
    assert_string_equal(json_string_value(json_object_get(post, "method")), "POST");
    json_t *body = json_loads(json_string_value(json_object_get(post, "body")), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(body, "label")), "prod");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(body, "input_variables"), "tone")),
                        "brief");
    json_decref(body);
    json_decref(rec);
    plcache_close(c);
    /* Without a key: a hit, but nobody to render it. */
    o = opts(NULL);
    c = open_client(&o);
    assert_int_equal(plcache_get_rendered(c, "Ph", PLCACHE_SEL_LABEL, "prod", 0, vars,
                                          strlen(vars), &json, NULL),
                     PLCACHE_NOT_RENDERABLE);
    assert_null(json);
    assert_non_null(strstr(plcache_errstr(c), "no API key"));
    plcache_close(c);
}

static void test_push_returns_the_queue_length(void **state)
{
    (void)state;
    plcache_options o = opts(NULL);
    plcache *c = open_client(&o);
    long long n = 0;
    const char *job1 = VALID_JOB;
    assert_int_equal(plcache_push(c, job1, strlen(job1), &n), PLCACHE_OK);
    assert_int_equal(n, 1);
    const char job2[] =
        " {\"endpoint\":\"/rest/track-score\",\"body\":{\"request_id\":7,\"score\":90}}\n";
    assert_int_equal(plcache_push(c, job2, sizeof(job2) - 1, &n), PLCACHE_OK);
    assert_int_equal(n, 2);
    json_t *j = json_pack("{s:s,s:{s:i,s:{s:s}}}", "endpoint", "/rest/track-metadata", "body",
                          "request_id", 7, "metadata", "k", "v");
    assert_int_equal(plcache_push_json(c, j, NULL), PLCACHE_OK);
    json_decref(j);
    assert_int_equal(cmd_int("LLEN pl:track"), 3);
    /* LPUSH: the oldest is at the right end, exactly as pushed. */
    char *oldest = cmd_str("LINDEX pl:track -1");
    assert_string_equal(oldest, job1);
    free(oldest);
    char *second = cmd_str("LINDEX pl:track 1");
    assert_string_equal(second, job2);
    free(second);
    char *newest = cmd_str("LINDEX pl:track 0");
    assert_string_equal(newest, "{\"endpoint\":\"/rest/track-metadata\",\"body\":{\"request_id\":7,"
                                "\"metadata\":{\"k\":\"v\"}}}");
    free(newest);
    plcache_close(c);
}

static void test_push_refuses_what_is_not_an_object(void **state)
{
    (void)state;
    plcache_options o = opts(NULL);
    plcache *c = open_client(&o);
    const char *bad[] = {"", "   ", "[1,2]", "\"{}\"", "{", "null", "42", "{} []"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        long long n = -7;
        assert_int_equal(plcache_push(c, bad[i], strlen(bad[i]), &n), PLCACHE_E_ARG);
        assert_int_equal(n, -7);
        assert_true(strlen(plcache_errstr(c)) > 0);
        assert_null(strstr(plcache_errstr(c), bad[i][0] != '\0' ? bad[i] : "\x01"));
    }
    assert_int_equal(plcache_push(c, NULL, 3, NULL), PLCACHE_E_ARG);
    json_t *arr = json_pack("[i]", 1);
    assert_int_equal(plcache_push_json(c, arr, NULL), PLCACHE_E_ARG);
    json_decref(arr);
    assert_int_equal(plcache_push_json(c, NULL, NULL), PLCACHE_E_ARG);
    assert_int_equal(cmd_int("EXISTS pl:track"), 0);
    plcache_close(c);
}

/* A job PromptLayer would refuse is refused before the push, with the field
 * named and no value of the job repeated; nothing reaches the queue. */
static void test_push_refuses_jobs_promptlayer_refuses(void **state)
{
    (void)state;
    plcache_options o = opts(NULL);
    plcache *c = open_client(&o);
    static const struct {
        const char *job;
        const char *names;
    } bad[] = {
        {"{\"function_name\": \"openai.chat.completions.create\", \"kwargs\": {\"secret\": 1}}",
         "provider: is required"},
        {"{\"provider\": \"openai\", \"model\": \"gpt-4o\", \"input\": {\"type\": \"chat\", "
         "\"messages\": [{\"role\": \"user\", \"content\": \"my-secret-prompt\"}]}, \"output\": "
         "{\"type\": \"chat\", \"messages\": []}, \"request_start_time\": 1, "
         "\"request_end_time\": 2}",
         "input.messages[0].content: must be a list of content blocks"},
        {"{\"endpoint\": \"/rest/track-score\", \"body\": {\"request_id\": 1, \"score\": 101}}",
         "body.score: must be from 0 to 100"},
        {"{\"endpoint\": \"/%2e%2e/admin\", \"body\": {}}", "endpoint: is not an API path"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(plcache_push(c, bad[i].job, strlen(bad[i].job), NULL), PLCACHE_E_ARG);
        const char *why = plcache_errstr(c);
        if (strstr(why, bad[i].names) == NULL)
            fail_msg("job %zu: \"%s\" does not say \"%s\"", i, why, bad[i].names);
        assert_null(strstr(why, "secret"));
        json_t *j = json_loads(bad[i].job, 0, NULL);
        assert_int_equal(plcache_push_json(c, j, NULL), PLCACHE_E_ARG);
        assert_non_null(strstr(plcache_errstr(c), bad[i].names));
        json_decref(j);
    }
    assert_int_equal(cmd_int("EXISTS pl:track"), 0);
    plcache_close(c);
}

static void test_redis_down_is_e_redis_with_a_clear_reason(void **state)
{
    (void)state;
    server other = {-1, 0};
    assert_int_equal(redis_start(&other, g.dir, "redis2", 0), 0);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", other.port);
    plcache_options o = opts(NULL);
    o.redis_url = url;
    o.redis_timeout_ms = 500;
    plcache *c = open_client(&o);
    long long n = 0;
    assert_int_equal(plcache_push(c, VALID_JOB, strlen(VALID_JOB), &n), PLCACHE_OK);
    stop(&other);
    char *json = NULL;
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL),
                     PLCACHE_E_REDIS);
    assert_null(json);
    print_message("# get with Redis down: %s\n", plcache_errstr(c));
    char where[32];
    snprintf(where, sizeof(where), "127.0.0.1:%d", other.port);
    assert_non_null(strstr(plcache_errstr(c), where));
    assert_int_equal(plcache_push(c, VALID_JOB, strlen(VALID_JOB), &n), PLCACHE_E_REDIS);
    assert_non_null(strstr(plcache_errstr(c), "redis"));
    plcache_close(c);
    /* Opening against it fails the same way, with the reason in err. */
    plcache *d = (plcache *)&o;
    char err[256];
    assert_int_equal(plcache_open(&d, &o, err, sizeof(err)), PLCACHE_E_REDIS);
    assert_null(d);
    print_message("# open with Redis down: %s\n", err);
    assert_non_null(strstr(err, where));
    assert_non_null(strstr(err, "connect"));
}

static void test_redis_timeout_is_e_redis_and_not_retried(void **state)
{
    (void)state;
    cmd_ok("HSET pl:prompt:Hello latest {}");
    plcache_options o = opts(NULL);
    o.redis_timeout_ms = 300;
    plcache *c = open_client(&o);
    plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0));
    /* Redis holds every command for 1 s (the control connection's too). */
    cmd_ok("CLIENT PAUSE 1000 ALL");
    int64_t t0 = now_ms();
    char *json = NULL;
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL),
                     PLCACHE_E_REDIS);
    int64_t took = now_ms() - t0;
    print_message("# Redis paused: %s after %lld ms\n", plcache_errstr(c), (long long)took);
    assert_non_null(strstr(plcache_errstr(c), "no answer within 300 ms"));
    assert_true(took >= 250 && took < 900); /* one timeout, no second try */
    sleep_ms(1000 - took + 100);
    /* The dropped link is replaced by the next call. */
    plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0));
    plcache_close(c);
}

static void test_broken_connection_is_reconnected_once(void **state)
{
    (void)state;
    cmd_ok("HSET pl:prompt:Hello latest {}");
    plcache_options o = opts(NULL);
    plcache *c = open_client(&o);
    plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0));
    /* Every normal client but the control one: the client's link breaks. */
    cmd_ok("CLIENT KILL TYPE normal SKIPME yes");
    plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0));
    cmd_ok("CLIENT KILL TYPE normal SKIPME yes");
    long long n = 0;
    assert_int_equal(plcache_push(c, VALID_JOB, strlen(VALID_JOB), &n), PLCACHE_OK);
    assert_int_equal(n, 1);
    plcache_close(c);
}

static void test_url_user_password_and_db_are_used(void **state)
{
    (void)state;
    cmd_ok("ACL SETUSER app on >app-pw ~* &* +@all");
    char url[96];
    snprintf(url, sizeof(url), "redis://app:app-pw@127.0.0.1:%d/3", g.redis.port);
    plcache_options o = opts(NULL);
    o.redis_url = url;
    o.memory_entries = 10; /* the listener authenticates too */
    plcache *c = open_client(&o);
    assert_true(wait_usable(c, 1, 5000));
    long long n = 0;
    assert_int_equal(plcache_push(c, VALID_JOB, strlen(VALID_JOB), &n), PLCACHE_OK);
    assert_int_equal(cmd_int("EXISTS pl:track"), 0); /* not in db 0 ... */
    cmd_ok("SELECT 3");
    long long len3 = cmd_int("LLEN pl:track"); /* ... but in db 3 */
    cmd_ok("SELECT 0");
    assert_int_equal(len3, 1);
    plcache_close(c);
    /* A wrong password is refused at open, and the reason never repeats it. */
    snprintf(url, sizeof(url), "redis://app:not-the-pw@127.0.0.1:%d/3", g.redis.port);
    o.redis_url = url;
    char err[256];
    c = NULL;
    assert_int_equal(plcache_open(&c, &o, err, sizeof(err)), PLCACHE_E_REDIS);
    assert_null(c);
    print_message("# wrong password: %s\n", err);
    assert_non_null(strstr(err, "AUTH"));
    assert_null(strstr(err, "not-the-pw"));
    cmd_ok("ACL DELUSER app");
}

static void test_refused_api_key_is_e_auth(void **state)
{
    (void)state;
    plcache_options o = opts("wrong-key-do-not-print");
    plcache *c = open_client(&o);
    char *json = NULL;
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL),
                     PLCACHE_E_AUTH);
    assert_null(json);
    print_message("# 401: %s\n", plcache_errstr(c));
    assert_null(strstr(plcache_errstr(c), "wrong-key"));
    assert_int_equal(cmd_int("DBSIZE"), 0); /* nothing written, lease released */
    /* 403 the same. */
    assert_int_equal(ctl("POST", "/_fake/faults",
                         "{\"path_prefix\":\"/prompt-templates\",\"status\":403}", NULL),
                     200);
    plcache_close(c);
    o = opts(KEY);
    c = open_client(&o);
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL),
                     PLCACHE_E_AUTH);
    plcache_close(c);
}

static void test_api_failure_is_e_api_and_releases_the_lease(void **state)
{
    (void)state;
    assert_int_equal(
        ctl("POST", "/_fake/faults",
            "[{\"path_prefix\":\"/prompt-templates\",\"status\":500},"
            "{\"path_prefix\":\"/prompt-templates\",\"status\":200,\"body\":\"[1,2]\"},"
            "{\"path_prefix\":\"/prompt-templates\",\"delay_ms\":1500}]",
            NULL),
        200);
    plcache_options o = opts(KEY);
    o.api_timeout_ms = 300;
    plcache *c = open_client(&o);
    char *json = NULL;
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL),
                     PLCACHE_E_API);
    assert_non_null(strstr(plcache_errstr(c), "500"));
    assert_int_equal(cmd_int("DBSIZE"), 0);
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL),
                     PLCACHE_E_PROTOCOL);
    assert_int_equal(cmd_int("DBSIZE"), 0);
    int64_t t0 = now_ms();
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL),
                     PLCACHE_E_API);
    int64_t took = now_ms() - t0;
    print_message("# API timeout after %lld ms: %s\n", (long long)took, plcache_errstr(c));
    assert_true(took < 1200);
    assert_int_equal(cmd_int("DBSIZE"), 0);
    assert_null(json);
    /* And then it works. */
    plcache_free(get_ok(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0));
    plcache_close(c);
}

static void test_bad_arguments_and_options_are_e_arg(void **state)
{
    (void)state;
    plcache *c = NULL;
    char err[256];
    plcache_options o = opts(NULL);
    o.redis_url = "http://nope";
    assert_int_equal(plcache_open(&c, &o, err, sizeof(err)), PLCACHE_E_ARG);
    assert_null(c);
    assert_non_null(strstr(err, "redis_url"));
    o = opts("key\r\nX-Evil: 1");
    assert_int_equal(plcache_open(&c, &o, err, sizeof(err)), PLCACHE_E_ARG);
    assert_null(strstr(err, "Evil"));
    o = opts(NULL);
    o.redis_timeout_ms = -1;
    assert_int_equal(plcache_open(&c, &o, err, sizeof(err)), PLCACHE_E_ARG);
    assert_int_equal(plcache_open(NULL, &o, err, sizeof(err)), PLCACHE_E_ARG);
    /* A zeroed options struct takes every default but the URL. */
    plcache_options z;
    memset(&z, 0, sizeof(z));
    z.redis_url = g.redis_url;
    c = open_client(&z);
    char *json = NULL;
    assert_int_equal(plcache_get(c, "", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL), PLCACHE_E_ARG);
    assert_int_equal(plcache_get(c, NULL, PLCACHE_SEL_LATEST, NULL, 0, &json, NULL), PLCACHE_E_ARG);
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LABEL, NULL, 0, &json, NULL),
                     PLCACHE_E_ARG);
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_VERSION, NULL, 0, &json, NULL),
                     PLCACHE_E_ARG);
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0, NULL, NULL),
                     PLCACHE_E_ARG);
    assert_int_equal(plcache_get(NULL, "Hello", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL),
                     PLCACHE_E_ARG);
    assert_string_equal(plcache_status_str(PLCACHE_NOT_FOUND), "not found");
    assert_string_equal(plcache_errstr(NULL), "no client");
    plcache_close(c);
    plcache_close(NULL);
    plcache_free(NULL);
}

static void test_wrong_type_is_a_protocol_error(void **state)
{
    (void)state;
    cmd_ok("SET pl:prompt:Hello oops");
    cmd_ok("SET pl:track oops");
    plcache_options o = opts(NULL);
    plcache *c = open_client(&o);
    char *json = NULL;
    assert_int_equal(plcache_get(c, "Hello", PLCACHE_SEL_LATEST, NULL, 0, &json, NULL),
                     PLCACHE_E_PROTOCOL);
    assert_non_null(strstr(plcache_errstr(c), "WRONGTYPE"));
    assert_int_equal(plcache_push(c, VALID_JOB, strlen(VALID_JOB), NULL), PLCACHE_E_PROTOCOL);
    plcache_close(c);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup(f, setup)
    const struct CMUnitTest tests[] = {
        T(test_hit_returns_the_stored_json),
        T(test_miss_reads_through_fills_and_calls_the_api_once),
        T(test_each_selector_fills_its_own_field),
        T(test_miss_without_key_is_not_found),
        T(test_not_found_at_the_api_writes_nothing),
        T(test_herd_of_16_misses_makes_one_api_fetch),
        T(test_webhook_write_during_a_slow_fill_wins),
        T(test_fill_after_the_hash_appeared_is_refused),
        T(test_waiter_falls_back_to_the_api_without_writing),
        T(test_memory_hit_then_invalidation_drops_it_within_ms),
        T(test_memory_cleared_and_bypassed_while_subscription_is_down),
        cmocka_unit_test_setup_teardown(test_memory_cache_follows_a_sentinel_failover,
                                        failover_setup, failover_teardown),
        cmocka_unit_test_setup_teardown(test_memory_cache_follows_a_webhook_applied_by_the_receiver,
                                        setup, webhook_teardown),
        T(test_render_is_the_sdks_local_rendering),
        T(test_get_rendered_renders_cached_entries_here),
        T(test_get_rendered_asks_promptlayer_for_what_it_does_not_render),
        T(test_push_returns_the_queue_length),
        T(test_push_refuses_what_is_not_an_object),
        T(test_push_refuses_jobs_promptlayer_refuses),
        T(test_redis_down_is_e_redis_with_a_clear_reason),
        T(test_redis_timeout_is_e_redis_and_not_retried),
        T(test_broken_connection_is_reconnected_once),
        T(test_url_user_password_and_db_are_used),
        T(test_refused_api_key_is_e_auth),
        T(test_api_failure_is_e_api_and_releases_the_lease),
        T(test_bad_arguments_and_options_are_e_arg),
        T(test_wrong_type_is_a_protocol_error),
    };
#undef T
    return cmocka_run_group_tests_name("lib", tests, group_setup, group_teardown);
}
