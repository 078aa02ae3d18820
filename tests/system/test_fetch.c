/* test_fetch.c -- fetch against the real fake PromptLayer API.
 *
 * The group setup starts tests/fake_api's fake-promptlayer (FAKE_API_BIN) on a
 * free loopback port, with a fixture of two templates; every test resets it,
 * queues the faults it needs through the control API, and drives a fetcher on
 * a real event_base. The control calls use libcurl's easy API synchronously:
 * fine in a test, never in src/. Every loop run is bounded by a deadline and a
 * test fails when it passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/fetch.h"
#include "core/timeutil.h"

#define BIG_FIELD 20000 /* bytes of text in the "Big" template */

static struct {
    pid_t pid;
    char dir[64];
    char fixture[128];
    char port_file[128];
    char log_file[128];
    char base[64]; /* http://127.0.0.1:PORT */
} g = {.pid = -1};

static const char *const api_headers[] = {"X-API-KEY: k", NULL};

/* ---- the fake: start, stop, control ---- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int write_fixture(const char *path)
{
    char *big = malloc(BIG_FIELD + 1);
    if (big == NULL)
        return -1;
    memset(big, 'x', BIG_FIELD);
    big[BIG_FIELD] = '\0';
    json_t *fx =
        json_pack("{s:[{s:i,s:s,s:{s:{s:{s:s,s:[{s:s,s:s}]}},s:{s:{s:s,s:[]},s:s}},s:{s:i}},"
                  "{s:i,s:s,s:{s:{s:{s:s,s:[{s:s,s:s}]}}}}]}",
                  "templates", "id", 1, "prompt_name", "Hello", "versions", "1", "prompt_template",
                  "type", "completion", "content", "type", "text", "text", "hi", "2",
                  "prompt_template", "type", "chat", "messages", "commit_message", "second",
                  "labels", "prod", 2, "id", 2, "prompt_name", "Big", "versions", "1",
                  "prompt_template", "type", "completion", "content", "type", "text", "text", big);
    free(big);
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

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    const char *bin = getenv("FAKE_API_BIN");
    if (bin == NULL || bin[0] == '\0') {
        fprintf(stderr, "# FAKE_API_BIN is not set: cannot start the fake API\n");
        return -1;
    }
    if (fetch_global_init() != 0)
        return -1;
    snprintf(g.dir, sizeof(g.dir), "/tmp/test_fetch.XXXXXX");
    if (mkdtemp(g.dir) == NULL)
        return -1;
    snprintf(g.fixture, sizeof(g.fixture), "%s/fixture.json", g.dir);
    snprintf(g.port_file, sizeof(g.port_file), "%s/port", g.dir);
    snprintf(g.log_file, sizeof(g.log_file), "%s/fake.log", g.dir);
    if (write_fixture(g.fixture) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
        int fd = open(g.log_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execl(bin, bin, "--listen", "127.0.0.1:0", "--port-file", g.port_file, "--fixture",
              g.fixture, "--api-key", "k", (char *)NULL);
        _exit(127);
    }
    g.pid = pid;
    int64_t deadline = time_mono_us() + 10 * 1000000LL;
    int port = -1;
    while (port < 0 && time_mono_us() < deadline) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "# fake-promptlayer exited early (status %d), see %s\n", st,
                    g.log_file);
            g.pid = -1;
            return -1;
        }
        port = read_port(g.port_file);
        if (port < 0)
            sleep_ms(10);
    }
    if (port < 0) {
        fprintf(stderr, "# fake-promptlayer did not write %s within 10 s\n", g.port_file);
        return -1;
    }
    snprintf(g.base, sizeof(g.base), "http://127.0.0.1:%d", port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g.pid > 0) {
        kill(g.pid, SIGTERM);
        int64_t deadline = time_mono_us() + 5 * 1000000LL;
        pid_t w = 0;
        while (w == 0 && time_mono_us() < deadline) {
            w = waitpid(g.pid, NULL, WNOHANG);
            if (w == 0)
                sleep_ms(10);
        }
        if (w == 0) {
            kill(g.pid, SIGKILL);
            waitpid(g.pid, NULL, 0);
        }
        g.pid = -1;
    }
    unlink(g.fixture);
    unlink(g.port_file);
    unlink(g.log_file);
    rmdir(g.dir);
    fetch_global_cleanup();
    return 0;
}

static size_t ctl_write(char *p, size_t size, size_t n, void *arg)
{
    return buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

/* One synchronous control request; returns the status (0 on failure) and, when
 * out is not NULL, the body (free it). */
static long ctl(const char *method, const char *path, const char *body, char **out)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", g.base, path);
    buf b;
    buf_init(&b, (size_t)64 << 20);
    long status = 0;
    CURL *e = curl_easy_init();
    if (e == NULL)
        return 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ctl_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&b);
    if (body != NULL)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    if (out != NULL) {
        size_t len = 0;
        *out = buf_steal(&b, &len);
    }
    buf_free(&b);
    return status;
}

static void fault(const char *json)
{
    assert_int_equal(ctl("POST", "/_fake/faults", json, NULL), 200);
}

/* The recorded API requests whose raw path starts with prefix. */
static json_t *records(const char *prefix)
{
    char path[256];
    snprintf(path, sizeof(path), "/_fake/requests?path_prefix=%s", prefix);
    char *text = NULL;
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

/* ---- the loop and the callbacks ---- */

typedef struct tctx {
    struct event_base *base;
    fetcher *f;
} tctx;

static int calls; /* fetch callbacks so far in this test */

typedef struct got {
    int calls;
    fetch_outcome outcome;
    long status;
    char *body;
    size_t len;
    int attempts;
    char error[CURL_ERROR_SIZE];
    long retry_after_ms;
    int64_t at_us;
    int64_t wall_ms; /* time_now_ms(), to compare with the fake's at_ms */
} got;

static void on_done(const fetch_result *r, void *arg)
{
    got *w = arg;
    w->calls++;
    calls++;
    w->outcome = r->outcome;
    w->status = r->status;
    free(w->body);
    w->body = malloc(r->len + 1);
    assert_non_null(w->body);
    memcpy(w->body, r->body, r->len + 1); /* the NUL too: it must be there */
    w->len = r->len;
    w->attempts = r->attempts;
    snprintf(w->error, sizeof(w->error), "%s", r->error);
    w->retry_after_ms = r->retry_after_ms;
    w->at_us = time_mono_us();
    w->wall_ms = time_now_ms();
}

static void got_free(got *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(w[i].body);
        w[i].body = NULL;
    }
}

