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

/* Reads the command line: --secret S (or --secret=S) and the body's path
 * (NULL: stdin). Returns 0, or -1 after saying why. */
static int parse_sign_args(const cli_ctx *c, int argc, char **argv, const char **secret,
                           const char **path)
{
    int rest = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!rest && strcmp(a, "--") == 0) {
            rest = 1;
        } else if (!rest && strcmp(a, "--secret") == 0) {
            if (i + 1 >= argc) {
                cli_error(c, "--secret needs a value");
                return -1;
            }
            *secret = argv[++i];
        } else if (!rest && strncmp(a, "--secret=", 9) == 0) {
            *secret = a + 9;
        } else if (!rest && a[0] == '-' && a[1] != '\0') {
            cli_error(c, "unknown option '%.60s' (see plcache help sign)", a);
            return -1;
        } else if (*path == NULL) {
            *path = a;
        } else {
            cli_error(c, "one body at a time (see plcache help sign)");
            return -1;
        }
    }
    return 0;
}

/* The key to sign with: --secret when given, else the first secret of
 * PLCACHE_WEBHOOK_SECRET (parsed into keys, which the caller frees). Returns
 * 0, or -1 after saying why. */
static int pick_key(const cli_ctx *c, const char *secret, sign_keys *keys, const char **key,
                    size_t *klen)
{
    char err[300];
    if (secret != NULL) {
        if (secret[0] == '\0') {
            cli_error(c, "--secret is empty");
            return -1;
        }
        *key = secret;
        *klen = strlen(secret);
    } else if (c->set->secret != NULL) {
        if (sign_keys_parse(keys, c->set->secret, err, sizeof(err)) != 0) {
            cli_error(c, "PLCACHE_WEBHOOK_SECRET: %s", err);
            return -1;
        }
        *key = keys->key[0];
        *klen = keys->len[0];
    } else {
        cli_error(c, "no secret: give --secret S, PLCACHE_WEBHOOK_SECRET or "
                     "PLCACHE_WEBHOOK_SECRET_FILE");
        return -1;
    }
    return 0;
}

int cmd_sign(const cli_ctx *c, int argc, char **argv)
{
    const char *secret = NULL, *path = NULL, *key = NULL;
    int status = CLI_USAGE;
    char err[300];
    char *body = NULL, *canon = NULL;
    size_t klen = 0, len = 0, clen = 0;
    sign_keys keys;
    memset(&keys, 0, sizeof(keys));
    if (parse_sign_args(c, argc, argv, &secret, &path) != 0 ||
        pick_key(c, secret, &keys, &key, &klen) != 0)
        goto done;
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
