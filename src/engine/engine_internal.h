/* engine_internal.h — what engine.c (the facade: writes, reads), engine_index.c (the searchable
 * index: exact or HNSW, builds, replay, snapshots, planner), engine_follow.c (following a shared
 * store), engine_duplicates.c, engine_reembed.c and engine_migrate.c share. Not for other users.
 *
 * Locks, always taken in this order: dup_lock → rebuild_lock → write_lock → index_lock → (hnsw's
 * own lock, the store's mutex); dup_lock is only ever followed by index_lock (read) and the
 * store. write_lock: one writer across store and index (local writes and the follower's
 * catch-ups alike). index_lock (rwlock):
 * searches read; writes of metadata or of the exact index, and swaps of the whole state, write.
 * The HNSW takes its own lock only to publish, so a writer inserting into it holds write_lock but
 * not index_lock while it searches for neighbours, and searches go on. */
#ifndef IMGSEARCH_ENGINE_INTERNAL_H
#define IMGSEARCH_ENGINE_INTERNAL_H

#include <jansson.h>
#include <pthread.h>

#include "embed/embed.h"
#include "engine/engine.h"
#include "index/filter.h"
#include "index/flat.h"
#include "index/hnsw.h"
#include "index/labels.h"
#include "embed/concepts.h"

/* The searchable state: exactly one of flat / hnsw, plus each image's parsed metadata for
 * filtering. Replaced whole by builds; changed in place by writes. */
typedef struct {
    flat_index *flat;
    hnsw_index *hnsw;
    json_t *meta;        /* object: decimal id → metadata object */
    json_t *names;       /* object: decimal id → stored file name (searches answer without the store) */
    labelmap labels;     /* id → most probable classes, for label searches (images without: absent) */
    int64_t applied_seq; /* last store change reflected here */
} index_state;

/* Takes the data directory's lock (<dir>/lock, flock, exclusive, not waiting): one server or one
 * `imgsearch reembed` per directory. *fd keeps it until closed. IS_ERR_IO when another holds it. */
int engine_lock_dir(const char *dir, int *fd, char *err, size_t errlen);
/* The same for another lock file in dir (reembed.lock: one reembed at a time). */
int engine_lock_file(const char *dir, const char *name, int *fd, char *err, size_t errlen);

/* The last answer of engine_duplicates, for the change sequence it was computed at. */
struct dup_cache {
    bool valid;
    int64_t seq, checked;
    double max_dist;
    engine_dup_group *groups;
    int n;
};

struct engine {
    int lock_fd;                  /* the data directory's lock, -1 before it is taken */
    char upgrade_to[160];         /* the embedding `imgsearch reembed` would move to, or "" */
    pthread_mutex_t dup_lock;     /* one duplicates computation at a time; guards dup_cache */
    struct dup_cache dup_cache;
    embed_engine *model;
    concept_table *concepts;      /* words → classes for ?label= (NULL: the model has no table) */
    int infer_threads;
    uint64_t max_pixels;
    engine_data_limits data_limits;
    size_t hnsw_threshold;
    hnsw_params hnsw;
    char snapshot_path[4096];
    /* Inference (engine_infer.c): sessions built on first need (an XNNPACK runtime costs tens of
     * ms and MBs), at most max_sessions, reused; decoded images queue for a session's next batch.
     * Guarded by session_lock; session_free is broadcast when a session frees or images are done. */
    pthread_mutex_t session_lock;
    pthread_cond_t session_free;
    embed_session **idle_sessions; /* max_sessions slots */
    int nidle, nsessions, max_sessions;
    struct infer_job *infer_queue; /* images waiting for a session, oldest first */
    int nwaiting, max_waiting;     /* images queued, and how many may be (then IS_ERR_BUSY) */
    store *db;
    pthread_mutex_t write_lock;
    pthread_rwlock_t index_lock;
    index_state idx;
    int64_t saved_seq;            /* the change the snapshot on disk holds (write_lock) */
    pthread_mutex_t rebuild_lock; /* one build at a time */
    /* background maintenance: builds the HNSW when the collection outgrows the exact scan, and
     * saves snapshots; guarded by maint_mu */
    pthread_t maint;
    bool maint_started, want_build, want_save, stopping;
    pthread_mutex_t maint_mu;
    pthread_cond_t maint_cv;
    /* following a shared store (engine_follow.c): the follower thread, and what /index/status
     * says of it (atomics) */
    pthread_t follower;
    bool follower_started;
    int64_t store_seq;    /* the store's last change when this node last caught up */
    int64_t synced_at_ms; /* when that was (wall clock), 0 = never */
    bool follow_failing;  /* the last catch-up could not read the store */
    /* API keys as last read from the store (engine_keys.c), guarded by keys_lock */
    pthread_mutex_t keys_lock;
    store_key *keys;
    int nkeys;
    int64_t keys_read_ms; /* monotonic; 0 = never read */
    /* build progress for /index/status (atomics) */
    int building;
    int64_t build_done, build_total;
    /* monitoring (engine_metrics.c): counters bumped where things happen, the snapshot's time
     * (atomic; wall-clock ms, 0 = none), and the store's size as last measured (size_lock) */
    metrics_counter added, deleted, inferences, inference_runs, refused[ENGINE_REFUSAL_SLOTS];
    metrics_histogram queue_wait;
    int64_t snapshot_saved_ms;
    char data_dir[4096];
    pthread_mutex_t size_lock;
    int64_t size_bytes, size_measured_ms;
};

