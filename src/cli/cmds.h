/* cmds.h -- the subcommands of plcache, one per cmd_<name>.c.
 *
 * Each runs with its own arguments (argv[0] is the command's name), prints
 * its output on stdout and its errors on stderr, and returns the exit status
 * (CLI_OK, CLI_FAIL, CLI_USAGE). Each blocks until done.
 */
#ifndef PLCACHE_CMDS_H
#define PLCACHE_CMDS_H

#include "cli/cli.h"

int cmd_get(const cli_ctx *c, int argc, char **argv);
int cmd_track(const cli_ctx *c, int argc, char **argv);
int cmd_sync(const cli_ctx *c, int argc, char **argv);
int cmd_sign(const cli_ctx *c, int argc, char **argv);
int cmd_dlq(const cli_ctx *c, int argc, char **argv);
int cmd_stats(const cli_ctx *c, int argc, char **argv);
int cmd_ls(const cli_ctx *c, int argc, char **argv);
int cmd_show(const cli_ctx *c, int argc, char **argv);

#endif
