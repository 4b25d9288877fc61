/* cli.h — the command-line subcommands. Each returns the process exit status:
 * 0 success, 1 some inputs failed (each reported), 2 usage or setup error. */
#ifndef IMGSEARCH_CLI_H
#define IMGSEARCH_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

int cli_embed(int argc, char **argv);
int cli_classify(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_reembed(int argc, char **argv);
int cli_migrate(int argc, char **argv);
int cli_keys(int argc, char **argv);
int cli_backup(int argc, char **argv);
int cli_restore(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_import(int argc, char **argv); /* cli_import.c; exit 0 all stored, 1 some refused, 2 could not run */

/* Progress on standard error for commands that take long: a line every two seconds and the last
 * one ("WHAT: done/total images (pct), rate, time left"). cli_progress_show is an
 * engine_progress_fn with the cli_progress as its context. */
typedef struct {
    const char *what;
    struct timespec start;
    double last;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *what);
void cli_progress_show(int64_t done, int64_t total, void *ctx);
double cli_progress_seconds(const cli_progress *p); /* since cli_progress_start */

/* The model config to use: --model, else $IMGSEARCH_MODEL, else models/efficientnet_lite0.json in
 * the working directory, else beside the executable (../models, then ../share/imgsearch/models for
 * an installed binary: util/file.h file_find_project). Returns a static buffer. */
const char *cli_default_model(void);

/* --threads N (1..64) into *out; false, with the reason on stderr, otherwise (cli_args.c). */
bool cli_threads_arg(const char *command, const char *text, int *out);

#endif
