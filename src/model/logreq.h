/* logreq.h -- what PromptLayer accepts as a log job (DESIGN.md section 6).
 *
 * A job is the JSON object an app pushes onto pl:track: a bare Log Request
 * (the body of POST /log-request), or an envelope {"endpoint", "body",
 * "then"} for one of the tracking endpoints the worker knows. PromptLayer
 * answers 422 to a body that breaks its documented schema, and a job it
 * refuses is lost to the app (dead-lettered long after the app moved on), so
 * producers -- `plcache track`, libplcache's push functions -- check a job
 * with these rules before pushing it, and refuse it with one line naming the
 * field.
 *
 * The rules follow PromptLayer's API reference: "Log Request"
 * (https://docs.promptlayer.com/reference/log-request: provider, model,
 * input, output, request_start_time, request_end_time required; input and
 * output are Prompt Blueprint templates whose chat content is a list of
 * content blocks, never a string; score 0..100; metadata values strings; tags
 * of at most 512 characters; status and error_type enums), the Prompt
 * Blueprint reference (message roles, content block types), and the tracking
 * endpoints' pages (Track Score, Track Metadata, Track Prompt, Track Group).
 * Unknown keys are accepted, as PromptLayer accepts them. Types are strict JSON
 * types (an integer field refuses "5" and 5.0); a time is an ISO 8601
 * date-time text or a number of seconds (or milliseconds) since the epoch.
 *
 * Pure functions over jansson values: no I/O, no allocation beyond jansson's
 * own, thread-safe. Messages never quote a value of the job, only the path of
 * the field (a job may hold prompts and personal data).
 */
#ifndef PLCACHE_LOGREQ_H
#define PLCACHE_LOGREQ_H

#include <jansson.h>
#include <stddef.h>

/* The API paths a job may name (DESIGN.md section 6), NULL-terminated. */
extern const char *const logreq_endpoints[];

/* The known endpoint that `raw` names once percent-decoded ("%2D" is "-"), as
 * a static string from logreq_endpoints (so what is sent is always one of
 * them, never the text given), or NULL: not a string of a known path, a bad
 * escape, a query or fragment, anything else. */
const char *logreq_endpoint(const char *raw);

/* Checks one body for `endpoint` (one of logreq_endpoints). `then_step` is
 * non-zero for a step of an envelope's "then", whose request_id the worker
 * fills from the first answer, so it may be missing there. Returns 0, or -1
 * with "<field path>: <what is wrong>" in err (e.g.
 * "input.messages[0].content: must be a list of content blocks, not a
 * string"). */
int logreq_check_body(const char *endpoint, const json_t *body, int then_step, char *err,
                      size_t errlen);

/* Checks a whole job: a bare Log Request, or an envelope whose endpoint is
 * known, whose body is right for it, and whose "then" steps (a list of at
 * most LOGREQ_MAX_THEN {"endpoint", "body"} objects) are too. The key
 * "__plcache_retry__" is reserved for the worker. Returns 0, or -1 with one
 * line in err as logreq_check_body. */
int logreq_check_job(const json_t *job, char *err, size_t errlen);
#define LOGREQ_MAX_THEN 63

/* The reason to keep with a refused job: from the body of a 4xx answer,
 * PromptLayer's "detail" (a list of {"loc", "msg"} as "loc.path: msg; ...",
 * or a string), else its "message" or "error", else the body itself with
 * control characters replaced; at most outlen - 1 bytes, cut on a UTF-8
 * character boundary. Always NUL-terminates (outlen > 0). */
void logreq_detail(const char *body, size_t len, char *out, size_t outlen);

#endif
