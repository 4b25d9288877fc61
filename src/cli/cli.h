/* cli.h — the command-line subcommands. Each returns the process exit status:
 * 0 success, 1 some inputs failed (each reported), 2 usage or setup error. */
#ifndef IMGSEARCH_CLI_H
#define IMGSEARCH_CLI_H

int cli_embed(int argc, char **argv);
int cli_classify(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_reembed(int argc, char **argv);
int cli_migrate(int argc, char **argv);

/* The model config to use: --model, else $IMGSEARCH_MODEL, else models/efficientnet_lite0.json in
 * the working directory, else beside the executable (../models). Returns a static buffer. */
const char *cli_default_model(void);

#endif
