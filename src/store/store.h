/* store.h — the truth: image rows, metadata, vectors, the image bytes and the change log.
 *
 * Every write is one transaction that also appends a change (add, delete, data, clear) with a
 * sequence number; the indexes apply changes after commit and remember the last sequence they
 * applied, so start-up (and, on a shared store, every node all the time) can replay what an index
 * missed. A committed write survives a crash. Ids are never reused.
 *
 * An interface with two implementations (store_impl.h says what one provides; store.c
 * dispatches): the embedded store (sqlite.c: <data_dir>/imgsearch.db, WAL with synchronous=FULL,
 * the image bytes as content-addressed files under <data_dir>/blobs, blobs.h), one process at a
 * time; and PostgreSQL (postgres.c), which any number of processes share (store_shared): rows,
 * jsonb metadata, vectors, the bytes (bytea) and the change log all in the database. On a shared
 * store the change sequence equals commit order: every write transaction takes one database-wide
 * lock before it draws its sequence number and holds it to commit, so a reader that has seen
 * change N has seen every change below N (postgres.c).
 *
 * Image bytes are named by their SHA-256 and stored once however many rows name them; they go
 * when the last row naming them goes (store_delete, store_delete_all).
 *
 * Errors: IS_ERR_NOT_FOUND for an unknown id; IS_ERR_UNAVAILABLE when a shared store cannot be
 * reached (the write was rolled back, unless the connection broke while its COMMIT was under way,
 * when PostgreSQL may have committed it: the change log then carries it like any other);
 * IS_ERR_IO for files and disks, IS_ERR_NO_SPACE when a disk (or the database's) is full (nothing
 * was written: the bytes' temp file is gone, the transaction rolled back); IS_ERR_INVALID for a
 * database made for another model; IS_ERR_CORRUPT for a damaged file of the embedded store (its
 * database, or image bytes a row names that are missing or do not hash to their name), with a
 * message naming the file and saying to run `imgsearch check` (STORE_CHECK_HINT, below).
 *
 * Threads: every function may be called from any thread (each implementation serialises what it
 * must). Memory: store_image strings and vectors filled by the store belong to the caller,
 * released with store_image_clear; bytes from store_bytes_read are the caller's to free. */
#ifndef IMGSEARCH_STORE_H
#define IMGSEARCH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/blobs.h"

typedef struct store store;

typedef struct {
    int64_t id;
    char *name;
    char *content_type;
    char *data;            /* metadata as JSON object text; "{}" when none */
    char sha256[BLOB_HEX_LEN + 1];
    int width, height;
    int64_t size;          /* bytes of the original */
    int64_t created_at;    /* milliseconds since the Unix epoch */
    float *vector;         /* dims floats, or NULL when not asked for */
    int dims;
    char *labels;          /* the most probable classes, JSON text (index/labels.h); NULL until computed */
} store_image;

typedef enum { CHANGE_ADD = 'a', CHANGE_DELETE = 'd', CHANGE_DATA = 'm', CHANGE_CLEAR = 'c' } change_op;

void store_image_clear(store_image *img);

/* Opens or creates a store and migrates it to the current schema: PostgreSQL when url is given (a
 * libpq connection URI or key=value string), else the embedded store in data_dir (which must
 * exist). A store made with another model or vector size is refused (IS_ERR_INVALID) rather than
 * mixed. model NULL skips that check (for `imgsearch reembed`, which changes the model). A damaged
 * database, or an empty one beside stored image bytes (lost, cut short), is refused (IS_ERR_CORRUPT)
 * rather than opened as a new store. */
int store_open(const char *data_dir, const char *url, const char *model, int dims, store **out, char *err,
               size_t errlen);
void store_close(store *s);
/* "sqlite" or "postgresql". */
const char *store_kind(const store *s);
/* A name for this store that no other store has (PostgreSQL: made at its creation; embedded: ""),
 * so that a node can tell whether a cache it kept (an index snapshot) was made from this store. */
int store_identity(store *s, char *out, size_t outlen);
/* May other processes write to this store meanwhile (PostgreSQL)? Then a reader must follow the
 * change log rather than assume it saw every write. */
bool store_shared(const store *s);

/* Makes bytes durable ahead of the row that will name them, and names them (hex); the embedded
 * store writes its blob file here, so that the caller can do it while it embeds the image; a
 * shared store only hashes (the bytes travel with store_add). */
int store_bytes_prepare(store *s, const void *bytes, size_t len, char hex[BLOB_HEX_LEN + 1], char *err,
                        size_t errlen);