typedef int (*cond_fn)(void *arg);

typedef struct waiter {
    struct event_base *base;
    cond_fn cond;
    void *arg;
    int64_t deadline_us;
    int met;
} waiter;

static void on_safety(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    waiter *w = arg;
    if (w->cond(w->arg)) {
        w->met = 1;
        event_base_loopbreak(w->base);
    } else if (time_mono_us() > w->deadline_us) {
        event_base_loopbreak(w->base);
    }
}

/* Runs the loop until cond holds (checked every 2 ms) or timeout_ms passes.
 * Returns 1 when cond held. A one-shot timer that breaks the loop a little
 * later is a second safety net (like event_base_loopexit, but freed here, so
 * a test can check that nothing else is left on the base). */
static int run_until(struct event_base *base, cond_fn cond, void *arg, long timeout_ms)
{
    waiter w = {base, cond, arg, time_mono_us() + (int64_t)timeout_ms * 1000, 0};
    if (cond(arg))
        return 1;
    struct event *poll = event_new(base, -1, EV_PERSIST, on_poll, &w);
    assert_non_null(poll);
    struct timeval tick = {0, 2000};
    event_add(poll, &tick);
    struct event *safety = evtimer_new(base, on_safety, base);
    assert_non_null(safety);
    struct timeval limit = {timeout_ms / 1000 + 2, 0};
    evtimer_add(safety, &limit);
    event_base_dispatch(base);
    event_free(safety);
    event_free(poll);
    return w.met;
}

static int calls_at_least(void *arg)
{
    return calls >= *(int *)arg;
}

static void wait_calls(tctx *t, int n, long timeout_ms)
{
    int ok = run_until(t->base, calls_at_least, &n, timeout_ms);
    if (!ok)
        fail_msg("timed out: %d of %d callbacks after %ld ms", calls, n, timeout_ms);
}

static fetcher *new_fetcher(tctx *t, const fetch_opts *o)
{
    t->f = fetch_new(t->base, o);
    assert_non_null(t->f);
    return t->f;
}

static void url_of(char *out, size_t outlen, const char *path)
{
    snprintf(out, outlen, "%s%s", g.base, path);
}

static int setup(void **state)
{
    tctx *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -1;
    if (ctl("POST", "/_fake/reset", "{}", NULL) != 200) {
        free(t);
        return -1;
    }
    t->base = event_base_new();
    if (t->base == NULL) {
        free(t);
        return -1;
    }
    calls = 0;
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tctx *t = *state;
    fetch_free(t->f);
    event_base_free(t->base);
    free(t);
    return 0;
}

/* ---- tests ---- */

static void test_get_returns_body_and_status(void **state)
{
    tctx *t = *state;
    fetcher *f = new_fetcher(t, NULL);
    char url[256];
    url_of(url, sizeof(url), "/prompt-templates/Hello?label=prod");
    got w = {0};
    assert_int_equal(fetch_get(f, url, api_headers, NULL, on_done, &w), 0);
    /* Nothing starts inside fetch_get. */
    assert_int_equal(fetch_waiting(f), 1);
    assert_int_equal(fetch_inflight(f), 0);
    wait_calls(t, 1, 10000);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 200);
    assert_int_equal(w.outcome, FETCH_OK);
    assert_int_equal(w.attempts, 1);
    assert_string_equal(w.error, "");
    assert_int_equal(w.retry_after_ms, -1);
    assert_int_equal(w.len, strlen(w.body));
    json_t *j = json_loads(w.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "prompt_name")), "Hello");
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 2);
    json_decref(j);
    fetch_stats_t s;
    fetch_stats(f, &s);
    assert_int_equal(s.requests, 1);
    assert_int_equal(s.transfers, 1);
    assert_int_equal(s.by_status[200 - FETCH_STATUS_MIN], 1);
    assert_int_equal(s.by_class[2], 1);
    assert_int_equal(s.outcomes[FETCH_OK], 1);
    assert_int_equal(fetch_inflight(f), 0);
    assert_int_equal(fetch_waiting(f), 0);
    got_free(&w, 1);
}

static void test_404_is_returned_at_once_without_retry(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.backoff_base_ms = 10};
    fetcher *f = new_fetcher(t, &o);
    char url[256];
    url_of(url, sizeof(url), "/prompt-templates/Nope");
    got w = {0};
    assert_int_equal(fetch_get(f, url, api_headers, NULL, on_done, &w), 0);
    wait_calls(t, 1, 10000);
    assert_int_equal(w.status, 404);
    assert_int_equal(w.outcome, FETCH_ERROR);
    assert_int_equal(w.attempts, 1);
    assert_string_equal(w.error, "");
    assert_non_null(strstr(w.body, "message"));
    assert_int_equal(count_records("/prompt-templates/Nope"), 1);
    fetch_stats_t s;
    fetch_stats(f, &s);
    assert_int_equal(s.retries, 0);
    assert_int_equal(s.by_class[4], 1);
    got_free(&w, 1);
}

static void test_500_twice_then_200_succeeds_on_the_third_attempt(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.backoff_base_ms = 50};
    fetcher *f = new_fetcher(t, &o);
    fault("{\"path_prefix\":\"/prompt-templates/Hello\",\"count\":2,\"status\":500}");
    char url[256];
    url_of(url, sizeof(url), "/prompt-templates/Hello?version=1");
    got w = {0};
    assert_int_equal(fetch_get(f, url, api_headers, NULL, on_done, &w), 0);
    wait_calls(t, 1, 10000);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 200);
    assert_int_equal(w.outcome, FETCH_OK);
    assert_int_equal(w.attempts, 3);
    assert_non_null(strstr(w.body, "\"Hello\""));
    assert_int_equal(count_records("/prompt-templates/Hello"), 3);
    fetch_stats_t s;
    fetch_stats(f, &s);
    assert_int_equal(s.retries, 2);
    assert_int_equal(s.transfers, 3);
    assert_int_equal(s.by_status[500 - FETCH_STATUS_MIN], 2);
    assert_int_equal(s.by_status[200 - FETCH_STATUS_MIN], 1);
    got_free(&w, 1);
}

