/* `imgsearch import`: the folders walked, each image stored once with its metadata, several at a
 * time, into a server or a data directory; resumable by content hash (cli_import.h has the parts).
 *
 * The main thread walks, then works through the images in chunks: it hashes a chunk's files
 * (SHA-256 of the bytes, what the store names them by), drops those that repeat an earlier file
 * of this run, asks the destination which hashes it has (one request per chunk), reads the
 * metadata of the rest and queues them. --jobs workers take files from the queue, read them,
 * check that the bytes still hash the same, and add them. The queue runs at most two chunks ahead
 * of the workers, so a file is usually still in the page cache when it is read the second time. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_import.h"
#include "util/file.h"
#include "util/status.h"

#define CHUNK 256                          /* files hashed and looked up at a time (<= 1000) */
#define MAX_FILE_BYTES (1024ull << 20)     /* a file is read whole to be sent; the server takes 50 MB */

volatile sig_atomic_t import_interrupted;

static void on_signal(int sig) {
    (void)sig;
    import_interrupted = 1; /* SA_RESETHAND: a second one ends the process at once */
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: imgsearch import [OPTIONS] PATH...\n"
            "Stores every image under the PATHs (files or folders, walked recursively; images are known by\n"
            "their content, not their names) with its metadata, several at a time. Run it again after an\n"
            "interruption: what is stored already (the same bytes) is skipped.\n"
            "  --server URL      the server to send them to (default $IMGSEARCH_SERVER, else http://localhost:8001)\n"
            "  --api-key KEY     its API key (better: $IMGSEARCH_API_KEY, which `ps` does not show)\n"
            "  --cacert FILE     PEM certificate to trust for an https:// server\n"
            "  --data DIR        store into this data directory instead, in this process (no server may use it)\n"
            "  --model PATH      with --data: the model config (default: %s)\n"
            "  --metadata FILE   metadata for every image from one file: JSON lines {\"path\": ..., \"data\": {...}}\n"
            "                    or CSV with a `path` column (default: a sidecar NAME.EXT.json or NAME.json\n"
            "                    beside each image)\n"
            "  --jobs N          images sent at a time (default 4)\n"
            "Exit status: 0 all stored, 1 some files refused (listed with their reasons), 2 could not run\n"
            "or stopped (usage, server unreachable, key refused, interrupted: run again to go on).\n",
            cli_default_model());
}

typedef struct {
    char hex[65];
    char *json; /* metadata to send, or NULL */
} job_state;

typedef struct {
    import_walk walk;
    job_state *jobs;   /* one per walked image */
    size_t *queue;     /* indices into walk.files, to send */
    size_t queued, taken;
    bool producer_done, stop;
    char stop_reason[600];
    pthread_mutex_t mu;
    pthread_cond_t more, room;
    import_sink *sink;
    import_report refused;
    import_counts counts;
    int nworkers;
} import_run;

typedef struct {
    import_run *run;
    int index;
} worker_arg;

static void count(int64_t *c) { __atomic_add_fetch(c, 1, __ATOMIC_RELAXED); }

/* pthread_cond_wait for at most 200 ms: a signal handler cannot wake a condition variable, so the
 * waits look at import_interrupted now and then. */
static void wait_a_little(pthread_cond_t *cv, pthread_mutex_t *mu) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 200000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(cv, mu, &until);
}

static void hex_of(const unsigned char *md, char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = 0;
}

/* SHA-256 of a file, streamed. */
static int hash_file(const char *path, char hex[65], char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return is_fail(err, errlen, IS_ERR_IO, "cannot read it: %s", strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 20), md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = IS_OK;
    if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    for (size_t n; !rc && (n = fread(buf, 1, 1 << 20, f)) > 0;)
        if (!EVP_DigestUpdate(ctx, buf, n)) rc = is_fail(err, errlen, IS_ERR_INTERNAL, "SHA-256 failed");
    if (!rc && ferror(f)) rc = is_fail(err, errlen, IS_ERR_IO, "cannot read it: %s", strerror(errno));
    if (!rc && !EVP_DigestFinal_ex(ctx, md, &mdlen)) rc = is_fail(err, errlen, IS_ERR_INTERNAL, "SHA-256 failed");
    if (!rc) hex_of(md, hex);
    EVP_MD_CTX_free(ctx);
    free(buf);
    fclose(f);
    return rc;
}

