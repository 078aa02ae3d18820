/* api_schemas.h -- the fake API's schemas (schemas.json), embedded at build
 * time by embed_json.py. Load them with schema_set_new (schema.h). */
#ifndef PLCACHE_FAKE_API_SCHEMAS_H
#define PLCACHE_FAKE_API_SCHEMAS_H

#include <stddef.h>

/* The bytes of schemas.json, NUL-terminated. */
extern const unsigned char api_schemas_json[];
/* Their length, without the NUL. */
extern const size_t api_schemas_json_len;

#endif
