/* `imgsearch backup` and `imgsearch restore`: an online backup of a data directory, and its
 * restore (engine.h, "backup and restore"). Progress on stderr, one summary line on stdout. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/engine.h"
#include "util/status.h"

#define PG_DUMP_HINT                                                                                             \
    "a PostgreSQL store is backed up with PostgreSQL's own tools: pg_dump -Fc -f images.dump URL "               \
    "(pg_restore to restore)"

static void backup_usage(FILE *f) {
    fputs("usage: imgsearch backup [--copy] DATA_DIR DEST\n"
          "Backs up a data directory while a server may serve and write to it: DEST gets the database as\n"
          "one consistent moment, the image bytes its rows name and BACKUP.json. Every write acknowledged\n"
          "before the backup started is in it. DEST must not exist or be an empty directory; it appears\n"
          "only when complete. The index snapshot is not included (a server rebuilds the index).\n"
          "  --copy   copy the image files; by default they are hard-linked when DEST is on the same file\n"
          "           system (they never change, so a link costs no space, but it is not a copy on\n"
          "           another disk)\n"
          "Exit status: 0 done, 1 failed (DEST left untouched), 2 usage error or refused.\n",
          f);
}

static void restore_usage(FILE *f) {
    fputs("usage: imgsearch restore [--force] [--link] BACKUP DATA_DIR\n"
          "Checks a backup (its manifest, the database, every image's bytes against their SHA-256) and\n"
          "restores it into DATA_DIR, which must not exist or be empty. A server started on it rebuilds\n"
          "the index.\n"
          "  --force  replace DATA_DIR when it holds a store (refused while a server uses it)\n"
          "  --link   hard-link the image files from the backup instead of copying them\n"
          "Exit status: 0 done, 1 failed or the backup is damaged (DATA_DIR left untouched), 2 usage\n"
          "error or refused.\n",
          f);
}

typedef struct {
    cli_progress clock;
    const char *stage;
} stage_progress;

static void show_stage(const char *stage, int64_t done, int64_t total, void *ctx) {
    stage_progress *p = ctx;
    double t = cli_progress_seconds(&p->clock);
    bool same = p->stage && !strcmp(p->stage, stage);
    if (same && done != total && t - p->clock.last < 2.0) return;
    p->stage = stage;
    p->clock.last = t;
    if (!strcmp(stage, "blobs"))
        fprintf(stderr, "%s: %lld image files linked or copied so far\n", p->clock.what, (long long)done);
    else if (!strcmp(stage, "database"))
        fprintf(stderr, "%s: database copied\n", p->clock.what);
    else
        fprintf(stderr, "%s: %s %lld/%lld checked\n", p->clock.what, stage, (long long)done, (long long)total);
}

/* Refusals before anything was done are usage or setup errors (2); failures on the way are 1. */
static int exit_code(int rc) {
    return rc == IS_ERR_INVALID || rc == IS_ERR_NOT_FOUND || rc == IS_ERR_BUSY ? 2 : 1;
}

static bool is_url(const char *s) {
    return !strncmp(s, "postgresql://", 13) || !strncmp(s, "postgres://", 11) || strchr(s, '=') != NULL;
}

int cli_backup(int argc, char **argv) {
    static const struct option longopts[] = {{"copy", no_argument, 0, 'c'},
                                             {"store", required_argument, 0, 's'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    bool copy = false, pg = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': copy = true; break;
        case 's': pg = true; break;
        case 'h': backup_usage(stdout); return 0;
        default: backup_usage(stderr); return 2;
        }
    }
    if (pg || (optind < argc && is_url(argv[optind]))) {
        fprintf(stderr, "imgsearch backup: works on a data directory; " PG_DUMP_HINT "\n");
        return 2;
    }
    if (optind != argc - 2) {
        backup_usage(stderr);
        return 2;
    }
    const char *data = argv[optind], *dest = argv[optind + 1];
    stage_progress p = {.stage = NULL};
    cli_progress_start(&p.clock, "backup");
    engine_backup_info info;
    char err[1024];
#ifdef IMGSEARCH_VERSION
    const char *version = IMGSEARCH_VERSION;
#else
    const char *version = NULL;
#endif
    int rc = engine_backup(data, dest, copy, version, show_stage, &p, &info, err, sizeof err);
    if (rc) {
        fprintf(stderr, "imgsearch backup: %s\n", err);
        return exit_code(rc);
    }
    if (info.dropped)
        fprintf(stderr, "backup: %lld image(s) added after the backup began and deleted before their bytes were "
                "copied are left out\n", (long long)info.dropped);
    printf("backed up %lld images (%lld blobs, %.1f MB) at change %lld to %s in %.1f s\n", (long long)info.images,
           (long long)info.blobs, (double)info.bytes / 1e6, (long long)info.seq, dest, cli_progress_seconds(&p.clock));
    return 0;
}

int cli_restore(int argc, char **argv) {
    static const struct option longopts[] = {{"force", no_argument, 0, 'f'},
                                             {"link", no_argument, 0, 'l'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    bool force = false, link = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': force = true; break;
        case 'l': link = true; break;
        case 'h': restore_usage(stdout); return 0;
        default: restore_usage(stderr); return 2;
        }
    }
    if (optind != argc - 2) {
        restore_usage(stderr);
        return 2;
    }
    const char *backup = argv[optind], *data = argv[optind + 1];
    if (is_url(data)) {
        fprintf(stderr, "imgsearch restore: restores into a data directory; " PG_DUMP_HINT "\n");
        return 2;
    }
    stage_progress p = {.stage = NULL};
    cli_progress_start(&p.clock, "restore");
    engine_backup_info info;
    char err[1024];
    int rc = engine_restore(backup, data, force, link, show_stage, &p, &info, err, sizeof err);
    if (rc) {
        fprintf(stderr, "imgsearch restore: %s\n", err);
        return exit_code(rc);
    }
    printf("restored %lld images (%lld blobs, %.1f MB) at change %lld to %s in %.1f s\n", (long long)info.images,
           (long long)info.blobs, (double)info.bytes / 1e6, (long long)info.seq, data, cli_progress_seconds(&p.clock));
    return 0;
}
