/* track.h -- the fake API's tracking endpoints (POST /log-request,
 * /rest/track-*, /spans-bulk): which body each takes and what it answers.
 *
 * A body is parsed as FastAPI would (not JSON: 422 json_invalid; empty or
 * null: 422 missing; not an object: 422 model_attributes_type), checked
 * against the endpoint's schema (schema.h, schemas.json), and answered as
 * PromptLayer documents. Every accepted request takes the next tracking id.
 * Pure memory.
 */
#ifndef PLCACHE_FAKE_TRACK_H
#define PLCACHE_FAKE_TRACK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "schema.h"

typedef struct track_endpoint track_endpoint;

/* The tracking endpoint served at raw path `path`, or NULL. */
const track_endpoint *track_find(const char *path);

/* Parses a request body (`len` bytes, any bytes). Returns 0 with *out a new
 * reference (NULL when the body is empty) and *flags the schema_check flags
 * it needs, or -1 with *detail a new FastAPI detail array (json_invalid)
 * when it is not JSON or memory runs out (then *detail may be NULL). */
int track_parse_body(const char *data, size_t len, json_t **out, int *flags, json_t **detail);

/* The answer to a POST of `data` (`len` bytes) to `ep`: *status and
 * *answer (a new reference; NULL only when memory runs out). When the body
 * is accepted, ids are taken from *counter (incremented) and *answer_id is
 * set to the first; otherwise *answer_id is 0 and the answer is
 * {"detail": [...]} with status 422. */
void track_answer(const schema_set *set, const track_endpoint *ep, const char *data, size_t len,
                  int64_t *counter, int *status, json_t **answer, int64_t *answer_id);

#endif
