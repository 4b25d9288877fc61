/* engine.h — the one facade over embedding, store and index; owns consistency.
 *
 * Consistency: the store is the truth (store.h: rows, vectors, image bytes, the change log). Every
 * write holds the engine's write mutex across the store transaction and the index update, so the
 * index applies changes in sequence order and equals the store between writes. On a shared store
 * (PostgreSQL) other nodes write too: a write ends by catching up with the log through its own
 * change (read-your-writes), and a follower thread applies other nodes' changes (engine_follow.c).
 * Inference runs before the write mutex is taken, and searches only take the index's read lock
 * (names and metadata come from the index's own copy, never from the store), so they run during
 * writes and while a shared store is unreachable. At open the index is loaded from its snapshot
 * (HNSW) and the change log after the snapshot's sequence is replayed; without a usable snapshot
 * the exact index is filled from the store and the HNSW graph, when due, is built in the
 * background. Image bytes that no row names (left by a crash) are removed.
 *
 * Embedding: a store records the embedding its vectors came from. One made with the same network
 * before heads existed is served with that plain embedding (queries too) until engine_reembed
 * moves it; any other mismatch is refused at open.
 *
 * Input: image names are stored as clean UTF-8 (util/text.h: last path component, ill-formed bytes
 * replaced, at most 255 bytes); metadata must be a JSON object within engine_data_limits (size
 * checked before parsing, then key count and depth; IS_ERR_TOO_LARGE when over), duplicate keys
 * refused (IS_ERR_INVALID). Errors that come from files (IS_ERR_IO) may name paths: callers that
 * answer clients log them instead of showing them. IS_ERR_UNAVAILABLE: a shared store cannot be
 * reached; nothing was changed.
 *
 * Threads: every function is thread-safe. Inference runs on a pool of sessions (config.sessions),
 * each built on first need and reused. A caller decodes its image on its own thread, then queues
 * it; whoever gets a session runs up to 8 queued images as one batch, and the others wait for
 * their result. When config.max_queue images are queued already and no session is free, a caller
 * gets IS_ERR_BUSY at once (adds and searches by image). Memory:
 * results filled by the engine belong to the caller (free functions below). */
#ifndef IMGSEARCH_ENGINE_H
#define IMGSEARCH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/apikey.h"
#include "store/store.h"
#include "util/metrics.h"

typedef struct engine engine;

/* Bounds on one image's metadata, so that no record costs unbounded memory for its lifetime (the
 * index keeps every record's metadata parsed, for filters) or makes listings unbounded. */
#define ENGINE_DATA_MAX_BYTES 65536 /* compact JSON text */
#define ENGINE_DATA_MAX_KEYS 1000   /* object members, counted over every nesting level */
#define ENGINE_DATA_MAX_DEPTH 32    /* nested objects and arrays */
typedef struct {
    size_t max_bytes;
    int max_keys, max_depth;
} engine_data_limits;

typedef struct {
    const char *data_dir;     /* created if missing: the embedded store (imgsearch.db, blobs/), or with
                               * store_url this node's cache (the index snapshot) */
    const char *store_url;    /* NULL: the embedded store in data_dir; else PostgreSQL (store.h) */
    const char *model_config; /* models/<name>.json */
    int infer_threads;        /* threads per inference session (1 = the calling thread) */
    int sessions;             /* inferences at once (each with its own networks); 0 = the CPU count */
    int max_queue;            /* images that may wait for a session; more get IS_ERR_BUSY; 0 = the default */
    const char *precision;    /* "auto", "fp32" or "bf16" (embed.h); NULL = $IMGSEARCH_PRECISION, else auto */
    uint64_t max_pixels;      /* 0 = decoder default (100 MP) */
    engine_data_limits data_limits; /* metadata bounds; 0 fields take the defaults below */
    /* the index: an exact scan up to hnsw_threshold images, an HNSW graph above (built in the
     * background; snapshot in <data_dir>/index.hnsw). 0 fields take the defaults. */
    int64_t hnsw_threshold;   /* default 10000; < 0 = always HNSW */
    int hnsw_m;               /* default 16 */
    int hnsw_ef_construction; /* default 200 */
    int hnsw_ef_search;       /* default 64 */
    bool hnsw_int8;           /* int8 vectors in the graph, re-ranked from the store */
} engine_config;