/* Prepared bytes that no row will name after all: removed unless a row names them. */
void store_bytes_discard(store *s, const char *hex);
/* The bytes named hex (caller frees *out), checked against their name. IS_ERR_NOT_FOUND when no row
 * names them any more; IS_ERR_CORRUPT when a row names them but they are missing or damaged. */
int store_bytes_read(store *s, const char *hex, unsigned char **out, size_t *len, char *err, size_t errlen);
/* Removes stored bytes that no row names (what a crash between prepare and add leaves); *removed
 * counts them. */
int store_sweep(store *s, int *removed, char *err, size_t errlen);

/* Inserts img (its id and created_at are set here) with its vector and its image bytes (named by
 * img->sha256; bytes already stored under that name are kept); *seq gets the change. */
int store_add(store *s, store_image *img, const void *bytes, size_t len, int64_t *seq, char *err, size_t errlen);
/* The rows of up to n ids at once (one round trip on PostgreSQL), into rows (room for n), in
 * ascending id order; ids that do not exist are left out; *found counts the rows filled. */
int store_get_many(store *s, const int64_t *ids, int n, bool with_vector, store_image *rows, int *found, char *err,
                   size_t errlen);
/* Inserts a row copied from another store as it is: its id, created_at, vector and bytes kept (for
 * `imgsearch migrate`); later adds get larger ids. IS_ERR_INVALID when the id is taken. */
int store_import(store *s, const store_image *img, const void *bytes, size_t len, char *err, size_t errlen);
/* The largest id stored, 0 when empty. */
int store_max_id(store *s, int64_t *id);
/* IS_ERR_NOT_FOUND for an unknown id. */
int store_get(store *s, int64_t id, bool with_vector, store_image *out, char *err, size_t errlen);
/* Deletes the row, and its bytes when no other row names them. */
int store_delete(store *s, int64_t id, int64_t *seq, char *err, size_t errlen);
/* Deletes every row and all bytes; *count gets how many rows. */
int store_delete_all(store *s, int64_t *count, int64_t *seq, char *err, size_t errlen);
/* Replaces the metadata (JSON object text, validated by the caller). */
int store_set_data(store *s, int64_t id, const char *json, int64_t *seq, char *err, size_t errlen);

/* Records an image's labels (index/labels.h text) and logs a data change, so that every node's
 * index re-reads the row. IS_ERR_NOT_FOUND for an unknown id. */
int store_set_labels(store *s, int64_t id, const char *labels, int64_t *seq, char *err, size_t errlen);
/* Up to max images without labels (added before labels existed) whose id is above after, in id
 * order, with their blobs' names. */
int store_unlabelled(store *s, int64_t after, int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int max, int *n, char *err,
                     size_t errlen);

int store_count(store *s, int64_t *count);
int store_last_seq(store *s, int64_t *seq);

/* Calls fn for each change after seq, in order; fn returning non-zero stops and is returned. */
int store_changes_after(store *s, int64_t seq, int (*fn)(int64_t seq, change_op op, int64_t id, void *ctx),
                        void *ctx, char *err, size_t errlen);
/* Calls fn for each row in id order; the image passed is only valid during the call. Both walks
 * hold the store for their whole length: fn must not call back into the store. */
int store_each(store *s, bool with_vector, int (*fn)(const store_image *img, void *ctx), void *ctx,
               char *err, size_t errlen);

/* store_each over a private read-only connection inside one read transaction: *seq and the rows
 * are one consistent moment, and the store stays available to every other call meanwhile (fn
 * may call back into it). For long walks: index builds. */
int store_each_snapshot(store *s, bool with_vector, int (*fn)(const store_image *img, void *ctx), void *ctx,
                        int64_t *seq, char *err, size_t errlen);

/* Waits up to timeout_ms for other writers' changes to be announced (PostgreSQL: LISTEN on a
 * connection of the calling thread's own, remade when it breaks); IS_OK when woken or timed out,
 * IS_ERR_UNAVAILABLE when the store cannot be reached (it waited anyway). A wake-up is a hint: the
 * caller reads store_changes_after whatever it returns, so a lost notification costs one timeout.
 * One thread per store calls it; store_stop_waiting (same thread) closes its connection. */
int store_wait_changes(store *s, int timeout_ms);
void store_stop_waiting(store *s);
/* Ends a store_wait_changes under way (from any thread), e.g. to stop its thread. */
void store_wake(store *s);

/* ---- API keys: who may use the server (engine_keys.c, auth/apikey.h) ---- */

/* A key as stored: never the key itself, only its digest. */
typedef struct {
    char name[65];        /* 1..64 of [A-Za-z0-9._-], unique (the caller checks the form) */
    char scope[8];        /* "read", "write" or "admin" */
    char digest[65];      /* hex SHA-256 of the key, unique */
    int64_t created_at;   /* milliseconds since the Unix epoch */
    int64_t last_used;    /* the same, rounded down by the caller; 0 = never */
} store_key;

