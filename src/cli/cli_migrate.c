/* `imgsearch migrate`: copy an embedded data directory into PostgreSQL, or back. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "engine/engine.h"

static void usage(FILE *f) {
    fputs("usage: imgsearch migrate --from SOURCE --to DESTINATION\n"
          "Copies every image (ids, names, metadata, vectors, bytes) from one store into another and\n"
          "verifies the copy. Each side is a data directory or a PostgreSQL URL (postgresql://... or a\n"
          "libpq key=value string). No server may use a data directory meanwhile. The destination must\n"
          "be empty or an interrupted copy of the same source: run again and it goes on where it stopped.\n",
          f);
}

/* A PostgreSQL connection string rather than a directory? */
static bool is_url(const char *s) {
    return !strncmp(s, "postgresql://", 13) || !strncmp(s, "postgres://", 11) || strchr(s, '=') != NULL;
}

int cli_migrate(int argc, char **argv) {
    static const struct option longopts[] = {{"from", required_argument, 0, 'f'},
                                             {"to", required_argument, 0, 't'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *from = NULL, *to = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': from = optarg; break;
        case 't': to = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!from || !to || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(from, to)) {
        fprintf(stderr, "imgsearch migrate: source and destination are the same\n");
        return 2;
    }
    cli_progress p;
    cli_progress_start(&p, "migrate");
    int64_t copied = 0, total = 0;
    char err[1024];
    bool from_url = is_url(from), to_url = is_url(to);
    int rc = engine_migrate(from_url ? NULL : from, from_url ? from : NULL, to_url ? NULL : to, to_url ? to : NULL,
                            cli_progress_show, &p, &copied, &total, err, sizeof err);
    if (rc) {
        fprintf(stderr, "imgsearch migrate: %s\n", err);
        return 2;
    }
    fprintf(stderr, "migrate: done: %lld images copied, %lld already there, all %lld verified\n", (long long)copied,
            (long long)(total - copied), (long long)total);
    return 0;
}