static void test_429_retry_waits_for_retry_after(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.backoff_base_ms = 10, .backoff_max_ms = 20};
    fetcher *f = new_fetcher(t, &o);
    fault("{\"path_prefix\":\"/prompt-templates/Hello\",\"status\":429,\"retry_after\":\"1\"}");
    char url[256];
    url_of(url, sizeof(url), "/prompt-templates/Hello");
    got w = {0};
    int64_t t0 = time_mono_us();
    assert_int_equal(fetch_get(f, url, api_headers, NULL, on_done, &w), 0);
    wait_calls(t, 1, 15000);
    int64_t ms = (w.at_us - t0) / 1000;
    print_message("# 429 + Retry-After: 1 answered after %lld ms\n", (long long)ms);
    assert_int_equal(w.status, 200);
    assert_int_equal(w.attempts, 2);
    assert_true(ms >= 900);
    assert_true(ms < 8000);
    assert_int_equal(count_records("/prompt-templates/Hello"), 2);
    got_free(&w, 1);
}

static void get_one(tctx *t, const char *path, got *w)
{
    char url[256];
    url_of(url, sizeof(url), path);
    int want = calls + 1;
    assert_int_equal(fetch_get(t->f, url, api_headers, NULL, on_done, w), 0);
    wait_calls(t, want, 10000);
}

static void test_retry_after_is_read_as_seconds_or_date(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.max_attempts = 1};
    new_fetcher(t, &o);
    char date[64];
    time_t when = time(NULL) + 30;
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    char faults[512];
    snprintf(
        faults, sizeof(faults),
        "[{\"path_prefix\":\"/prompt-templates/Hello\",\"status\":503,\"retry_after\":\"120\"},"
        "{\"path_prefix\":\"/prompt-templates/Hello\",\"status\":503,\"retry_after\":\"%s\"},"
        "{\"path_prefix\":\"/prompt-templates/Hello\",\"status\":503,\"retry_after\":\"soon\"},"
        "{\"path_prefix\":\"/prompt-templates/Hello\",\"status\":503}]",
        date);
    fault(faults);
    got w[4] = {0};
    for (int i = 0; i < 4; i++) {
        get_one(t, "/prompt-templates/Hello", &w[i]);
        assert_int_equal(w[i].status, 503);
        assert_int_equal(w[i].outcome, FETCH_RETRY);
        assert_int_equal(w[i].attempts, 1);
    }
    assert_int_equal(w[0].retry_after_ms, 120000);
    assert_true(w[1].retry_after_ms >= 25000 && w[1].retry_after_ms <= 31000);
    assert_int_equal(w[2].retry_after_ms, -1);
    assert_int_equal(w[3].retry_after_ms, -1);
    got_free(w, 4);
}

static void test_dropped_connection_is_retried(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.backoff_base_ms = 10};
    fetcher *f = new_fetcher(t, &o);
    fault("{\"path_prefix\":\"/prompt-templates/Hello\",\"drop\":true}");
    got w = {0};
    get_one(t, "/prompt-templates/Hello", &w);
    assert_int_equal(w.status, 200);
    assert_int_equal(w.attempts, 2);
    fetch_stats_t s;
    fetch_stats(f, &s);
    assert_int_equal(s.net_errors, 1);
    assert_int_equal(s.retries, 1);
    json_t *arr = records("/prompt-templates/Hello");
    assert_int_equal(json_array_size(arr), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "status")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 1), "status")), 200);
    json_decref(arr);
    got_free(&w, 1);
}

static void test_timeout_is_retried_then_succeeds(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.timeout_ms = 500, .backoff_base_ms = 10};
    fetcher *f = new_fetcher(t, &o);
    fault("{\"path_prefix\":\"/prompt-templates/Hello\",\"delay_ms\":3000}");
    got w = {0};
    int64_t t0 = time_mono_us();
    get_one(t, "/prompt-templates/Hello", &w);
    int64_t ms = (w.at_us - t0) / 1000;
    print_message("# timed out once, answered after %lld ms\n", (long long)ms);
    assert_int_equal(w.status, 200);
    assert_int_equal(w.attempts, 2);
    assert_true(ms >= 450);
    assert_true(ms < 2900); /* not the delayed answer */
    fetch_stats_t s;
    fetch_stats(f, &s);
    assert_int_equal(s.timeouts, 1);
    assert_int_equal(s.net_errors, 1);
    got_free(&w, 1);
}

static void test_exhausted_attempts_return_the_last_status(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.max_attempts = 3, .backoff_base_ms = 10};
    fetcher *f = new_fetcher(t, &o);
    fault("{\"path_prefix\":\"/prompt-templates/Hello\",\"count\":10,\"status\":503,"
          "\"body\":{\"message\":\"busy\"}}");
    got w = {0};
    get_one(t, "/prompt-templates/Hello", &w);
    assert_int_equal(w.status, 503);
    assert_int_equal(w.outcome, FETCH_RETRY);
    assert_int_equal(w.attempts, 3);
    assert_string_equal(w.error, "");
    assert_non_null(strstr(w.body, "busy"));
    assert_int_equal(count_records("/prompt-templates/Hello"), 3);
    fetch_stats_t s;
    fetch_stats(f, &s);
    assert_int_equal(s.outcomes[FETCH_RETRY], 1);
    got_free(&w, 1);
}

static void test_connection_refused_is_retried_then_reported(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.max_attempts = 2, .backoff_base_ms = 10};
    fetcher *f = new_fetcher(t, &o);
    got w = {0};
    assert_int_equal(fetch_get(f, "http://127.0.0.1:1/x", NULL, NULL, on_done, &w), 0);
    wait_calls(t, 1, 10000);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.outcome, FETCH_RETRY);
    assert_int_equal(w.attempts, 2);
    assert_true(w.error[0] != '\0');
    assert_int_equal(w.len, 0);
    assert_string_equal(w.body, "");
    fetch_stats_t s;
    fetch_stats(f, &s);
    assert_int_equal(s.net_errors, 2);
    got_free(&w, 1);
}

static void test_disallowed_protocol_fails_without_retry(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.backoff_base_ms = 10};
    fetcher *f = new_fetcher(t, &o);
    got w = {0};
    assert_int_equal(fetch_get(f, "ftp://127.0.0.1:1/x", NULL, NULL, on_done, &w), 0);
    wait_calls(t, 1, 10000);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.outcome, FETCH_ERROR);
    assert_int_equal(w.attempts, 1);
    assert_true(w.error[0] != '\0');
    got_free(&w, 1);
}

typedef struct late_join {
    fetcher *f;
    const char *url;
    got *w;
    int n;
    size_t inflight, waiting;
} late_join;

static void on_late_join(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    late_join *lj = arg;
    lj->inflight = fetch_inflight(lj->f);
    lj->waiting = fetch_waiting(lj->f);
    for (int i = 0; i < lj->n; i++)
        assert_int_equal(fetch_get(lj->f, lj->url, api_headers, "Hello@prod", on_done, &lj->w[i]),
                         0);
}