static void stop_run(import_run *r, const char *reason) {
    pthread_mutex_lock(&r->mu);
    if (!r->stop) snprintf(r->stop_reason, sizeof r->stop_reason, "%s", reason);
    r->stop = true;
    pthread_cond_broadcast(&r->more);
    pthread_cond_broadcast(&r->room);
    pthread_mutex_unlock(&r->mu);
}

static void refuse(import_run *r, const char *path, const char *reason) {
    import_report_add(&r->refused, path, reason);
    count(&r->counts.refused);
}

/* One file from the queue: read, checked against its hash, sent. */
static void send_one(import_run *r, int worker, size_t i) {
    const import_file *f = &r->walk.files[i];
    unsigned char *bytes = NULL, md[EVP_MAX_MD_SIZE];
    size_t len = 0;
    unsigned int mdlen = 0;
    char err[600], hex[65];
    int rc = file_read_all(f->path, MAX_FILE_BYTES, &bytes, &len, err, sizeof err);
    if (rc) {
        refuse(r, f->path, err);
        return;
    }
    if (!EVP_Digest(bytes, len, md, &mdlen, EVP_sha256(), NULL)) {
        free(bytes);
        refuse(r, f->path, "SHA-256 failed");
        return;
    }
    hex_of(md, hex);
    if (strcmp(hex, r->jobs[i].hex)) {
        free(bytes);
        refuse(r, f->path, "the file changed while it was being imported; run again to import it as it is now");
        return;
    }
    const char *name = strrchr(f->path, '/');
    name = name ? name + 1 : f->path;
    import_outcome out = import_sink_add(r->sink, worker, bytes, len, name, r->jobs[i].json, hex, err, sizeof err);
    free(bytes);
    if (out == IMPORT_ADDED) {
        count(&r->counts.imported);
        count(&r->counts.sent);
    } else if (out == IMPORT_REFUSED) {
        refuse(r, f->path, err);
        count(&r->counts.sent);
    } else if (out == IMPORT_STOP) {
        stop_run(r, err);
    }
}

static void *worker(void *arg) {
    worker_arg *w = arg;
    import_run *r = w->run;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (r->taken == r->queued && !r->producer_done && !r->stop && !import_interrupted)
            wait_a_little(&r->more, &r->mu);
        if (r->stop || import_interrupted || r->taken == r->queued) {
            pthread_mutex_unlock(&r->mu);
            break;
        }
        size_t i = r->queue[r->taken++];
        pthread_cond_signal(&r->room);
        pthread_mutex_unlock(&r->mu);
        send_one(r, w->index, i);
    }
    return NULL;
}

/* The main thread's part for files [from, to): hash, drop repeats and what is stored, metadata,
 * queue. false when the run must stop. */
static bool prepare_chunk(import_run *r, import_meta *meta, json_t *seen, size_t from, size_t to) {
    const char *ask[CHUNK];
    size_t which[CHUNK];
    bool stored[CHUNK];
    int nask = 0;
    char err[600];
    for (size_t i = from; i < to && !import_interrupted; i++) {
        const import_file *f = &r->walk.files[i];
        if (hash_file(f->path, r->jobs[i].hex, err, sizeof err)) {
            refuse(r, f->path, err);
        } else if (json_object_get(seen, r->jobs[i].hex)) {
            count(&r->counts.dups); /* the same bytes as an earlier file of this run: stored once */
        } else {
            json_object_set_new(seen, r->jobs[i].hex, json_true());
            ask[nask] = r->jobs[i].hex;
            which[nask++] = i;
        }
    }
    if (import_interrupted) return false;
    if (nask && import_sink_stored(r->sink, ask, nask, stored, err, sizeof err)) {
        stop_run(r, err);
        return false;
    }
    for (int k = 0; k < nask; k++) {
        size_t i = which[k];
        if (stored[k]) {
            count(&r->counts.stored);
            continue;
        }
        if (import_meta_for(meta, &r->walk.files[i], &r->jobs[i].json, err, sizeof err)) {
            refuse(r, r->walk.files[i].path, err);
            continue;
        }
        pthread_mutex_lock(&r->mu);
        while (r->queued - r->taken >= 2 * CHUNK && !r->stop && !import_interrupted)
            wait_a_little(&r->room, &r->mu);
        bool go = !r->stop && !import_interrupted;
        if (go) {
            r->queue[r->queued++] = i;
            pthread_cond_signal(&r->more);
        }
        pthread_mutex_unlock(&r->mu);
        if (!go) return false;
    }
    return true;
}

