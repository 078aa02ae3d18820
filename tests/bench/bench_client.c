/* bench_client.c -- libplcache against the raw commands it wraps, in one run.
 *
 * bench-client --redis-port P --api-base URL --api-key K [--ops N] [--rounds R]
 *
 * Measured, one operation at a time on one connection each, against a
 * redis-server on 127.0.0.1:P that nothing else uses:
 *   hget       raw hiredis HGET pl:prompt:Hello label:prod (redisCommandArgv)
 *   get        plcache_get hitting Redis (memory cache off)
 *   memory     plcache_get hitting the memory cache
 *   lpush      raw hiredis LPUSH pl:track <job>
 *   push       plcache_push of the same job
 *   http       the same prompt from the API at URL over HTTP (libcurl easy,
 *              one keep-alive connection), what a client without plcache pays
 *   rget       plcache_get_rendered hitting Redis: the prompt with its input
 *              variables rendered as PromptLayer's SDKs render them
 *   rmemory    plcache_get_rendered hitting the memory cache
 *   sdk        (with --sdk-base URL2) what the SDK's path costs without a warm
 *              cache: POST URL2/prompt-templates/Hello with the variables, the
 *              API rendering them, on an API answering with a delay (the
 *              script starts a second fake API for it); a few per round
 * --entry-out FILE writes the cached entry and the variables, for
 * scripts/bench/client to time Python's str.format on the same texts.
 * The variants run interleaved, in R rounds of N/R operations each, so a
 * change of the machine's load touches them alike. Every operation is timed
 * on its own (CLOCK_MONOTONIC, whose cost is measured and printed); memory
 * hits are also timed in batches of 1000, whose mean leaves the clock out.
 * The queue is emptied between rounds. Prints a table of median, p99 and mean
 * in microseconds, and the ratios the goals speak of. Exit 0, or 1 when a
 * measured call failed (the figures would mean nothing).
 */
#include <curl/curl.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plcache.h"

#define BATCH 1000

enum { HGET, GET, MEMORY, LPUSH, PUSH, HTTP, RGET, RMEMORY, SDK, NVARIANT };

static const char *const names[NVARIANT] = {
    "raw HGET (hiredis)",
    "plcache_get, Redis hit",
    "plcache_get, memory hit",
    "raw LPUSH (hiredis)",
    "plcache_push",
    "HTTP GET, fake API (curl keep-alive)",
    "plcache_get_rendered, Redis hit",
    "plcache_get_rendered, memory hit",
    "SDK path: POST, API renders (delayed)",
};

/* The template's input variables. */
static const char vars[] = "{\"product\":\"plcache\",\"question\":\"How do I reset my password?\"}";

typedef struct series {
    double *us;
    size_t n, cap;
} series;

/* A Log Request PromptLayer accepts (DESIGN.md section 6), of a usual size. */
static const char job[] =
    "{\"provider\":\"openai\",\"model\":\"gpt-4o\",\"input\":{\"type\":\"chat\",\"messages\":"
    "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}]}]},\"output\":"
    "{\"type\":\"chat\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\","
    "\"text\":\"Hi there\"}]}]},\"parameters\":{\"temperature\":0.2},\"tags\":[\"bench\"],"
    "\"request_start_time\":1700000000.25,\"request_end_time\":1700000001.5,"
    "\"input_tokens\":9,\"output_tokens\":3,\"prompt_name\":\"Hello\","
    "\"metadata\":{\"bench\":\"client\"}}";

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench-client: %s: %s\n", what, why);
    exit(1);
}

static void add(series *s, double us)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->us = realloc(s->us, s->cap * sizeof(*s->us));
        if (s->us == NULL)
            die("memory", "out of memory");
    }
    s->us[s->n++] = us;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const series *s, double p)
{
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->us[i];
}

static double mean(const series *s)
{
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->us[i];
    return s->n ? sum / (double)s->n : 0;
}

static redisContext *raw_connect(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c == NULL || c->err != 0)
        die("redis connect", c ? c->errstr : "out of memory");
    redisSetTimeout(c, tv);
    return c;
}

static redisReply *raw(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (r == NULL)
        die("redis", c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        die("redis", r->str);
    return r;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    *(size_t *)arg += size * n;
    return size * n;
}

static plcache *open_client(const char *url, size_t memory)
{
    plcache_options o;
    plcache_options_init(&o);
    o.redis_url = url;
    o.memory_entries = memory;
    plcache *c = NULL;
    char err[256];
    if (plcache_open(&c, &o, err, sizeof(err)) != PLCACHE_OK)
        die("plcache_open", err);
    return c;
}

static long parse_long(const char *s, const char *what)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v <= 0)
        die(what, "expected a positive integer");
    return v;
}

