/* cmd_sign.c -- plcache sign: the X-PromptLayer-Signature of a body.
 *
 * PromptLayer signs json.dumps(payload, sort_keys=True) (DESIGN.md section 3);
 * the canonical text is rebuilt by core/canon, the one the receiver checks
 * with, so what this prints is what plcache-webhook accepts. Only the
 * signature is printed, never the secret.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "core/canon.h"
#include "core/sign.h"

int cmd_sign(const cli_ctx *c, int argc, char **argv)
{
    const char *secret = NULL, *path = NULL;
    int status = CLI_USAGE, rest = 0;
    char err[300];
    char *body = NULL, *canon = NULL;
    sign_keys keys;
    memset(&keys, 0, sizeof(keys));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!rest && strcmp(a, "--") == 0) {
            rest = 1;
        } else if (!rest && strcmp(a, "--secret") == 0) {
            if (i + 1 >= argc) {
                cli_error(c, "--secret needs a value");
                goto done;
            }
            secret = argv[++i];
        } else if (!rest && strncmp(a, "--secret=", 9) == 0) {
            secret = a + 9;
        } else if (!rest && a[0] == '-' && a[1] != '\0') {
            cli_error(c, "unknown option '%.60s' (see plcache help sign)", a);
            goto done;
        } else if (path == NULL) {
            path = a;
        } else {
            cli_error(c, "one body at a time (see plcache help sign)");
            goto done;
        }
    }
    const char *key;
    size_t klen;
    if (secret != NULL) {
        if (secret[0] == '\0') {
            cli_error(c, "--secret is empty");
            goto done;
        }
        key = secret;
        klen = strlen(secret);
    } else if (c->set->secret != NULL) {
        if (sign_keys_parse(&keys, c->set->secret, err, sizeof(err)) != 0) {
            cli_error(c, "PLCACHE_WEBHOOK_SECRET: %s", err);
            goto done;
        }
        key = keys.key[0];
        klen = keys.len[0];
    } else {
        cli_error(c, "no secret: give --secret S, PLCACHE_WEBHOOK_SECRET or "
                     "PLCACHE_WEBHOOK_SECRET_FILE");
        goto done;
    }
    size_t len = 0, clen = 0;
    body = cli_read_input(path, &len, err, sizeof(err));
    if (body == NULL) {
        cli_error(c, "%s", err);
        status = CLI_FAIL;
        goto done;
    }
    canon = canon_json(body, len, &clen, err, sizeof(err));
    if (canon == NULL) {
        cli_error(c, "the body is not JSON: %s", err);
        goto done;
    }
    char hex[65];
    if (sign_hmac_hex(key, klen, canon, clen, hex) != 0) {
        cli_error(c, "HMAC failed");
        status = CLI_FAIL;
        goto done;
    }
    printf("%s\n", hex);
    status = CLI_OK;
done:
    free(canon);
    free(body);
    sign_keys_free(&keys);
    return status;
}