typedef struct {
    int64_t count, seq;       /* images in the index, last change applied */
    const char *kind;         /* "exact" or "hnsw" */
    bool building;            /* a build (reindex or switch to HNSW) is running */
    int64_t build_done, build_total;
    size_t threshold, memory_bytes;
    int m, ef_construction, ef_search;
    const char *storage;      /* "float32" or "int8" */
    const char *embedding;    /* what the stored vectors are: "<model>" or "<model>+<head>" */
    const char *upgrade_to;   /* the embedding `imgsearch reembed` would move them to, or NULL */
    const char *inference;    /* the precision and library inference runs on (embed_precision_describe) */
    int dims;
    const char *store;        /* "sqlite" or "postgresql" */
    bool shared;              /* other nodes write to the same store */
    int64_t store_seq;        /* the store's last change when this node last looked (= seq unless shared) */
    int64_t synced_ms_ago;    /* since this node last caught up with a shared store; -1 = never */
    bool stale;               /* shared store unreachable, or not caught up for ENGINE_STALE_MS */
} engine_status_info;

/* Images that may wait for an inference session unless engine_config.max_queue says otherwise. */
#define ENGINE_DEFAULT_QUEUE 64

/* A node that has not caught up with a shared store for this long says it may be stale. */
#define ENGINE_STALE_MS 5000

typedef struct {
    int64_t id;
    float dist;    /* cosine distance */
    char *name;
    char *data;    /* JSON object text */
} engine_hit;

int engine_open(const engine_config *cfg, engine **out, char *err, size_t errlen);
/* The metadata limits in force (defaults filled in). */
engine_data_limits engine_data_limits_of(const engine *e);
void engine_close(engine *e);
int engine_dims(const engine *e);

/* Embeds and stores an image. data_json may be NULL; otherwise it must be a JSON object. */
int engine_add(engine *e, const void *bytes, size_t len, const char *name, const char *data_json,
               int64_t *id, char *err, size_t errlen);

/* The original bytes and how to serve them (all three caller-freed). */
int engine_image(engine *e, int64_t id, unsigned char **bytes, size_t *len, store_image *row,
                 char *err, size_t errlen);

/* A thumbnail of a stored image, fitting size × size, "jpeg" or "webp" (caller frees). */
int engine_thumbnail(engine *e, int64_t id, int size, const char *format, unsigned char **bytes, size_t *len,
                     char *err, size_t errlen);

/* The stored row, with its vector when with_vector. */
int engine_get(engine *e, int64_t id, bool with_vector, store_image *row, char *err, size_t errlen);

int engine_delete(engine *e, int64_t id, char *err, size_t errlen);
int engine_delete_all(engine *e, int64_t *count, char *err, size_t errlen);
int engine_set_data(engine *e, int64_t id, const char *data_json, char *err, size_t errlen);

/* What a search asks for. */
typedef struct {
    int k;                   /* 1..1000 nearest */
    int ef;                  /* 0 = the index's default, else k..4096: a wider HNSW search */
    const char *filter_json; /* only images whose metadata matches; NULL = all */
    double max_dist;         /* only images at most this cosine distance away (0..2); < 0 = no bound */
    const char *label;       /* only images showing this class or concept ("dog", "vehicle"); NULL = all */
    double label_min;        /* ... with at least this summed probability (0..1; 0 = ENGINE_LABEL_MIN) */
} engine_search_opts;

/* The k nearest stored images to the query image among those matching the filter and within
 * max_dist, nearest first (fewer than k when fewer qualify). *hits is caller-freed with
 * engine_hits_free. */
