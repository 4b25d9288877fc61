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
 * database made for another model.
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
} store_image;

typedef enum { CHANGE_ADD = 'a', CHANGE_DELETE = 'd', CHANGE_DATA = 'm', CHANGE_CLEAR = 'c' } change_op;

void store_image_clear(store_image *img);

/* Opens or creates a store and migrates it to the current schema: PostgreSQL when url is given (a
 * libpq connection URI or key=value string), else the embedded store in data_dir (which must
 * exist). A store made with another model or vector size is refused (IS_ERR_INVALID) rather than
 * mixed. model NULL skips that check (for `imgsearch reembed`, which changes the model). */
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
/* The bytes named hex (caller frees *out). IS_ERR_NOT_FOUND when no row names them any more. */
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

#endif
