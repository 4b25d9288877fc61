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
 * each built on first need and reused; a caller waits while all are busy, unless config.max_queue
 * callers wait already: then it gets IS_ERR_BUSY at once (adds and searches by image). Memory:
 * results filled by the engine belong to the caller (free functions below). */
#ifndef IMGSEARCH_ENGINE_H
#define IMGSEARCH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/apikey.h"
#include "store/store.h"

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

/* Rows matching filter_json in id order, from offset, at most limit; *total counts all matches.
 * *rows is caller-freed with engine_rows_free. */
int engine_query(engine *e, const char *filter_json, int64_t offset, int limit, store_image **rows,
                 int *n, int64_t *total, char *err, size_t errlen);
void engine_rows_free(store_image *rows, int n);

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

#endif