int engine_search(engine *e, const void *bytes, size_t len, const engine_search_opts *opts, engine_hit **hits,
                  int *n, char *err, size_t errlen);
/* The same for a stored image's vector ("more like this"); the image itself is left out. */
int engine_similar(engine *e, int64_t id, const engine_search_opts *opts, engine_hit **hits, int *n, char *err,
                   size_t errlen);
void engine_hits_free(engine_hit *hits, int n);

/* Rows matching filter_json (NULL = all) and label (NULL = all; as in engine_search_opts), from
 * offset, at most limit; *total counts all matches. In id order, or with a label most probable
 * first, *scores (when scores is not NULL; caller frees) then giving each row's summed probability.
 * *rows is caller-freed with engine_rows_free. */
int engine_query(engine *e, const char *filter_json, const char *label, double label_min, int64_t offset, int limit,
                 store_image **rows, float **scores, int *n, int64_t *total, char *err, size_t errlen);
void engine_rows_free(store_image *rows, int n);

/* ---- labels: each image's most probable ImageNet classes (engine_labels.c, index/labels.h) ----
 * Computed with the embedding at every add (the classifier runs anyway) and stored with the row
 * (store_image.labels); images stored before labels existed get theirs from engine_label_missing
 * (reindex does it) or `imgsearch reembed`. A label query is a word: a class ("malamute") or any
 * broader concept above classes in WordNet ("dog", "animal", "vehicle"; embed/concepts.h); an
 * image matches when the probabilities of its labels under that word sum to at least label_min. */
#define ENGINE_LABEL_MIN 0.1
/* The model's name for class cls ("malamute"); NULL when there is no such class. */
const char *engine_class_name(const engine *e, int cls);
/* Labels every image that has none yet (decoding its stored bytes and running the network), a
 * write each, so that searches and other nodes see them at once. *labelled and *failed count
 * images (one whose bytes cannot be decoded any more is counted, reported on stderr, and left
 * without labels). progress (may be NULL) is called now and then. */
int engine_label_missing(engine *e, void (*progress)(int64_t done, int64_t total, void *ctx), void *ctx,
                         int64_t *labelled, int64_t *failed, char *err, size_t errlen);

/* Groups of stored images that are the same picture: byte-identical files, and copies that were
 * re-encoded, resized or lightly edited. Each group has an anchor (first member) and the images
 * within max_dist (cosine distance, 0..1) of it, nearest first; groups are largest first. Members
 * are never chained beyond the anchor's radius, so a burst of merely similar photos does not
 * become one group. The answer is cached until the next write; computing it costs one index
 * search per stored image. *groups is caller-freed with engine_dup_groups_free. */
#define ENGINE_DUPLICATES_MAX_DIST 0.15 /* bench/quality.py: 81 % of edited photo copies, 1 % false */
typedef struct {
    int64_t id;
    float dist;                /* cosine distance to the group's anchor (0 for the anchor) */
} engine_dup_member;
typedef struct {
    int n;
    engine_dup_member *members;
} engine_dup_group;
int engine_duplicates(engine *e, double max_dist, engine_dup_group **groups, int *ngroups, int64_t *checked,
                      char *err, size_t errlen);
void engine_dup_groups_free(engine_dup_group *groups, int n);

/* Called with how many rows are done out of how many. */
typedef void (*engine_progress_fn)(int64_t done, int64_t total, void *ctx);
/* Recomputes every stored vector from its stored image with cfg->model_config's embedding (its
 * model and head), then swaps them all in at once and records the new embedding. The vectors are
 * committed in batches beside the live ones (resumable: a run interrupted for the same embedding
 * continues where it stopped), so a server may go on serving the old vectors meanwhile; the swap
 * needs the directory to itself. When a server holds it, *swapped stays false (IS_OK): run again
 * once it is stopped, and only what changed since is computed before the swap. The HNSW snapshot
 * is removed (the next start rebuilds the index). *count gets the rows recomputed. One reembed
 * per directory at a time. Only data_dir, model_config, precision, infer_threads and max_pixels
 * of cfg are used. */