/* Records a key. IS_ERR_INVALID when a key of that name (or digest) exists. */
int store_key_add(store *s, const store_key *key, char *err, size_t errlen);
/* Every key, ordered by name, into *keys (malloc'ed, the caller frees; NULL when there are none). */
int store_key_list(store *s, store_key **keys, int *n, char *err, size_t errlen);
/* Removes the key of that name; IS_ERR_NOT_FOUND when there is none. */
int store_key_revoke(store *s, const char *name, char *err, size_t errlen);
/* Moves the key's last use forward to when (never back); a revoked key is no error. */
int store_key_touch(store *s, const char *name, int64_t when, char *err, size_t errlen);

/* ---- re-embedding: every vector recomputed with another model, then swapped in at once ---- */

/* Records model and dims in a new store, or checks that an existing one holds them
 * (IS_ERR_INVALID with the reason otherwise); for a store opened with model NULL. */
int store_bind_embedding(store *s, const char *model, int dims, char *err, size_t errlen);
/* The model and vector size the store records. IS_ERR_NOT_FOUND for a new store. */
int store_embedding(store *s, char *model, size_t modellen, int *dims);
/* Starts or resumes recomputing every vector for model/dims: vectors of an interrupted run for
 * the same target are kept, anything else is dropped. *done and *total count rows. The store's
 * vector size becomes dims for store_reembed_put. */
int store_reembed_begin(store *s, const char *model, int dims, int64_t *done, int64_t *total, char *err,
                        size_t errlen);
/* Up to max rows (id order) that have no recomputed vector yet, with their blobs' names. */
int store_reembed_pending(store *s, int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int max, int *n, char *err,
                          size_t errlen);
/* Records n recomputed vectors (n × dims floats) in one transaction. */
int store_reembed_put(store *s, const int64_t *ids, const float *vectors, int n, char *err, size_t errlen);
/* In one transaction: every row's vector becomes its recomputed one and the store records model
 * and dims. Refused while any row still lacks a recomputed vector. The change log is not
 * touched: an index kept from before (an HNSW snapshot) must be discarded by the caller first. */
int store_reembed_swap(store *s, const char *model, int dims, char *err, size_t errlen);

/* ---- backup: an embedded store's files copied while a server may write them (store_backup.c) ----
 * These work on data directories by path (<dir>/imgsearch.db, <dir>/blobs), beside any process that
 * has the store open: they use SQLite connections of their own and never take a store's locks.
 * Thread-safe (no shared state). */

/* Does dir hold an embedded store (its database file)? */
bool store_files_exist(const char *dir);
/* Copies from_dir's database into to_dir (an existing directory without one) with SQLite's online
 * backup API in one step, inside one read transaction: the copy is one consistent moment of the
 * database, and a server writing meanwhile is never blocked (WAL). *seq gets the copy's last
 * change. IS_ERR_NOT_FOUND: from_dir holds no database; IS_ERR_CORRUPT: it is damaged or not an
 * imgsearch database. */
int store_backup_db(const char *from_dir, const char *to_dir, int64_t *seq, char *err, size_t errlen);
typedef struct {
    int64_t linked, copied, present; /* blobs hard-linked, copied, found in to_dir already */
    int64_t bytes;                   /* bytes of the blobs linked or copied */
} store_blob_stats;
/* Makes the blob named hex in from_dir present in to_dir: nothing when to_dir has it, else a hard
 * link (link true) or, on another file system or with link false, a copy (fsync'ed; its bytes are
 * checked against hex as they are copied). verify: the blob in to_dir is read and checked too.
 * IS_ERR_NOT_FOUND when from_dir has no such blob (a delete removed it); IS_ERR_CORRUPT when the
 * bytes do not hash to hex. Blobs are immutable files (blobs.h), so a link is a copy. */
int store_backup_blob(const char *from_dir, const char *to_dir, const char *hex, bool link, bool verify,
                      store_blob_stats *stats, char *err, size_t errlen);
/* store_backup_blob (verify false) for every blob from_dir holds now; blobs deleted during the walk
 * are skipped, temp files left out. progress, if given, gets the blobs done so far now and then. */
int store_backup_blobs(const char *from_dir, const char *to_dir, bool link, store_blob_stats *stats,
                       void (*progress)(int64_t done, void *ctx), void *ctx, char *err, size_t errlen);