static void walk_progress(int64_t seen, void *ctx) {
    double *last = ctx, now = import_seconds();
    if (!isatty(STDERR_FILENO) || now - *last < 0.1) return;
    *last = now;
    fprintf(stderr, "\rwalking: %lld files looked at\033[K", (long long)seen);
}

static void unused_entry(const char *path, void *ctx) {
    int *n = ctx;
    if (++*n <= 10) fprintf(stderr, "imgsearch import: --metadata names %s, which is not an image found\n", path);
}

static int by_path(const void *a, const void *b) {
    return strcmp(((const struct import_refusal *)a)->path, ((const struct import_refusal *)b)->path);
}

static int parse_jobs(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1 || v > 64) return -1;
    *out = (int)v;
    return 0;
}

/* The whole run once the options are known; the exit status. */
static int run_import(import_run *r, char *const *paths, int npaths, const import_sink_config *cfg,
                      const char *metadata) {
    char err[1024];
    for (int i = 0; i < npaths; i++) {
        struct stat st;
        if (stat(paths[i], &st)) {
            fprintf(stderr, "imgsearch import: %s: %s\n", paths[i], strerror(errno));
            return 2;
        }
    }
    import_meta *meta = NULL;
    if (metadata && import_meta_load(metadata, &meta, err, sizeof err)) {
        fprintf(stderr, "imgsearch import: %s\n", err);
        return 2;
    }
    if (import_sink_open(cfg, &r->sink, err, sizeof err)) {
        fprintf(stderr, "imgsearch import: %s\n", err);
        import_meta_free(meta);
        return 2;
    }
    double last = -1;
    int rc = import_walk_run(paths, npaths, &r->walk, &r->refused, walk_progress, &last, err, sizeof err);
    if (isatty(STDERR_FILENO)) fputs("\r\033[K", stderr);
    if (rc) {
        fprintf(stderr, "imgsearch import: %s\n", err);
        import_sink_close(r->sink);
        import_meta_free(meta);
        return 2;
    }
    size_t n = r->walk.n;
    r->counts.total = (int64_t)n;
    fprintf(stderr, "import: %zu images found, %lld other files skipped\n", n, (long long)r->walk.non_images);
    r->jobs = calloc(n ? n : 1, sizeof *r->jobs);
    r->queue = calloc(n ? n : 1, sizeof *r->queue);
    json_t *seen = json_object();
    pthread_t threads[64];
    worker_arg args[64];
    int started = 0;
    if (!r->jobs || !r->queue || !seen) stop_run(r, "out of memory");
    double t0 = import_seconds();
    import_show *show = import_show_start(&r->counts);
    for (; !r->stop && started < r->nworkers; started++) {
        args[started] = (worker_arg){r, started};
        if (pthread_create(&threads[started], NULL, worker, &args[started])) break;
    }
    if (!started) stop_run(r, "cannot start a thread");
    for (size_t from = 0; from < n && !r->stop && !import_interrupted; from += CHUNK)
        if (!prepare_chunk(r, meta, seen, from, from + CHUNK < n ? from + CHUNK : n)) break;
    pthread_mutex_lock(&r->mu);
    r->producer_done = true;
    pthread_cond_broadcast(&r->more);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    import_show_stop(show);
    double elapsed = import_seconds() - t0;
    json_decref(seen);
    import_sink_close(r->sink); /* --data: the engine saves its index here */
    r->sink = NULL;

    const import_counts *c = &r->counts;
    printf("imported: %lld\nalready stored: %lld\nsame bytes as another file of this run: %lld\n"
           "skipped non-image files: %lld\nrefused: %lld\nelapsed: %.1f s (%.1f images/s)\n",
           (long long)c->imported, (long long)c->stored, (long long)c->dups, (long long)r->walk.non_images,
           (long long)c->refused, elapsed, elapsed > 0 ? (double)c->sent / elapsed : 0.0);
    if (r->refused.n) { /* workers add in any order */
        qsort(r->refused.items, r->refused.n, sizeof *r->refused.items, by_path);
        printf("refused files:\n");
    }
    for (size_t i = 0; i < r->refused.n; i++) printf("  %s: %s\n", r->refused.items[i].path, r->refused.items[i].reason);
    fflush(stdout);
    if (meta) {
        int unused = 0;
        if (!r->stop && !import_interrupted) import_meta_unused(meta, unused_entry, &unused);
        if (unused > 10) fprintf(stderr, "imgsearch import: ... and %d more --metadata paths not found\n", unused - 10);
        import_meta_free(meta);
    }
    if (r->stop) {
        fprintf(stderr, "imgsearch import: stopped: %s\nRun the same command again to go on: what is stored is "
                        "skipped.\n", r->stop_reason);
        return 2;
    }
    if (import_interrupted) {
        fprintf(stderr, "imgsearch import: interrupted. Run the same command again to go on: what is stored is "
                        "skipped.\n");
        return 2;
    }
    return r->refused.n ? 1 : 0;
}