int engine_reembed(const engine_config *cfg, engine_progress_fn progress, void *ctx, int64_t *count, bool *swapped,
                   char *err, size_t errlen);

/* Copies every image of one store into another, as it is: ids, names, metadata, vectors, bytes and
 * times (`imgsearch migrate`). Each side is a data directory (dir, url NULL; no server may hold it:
 * its lock is taken) or PostgreSQL (url). The destination must be empty or an interrupted copy of
 * the same source: rows up to its largest id are kept and the rest copied (resumable). Every row
 * and its bytes are compared with the source at the end (IS_ERR_CORRUPT names the first
 * difference). progress gets rows done/total. *copied counts rows copied by this run. */
int engine_migrate(const char *from_dir, const char *from_url, const char *to_dir, const char *to_url,
                   engine_progress_fn progress, void *ctx, int64_t *copied, int64_t *total, char *err, size_t errlen);

/* ---- API keys (engine_keys.c) ----
 * Keys live in the store (store.h: name, scope, SHA-256 of the key), so every node of a shared
 * store knows the same keys. The `imgsearch keys` functions open the store on their own, without
 * model, index or the data directory's lock: they may run beside a server (data_dir is created if
 * missing; store_url NULL means the embedded store in data_dir). */
/* Makes a key with that name (NULL: "<scope>-<8 hex digits>") and scope; name_out gets the name,
 * key the key (shown once: only its digest is kept). IS_ERR_INVALID for a malformed name or one
 * that exists. */
int engine_key_create(const char *data_dir, const char *store_url, const char *name, auth_scope scope,
                      char name_out[AUTH_NAME_MAX + 1], char key[AUTH_KEY_LEN + 1], char *err, size_t errlen);
/* Every key, by name (*keys caller-freed with free). */
int engine_key_list(const char *data_dir, const char *store_url, store_key **keys, int *n, char *err, size_t errlen);
/* IS_ERR_NOT_FOUND when no key has that name. */
int engine_key_revoke(const char *data_dir, const char *store_url, const char *name, char *err, size_t errlen);

/* A server reads the store's keys again when its copy is older than this, so a key made or
 * revoked on any node counts everywhere within it. While the store cannot be read, the last copy
 * read stays in force. */
#define ENGINE_KEYS_REFRESH_MS 1000
/* A key's last use is written to the store at most this often (per key and node). */
#define ENGINE_KEY_TOUCH_MS 60000
/* How many keys exist (0: the server is open to all, as the replaced API was). */
int engine_keys_count(engine *e, int *n, char *err, size_t errlen);
/* Who presents this key: IS_OK with its scope and name (name: AUTH_NAME_MAX + 1 bytes), or
 * IS_ERR_NOT_FOUND for a key that does not exist (or no longer). Takes the same time whichever
 * stored key it matches or misses. */
int engine_authenticate(engine *e, const char *key, size_t len, auth_scope *scope, char *name, char *err,
                        size_t errlen);

/* Is the index exactly what the store says (count, sequence, sampled vectors)? */
int engine_health(engine *e, bool *healthy, char *msg, size_t msglen);
/* Rebuilds the index from the store and swaps it in; searches and writes continue meanwhile
 * (writes made during the build are caught up before the swap). Returns when done. */
int engine_reindex(engine *e, char *err, size_t errlen);
/* What the index is and what it is doing. */
int engine_status(engine *e, engine_status_info *out);

/* ---- monitoring (engine_metrics.c), for GET /metrics ----
 * Counters since engine_open (relaxed atomics: counting takes no lock) and gauges of now. Only
 * this node's own requests are counted (on a shared store, other nodes' adds and deletes are not). */
