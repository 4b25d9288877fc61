/* blobs.h — content-addressed image bytes on disk.
 *
 * A blob is named by the SHA-256 of its bytes: <dir>/ab/cd/abcd…(64 hex). Writing goes to a temp
 * file in <dir>/tmp, is fsync'ed, renamed into place and the directory fsync'ed, so after a crash
 * a blob is either whole or absent (a stray temp file at worst, removed by blobs_open). Equal
 * bytes are stored once. Whether a blob is still referenced is the store's business: the engine
 * unlinks a blob when no row names it, and removes orphans at start-up.
 *
 * Threads: all functions may be called concurrently; the file system arbitrates (rename is
 * atomic, and writing the same blob twice writes the same bytes). */
#ifndef IMGSEARCH_BLOBS_H
#define IMGSEARCH_BLOBS_H

#include <stddef.h>

#define BLOB_HEX_LEN 64

typedef struct blobs blobs;

/* Opens (creating if needed) the blob directory and removes leftover temp files. */
int blobs_open(const char *dir, blobs **out, char *err, size_t errlen);
void blobs_close(blobs *b);

/* SHA-256 of bytes as 64 lowercase hex digits plus NUL. */
void blobs_hash(const void *bytes, size_t len, char hex[BLOB_HEX_LEN + 1]);

/* Stores bytes durably and returns their name in hex. Storing existing bytes is cheap. */
int blobs_put(blobs *b, const void *bytes, size_t len, char hex[BLOB_HEX_LEN + 1], char *err, size_t errlen);

/* The same with the name already computed by blobs_hash (or an earlier blobs_put): makes sure
 * the blob is on disk, which costs one stat when it is. */
int blobs_store(blobs *b, const void *bytes, size_t len, const char *hex, char *err, size_t errlen);

/* Reads a blob into a new buffer (caller frees). IS_ERR_NOT_FOUND when absent. */
int blobs_read(blobs *b, const char *hex, unsigned char **out, size_t *len, char *err, size_t errlen);

/* Removes a blob; absent is not an error. */
int blobs_unlink(blobs *b, const char *hex, char *err, size_t errlen);

/* Calls fn for every stored blob name; stops early when fn returns non-zero (and returns that). */
int blobs_each(blobs *b, int (*fn)(const char *hex, void *ctx), void *ctx);

#endif
