/* pturl.h -- the PromptLayer API URL of a template (DESIGN.md section 5).
 *
 * One builder for the applier, plcache sync and libplcache, so all three ask
 * the API for exactly the same thing and write exactly the same content.
 */
#ifndef PLCACHE_PTURL_H
#define PLCACHE_PTURL_H

#include "core/buf.h"

/* Appends base (trailing slashes dropped) + "/prompt-templates/" + the
 * percent-encoded name, then "?label=<encoded label>" when label is not NULL,
 * else "?version=N" when version >= 0, else nothing (latest). Returns 0, or -1
 * when b's maximum is reached (b then holds what it held before). */
int pturl_template(buf *b, const char *base, const char *name, const char *label,
                   long long version);

#endif