#define ENGINE_REFUSAL_SLOTS 32  /* engine_add refusals by status: slot -status; slot 0 any code past 31 */
#define ENGINE_STORE_SIZE_MS 60000 /* the store's files are measured at most this often (a walk of blobs/) */
typedef struct {
    uint64_t added;        /* images engine_add stored */
    uint64_t refused[ENGINE_REFUSAL_SLOTS]; /* engine_add failures by -status (is_status_name(-i)):
                                              * not an image, too large, bad metadata, busy, a full disk ... */
    uint64_t deleted;      /* images deleted: by engine_delete, and every image engine_delete_all removed */
    uint64_t inferences;   /* images decoded and run through the network on a session (adds and searches
                            * by image; ones the decoder refused included) */
    uint64_t inference_runs; /* network runs: the images of one batch share one (engine_infer.c) */
    int queue_waiting;     /* images waiting for an inference session now */
    int sessions_busy, sessions_max; /* sessions running an inference now, and the most there may be */
    metrics_histogram_value queue_wait; /* from queuing a decoded image to its batch starting or,
                                         * when another caller's batch took it, to its being done
                                         * (callers refused as busy are not in it) */
    size_t index_memory_bytes; /* the index's vectors and graph (HNSW: all it allocated; exact: its
                                * vectors and ids); the metadata copy is not counted */
    int64_t snapshot_saved_ms; /* wall-clock ms of the HNSW snapshot on disk: its last successful save,
                                * or its file's time when loaded at start; 0 = none (exact index, or
                                * not saved yet) */
    int64_t store_bytes;   /* the embedded store's files (imgsearch.db, -wal, every file under blobs/), as
                            * last measured (at most ENGINE_STORE_SIZE_MS old); -1 when not measured
                            * (PostgreSQL, or the directory cannot be read) */
} engine_metrics_info;
int engine_metrics(engine *e, engine_metrics_info *out);


/* ---- backup and restore of a data directory (engine_backup.c) ----
 * A backup is a directory: imgsearch.db (one consistent moment of the database, a single file),
 * blobs/ (the bytes its rows name: hard links of the immutable blob files on the same file system
 * unless copy, verified copies otherwise) and BACKUP.json (format, time, model, dims, counts, the
 * last change). It holds every write acknowledged before engine_backup began and may hold later
 * ones; a row added after it began whose bytes were deleted before the copy reached them is left
 * out, logged as a delete. The HNSW snapshot is never included: a server started on the restored
 * directory rebuilds its index from the store, so no snapshot meets a database it was not made
 * from (the embedded store has no identity to tell). Embedded stores only: a PostgreSQL store is
 * backed up with pg_dump. Errors: IS_ERR_NOT_FOUND (no data, not a backup) and IS_ERR_INVALID
 * (refused: DEST not empty, DATA_DIR holds a store and force is false, not a directory) before
 * anything is written; IS_ERR_BUSY: a server (or another command holding the directory's lock)
 * uses DATA_DIR; IS_ERR_CORRUPT: the backup is damaged (nothing restored); IS_ERR_IO. Whatever
 * fails, DEST / DATA_DIR are left as they were (a temporary directory beside them is removed). */
typedef struct {
    int64_t images, blobs, bytes; /* what the backup (or the restored directory) holds */
    int64_t seq;     /* backup: the source's last change in the copied moment; restore: the backup's */
    int64_t dropped; /* backup: rows left out because their bytes were deleted before they were copied */
} engine_backup_info;
/* Progress: a stage ("blobs", "database", "images") with counts so far (total -1 when unknown). */
typedef void (*engine_stage_fn)(const char *stage, int64_t done, int64_t total, void *ctx);
/* Backs up data_dir into dest (absent or an empty directory; written as dest.tmp-<pid> and renamed
 * into place) while a server may serve and write. version (or NULL) is recorded in BACKUP.json. */
int engine_backup(const char *data_dir, const char *dest, bool copy, const char *version, engine_stage_fn progress,
                  void *ctx, engine_backup_info *info, char *err, size_t errlen);