static void test_same_key_gets_share_one_transfer(void **state)
{
    tctx *t = *state;
    fetcher *f = new_fetcher(t, NULL);
    fault("{\"path_prefix\":\"/prompt-templates/Hello\",\"delay_ms\":1000}");
    char url[256];
    url_of(url, sizeof(url), "/prompt-templates/Hello?label=prod");
    got w[20] = {0};
    /* Ten join while the request is queued, ten while it is in flight. */
    for (int i = 0; i < 10; i++)
        assert_int_equal(fetch_get(f, url, api_headers, "Hello@prod", on_done, &w[i]), 0);
    late_join lj = {f, url, &w[10], 10, 0, 0};
    struct event *ev = evtimer_new(t->base, on_late_join, &lj);
    struct timeval at = {0, 150 * 1000};
    evtimer_add(ev, &at);
    wait_calls(t, 20, 10000);
    event_free(ev);
    assert_int_equal(lj.inflight, 1);
    assert_int_equal(lj.waiting, 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].status, 200);
        assert_int_equal(w[i].attempts, 1);
        assert_int_equal(w[i].len, w[0].len);
        assert_memory_equal(w[i].body, w[0].body, w[0].len);
    }
    assert_int_equal(count_records("/prompt-templates/Hello"), 1);
    fetch_stats_t s;
    fetch_stats(f, &s);
    assert_int_equal(s.requests, 1);
    assert_int_equal(s.coalesced, 19);
    assert_int_equal(s.transfers, 1);
    got_free(w, 20);
}

static void on_join_in_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    late_join *lj = arg;
    lj->inflight = fetch_inflight(lj->f);
    lj->waiting = fetch_waiting(lj->f);
    assert_int_equal(fetch_get(lj->f, lj->url, api_headers, "Hello@1", on_done, lj->w), 0);
}

static void test_get_joins_a_request_waiting_for_retry(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.backoff_base_ms = 10, .backoff_max_ms = 20};
    fetcher *f = new_fetcher(t, &o);
    fault("{\"path_prefix\":\"/prompt-templates/Hello\",\"status\":503,\"retry_after\":\"1\"}");
    char url[256];
    url_of(url, sizeof(url), "/prompt-templates/Hello?version=1");
    got w[2] = {0};
    assert_int_equal(fetch_get(f, url, api_headers, "Hello@1", on_done, &w[0]), 0);
    late_join lj = {f, url, &w[1], 1, 9, 9};
    struct event *ev = evtimer_new(t->base, on_join_in_retry, &lj);
    struct timeval at = {0, 300 * 1000};
    evtimer_add(ev, &at);
    wait_calls(t, 2, 15000);
    event_free(ev);
    assert_int_equal(lj.inflight, 0);
    assert_int_equal(lj.waiting, 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].status, 200);
        assert_int_equal(w[i].attempts, 2);
    }
    assert_string_equal(w[0].body, w[1].body);
    assert_int_equal(count_records("/prompt-templates/Hello"), 2);
    got_free(w, 2);
}

typedef struct sampler {
    fetcher *f;
    size_t max_inflight;
    int samples;
} sampler;

static void on_sample(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sampler *s = arg;
    size_t n = fetch_inflight(s->f);
    if (n > s->max_inflight)
        s->max_inflight = n;
    s->samples++;
}

static void test_inflight_never_exceeds_max_inflight(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.max_inflight = 4};
    fetcher *f = new_fetcher(t, &o);
    fault("{\"path_prefix\":\"/prompt-templates/Hello\",\"count\":16,\"delay_ms\":200}");
    got w[16] = {0};
    int64_t t0 = time_mono_us();
    for (int i = 0; i < 16; i++) {
        char path[128], url[256];
        snprintf(path, sizeof(path), "/prompt-templates/Hello?version=1&n=%d", i);
        url_of(url, sizeof(url), path);
        assert_int_equal(fetch_get(f, url, api_headers, NULL, on_done, &w[i]), 0);
    }
    assert_int_equal(fetch_waiting(f), 16);
    sampler s = {f, 0, 0};
    struct event *ev = event_new(t->base, -1, EV_PERSIST, on_sample, &s);
    struct timeval tick = {0, 5000};
    event_add(ev, &tick);
    wait_calls(t, 16, 20000);
    event_free(ev);
    int64_t first_wall = INT64_MAX, last = 0;
    for (int i = 0; i < 16; i++) {
        assert_int_equal(w[i].status, 200);
        if (w[i].at_us > last)
            last = w[i].at_us;
        if (w[i].wall_ms < first_wall)
            first_wall = w[i].wall_ms;
    }
    int64_t ms = (last - t0) / 1000;
    print_message("# 16 GETs, 4 at a time, 200 ms each: %lld ms, peak %zu in flight (%d samples)\n",
                  (long long)ms, s.max_inflight, s.samples);
    assert_true(s.max_inflight <= 4);
    assert_int_equal(s.max_inflight, 4);
    assert_true(ms >= 780);
    assert_true(ms < 15000);
    /* The first four reached the fake before any answer came back: none of
     * them waited for another (curl's PIPEWAIT over plain http would). */
    json_t *arr = records("/prompt-templates/Hello");
    assert_int_equal(json_array_size(arr), 16);
    json_int_t fourth = json_integer_value(json_object_get(json_array_get(arr, 3), "at_ms"));
    print_message("# 4th request arrived %lld ms before the first answer was seen\n",
                  (long long)(first_wall - fourth));
    assert_true(fourth <= first_wall);
    json_decref(arr);
    got_free(w, 16);
}

