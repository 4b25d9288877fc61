/* `imgsearch reembed`: recompute a data directory's vectors with the current model and head. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli/cli.h"
#include "engine/engine.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: imgsearch reembed [OPTIONS] DATA_DIR\n"
            "Recomputes every stored vector from the stored images with the model (and its fitted head),\n"
            "then swaps them in at once. A server may serve the old vectors meanwhile; the swap waits for\n"
            "it to stop (exit 3: computed, run again once it is stopped). Interrupted, it resumes.\n"
            "  --model PATH       model config (default: %s)\n"
            "  --threads N        inference threads (default 1)\n",
            cli_default_model());
}

int cli_reembed(int argc, char **argv) {
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                             {"threads", required_argument, 0, 't'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *model = NULL;
    int threads = 1, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't':
            if (!cli_threads_arg("reembed", optarg, &threads)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    engine_config cfg = {.data_dir = argv[optind], .model_config = model ? model : cli_default_model(),
                         .infer_threads = threads};
    cli_progress p;
    cli_progress_start(&p, "reembed");
    int64_t count = 0;
    bool swapped = false;
    char err[512];
    if (engine_reembed(&cfg, cli_progress_show, &p, &count, &swapped, err, sizeof err)) {
        fprintf(stderr, "imgsearch reembed: %s\n", err);
        return 1;
    }
    if (!swapped) {
        fprintf(stderr,
                "reembed: %lld vectors computed in %.1f s, not swapped in: a server is using %s and serves the old "
                "ones; stop it and run `imgsearch reembed %s` again (only what changed meanwhile is computed)\n",
                (long long)count, cli_progress_seconds(&p), cfg.data_dir, cfg.data_dir);
        return 3;
    }
    fprintf(stderr, "reembed: done, %lld vectors recomputed in %.1f s; the server rebuilds its index when it starts\n",
            (long long)count, cli_progress_seconds(&p));
    return 0;
}
