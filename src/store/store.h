/* store.h — the truth: image rows, metadata, vectors and the change log.
 *
 * Every write is one transaction that also appends a change (add, delete, data, clear) with a
 * sequence number; the indexes apply changes after commit and remember the last sequence they
 * applied, so start-up can replay what an index missed. A committed write survives a crash
 * (WAL with synchronous=FULL). Ids are never reused.
 *
 * An interface: store_open opens the embedded SQLite implementation (sqlite.c), and every other
 * function dispatches to the implementation that opened the store (store_impl.h says what one
 * provides). PostgreSQL will implement the same contract; callers do not know which one runs.
 *
 * Threads: every function may be called from any thread; calls are serialised on one
 * connection by an internal mutex. Memory: store_image strings and vectors filled by the store
 * belong to the caller, released with store_image_clear. */
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

/* Opens or creates the database at path and migrates it to the current schema. A database made
 * with another model or vector size is refused (IS_ERR_INVALID) rather than mixed. model NULL
 * skips that check (for `imgsearch reembed`, which changes the model). */
int store_open(const char *path, const char *model, int dims, store **out, char *err, size_t errlen);
void store_close(store *s);

/* Inserts img (its id and created_at are set here) with its vector; *seq gets the change. */
int store_add(store *s, store_image *img, int64_t *seq, char *err, size_t errlen);
/* IS_ERR_NOT_FOUND for an unknown id. */
int store_get(store *s, int64_t id, bool with_vector, store_image *out, char *err, size_t errlen);
/* Deletes the row; sha_out gets its blob and *blob_in_use whether another row still names it. */
int store_delete(store *s, int64_t id, char sha_out[BLOB_HEX_LEN + 1], bool *blob_in_use, int64_t *seq,
                 char *err, size_t errlen);
/* Deletes every row; *count gets how many. */
int store_delete_all(store *s, int64_t *count, int64_t *seq, char *err, size_t errlen);
/* Replaces the metadata (JSON object text, validated by the caller). */
int store_set_data(store *s, int64_t id, const char *json, int64_t *seq, char *err, size_t errlen);

/* Just the vector of id (dims floats into out); IS_ERR_NOT_FOUND for an unknown id. */
int store_get_vector(store *s, int64_t id, float *out);

int store_count(store *s, int64_t *count);
int store_last_seq(store *s, int64_t *seq);
/* Is this blob named by any row? */
int store_blob_used(store *s, const char *sha, bool *used);

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