static void test_post_body_and_headers_arrive_intact(void **state)
{
    tctx *t = *state;
    fetcher *f = new_fetcher(t, NULL);
    static const char *const hdrs[] = {"X-API-KEY: k", "Content-Type: application/json", NULL};
    const char *small = "{\"prompt_name\":\"Hello\",\"request_id\":1,\"tags\":[\"a\"],"
                        "\"s\":\"h\xc3\xa9llo \\\"q\\\"\"}";
    size_t big_len = 200 * 1024;
    char *big = malloc(big_len + 1);
    assert_non_null(big);
    memcpy(big, "{\"request_id\":1,\"score\":90,\"data\":\"", 35);
    memset(big + 35, 'y', big_len - 37);
    memcpy(big + big_len - 2, "\"}", 2);
    big[big_len] = '\0';
    char u1[256], u2[256];
    url_of(u1, sizeof(u1), "/rest/track-prompt");
    url_of(u2, sizeof(u2), "/rest/track-score");
    got w[3] = {0};
    assert_int_equal(fetch_post(f, u1, hdrs, small, strlen(small), on_done, &w[0]), 0);
    assert_int_equal(fetch_post(f, u1, hdrs, small, strlen(small), on_done, &w[1]), 0);
    assert_int_equal(fetch_post(f, u2, hdrs, big, big_len, on_done, &w[2]), 0);
    wait_calls(t, 3, 10000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w[i].status, 200);
        assert_non_null(strstr(w[i].body, "\"success\""));
    }
    json_t *arr = records("/");
    assert_int_equal(json_array_size(arr), 3);
    int at_log = 0, at_score = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *rec = json_array_get(arr, i);
        const char *path = json_string_value(json_object_get(rec, "path"));
        const char *body = json_string_value(json_object_get(rec, "body"));
        assert_string_equal(json_string_value(json_object_get(rec, "method")), "POST");
        assert_string_equal(json_string_value(json_object_get(rec, "api_key")), "k");
        assert_string_equal(json_string_value(json_object_get(rec, "content_type")),
                            "application/json");
        assert_non_null(body);
        if (strcmp(path, "/rest/track-prompt") == 0) {
            at_log++;
            assert_string_equal(body, small);
        } else {
            at_score++;
            assert_string_equal(path, "/rest/track-score");
            assert_int_equal(strlen(body), big_len);
            assert_memory_equal(body, big, big_len);
        }
    }
    assert_int_equal(at_log, 2); /* a POST is never coalesced */
    assert_int_equal(at_score, 1);
    json_decref(arr);
    free(big);
    got_free(w, 3);
}

/* One slot: every request runs on the same easy handle, which is not reset
 * between transfers. A GET after a POST must be a GET with no body, and a
 * request must carry its own header lines, not the last request's. Every
 * request names plcache as its User-Agent unless the caller gave one; only
 * a GET asks for a compressed answer. */
static void test_a_reused_handle_carries_nothing_over(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.max_inflight = 1};
    fetcher *f = new_fetcher(t, &o);
    static const char *const good[] = {"X-API-KEY: k", "Content-Type: application/json", NULL};
    static const char *const wrong[] = {"X-API-KEY: other", "Content-Type: application/json", NULL};
    static const char *const own_ua[] = {"X-API-KEY: other", "user-agent: mine/1", NULL};
    static const char *const bare[] = {NULL};
    static const char *const empty_ua[] = {"X-API-KEY: k", "User-Agent;", NULL};
    const char *body = "{\"n\":1,\"request_id\":1,\"score\":1}";
    char post_url[256], get_url[256];
    url_of(post_url, sizeof(post_url), "/rest/track-score");
    url_of(get_url, sizeof(get_url), "/prompt-templates/Hello?label=prod");
    got w[7] = {0};
    assert_int_equal(fetch_post(f, post_url, good, body, strlen(body), on_done, &w[0]), 0);
    assert_int_equal(fetch_get(f, get_url, api_headers, NULL, on_done, &w[1]), 0);
    assert_int_equal(fetch_post(f, post_url, wrong, body, strlen(body), on_done, &w[2]), 0);
    assert_int_equal(fetch_get(f, get_url, own_ua, NULL, on_done, &w[3]), 0);
    assert_int_equal(fetch_get(f, get_url, bare, NULL, on_done, &w[4]), 0);
    assert_int_equal(fetch_post(f, post_url, good, body, strlen(body), on_done, &w[5]), 0);
    assert_int_equal(fetch_get(f, get_url, empty_ua, NULL, on_done, &w[6]), 0);
    wait_calls(t, 7, 10000);
    static const long want_status[] = {200, 200, 401, 401, 401, 200, 200};
    static const char *const want_method[] = {"POST", "GET", "POST", "GET", "GET", "POST", "GET"};
    static const char *const want_key[] = {"k", "k", "other", "other", NULL, "k", "k"};
    for (int i = 0; i < 7; i++)
        assert_int_equal(w[i].status, want_status[i]);
    json_t *arr = records("/");
    assert_int_equal(json_array_size(arr), 7);
    for (size_t i = 0; i < 7; i++) {
        json_t *rec = json_array_get(arr, i);
        const char *method = json_string_value(json_object_get(rec, "method"));
        const char *key = json_string_value(json_object_get(rec, "api_key"));
        const char *got_body = json_string_value(json_object_get(rec, "body"));
        const char *ctype = json_string_value(json_object_get(rec, "content_type"));
        const char *ua = json_string_value(json_object_get(rec, "user_agent"));
        const char *ae = json_string_value(json_object_get(rec, "accept_encoding"));
        assert_string_equal(method, want_method[i]);
        if (want_key[i] == NULL)
            assert_null(key);
        else
            assert_string_equal(key, want_key[i]);
        assert_non_null(ua);
        if (i == 3)
            assert_string_equal(ua, "mine/1");
        else if (i == 6)
            assert_string_equal(ua, ""); /* "User-Agent;": curl's way to send it empty */
        else
            assert_int_equal(strncmp(ua, "plcache/", 8), 0);
        if (strcmp(method, "POST") == 0) {
            assert_string_equal(got_body, body);
            assert_string_equal(ctype, "application/json");
            assert_null(ae);
        } else {
            assert_true(got_body == NULL || got_body[0] == '\0');
            assert_null(ctype);
            assert_non_null(ae);
            assert_non_null(strstr(ae, "gzip"));
        }
    }
    json_decref(arr);
    got_free(w, 7);
}

static void test_response_over_max_response_fails_cleanly(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.max_response = 4096, .backoff_base_ms = 10};
    fetcher *f = new_fetcher(t, &o);
    got w[2] = {0};
    get_one(t, "/prompt-templates/Big", &w[0]);
    assert_int_equal(w[0].status, 0);
    assert_int_equal(w[0].outcome, FETCH_ERROR);
    assert_int_equal(w[0].attempts, 1);
    assert_int_equal(w[0].len, 0);
    assert_non_null(strstr(w[0].error, "4096"));
    assert_int_equal(count_records("/prompt-templates/Big"), 1);
    /* The fetcher goes on working. */
    get_one(t, "/prompt-templates/Hello?version=1", &w[1]);
    assert_int_equal(w[1].status, 200);
    assert_true(w[1].len > 0 && w[1].len <= 4096);
    fetch_stats_t s;
    fetch_stats(f, &s);
    assert_int_equal(s.too_big, 1);
    assert_int_equal(s.retries, 0);
    got_free(w, 2);
}

