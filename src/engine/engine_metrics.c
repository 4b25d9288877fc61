/* engine_metrics.c — what GET /metrics reads of the engine (engine.h: engine_metrics): counters
 * bumped where things happen (engine.c, engine_index.c), the inference pool's gauges, the index's
 * size and snapshot, and the size of the embedded store's files.
 *
 * The store's size is a walk of <data>/blobs (plus imgsearch.db and its -wal), cached for
 * ENGINE_STORE_SIZE_MS: a running total would need the store to say whether an add wrote new
 * bytes or found them stored (content addressing) and whether a delete removed them, and a walk
 * per scrape costs a stat per stored image. One walk at a time (size_lock); scrapes that find it
 * fresh only read it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "util/status.h"

/* Queue waits: from no wait at all to the request timeout's order. */
static const double queue_wait_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static int64_t now_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void engine_metrics_init(engine *e, const char *data_dir) {
    metrics_histogram_init(&e->queue_wait, queue_wait_buckets,
                           (int)(sizeof queue_wait_buckets / sizeof *queue_wait_buckets));
    snprintf(e->data_dir, sizeof e->data_dir, "%s", data_dir ? data_dir : "");
    pthread_mutex_init(&e->size_lock, NULL);
    e->size_bytes = -1;
}

void engine_metrics_free(engine *e) { pthread_mutex_destroy(&e->size_lock); }

void engine_metrics_add_done(engine *e, int rc) {
    if (rc == IS_OK) metrics_counter_add(&e->added, 1);
    else metrics_counter_add(&e->refused[rc < 0 && rc > -ENGINE_REFUSAL_SLOTS ? -rc : 0], 1);
}

void engine_metrics_snapshot_saved(engine *e) {
    __atomic_store_n(&e->snapshot_saved_ms, now_wall_ms(), __ATOMIC_RELAXED);
}

void engine_metrics_snapshot_gone(engine *e) { __atomic_store_n(&e->snapshot_saved_ms, 0, __ATOMIC_RELAXED); }

void engine_metrics_snapshot_loaded(engine *e, const char *path) {
    struct stat st;
    int64_t ms = stat(path, &st) ? 0 : (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    __atomic_store_n(&e->snapshot_saved_ms, ms, __ATOMIC_RELAXED);
}

/* Adds the sizes of the regular files under the directory dirfd (which it closes), depth levels
 * down at most (blobs/ab/cd/<file>, blobs/tmp/<file>). Entries that vanish meanwhile (a delete)
 * are skipped. false when the directory cannot be read. */
static bool add_tree(int dirfd, int depth, int64_t *total) {
    DIR *d = fdopendir(dirfd);
    if (!d) {
        close(dirfd);
        return false;
    }
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
        struct stat st;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW)) continue;
        if (S_ISREG(st.st_mode)) {
            *total += (int64_t)st.st_size;
        } else if (S_ISDIR(st.st_mode) && depth > 0) {
            int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) add_tree(sub, depth - 1, total);
        }
    }
    closedir(d);
    return true;
}

/* imgsearch.db, its -wal and everything under blobs/ (store.h names them), or -1. */
static int64_t measure_store(const char *dir) {
    char path[4200];
    int64_t total = 0;
    struct stat st;
    snprintf(path, sizeof path, "%s/imgsearch.db", dir);
    if (stat(path, &st)) return -1;
    total += (int64_t)st.st_size;
    snprintf(path, sizeof path, "%s/imgsearch.db-wal", dir);
    if (!stat(path, &st)) total += (int64_t)st.st_size;
    snprintf(path, sizeof path, "%s/blobs", dir);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) return -1;
    if (fd >= 0 && !add_tree(fd, 3, &total)) return -1;
    return total;
}

static int64_t store_bytes(engine *e) {
    if (strcmp(store_kind(e->db), "sqlite")) return -1; /* PostgreSQL: not ours to walk (README, "Monitoring") */
    pthread_mutex_lock(&e->size_lock);
    int64_t now = now_mono_ms();
    if (!e->size_measured_ms || now - e->size_measured_ms >= ENGINE_STORE_SIZE_MS) {
        e->size_bytes = measure_store(e->data_dir);
        e->size_measured_ms = now;
    }
    int64_t bytes = e->size_bytes;
    pthread_mutex_unlock(&e->size_lock);
    return bytes;
}

int engine_metrics(engine *e, engine_metrics_info *out) {
    memset(out, 0, sizeof *out);
    out->added = metrics_counter_get(&e->added);
    out->deleted = metrics_counter_get(&e->deleted);
    out->inferences = metrics_counter_get(&e->inferences);
    out->inference_runs = metrics_counter_get(&e->inference_runs);
    for (int i = 0; i < ENGINE_REFUSAL_SLOTS; i++) out->refused[i] = metrics_counter_get(&e->refused[i]);
    metrics_histogram_read(&e->queue_wait, &out->queue_wait);
    pthread_mutex_lock(&e->session_lock);
    out->queue_waiting = e->nwaiting;
    out->sessions_busy = e->nsessions - e->nidle;
    out->sessions_max = e->max_sessions;
    pthread_mutex_unlock(&e->session_lock);
    pthread_rwlock_rdlock(&e->index_lock);
    if (e->idx.hnsw) out->index_memory_bytes = hnsw_memory_bytes(e->idx.hnsw);
    else if (e->idx.flat) /* a row: its vector and its id */
        out->index_memory_bytes = flat_count(e->idx.flat) * (sizeof(float) * (size_t)flat_dims(e->idx.flat) + 8);
    pthread_rwlock_unlock(&e->index_lock);
    out->snapshot_saved_ms = __atomic_load_n(&e->snapshot_saved_ms, __ATOMIC_RELAXED);
    out->store_bytes = store_bytes(e);
    return IS_OK;
}