/* Makes a copy in dir self-contained and durable once nothing has it open: one database file
 * (rollback journal, no -wal) that passes PRAGMA quick_check, the database and every directory
 * fsync'ed. *blobs and *bytes count the blob files. */
int store_backup_seal(const char *dir, int64_t *blobs, int64_t *bytes, char *err, size_t errlen);
typedef struct {
    int64_t count, seq; /* images, last change */
    char model[160];
    int dims;
    int schema;         /* the schema version (PRAGMA user_version) */
} store_backup_info;
/* Reads dir's database without changing it: PRAGMA quick_check, then what it holds.
 * IS_ERR_NOT_FOUND: no database; IS_ERR_CORRUPT: damaged or not an imgsearch database. */
int store_backup_inspect(const char *dir, store_backup_info *info, char *err, size_t errlen);
/* Removes dir and everything under it (symbolic links are removed, never followed). */
int store_files_remove(const char *dir, char *err, size_t errlen);

/* ---- checking and repair: `imgsearch check` (engine_check.c) ---- */

/* Errors about a damaged file of the embedded store (IS_ERR_CORRUPT: the database, or a stored
 * image file that a row names but that is missing or does not hash to its name) name the file and
 * end with this text, the data directory and "`": what to run to learn more and repair. */
#define STORE_CHECK_HINT "; run `imgsearch check "

/* Runs the database's own integrity check and calls fn with each line of damage it reports
 * (nothing when the database is whole). SQLite: PRAGMA integrity_check (its first 100 findings).
 * PostgreSQL: IS_OK with nothing to report (its pages are guarded by the server; amcheck is not
 * assumed to be installed). An error means the check could not run. */
int store_integrity_check(store *s, void (*fn)(const char *line, void *ctx), void *ctx, char *err, size_t errlen);

/* A row as stored, for checking: the vector's bytes as they are, whatever their length. */
typedef struct {
    int64_t id;
    char sha256[BLOB_HEX_LEN + 1]; /* as stored: not necessarily a well-formed name */
    const void *vector;            /* vector_bytes bytes (float32 values when the size is right) */
    size_t vector_bytes;
} store_check_row;

/* Calls fn for each row in id order, valid during the call; fn returning non-zero stops and is
 * returned. Unlike store_each, a vector of the wrong size does not end the walk. fn may call
 * store_bytes_verify, and nothing else of the store. */
int store_check_each(store *s, int (*fn)(const store_check_row *row, void *ctx), void *ctx, char *err,
                     size_t errlen);

/* Hashes the bytes stored under hex (streaming: never read whole into memory) and compares with
 * the name: IS_OK when they agree; IS_ERR_NOT_FOUND when nothing is stored under that name;
 * IS_ERR_CORRUPT when the bytes hash to another name (actual gets it, unless NULL); IS_ERR_INVALID
 * for a malformed name; IS_ERR_IO when they cannot be read. Messages name the file. Does not take
 * the store's lock (callable from store_check_each's fn). */
int store_bytes_verify(store *s, const char *hex, char actual[BLOB_HEX_LEN + 1], char *err, size_t errlen);

/* Calls fn for every stored blob name with whether a row names it (fn non-zero stops and is
 * returned). */
int store_bytes_each(store *s, int (*fn)(const char *hex, bool named, void *ctx), void *ctx, char *err,
                     size_t errlen);

/* Removes the bytes stored under hex if no row names them: IS_OK when removed, IS_ERR_INVALID when
 * a row names them, IS_ERR_NOT_FOUND when none are stored. */
int store_bytes_remove_unnamed(store *s, const char *hex, char *err, size_t errlen);

/* Replaces one row's vector (the store's dims floats) in one transaction, for a repair that
 * recomputed it from the row's image. The change log is not touched: an index kept from before
 * (an HNSW snapshot) must be rebuilt by the caller. IS_ERR_NOT_FOUND for an unknown id.
 * PostgreSQL: refused (IS_ERR_INVALID): other nodes would never learn of it. */
int store_set_vector(store *s, int64_t id, const float *vector, int dims, char *err, size_t errlen);

/* ---- content hashes: which images are stored already (`imgsearch import`) ---- */

/* At most this many names per store_hashes_stored call. */
#define STORE_HASHES_MAX 1000
/* For each of n names (the SHA-256 of an image's bytes as 64 lowercase hex digits, as
 * store_image.sha256), whether a row names those bytes: stored[i] answers hexes[i]. Looked up in
 * the images_sha256 index (PostgreSQL: one query, one round trip); a malformed name is not stored.
 * IS_ERR_INVALID when n is outside 0..STORE_HASHES_MAX. */
int store_hashes_stored(store *s, const char *const *hexes, int n, bool *stored, char *err, size_t errlen);

#endif