/* engine_metrics.c: set up and release the monitoring state (at open, at close); count an
 * engine_add's outcome; note the snapshot on disk (saved now, loaded from path, or gone). */
void engine_metrics_init(engine *e, const char *data_dir);
void engine_metrics_free(engine *e);
void engine_metrics_add_done(engine *e, int rc);
void engine_metrics_snapshot_saved(engine *e);
void engine_metrics_snapshot_loaded(engine *e, const char *path);
void engine_metrics_snapshot_gone(engine *e);

/* engine_index.c */
bool index_wants_hnsw(const engine *e, size_t count);
int index_state_empty(engine *e, bool hnsw, index_state *st, char *err, size_t errlen);
void index_state_free(index_state *st);
size_t index_state_count(const index_state *st);
/* Metadata (under index_lock for writing) and vectors (under write_lock; takes index_lock
 * itself where the exact index needs it). */
/* name NULL: kept; labels (index/labels.h text) NULL or unreadable: kept */
int index_put_meta(index_state *st, int64_t id, const char *name, const char *data, const char *labels);
void index_drop_meta(index_state *st, int64_t id);
/* Sets id's labels alone (index/labels.h text); IS_ERR_INVALID for text that is not labels. */
int index_put_labels(index_state *st, int64_t id, const char *labels);
/* id's name and metadata text (caller frees both); IS_ERR_NOT_FOUND when the index lacks it. */
int index_record(const index_state *st, int64_t id, char **name, char **data);
int index_add_vector(engine *e, index_state *st, int64_t id, const float *vec);
void index_remove_vector(engine *e, index_state *st, int64_t id);
/* Opens the index at start-up: the snapshot plus replay when one fits, else the exact index
 * from the store (and a background HNSW build when the collection is over the threshold). */
int index_open(engine *e, char *err, size_t errlen);
/* Asks the maintenance thread for work; starts it on first use. */
void index_maintenance_request(engine *e, bool build, bool save);
/* Stops the maintenance thread and saves a last snapshot when it is behind. */
void index_maintenance_stop(engine *e);
/* After a write (write_lock held): schedules a build or snapshot when due. */
void index_after_write(engine *e);
/* The k nearest accepted hits (index_lock held for reading by the caller). */
int index_search(engine *e, const float *vec, int k, int ef, const filter *f, const label_query *lq, int64_t exclude,
                 index_hit *out, int *n, char *err, size_t errlen);
/* Applies the store's changes after the live index's sequence (write_lock held) and records how
 * far the store is; every write on a shared store ends with it (other nodes' changes first). */
int index_catch_up(engine *e, char *err, size_t errlen);
/* engine_follow.c: the thread that keeps the index in step with a shared store. */
void engine_follow_start(engine *e);
void engine_follow_stop(engine *e);
/* Removes the snapshot file (after delete-all or a shrink to the exact index). */
void index_forget_snapshot(engine *e);

void engine_id_key(int64_t id, char key[24]);

/* A change of the store's log, and all of them after a sequence read into memory, in order
 * (index_read_changes; v is the caller's to free): what replays walk. */
typedef struct {
    int64_t seq, id;
    char op; /* change_op */
} index_change;
typedef struct {
    index_change *v;
    size_t n, cap;
} index_change_list;
int index_read_changes(store *db, int64_t seq, index_change_list *out, char *err, size_t errlen);

/* engine_infer.c: decodes one image, then embeds it on a pooled session, batched with other
 * requests' images queued meanwhile (no lock held); logits (may be NULL) gets the classifier's
 * scores. */
int engine_embed_image(engine *e, const void *bytes, size_t len, float *vec, float *logits, decode_info *info,
                       char *err, size_t errlen);
/* engine_labels.c: the label query a word makes (*classes is the caller's to free); no word: a
 * query of NULL classes. IS_ERR_INVALID when the word names nothing or the model has no table. */
int engine_label_query(const engine *e, const char *word, double min_score, label_query *q, unsigned char **classes,
                       char *err, size_t errlen);

#endif
