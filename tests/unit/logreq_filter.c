/* logreq_filter.c -- model/logreq's verdict on each job of stdin, for tests.
 *
 * Reads one JSON job per line on stdin; writes one line per job on stdout:
 * "1" when logreq_check_job accepts it, "0\t<reason>" when it refuses it
 * (also for a line that is not JSON). tests/system/test_jobs.py sends the
 * same jobs to the fake PromptLayer API and compares the verdicts.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/logreq.h"

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)n, JSON_DECODE_ANY, &je);
        char err[512] = "not JSON";
        int ok = j != NULL && logreq_check_job(j, err, sizeof(err)) == 0;
        if (ok)
            puts("1");
        else
            printf("0\t%s\n", err);
        json_decref(j);
    }
    free(line);
    return fflush(stdout) == 0 ? 0 : 1;
}
