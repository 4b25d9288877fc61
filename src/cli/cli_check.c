/* `imgsearch check`: a data directory's own integrity check, and the repair of what can be derived
 * (engine_check). Problems and repairs go to standard output, one line each, then a summary; notes
 * and errors to standard error. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "engine/engine.h"
#include "util/status.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: imgsearch check [OPTIONS] DATA_DIR\n"
            "Checks a data directory against itself: the database, every image's file (present, hashing to\n"
            "its name), files no image names, every vector (size, finite, unit norm) and the index snapshot.\n"
            "One line per problem, then 'checked N images, N blobs: N problems, N repaired'. No server may\n"
            "hold the directory meanwhile. Exit status: 0 nothing wrong (or all repaired), 1 problems\n"
            "remain, 2 the check could not run.\n"
            "  --repair              fix what can be derived: recompute bad vectors from their images, remove\n"
            "                        files no image names, rebuild the index snapshot; says what it cannot\n"
            "  --drop-unrecoverable  with --repair: delete the images whose file is missing or damaged\n"
            "  --model PATH          model config for recomputing vectors (default: %s)\n"
            "  --threads N           inference threads (default 1)\n"
            "  --quiet               no summary line (no output at all when nothing is wrong)\n",
            cli_default_model());
}

static void print_line(engine_check_kind kind, const char *line, void *ctx) {
    (void)ctx;
    FILE *f = kind == CHECK_NOTE ? stderr : stdout;
    fprintf(f, "%s\n", line);
    fflush(f);
}

int cli_check(int argc, char **argv) {
    static const struct option longopts[] = {{"repair", no_argument, 0, 'r'},
                                             {"drop-unrecoverable", no_argument, 0, 'd'},
                                             {"model", required_argument, 0, 'm'},
                                             {"threads", required_argument, 0, 't'},
                                             {"quiet", no_argument, 0, 'q'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *model = NULL;
    engine_check_opts opts = {0};
    bool quiet = false;
    int threads = 1, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': opts.repair = true; break;
        case 'd': opts.drop_unrecoverable = true; break;
        case 'm': model = optarg; break;
        case 'q': quiet = true; break;
        case 't':
            if (!cli_threads_arg("check", optarg, &threads)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    if (opts.drop_unrecoverable && !opts.repair) {
        fprintf(stderr, "imgsearch check: --drop-unrecoverable goes with --repair\n");
        return 2;
    }
    engine_config cfg = {.data_dir = argv[optind], .model_config = model ? model : cli_default_model(),
                         .infer_threads = threads};
    engine_check_summary sum;
    char err[512];
    if (engine_check(&cfg, &opts, print_line, NULL, &sum, err, sizeof err)) {
        fprintf(stderr, "imgsearch check: %s\n", err);
        return 2;
    }
    if (!quiet)
        printf("checked %lld images, %lld blobs: %lld problems, %lld repaired\n", (long long)sum.images,
               (long long)sum.blobs, (long long)sum.problems, (long long)sum.repaired);
    return sum.problems > sum.repaired ? 1 : 0;
}
