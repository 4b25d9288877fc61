/* Option values shared by several commands: cli.h. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

bool cli_threads_arg(const char *command, const char *text, int *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (!*text || *end || v < 1 || v > 64) {
        fprintf(stderr, "imgsearch %s: --threads needs an integer from 1 to 64\n", command);
        return false;
    }
    *out = (int)v;
    return true;
}