/* An answer without Content-Length (chunked), so only fetch's write callback
 * can stop it: served from this process, on the test's own loop. */
static void on_chunked(struct evhttp_request *req, void *arg)
{
    (void)arg;
    char block[1024];
    memset(block, 'z', sizeof(block));
    evhttp_send_reply_start(req, 200, "OK");
    for (int i = 0; i < 16; i++) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, block, sizeof(block));
        evhttp_send_reply_chunk(req, b);
        evbuffer_free(b);
    }
    evhttp_send_reply_end(req);
}

static void test_chunked_response_over_max_response_fails_cleanly(void **state)
{
    tctx *t = *state;
    struct evhttp *http = evhttp_new(t->base);
    assert_non_null(http);
    evhttp_set_gencb(http, on_chunked, NULL);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    assert_non_null(bs);
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &slen),
                     0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/chunked", ntohs(sin.sin_port));
    fetch_opts o = {.max_response = 4096, .backoff_base_ms = 10};
    fetcher *f = new_fetcher(t, &o);
    got w[2] = {0};
    assert_int_equal(fetch_get(f, url, NULL, NULL, on_done, &w[0]), 0);
    wait_calls(t, 1, 10000);
    assert_int_equal(w[0].status, 0);
    assert_int_equal(w[0].outcome, FETCH_ERROR);
    assert_int_equal(w[0].attempts, 1);
    assert_non_null(strstr(w[0].error, "4096"));
    /* Within the bound, the same answer is taken whole. */
    fetch_free(f);
    fetch_opts o2 = {.max_response = 16384};
    f = new_fetcher(t, &o2);
    assert_int_equal(fetch_get(f, url, NULL, NULL, on_done, &w[1]), 0);
    wait_calls(t, 2, 10000);
    assert_int_equal(w[1].status, 200);
    assert_int_equal(w[1].len, 16384);
    fetch_stats_t s;
    fetch_stats(f, &s);
    assert_int_equal(s.too_big, 0);
    fetch_free(f);
    t->f = NULL;
    evhttp_free(http);
    got_free(w, 2);
}

typedef struct at_free {
    got g;
    fetcher *f;
    int get_rc;
} at_free;

static void on_done_at_free(const fetch_result *r, void *arg)
{
    at_free *a = arg;
    on_done(r, &a->g);
    a->get_rc = fetch_get(a->f, "http://127.0.0.1:1/", NULL, NULL, on_done, &a->g);
}

static int three_running_three_waiting(void *arg)
{
    fetcher *f = arg;
    return fetch_inflight(f) == 3 && fetch_waiting(f) == 3;
}

static void test_free_with_requests_pending_calls_every_callback_once(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.max_inflight = 3, .backoff_base_ms = 10};
    fetcher *f = new_fetcher(t, &o);
    fault("[{\"path_prefix\":\"/prompt-templates/Retry\",\"status\":503,\"retry_after\":\"30\"},"
          "{\"path_prefix\":\"/prompt-templates/Hello\",\"count\":10,\"delay_ms\":5000}]");
    at_free a[7];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < 7; i++) {
        a[i].f = f;
        a[i].get_rc = 99;
    }
    char url[256];
    url_of(url, sizeof(url), "/prompt-templates/Retry");
    assert_int_equal(fetch_get(f, url, api_headers, "R", on_done_at_free, &a[0]), 0);
    for (int i = 1; i <= 5; i++) {
        char path[128];
        snprintf(path, sizeof(path), "/prompt-templates/Hello?n=%d", i);
        url_of(url, sizeof(url), path);
        assert_int_equal(fetch_get(f, url, api_headers, NULL, on_done_at_free, &a[i]), 0);
    }
    url_of(url, sizeof(url), "/prompt-templates/Retry");
    assert_int_equal(fetch_get(f, url, api_headers, "R", on_done_at_free, &a[6]), 0);
    /* Retry waits 30 s for its next attempt, three Hellos are held by the fake,
     * two are queued. */
    if (!run_until(t->base, three_running_three_waiting, f, 10000))
        fail_msg("timed out: %zu in flight, %zu waiting", fetch_inflight(f), fetch_waiting(f));
    assert_int_equal(calls, 0);
    fetch_free(f);
    t->f = NULL;
    assert_int_equal(calls, 7);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(a[i].g.calls, 1);
        assert_int_equal(a[i].g.status, 0);
        assert_int_equal(a[i].g.outcome, FETCH_RETRY);
        assert_string_equal(a[i].g.error, "shutting down");
        assert_int_equal(a[i].get_rc, -1); /* nothing is accepted while shutting down */
    }
    assert_int_equal(a[0].g.attempts, 1);
    assert_int_equal(a[6].g.attempts, 1);
    /* Nothing of the fetcher is left on the loop. */
    assert_int_equal(event_base_loop(t->base, EVLOOP_NONBLOCK), 1);
    for (int i = 0; i < 7; i++)
        got_free(&a[i].g, 1);
}

typedef struct chain {
    fetcher *f;
    char url[256];
    int done;
    int bad;
    got w;
} chain;

static void on_chain(const fetch_result *r, void *arg)
{
    chain *c = arg;
    c->done++;
    calls++;
    if (r->status != 200)
        c->bad++;
    if (c->done < 50 && fetch_get(c->f, c->url, api_headers, NULL, on_chain, c) != 0)
        c->bad++;
}

static void test_sequential_gets_reuse_connections(void **state)
{
    tctx *t = *state;
    fetcher *f = new_fetcher(t, NULL);
    chain c;
    memset(&c, 0, sizeof(c));
    c.f = f;
    url_of(c.url, sizeof(c.url), "/prompt-templates/Hello?version=1");
    assert_int_equal(fetch_get(f, c.url, api_headers, NULL, on_chain, &c), 0);
    wait_calls(t, 50, 30000);
    assert_int_equal(c.done, 50);
    assert_int_equal(c.bad, 0);
    fetch_stats_t s;
    fetch_stats(f, &s);
    print_message("# 50 sequential GETs made %lu connection(s)\n", s.connects);
    assert_int_equal(s.transfers, 50);
    assert_true(s.connects >= 1);
    assert_true(s.connects <= 5);
    assert_int_equal(count_records("/prompt-templates/Hello"), 50);
}

/* ---- kept connections the server closes ---- */

/* A server on the test's own loop: answers each request of a connection with
 * 200 "ok", keeps the connection, and closes it close_ms after the answer
 * (or when the test says so). */
