/* imgsearch — image similarity search server. Entry point: dispatches subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: imgsearch COMMAND [OPTIONS] ...\n"
            "\n"
            "commands:\n"
            "  serve             run the HTTP service (see 'imgsearch serve --help')\n"
            "  embed FILE...     print each image's embedding vector (JSON lines)\n"
            "  classify FILE...  print each image's top ImageNet-1k classes (JSON lines)\n"
            "  reembed DATA_DIR  recompute a data directory's vectors with the current model\n"
            "  migrate --from SOURCE --to DESTINATION  copy a data directory into PostgreSQL, or back\n"
            "  keys create|list|revoke  API keys: who may read, write or administer a server\n"
            "  backup DATA_DIR DEST     back up a data directory, also while a server writes to it\n"
            "  restore BACKUP DATA_DIR  check a backup and restore it into a new data directory\n"
            "  check DATA_DIR    check a data directory's files against each other (--repair: fix them)\n"
            "  import PATH...    store every image under folders, with metadata, into a server (resumable)\n"
            "\n"
            "Run 'imgsearch COMMAND --help' for a command's options; 'imgsearch --version' prints the version.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve")) return cli_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "embed")) return cli_embed(argc - 1, argv + 1);
    if (!strcmp(cmd, "classify")) return cli_classify(argc - 1, argv + 1);
    if (!strcmp(cmd, "reembed")) return cli_reembed(argc - 1, argv + 1);
    if (!strcmp(cmd, "migrate")) return cli_migrate(argc - 1, argv + 1);
    if (!strcmp(cmd, "keys")) return cli_keys(argc - 1, argv + 1);
    if (!strcmp(cmd, "backup")) return cli_backup(argc - 1, argv + 1);
    if (!strcmp(cmd, "restore")) return cli_restore(argc - 1, argv + 1);
    if (!strcmp(cmd, "check")) return cli_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "import")) return cli_import(argc - 1, argv + 1);
    if (!strcmp(cmd, "--version")) {
        puts("imgsearch " IMGSEARCH_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "imgsearch: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
