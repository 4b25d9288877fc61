/* store_impl.h — what an implementation of store.h provides (for src/store/ only).
 *
 * An implementation defines its own struct with `store base` as its first member, fills a
 * store_ops table with its functions and sets base.ops when it opens; store.c dispatches every
 * store_* call through that table. Each function has exactly the contract of the store_* function
 * of the same name in store.h (threads, ownership, errors). Implementations: sqlite.c (embedded,
 * store_sqlite_open) and postgres.c (shared, store_postgres_open). */
#ifndef IMGSEARCH_STORE_IMPL_H
#define IMGSEARCH_STORE_IMPL_H

#include "store/store.h"

typedef struct store_ops {
    const char *name; /* "sqlite", "postgresql": store_kind */
    bool shared;      /* store_shared */
    void (*close)(store *s);
    int (*identity)(store *s, char *out, size_t outlen); /* NULL: "" */
    int (*bytes_prepare)(store *s, const void *bytes, size_t len, char hex[BLOB_HEX_LEN + 1], char *err, size_t errlen);
    void (*bytes_discard)(store *s, const char *hex);
    int (*bytes_read)(store *s, const char *hex, unsigned char **out, size_t *len, char *err, size_t errlen);
    int (*sweep)(store *s, int *removed, char *err, size_t errlen);
    int (*add)(store *s, store_image *img, const void *bytes, size_t len, int64_t *seq, char *err, size_t errlen);
    int (*import)(store *s, const store_image *img, const void *bytes, size_t len, char *err, size_t errlen);
    int (*max_id)(store *s, int64_t *id);
    /* NULL: store.c calls get for each id */
    int (*get_many)(store *s, const int64_t *ids, int n, bool with_vector, store_image *rows, int *found, char *err,
                    size_t errlen);
    int (*get)(store *s, int64_t id, bool with_vector, store_image *out, char *err, size_t errlen);
    int (*delete)(store *s, int64_t id, int64_t *seq, char *err, size_t errlen);
    int (*delete_all)(store *s, int64_t *count, int64_t *seq, char *err, size_t errlen);
    int (*set_data)(store *s, int64_t id, const char *json, int64_t *seq, char *err, size_t errlen);
    int (*count)(store *s, int64_t *count);
    int (*last_seq)(store *s, int64_t *seq);
    int (*changes_after)(store *s, int64_t seq, int (*fn)(int64_t seq, change_op op, int64_t id, void *ctx), void *ctx,
                         char *err, size_t errlen);
    int (*each)(store *s, bool with_vector, int (*fn)(const store_image *img, void *ctx), void *ctx, char *err,
                size_t errlen);
    int (*each_snapshot)(store *s, bool with_vector, int (*fn)(const store_image *img, void *ctx), void *ctx,
                         int64_t *seq, char *err, size_t errlen);
    int (*bind_embedding)(store *s, const char *model, int dims, char *err, size_t errlen);
    int (*embedding)(store *s, char *model, size_t modellen, int *dims);
    int (*reembed_begin)(store *s, const char *model, int dims, int64_t *done, int64_t *total, char *err,
                         size_t errlen);
    int (*reembed_pending)(store *s, int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int max, int *n, char *err,
                           size_t errlen);
    int (*reembed_put)(store *s, const int64_t *ids, const float *vectors, int n, char *err, size_t errlen);
    int (*reembed_swap)(store *s, const char *model, int dims, char *err, size_t errlen);
    int (*key_add)(store *s, const store_key *key, char *err, size_t errlen);
    int (*key_list)(store *s, store_key **keys, int *n, char *err, size_t errlen);
    int (*key_revoke)(store *s, const char *name, char *err, size_t errlen);
    int (*key_touch)(store *s, const char *name, int64_t when, char *err, size_t errlen);
    int (*wait_changes)(store *s, int timeout_ms); /* NULL: sleeps (no other writer) */
    void (*stop_waiting)(store *s);
    void (*wake)(store *s); /* NULL: nothing waits long */
    /* checking and repair (store.h) */
    int (*integrity_check)(store *s, void (*fn)(const char *line, void *ctx), void *ctx, char *err, size_t errlen);
    int (*check_each)(store *s, int (*fn)(const store_check_row *row, void *ctx), void *ctx, char *err,
                      size_t errlen);
    int (*bytes_verify)(store *s, const char *hex, char actual[BLOB_HEX_LEN + 1], char *err, size_t errlen);
    int (*bytes_each)(store *s, int (*fn)(const char *hex, bool named, void *ctx), void *ctx, char *err,
                      size_t errlen);
    int (*bytes_remove_unnamed)(store *s, const char *hex, char *err, size_t errlen);
    int (*set_vector)(store *s, int64_t id, const float *vector, int dims, char *err, size_t errlen);
    /* labels (store.h) */
    int (*set_labels)(store *s, int64_t id, const char *labels, int64_t *seq, char *err, size_t errlen);
    int (*unlabelled)(store *s, int64_t after, int64_t *ids, char (*shas)[BLOB_HEX_LEN + 1], int max, int *n,
                      char *err, size_t errlen);
    /* content hashes (store.h) */
    int (*hashes_stored)(store *s, const char *const *hexes, int n, bool *stored, char *err, size_t errlen);
} store_ops;

struct store {
    const store_ops *ops;
};

/* The embedded SQLite store in dir (created if missing); the contract of store_open. */
int store_sqlite_open(const char *dir, const char *model, int dims, store **out, char *err, size_t errlen);
/* The PostgreSQL store at url (a libpq URI or key=value string); the contract of store_open. */
int store_postgres_open(const char *url, const char *model, int dims, store **out, char *err, size_t errlen);

#endif