#define KEPT_MAX 8
typedef struct kept_srv kept_srv;
typedef struct kept_conn {
    kept_srv *s;
    int fd;
    int answered; /* requests answered on this connection */
    struct event *rd, *closer;
    char buf[4096];
    size_t len;
} kept_conn;
struct kept_srv {
    struct event_base *base;
    int lfd, port, close_ms, conns, answers;
    int one_each;    /* answers a connection's first request, closes at its second */
    char last[4096]; /* the last request's head, as received */
    struct event *accept_ev;
    kept_conn *conn[KEPT_MAX];
};

static void kept_close(kept_conn *c)
{
    if (c->fd < 0)
        return;
    event_free(c->rd);
    event_free(c->closer);
    close(c->fd);
    c->fd = -1;
}

static void on_kept_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kept_close(arg);
}

static void on_kept_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    kept_conn *c = arg;
    ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
    if (n <= 0) {
        kept_close(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (strstr(c->buf, "\r\n\r\n") == NULL)
        return;
    if (c->s->one_each && c->answered > 0) {
        kept_close(c); /* the request was sent on a kept connection: no answer */
        return;
    }
    c->answered++;
    snprintf(c->s->last, sizeof(c->s->last), "%s", c->buf);
    static const char answer[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
    assert_int_equal(write(fd, answer, sizeof(answer) - 1), (ssize_t)(sizeof(answer) - 1));
    c->s->answers++;
    c->len = 0;
    if (c->s->close_ms >= 0) {
        struct timeval tv = {0, c->s->close_ms * 1000};
        evtimer_add(c->closer, &tv);
    }
}

static void on_kept_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    kept_srv *s = arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    assert_true(s->conns < KEPT_MAX);
    kept_conn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->s = s;
    c->fd = fd;
    c->rd = event_new(s->base, fd, EV_READ | EV_PERSIST, on_kept_read, c);
    c->closer = evtimer_new(s->base, on_kept_timer, c);
    assert_non_null(c->rd);
    assert_non_null(c->closer);
    event_add(c->rd, NULL);
    s->conn[s->conns++] = c;
}

static void kept_start(kept_srv *s, struct event_base *base, int close_ms)
{
    memset(s, 0, sizeof(*s));
    s->base = base;
    s->close_ms = close_ms;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 8), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    s->accept_ev = event_new(base, s->lfd, EV_READ | EV_PERSIST, on_kept_accept, s);
    assert_non_null(s->accept_ev);
    event_add(s->accept_ev, NULL);
}

static void kept_stop(kept_srv *s)
{
    for (int i = 0; i < s->conns; i++) {
        kept_close(s->conn[i]);
        free(s->conn[i]);
    }
    event_free(s->accept_ev);
    close(s->lfd);
}

static int never(void *arg)
{
    (void)arg;
    return 0;
}

/* One GET to the kept server; returns its result in *w. */
static void kept_get(tctx *t, const kept_srv *s, got *w)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", s->port);
    int want = calls + 1;
    assert_int_equal(fetch_get(t->f, url, NULL, NULL, on_done, w), 0);
    wait_calls(t, want, 10000);
}

static void test_kept_connection_closed_while_idle_is_dropped_then_replaced(void **state)
{
    /* Between two transfers the kept connection's socket stays registered
     * (parked). The server closes it: the fetcher must stop watching it at
     * once (or the loop would spin on a readable socket), and the next
     * request must go out on a new connection, first time. */
    tctx *t = *state;
    fetcher *f = new_fetcher(t, NULL);
    kept_srv s;
    kept_start(&s, t->base, 50);
    got w[2];
    memset(w, 0, sizeof(w));
    kept_get(t, &s, &w[0]);
    assert_int_equal(w[0].status, 200);
    assert_string_equal(w[0].body, "ok");
    run_until(t->base, never, NULL, 300); /* the server closes after 50 ms */
    fetch_stats_t st;
    fetch_stats(f, &st);
    assert_int_equal(st.idle_closed, 1);
    assert_int_equal(st.sockets, 0); /* nothing left watching the closed one */
    kept_get(t, &s, &w[1]);
    assert_int_equal(w[1].status, 200);
    assert_int_equal(w[1].attempts, 1);
    fetch_stats(f, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.sockets, 1); /* the new connection, kept */
    assert_int_equal(s.conns, 2);
    assert_int_equal(s.answers, 2);
    got_free(w, 2);
    fetch_free(f);
    t->f = NULL;
    kept_stop(&s);
}

static void test_kept_connection_closed_unseen_is_replaced_on_the_same_descriptor(void **state)
{
    /* The server closes the kept connection while the loop is not running:
     * curl finds it dead when the next request wants it, closes it (our
     * close callback unhooks the parked event first) and opens a new socket,
     * which gets the same descriptor number. That socket must be watched
     * for real: the request completes, first time, and so do more. */
    tctx *t = *state;
    fetcher *f = new_fetcher(t, NULL);
    kept_srv s;
    kept_start(&s, t->base, -1);
    got w[4];
    memset(w, 0, sizeof(w));
    kept_get(t, &s, &w[0]);
    assert_int_equal(w[0].status, 200);
    for (int round = 1; round < 4; round++) {
        kept_close(s.conn[s.conns - 1]);
        sleep_ms(50); /* the FIN arrives; nobody looks */
        kept_get(t, &s, &w[round]);
        assert_int_equal(w[round].status, 200);
        assert_int_equal(w[round].attempts, 1);
    }
    fetch_stats_t st;
    fetch_stats(f, &st);
    assert_int_equal(st.connects, 4);
    assert_int_equal(st.sockets, 1);
    assert_int_equal(s.conns, 4);
    got_free(w, 4);
    fetch_free(f);
    t->f = NULL;
    kept_stop(&s);
}

static void test_kept_connections_dying_at_reuse_are_retried_by_curl_every_time(void **state)
{
    /* Each kept connection dies when it is reused: the server reads the
     * request and closes without an answer. curl then retries on a fresh
     * connection by itself, and counts the retry in the easy handle, 5 in
     * the handle's life before it gives up (curl 7.88 clears the count only
     * in curl_easy_reset). The fetcher keeps handles without resetting
     * them, so a handle that made a connection must not be kept: every
     * request here succeeds at its first attempt. */
    tctx *t = *state;
    fetcher *f = new_fetcher(t, NULL);
    kept_srv s;
    kept_start(&s, t->base, -1);
    s.one_each = 1;
    got w[7];
    memset(w, 0, sizeof(w));
    for (int i = 0; i < 7; i++) {
        kept_get(t, &s, &w[i]);
        assert_int_equal(w[i].status, 200);
        assert_int_equal(w[i].attempts, 1);
    }
    assert_int_equal(s.conns, 7);
    assert_int_equal(s.answers, 7);
    got_free(w, 7);
    fetch_free(f);
    t->f = NULL;
    kept_stop(&s);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strcasestr(hay, needle); p != NULL; p = strcasestr(p + 1, needle))
        n++;
    return n;
}