int cli_import(int argc, char **argv) {
    static const struct option longopts[] = {{"server", required_argument, 0, 's'},
                                             {"api-key", required_argument, 0, 'k'},
                                             {"cacert", required_argument, 0, 'c'},
                                             {"data", required_argument, 0, 'd'},
                                             {"model", required_argument, 0, 'm'},
                                             {"metadata", required_argument, 0, 'M'},
                                             {"jobs", required_argument, 0, 'j'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    import_sink_config cfg = {.workers = 4};
    const char *metadata = NULL, *server = NULL, *key = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': server = optarg; break;
        case 'k': key = optarg; break;
        case 'c': cfg.cacert = optarg; break;
        case 'd': cfg.data_dir = optarg; break;
        case 'm': cfg.model = optarg; break;
        case 'M': metadata = optarg; break;
        case 'j':
            if (parse_jobs(optarg, &cfg.workers)) {
                fprintf(stderr, "imgsearch import: --jobs needs an integer from 1 to 64\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    const char *why = optind >= argc                    ? "name at least one PATH"
                      : server && cfg.data_dir          ? "--server and --data exclude each other"
                      : cfg.data_dir && (key || cfg.cacert) ? "--api-key and --cacert go with --server, not --data"
                      : !cfg.data_dir && cfg.model      ? "--model goes with --data (a server has its own)"
                                                        : NULL;
    if (why) {
        fprintf(stderr, "imgsearch import: %s\n", why);
        usage(stderr);
        return 2;
    }
    if (!cfg.data_dir) {
        const char *env = getenv("IMGSEARCH_SERVER");
        cfg.server = server ? server : env && *env ? env : "http://localhost:8001";
        env = getenv("IMGSEARCH_API_KEY");
        cfg.api_key = key ? key : env && *env ? env : NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fprintf(stderr, "imgsearch import: cannot initialise libcurl\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    import_run r = {.nworkers = cfg.workers};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.more, NULL);
    pthread_cond_init(&r.room, NULL);
    import_report_init(&r.refused);
    int status = run_import(&r, argv + optind, argc - optind, &cfg, metadata);
    for (size_t i = 0; r.jobs && i < r.walk.n; i++) free(r.jobs[i].json);
    free(r.jobs);
    free(r.queue);
    import_walk_free(&r.walk);
    import_report_free(&r.refused);
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.more);
    pthread_cond_destroy(&r.room);
    curl_global_cleanup();
    return status;
}