int main(int argc, char **argv)
{
    int port = 0;
    const char *api_base = NULL, *api_key = NULL, *sdk_base = NULL, *entry_out = NULL;
    long ops = 100000, rounds = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--redis-port") == 0)
            port = (int)parse_long(argv[i + 1], "--redis-port");
        else if (strcmp(argv[i], "--api-base") == 0)
            api_base = argv[i + 1];
        else if (strcmp(argv[i], "--api-key") == 0)
            api_key = argv[i + 1];
        else if (strcmp(argv[i], "--ops") == 0)
            ops = parse_long(argv[i + 1], "--ops");
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = parse_long(argv[i + 1], "--rounds");
        else if (strcmp(argv[i], "--sdk-base") == 0)
            sdk_base = argv[i + 1];
        else if (strcmp(argv[i], "--entry-out") == 0)
            entry_out = argv[i + 1];
        else
            die(argv[i], "unknown option");
    }
    if (port <= 0 || api_base == NULL || api_key == NULL)
        die("usage", "bench-client --redis-port P --api-base URL --api-key K [--ops N] "
                     "[--rounds R] [--sdk-base URL2] [--entry-out FILE]");
    long per_round = ops / rounds;
    long http_per_round = per_round / 10 > 0 ? per_round / 10 : 1; /* HTTP is ~10x slower */
    curl_global_init(CURL_GLOBAL_DEFAULT);

    /* The prompt: what the API says, stored as the cache holds it. */
    char url[512], hdr[300];
    snprintf(url, sizeof(url), "%s/prompt-templates/Hello?label=prod&include_llm_kwargs=true",
             api_base);
    snprintf(hdr, sizeof(hdr), "X-API-KEY: %s", api_key);
    CURL *e = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, hdr);
    size_t got = 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&got);
    char redis_url[64];
    snprintf(redis_url, sizeof(redis_url), "redis://127.0.0.1:%d/0", port);
    plcache_options o;
    plcache_options_init(&o);
    o.redis_url = redis_url;
    o.api_key = api_key;
    o.api_base_url = api_base;
    plcache *filler = NULL;
    char err[256];
    if (plcache_open(&filler, &o, err, sizeof(err)) != PLCACHE_OK)
        die("plcache_open", err);
    char *prompt = NULL;
    size_t prompt_len = 0;
    if (plcache_get(filler, "Hello", PLCACHE_SEL_LABEL, "prod", 0, &prompt, &prompt_len) !=
        PLCACHE_OK)
        die("read-through of Hello", plcache_errstr(filler));
    plcache_close(filler);
    if (entry_out != NULL) {
        FILE *f = fopen(entry_out, "w");
        if (f == NULL || fprintf(f, "%s\n%s\n", prompt, vars) < 0 || fclose(f) != 0)
            die(entry_out, "cannot write");
    }
    /* The SDK's path without a warm cache: PromptLayer renders (POST). */
    CURL *sdk = NULL;
    struct curl_slist *sdk_h = NULL;
    char sdk_body[512];
    if (sdk_base != NULL) {
        char sdk_url[512];
        snprintf(sdk_url, sizeof(sdk_url), "%s/prompt-templates/Hello", sdk_base);
        snprintf(sdk_body, sizeof(sdk_body), "{\"label\":\"prod\",\"input_variables\":%s}", vars);
        sdk = curl_easy_init();
        sdk_h = curl_slist_append(curl_slist_append(NULL, hdr), "Content-Type: application/json");
        curl_easy_setopt(sdk, CURLOPT_URL, sdk_url);
        curl_easy_setopt(sdk, CURLOPT_HTTPHEADER, sdk_h);
        curl_easy_setopt(sdk, CURLOPT_POSTFIELDS, sdk_body);
        curl_easy_setopt(sdk, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(sdk, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(sdk, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(sdk, CURLOPT_WRITEDATA, (void *)&got);
    }

    redisContext *rc = raw_connect(port);
    plcache *cg = open_client(redis_url, 0);
    plcache *cm = open_client(redis_url, 1000);
    int64_t wait_until = now_ns() + 5000000000LL;
    plcache_stats st;
    do {
        plcache_get_stats(cm, &st);
    } while (!st.memory_usable && now_ns() < wait_until);
    if (!st.memory_usable)
        die("memory cache", "the listener did not subscribe within 5 s");

    /* What one clock reading costs (printed, not subtracted). */
    int64_t t0 = now_ns();
    for (int i = 0; i < 100000; i++)
        (void)now_ns();
    double clock_ns = (double)(now_ns() - t0) / 100000.0;

    series s[NVARIANT] = {{0}};
    series batch = {0};
    const char *hget[] = {"HGET", "pl:prompt:Hello", "label:prod"};
    const char *lpush[] = {"LPUSH", "pl:track", job};
    size_t lpush_len[] = {5, 8, sizeof(job) - 1};
    const char *del[] = {"DEL", "pl:track"};
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < per_round; i++) {
            int64_t a = now_ns();
            redisReply *rep = raw(rc, 3, hget, NULL);
            int64_t b = now_ns();
            if (rep->type != REDIS_REPLY_STRING || rep->len != prompt_len)
                die("HGET", "unexpected answer");
            freeReplyObject(rep);
            add(&s[HGET], (double)(b - a) / 1000.0);
        }
        for (long i = 0; i < per_round; i++) {
            char *json = NULL;
            int64_t a = now_ns();
            plcache_status rs = plcache_get(cg, "Hello", PLCACHE_SEL_LABEL, "prod", 0, &json, NULL);
            int64_t b = now_ns();
            if (rs != PLCACHE_OK)
                die("plcache_get", plcache_errstr(cg));
            plcache_free(json);
            add(&s[GET], (double)(b - a) / 1000.0);
        }
        for (long i = 0; i < per_round; i++) {
            char *json = NULL;
            int64_t a = now_ns();
            plcache_status rs = plcache_get(cm, "Hello", PLCACHE_SEL_LABEL, "prod", 0, &json, NULL);
            int64_t b = now_ns();
            if (rs != PLCACHE_OK)
                die("plcache_get (memory)", plcache_errstr(cm));
            plcache_free(json);
            add(&s[MEMORY], (double)(b - a) / 1000.0);
        }
        for (long i = 0; i < per_round / BATCH; i++) {
            int64_t a = now_ns();
            for (int k = 0; k < BATCH; k++) {
                char *json = NULL;
                if (plcache_get(cm, "Hello", PLCACHE_SEL_LABEL, "prod", 0, &json, NULL) !=
                    PLCACHE_OK)
                    die("plcache_get (memory)", plcache_errstr(cm));
                plcache_free(json);
            }
            add(&batch, (double)(now_ns() - a) / 1000.0 / BATCH);
        }
        for (long i = 0; i < per_round; i++) {
            int64_t a = now_ns();
            redisReply *rep = raw(rc, 3, lpush, lpush_len);
            int64_t b = now_ns();
            freeReplyObject(rep);
            add(&s[LPUSH], (double)(b - a) / 1000.0);
        }
        freeReplyObject(raw(rc, 2, del, NULL));
        for (long i = 0; i < per_round; i++) {
            long long n = 0;
            int64_t a = now_ns();
            plcache_status rs = plcache_push(cg, job, sizeof(job) - 1, &n);
            int64_t b = now_ns();
            if (rs != PLCACHE_OK)
                die("plcache_push", plcache_errstr(cg));
            add(&s[PUSH], (double)(b - a) / 1000.0);
        }
        freeReplyObject(raw(rc, 2, del, NULL));
        for (int mem = 0; mem < 2; mem++) {
            plcache *c = mem ? cm : cg;
            for (long i = 0; i < per_round; i++) {
                char *json = NULL;
                int64_t a = now_ns();
                plcache_status rs = plcache_get_rendered(c, "Hello", PLCACHE_SEL_LABEL, "prod", 0,
                                                         vars, sizeof(vars) - 1, &json, NULL);
                int64_t b = now_ns();
                if (rs != PLCACHE_OK)
                    die("plcache_get_rendered", plcache_errstr(c));
                plcache_free(json);
                add(&s[mem ? RMEMORY : RGET], (double)(b - a) / 1000.0);
            }
        }
        for (long i = 0; sdk != NULL && i < 2; i++) {
            long status = 0;
            int64_t a = now_ns();
            CURLcode cc = curl_easy_perform(sdk);
            int64_t b = now_ns();
            curl_easy_getinfo(sdk, CURLINFO_RESPONSE_CODE, &status);
            if (cc != CURLE_OK || status != 200)
                die("SDK-style POST", cc != CURLE_OK ? curl_easy_strerror(cc) : "not a 200");
            add(&s[SDK], (double)(b - a) / 1000.0);
        }
        for (long i = 0; i < http_per_round; i++) {
            long status = 0;
            got = 0;
            int64_t a = now_ns();
            CURLcode cc = curl_easy_perform(e);
            int64_t b = now_ns();
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            if (cc != CURLE_OK || status != 200 || got != prompt_len)
                die("HTTP GET",
                    cc != CURLE_OK ? curl_easy_strerror(cc) : "not a 200 of the prompt");
            add(&s[HTTP], (double)(b - a) / 1000.0);
        }
    }
    plcache_get_stats(cm, &st);
    if (st.memory_hits < (unsigned long long)(per_round * rounds))
        die("memory cache", "gets were not served from memory");

    printf("prompt: %zu bytes of JSON; job: %zu bytes; %ld rounds; clock read: %.0f ns\n\n",
           prompt_len, sizeof(job) - 1, rounds, clock_ns);
    printf("%-40s %9s %10s %10s %10s\n", "operation", "ops", "median_us", "p99_us", "mean_us");
    for (int v = 0; v < NVARIANT; v++) {
        if (s[v].n == 0)
            continue;
        qsort(s[v].us, s[v].n, sizeof(double), cmp_double);
        printf("%-40s %9zu %10.3f %10.3f %10.3f\n", names[v], s[v].n, pct(&s[v], 0.5),
               pct(&s[v], 0.99), mean(&s[v]));
    }
    qsort(batch.us, batch.n, sizeof(double), cmp_double);
    printf("%-40s %9zu %10.3f %10.3f %10.3f\n", "plcache_get, memory hit (batches of 1000)",
           batch.n * BATCH, pct(&batch, 0.5), pct(&batch, 0.99), mean(&batch));
    printf("\n");
    double gm = pct(&s[GET], 0.5) / pct(&s[HGET], 0.5);
    double gp = pct(&s[GET], 0.99) / pct(&s[HGET], 0.99);
    double pm = pct(&s[PUSH], 0.5) / pct(&s[LPUSH], 0.5);
    double pp = pct(&s[PUSH], 0.99) / pct(&s[LPUSH], 0.99);
    printf("plcache_get / raw HGET:    median %.2fx, p99 %.2fx (goal <= 1.2x) %s\n", gm, gp,
           gm <= 1.2 ? "met" : "NOT met");
    printf("plcache_push / raw LPUSH:  median %.2fx, p99 %.2fx (goal <= 1.2x) %s\n", pm, pp,
           pm <= 1.2 ? "met" : "NOT met");
    printf("memory hit:                median %.3f us per op timed alone, %.3f us in batches "
           "(goal < 1 us) %s\n",
           pct(&s[MEMORY], 0.5), pct(&batch, 0.5), pct(&batch, 0.5) < 1.0 ? "met" : "NOT met");
    printf("HTTP GET / plcache_get:    median %.1fx; / memory hit %.0fx\n",
           pct(&s[HTTP], 0.5) / pct(&s[GET], 0.5), pct(&s[HTTP], 0.5) / pct(&batch, 0.5));
    printf("rendered / plain get:      Redis hit %.2fx, memory hit %.2fx (the cost of rendering)\n",
           pct(&s[RGET], 0.5) / pct(&s[GET], 0.5), pct(&s[RMEMORY], 0.5) / pct(&s[MEMORY], 0.5));
    if (s[SDK].n > 0)
        printf("SDK path / rendered get:   Redis hit %.0fx, memory hit %.0fx\n",
               pct(&s[SDK], 0.5) / pct(&s[RGET], 0.5), pct(&s[SDK], 0.5) / pct(&s[RMEMORY], 0.5));
    printf("rendered_memory_median_us %.3f\n", pct(&s[RMEMORY], 0.5));

    for (int v = 0; v < NVARIANT; v++)
        free(s[v].us);
    free(batch.us);
    plcache_free(prompt);
    plcache_close(cg);
    plcache_close(cm);
    redisFree(rc);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    curl_slist_free_all(sdk_h);
    if (sdk != NULL)
        curl_easy_cleanup(sdk);
    curl_global_cleanup();
    return 0;
}
