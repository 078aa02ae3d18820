/* seq_worker.c -- seq-worker: the plain sequential baseline of the worker benchmark.
 *
 * What a first attempt at a log worker looks like, blocking on purpose: one
 * job at a time, each one
 *   BLMOVE pl:track pl:track:processing:seq RIGHT LEFT 1   (hiredis, sync)
 *   POST it to {base}/log-request                          (curl_easy_perform)
 *   LREM pl:track:processing:seq 1 <job>                   (on a 2xx only)
 * One curl easy handle is reused for every POST, so the connection is kept
 * alive. scripts/bench/worker compares plcache-worker against this loop.
 *
 * It stops after --count jobs were taken (0: no limit) or once the queue has
 * stayed empty for 2 s, then prints one line on stdout:
 *   seq-worker: done=N failed=F seconds=S jobs_per_s=R
 * where S runs from the first job taken to the last one finished (the idle
 * wait at the end is not counted).
 * A job answered with anything but 2xx is counted as failed and left in the
 * processing list (the baseline does no retries). Exit status: 0 when every
 * job was done, 1 when one failed or Redis went away, 2 on a bad flag.
 *
 *   seq-worker --base-url URL --api-key KEY [--redis-port P] [--count N]
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>

#define QUEUE_KEY "pl:track"
#define PROCESSING_KEY "pl:track:processing:seq"
#define BLOCK_S "1"
#define IDLE_STOP_MS 2000
#define REDIS_TIMEOUT_S 5 /* above BLMOVE's 1 s */
#define POST_TIMEOUT_MS 30000L
#define MAX_URL 2048
#define MAX_HEADER 1024
#define EXIT_FAILED 1
#define EXIT_USAGE 2

typedef struct seq_opts {
    int redis_port;
    const char *base_url;
    const char *api_key;
    long count; /* 0: until the queue stays empty */
} seq_opts;

/* The loop's resources; each starts as NULL and seq_close frees what is set. */
typedef struct seq {
    redisContext *redis;
    CURL *curl;
    struct curl_slist *headers;
    char url[MAX_URL];
    char errbuf[CURL_ERROR_SIZE];
} seq;

typedef struct seq_counts {
    long done;
    long failed;
    int64_t first_ms; /* when the first job was taken (0: none yet) */
    int64_t last_ms;  /* when the last job was finished */
} seq_counts;

static void usage(FILE *out)
{
    fputs("usage: seq-worker --base-url URL --api-key KEY [--redis-port P] [--count N]\n"
          "  --redis-port P   redis-server on 127.0.0.1:P (default 6379)\n"
          "  --base-url URL   PromptLayer API base; jobs are POSTed to URL/log-request\n"
          "  --api-key KEY    sent as X-API-KEY\n"
          "  --count N        stop after N jobs (default 0: when the queue stays empty 2 s)\n"
          "One job at a time: BLMOVE " QUEUE_KEY " " PROCESSING_KEY ", POST, LREM on 2xx.\n",
          out);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses a decimal long in [min, max]. Returns 0, or -1 when s is not one. */
static int parse_long(const char *s, long min, long max, long *out)
{
    errno = 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Fills *o from argv. Returns 0, 1 for --help, or -1 with the reason on stderr. */
static int parse_options(int argc, char **argv, seq_opts *o)
{
    static const struct option longopts[] = {
        {"redis-port", required_argument, NULL, 'p'},
        {"base-url", required_argument, NULL, 'b'},
        {"api-key", required_argument, NULL, 'k'},
        {"count", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long v = 0;
    o->redis_port = 6379;
    o->base_url = NULL;
    o->api_key = NULL;
    o->count = 0;
    for (;;) {
        int c = getopt_long(argc, argv, "", longopts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'p':
            if (parse_long(optarg, 1, 65535, &v) != 0) {
                fprintf(stderr, "seq-worker: --redis-port must be 1..65535\n");
                return -1;
            }
            o->redis_port = (int)v;
            break;
        case 'b':
            o->base_url = optarg;
            break;
        case 'k':
            o->api_key = optarg;
            break;
        case 'n':
            if (parse_long(optarg, 0, 1000000000L, &v) != 0) {
                fprintf(stderr, "seq-worker: --count must be 0..1000000000\n");
                return -1;
            }
            o->count = v;
            break;
        case 'h':
            return 1;
        default:
            return -1; /* getopt said why */
        }
    }
    if (optind < argc) {
        fprintf(stderr, "seq-worker: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    if (o->base_url == NULL || o->api_key == NULL) {
        fprintf(stderr, "seq-worker: --base-url and --api-key are required\n");
        return -1;
    }
    return 0;
}

/* Answers are not looked at, only their status: curl would print them. */
static size_t discard(char *data, size_t size, size_t nmemb, void *arg)
{
    (void)data;
    (void)arg;
    return size * nmemb;
}

/* Frees whatever s holds; safe on a half-opened s. */
static void seq_close(seq *s)
{
    if (s->curl)
        curl_easy_cleanup(s->curl);
    curl_slist_free_all(s->headers);
    if (s->redis)
        redisFree(s->redis);
    s->curl = NULL;
    s->headers = NULL;
    s->redis = NULL;
}

/* Connects to Redis and sets up the one reused easy handle. Returns 0, or -1
 * with the reason on stderr (s is then closed). Blocks up to the timeouts. */
static int seq_open(seq *s, const seq_opts *o)
{
    char key_header[MAX_HEADER];
    struct curl_slist *h = NULL;
    struct timeval tv = {REDIS_TIMEOUT_S, 0};

    memset(s, 0, sizeof(*s));
    s->redis = redisConnectWithTimeout("127.0.0.1", o->redis_port, tv);
    if (s->redis == NULL || s->redis->err) {
        fprintf(stderr, "seq-worker: redis 127.0.0.1:%d: %s\n", o->redis_port,
                s->redis ? s->redis->errstr : "out of memory");
        goto err;
    }
    if (redisSetTimeout(s->redis, tv) != REDIS_OK) {
        fprintf(stderr, "seq-worker: cannot set the redis timeout\n");
        goto err;
    }
    if (snprintf(s->url, sizeof(s->url), "%s/log-request", o->base_url) >= (int)sizeof(s->url) ||
        snprintf(key_header, sizeof(key_header), "X-API-KEY: %s", o->api_key) >=
            (int)sizeof(key_header)) {
        fprintf(stderr, "seq-worker: --base-url or --api-key too long\n");
        goto err;
    }
    s->curl = curl_easy_init();
    if (s->curl == NULL)
        goto nomem;
    h = curl_slist_append(NULL, key_header);
    if (h == NULL)
        goto nomem;
    s->headers = h;
    h = curl_slist_append(s->headers, "Content-Type: application/json");
    if (h == NULL)
        goto nomem;
    s->headers = h;
    if (curl_easy_setopt(s->curl, CURLOPT_URL, s->url) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, s->headers) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_POST, 1L) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, discard) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, s->errbuf) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, POST_TIMEOUT_MS) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK) {
        fprintf(stderr, "seq-worker: libcurl refused an option\n");
        goto err;
    }
    return 0;
nomem:
    fprintf(stderr, "seq-worker: out of memory\n");
err:
    seq_close(s);
    return -1;
}