/* Checks a backup (BACKUP.json, PRAGMA quick_check, every row's bytes present and hashing to their
 * name) and restores it into data_dir (absent or empty; with force, a data directory holding a store,
 * which is replaced, refused while a server holds its lock) through data_dir.restore-<pid> and one
 * rename (an atomic exchange when replacing). link: blobs hard-linked from the backup instead of
 * copied (the database is always copied). */
int engine_restore(const char *backup, const char *data_dir, bool force, bool link, engine_stage_fn progress,
                   void *ctx, engine_backup_info *info, char *err, size_t errlen);

/* ---- content hashes (engine_lookup.c): what `imgsearch import` need not send again ---- */
/* At most this many names per engine_hashes_stored call (store.h: STORE_HASHES_MAX). */
#define ENGINE_HASHES_MAX STORE_HASHES_MAX
/* For each of n names (SHA-256 of an image file's bytes, 64 lowercase hex digits), whether a stored
 * image has exactly those bytes: stored[i] answers hexes[i]. Asks the store (the truth; on a shared
 * store that includes other nodes' writes), not the index. IS_ERR_INVALID, naming the first
 * offender, for a malformed name or n outside 0..ENGINE_HASHES_MAX; IS_ERR_UNAVAILABLE as store.h. */
int engine_hashes_stored(engine *e, const char *const *hexes, int n, bool *stored, char *err, size_t errlen);

/* ---- checking and repairing a data directory (engine_check.c, `imgsearch check`) ----
 * Checks an embedded data directory against itself: the database (SQLite's integrity check), every
 * row's file (present, hashing to its name), every blob file (a row names it), every vector (the
 * store's size, finite, unit norm within 1e-3), and the HNSW snapshot if there is one (after the
 * change log past its sequence is replayed into it, as a server would: the same ids as the store,
 * the same vectors, bit for bit after its encoding). A snapshot of another vector size is another
 * configuration's, not damage. Each problem is one line naming the file or the image. With repair,
 * what can be derived is repaired after the check: an unsound vector is recomputed from the row's
 * file (with cfg->model_config, which must make the store's embedding), unnamed blob files are
 * removed, a bad snapshot (or one that recomputed vectors made stale) is rebuilt from the store
 * and saved with its own settings (the defaults when it could not be read). What cannot be derived
 * (the database itself; a row whose file is missing or damaged) is said on a "cannot repair" line
 * with what to do, and nothing is repaired while the database fails its check; drop_unrecoverable
 * deletes rows whose file is lost (a logged delete, as the API's). The directory's lock is held
 * throughout: IS_ERR_BUSY while another process (a server) holds it. Any thread may call it. Returns
 * IS_OK when the check ran, whatever it found (out counts it); IS_ERR_NOT_FOUND when the directory
 * holds no imgsearch data; IS_ERR_INVALID for a PostgreSQL store (cfg->store_url). Of cfg only
 * data_dir, store_url, model_config, precision, infer_threads and max_pixels are used. */
typedef struct {
    bool repair;             /* fix what can be derived */
    bool drop_unrecoverable; /* with repair: delete the images whose file is missing or damaged */
} engine_check_opts;
typedef struct {
    int64_t images, blobs;   /* rows and blob files looked at */
    int64_t problems;        /* problem lines reported */
    int64_t repaired;        /* of those, repaired (problems - repaired remain) */
} engine_check_summary;
/* What a report line is. Its text starts with "repaired: ", "cannot repair: " or "note: " for the
 * last three; a problem reads "<file or image N>: <what is wrong>". A note is no problem (a
 * snapshot of other settings, a snapshot rebuilt because vectors changed). */
typedef enum { CHECK_PROBLEM, CHECK_REPAIRED, CHECK_CANNOT, CHECK_NOTE } engine_check_kind;
typedef void (*engine_check_fn)(engine_check_kind kind, const char *line, void *ctx);
int engine_check(const engine_config *cfg, const engine_check_opts *opts, engine_check_fn report, void *ctx,
                 engine_check_summary *out, char *err, size_t errlen);

#endif
