/* log_job.c -- a C app server logs one LLM request through libplcache.
 *
 *   log_job [--print]
 *
 * Builds, with jansson, the Log Request PromptLayer's POST /log-request
 * accepts (DESIGN.md section 6) for one OpenAI chat completion -- input and
 * output as Prompt Blueprints whose content is a list of blocks, the two
 * request times, parameters, token counts, the prompt it came from -- and
 * pushes it with plcache_push_json (one LPUSH onto <prefix>track; the library
 * checks the job first and names the field at fault when PromptLayer would
 * refuse it). plcache-worker then forwards it. With --print it writes the job
 * on stdout instead of pushing it.
 *
 * Settings: PLCACHE_REDIS_URL, PLCACHE_PREFIX (as the daemons read them).
 * Build: cc log_job.c $(pkg-config --cflags --libs plcache jansson)
 */
#include <jansson.h>
#include <plcache.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A content block list with one text block: [{"type": "text", "text": t}]. */
static json_t *text_blocks(const char *t)
{
    return json_pack("[{s:s, s:s}]", "type", "text", "text", t);
}

/* {"role": role, "content": [text]} */
static json_t *message(const char *role, const char *t)
{
    return json_pack("{s:s, s:o}", "role", role, "content", text_blocks(t));
}

/* ISO 8601 UTC with milliseconds, as PromptLayer reads request times. */
static void iso_time(const struct timespec *ts, char *out, size_t outlen)
{
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts->tv_nsec / 1000000L);
}

/* The Log Request of one chat completion: what was asked, what came back,
 * when, and which prompt version it used. A new reference (NULL: no memory). */
static json_t *build_log_request(const char *system, const char *user, const char *answer,
                                 const struct timespec *start, const struct timespec *end)
{
    char t0[64], t1[64];
    iso_time(start, t0, sizeof(t0));
    iso_time(end, t1, sizeof(t1));
    return json_pack("{s:s, s:s,"
                     " s:{s:s, s:[o, o]},"
                     " s:{s:s, s:[o]},"
                     " s:s, s:s, s:{s:f, s:i}, s:i, s:i,"
                     " s:s, s:i, s:{s:s}, s:[s], s:{s:s}}",
                     "provider", "openai", "model", "gpt-4o", "input", "type", "chat", "messages",
                     message("system", system), message("user", user), "output", "type", "chat",
                     "messages", message("assistant", answer), "request_start_time", t0,
                     "request_end_time", t1, "parameters", "temperature", 0.2, "max_tokens", 256,
                     "input_tokens", 21, "output_tokens", 8, "prompt_name", "Hello",
                     "prompt_version_number", 1, "prompt_input_variables", "topic", "plcache",
                     "tags", "c-example", "metadata", "user_id", "42");
}

int main(int argc, char **argv)
{
    int print_only = argc > 1 && strcmp(argv[1], "--print") == 0;
    struct timespec start, end;
    clock_gettime(CLOCK_REALTIME, &start);
    /* ... the call to the LLM goes here ... */
    clock_gettime(CLOCK_REALTIME, &end);
    json_t *job = build_log_request("You are terse.", "Tell me about plcache.",
                                    "A Redis cache for PromptLayer.", &start, &end);
    if (job == NULL) {
        fprintf(stderr, "log_job: out of memory\n");
        return 1;
    }
    if (print_only) {
        json_dumpf(job, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(job);
        return 0;
    }
    plcache_options o;
    plcache_options_init(&o);
    o.redis_url = getenv("PLCACHE_REDIS_URL");
    o.prefix = getenv("PLCACHE_PREFIX");
    plcache *c = NULL;
    char err[256];
    int rc = 1;
    if (plcache_open(&c, &o, err, sizeof(err)) != PLCACHE_OK) {
        fprintf(stderr, "log_job: %s\n", err);
    } else {
        long long depth = 0;
        plcache_status st = plcache_push_json(c, job, &depth);
        if (st == PLCACHE_OK) {
            printf("%lld\n", depth);
            rc = 0;
        } else {
            fprintf(stderr, "log_job: not queued: %s\n", plcache_errstr(c));
        }
    }
    plcache_close(c);
    json_decref(job);
    return rc;
}