/* Moves the oldest job into the processing list, waiting up to 1 s. Returns
 * 1 with *job set (the caller frees it with freeReplyObject), 0 when the
 * queue stayed empty, -1 when Redis failed (reason on stderr). Blocks. */
static int take_job(seq *s, redisReply **job)
{
    redisReply *r =
        redisCommand(s->redis, "BLMOVE %s %s RIGHT LEFT %s", QUEUE_KEY, PROCESSING_KEY, BLOCK_S);
    *job = NULL;
    if (r == NULL) {
        fprintf(stderr, "seq-worker: BLMOVE: %s\n", s->redis->errstr);
        return -1;
    }
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return 0;
    }
    if (r->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "seq-worker: BLMOVE: %s\n",
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        return -1;
    }
    *job = r;
    return 1;
}

/* POSTs len bytes at body. Returns the HTTP status, or 0 when no answer came
 * (the reason is in s->errbuf). Blocks up to POST_TIMEOUT_MS. */
static long post_job(seq *s, const char *body, size_t len)
{
    long status = 0;
    s->errbuf[0] = '\0';
    if (curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) != CURLE_OK)
        return 0;
    if (curl_easy_perform(s->curl) != CURLE_OK)
        return 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* Removes a done job from the processing list. Returns 0, or -1 when Redis
 * failed (reason on stderr). Blocks. */
static int remove_job(seq *s, const char *job, size_t len)
{
    redisReply *r = redisCommand(s->redis, "LREM %s 1 %b", PROCESSING_KEY, job, len);
    if (r == NULL) {
        fprintf(stderr, "seq-worker: LREM: %s\n", s->redis->errstr);
        return -1;
    }
    int rc = r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "seq-worker: LREM: %s\n",
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    freeReplyObject(r);
    return rc;
}

/* The loop. Returns 0 when it ended normally (count reached or queue idle),
 * -1 when Redis failed; *c counts the jobs either way. */
static int run(seq *s, long count, seq_counts *c)
{
    int64_t last_job = now_ms();
    while (count == 0 || c->done + c->failed < count) {
        redisReply *job = NULL;
        int got = take_job(s, &job);
        if (got < 0)
            return -1;
        if (got == 0) {
            if (now_ms() - last_job >= IDLE_STOP_MS)
                return 0;
            continue;
        }
        last_job = now_ms();
        if (c->first_ms == 0)
            c->first_ms = last_job;
        long status = post_job(s, job->str, job->len);
        int rc = 0;
        if (status >= 200 && status < 300) {
            rc = remove_job(s, job->str, job->len);
            c->done++;
        } else {
            c->failed++;
            if (c->failed <= 5)
                fprintf(stderr, "seq-worker: job failed (left in %s): status %ld %s\n",
                        PROCESSING_KEY, status, s->errbuf);
        }
        freeReplyObject(job);
        c->last_ms = now_ms();
        if (rc != 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    seq_opts o;
    seq s;
    seq_counts c = {0, 0, 0, 0};
    int status = EXIT_USAGE;

    int prc = parse_options(argc, argv, &o);
    if (prc == 1) {
        usage(stdout);
        return 0;
    }
    if (prc != 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "seq-worker: cannot initialise libcurl\n");
        return EXIT_FAILED;
    }
    status = EXIT_FAILED;
    if (seq_open(&s, &o) != 0)
        goto done;
    int rc = run(&s, o.count, &c);
    double seconds = (double)(c.last_ms - c.first_ms) / 1000.0;
    printf("seq-worker: done=%ld failed=%ld seconds=%.3f jobs_per_s=%.1f\n", c.done, c.failed,
           seconds, seconds > 0 ? (double)c.done / seconds : 0.0);
    fflush(stdout);
    if (rc == 0 && c.failed == 0)
        status = 0;
    seq_close(&s);
done:
    curl_global_cleanup();
    return status;
}