static void test_one_user_agent_line_whatever_the_caller_gives(void **state)
{
    /* The fetcher adds its User-Agent unless the caller gave one, in either
     * of curl's forms: "User-Agent: x", or "User-Agent;" for an empty one. */
    tctx *t = *state;
    fetcher *f = new_fetcher(t, NULL);
    kept_srv s;
    kept_start(&s, t->base, -1);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", s.port);
    static const char *const none[] = {NULL};
    static const char *const empty[] = {"user-agent;", NULL};
    static const char *const own[] = {"User-Agent: mine/2", NULL};
    static const char *const *const sets[] = {none, empty, own};
    static const char *const want[] = {"User-Agent: plcache/", "User-Agent:\r\n",
                                       "User-Agent: mine/2\r\n"};
    got w[3];
    memset(w, 0, sizeof(w));
    for (int i = 0; i < 3; i++) {
        int wanted = calls + 1;
        assert_int_equal(fetch_get(f, url, sets[i], NULL, on_done, &w[i]), 0);
        wait_calls(t, wanted, 10000);
        assert_int_equal(w[i].status, 200);
        assert_int_equal(count_of(s.last, "User-Agent"), 1);
        assert_non_null(strcasestr(s.last, want[i]));
    }
    got_free(w, 3);
    fetch_free(f);
    t->f = NULL;
    kept_stop(&s);
}

static void on_probe(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (*(int *)arg)++;
}

static int probe_fired(void *arg)
{
    return *(int *)arg > 0;
}

static void test_a_resolver_socket_leaves_nothing_watched_behind(void **state)
{
    /* A host name goes through curl's threaded resolver, whose socketpair
     * curl watches, then closes without our close callback. The fetcher
     * must not keep (park) an event on it: the number is free again, and
     * the next socket given it, here one of the test's own on the same
     * event base, must be watched for real. The name cannot resolve
     * (.invalid, RFC 6761), so no connection is made. */
    tctx *t = *state;
    fetch_opts o = {.max_attempts = 1};
    fetcher *f = new_fetcher(t, &o);
    got w = {0};
    assert_int_equal(fetch_get(f, "http://plcache-test.invalid:9/x", NULL, NULL, on_done, &w), 0);
    wait_calls(t, 1, 60000);
    assert_int_equal(w.status, 0);
    fetch_stats_t st;
    fetch_stats(f, &st);
    assert_int_equal(st.connects, 0);
    assert_int_equal(st.sockets, 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    int fired = 0;
    struct event *ev = event_new(t->base, sv[0], EV_READ, on_probe, &fired);
    assert_non_null(ev);
    assert_int_equal(event_add(ev, NULL), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    run_until(t->base, probe_fired, &fired, 2000);
    assert_int_equal(fired, 1);
    event_free(ev);
    close(sv[0]);
    close(sv[1]);
    got_free(&w, 1);
}

static void test_refused_input_returns_minus_one_without_callback(void **state)
{
    tctx *t = *state;
    fetch_opts o = {.max_pending = 2};
    fetcher *f = new_fetcher(t, &o);
    char url[256], bad_url[300];
    url_of(url, sizeof(url), "/prompt-templates/Hello");
    snprintf(bad_url, sizeof(bad_url), "%s\r\nX-Evil: 1", url);
    static const char *const bad_hdrs[] = {"X-API-KEY: k\r\nX-Evil: 1", NULL};
    got w[3] = {0};
    assert_int_equal(fetch_get(f, bad_url, api_headers, NULL, on_done, &w[2]), -1);
    assert_int_equal(fetch_get(f, url, bad_hdrs, NULL, on_done, &w[2]), -1);
    assert_int_equal(fetch_post(f, url, bad_hdrs, "{}", 2, on_done, &w[2]), -1);
    assert_int_equal(fetch_get(f, url, api_headers, NULL, NULL, NULL), -1);
    assert_int_equal(fetch_get(f, url, api_headers, "K", on_done, &w[0]), 0);
    assert_int_equal(fetch_get(f, url, api_headers, NULL, on_done, &w[1]), 0);
    /* Two callbacks owed: max_pending. Neither a new request nor a join. */
    assert_int_equal(fetch_get(f, url, api_headers, NULL, on_done, &w[2]), -1);
    assert_int_equal(fetch_get(f, url, api_headers, "K", on_done, &w[2]), -1);
    assert_int_equal(fetch_post(f, url, api_headers, "{}", 2, on_done, &w[2]), -1);
    wait_calls(t, 2, 10000);
    assert_int_equal(w[0].calls, 1);
    assert_int_equal(w[1].calls, 1);
    assert_int_equal(w[2].calls, 0);
    assert_int_equal(count_records("/prompt-templates/Hello"), 2);
    /* Owed callbacks paid: accepted again. */
    assert_int_equal(fetch_get(f, url, api_headers, NULL, on_done, &w[2]), 0);
    wait_calls(t, 3, 10000);
    assert_int_equal(w[2].status, 200);
    got_free(w, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_returns_body_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404_is_returned_at_once_without_retry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_500_twice_then_200_succeeds_on_the_third_attempt,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_429_retry_waits_for_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_is_read_as_seconds_or_date, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dropped_connection_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_is_retried_then_succeeds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exhausted_attempts_return_the_last_status, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused_is_retried_then_reported, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_disallowed_protocol_fails_without_retry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_same_key_gets_share_one_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_joins_a_request_waiting_for_retry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_inflight_never_exceeds_max_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_body_and_headers_arrive_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_reused_handle_carries_nothing_over, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_kept_connections_dying_at_reuse_are_retried_by_curl_every_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_resolver_socket_leaves_nothing_watched_behind, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_one_user_agent_line_whatever_the_caller_gives, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_response_over_max_response_fails_cleanly, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_chunked_response_over_max_response_fails_cleanly,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_requests_pending_calls_every_callback_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sequential_gets_reuse_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_kept_connection_closed_while_idle_is_dropped_then_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_kept_connection_closed_unseen_is_replaced_on_the_same_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_input_returns_minus_one_without_callback,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("fetch", tests, group_setup, group_teardown);
}
