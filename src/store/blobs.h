/* blobs.h — content-addressed image bytes on disk.
 *
 * A blob is named by the SHA-256 of its bytes: <dir>/ab/cd/abcd…(64 hex). Writing goes to a temp
 * file in <dir>/tmp, is fsync'ed, renamed into place and the directory fsync'ed, so after a crash
 * a blob is either whole or absent (a stray temp file at worst, removed by a blobs_open once it is
 * BLOBS_TEMP_STALE_SECONDS old, so that opening a store beside a server never cuts off one of its
 * uploads). Equal
 * bytes are stored once. Whether a blob is still referenced is the store's business: the engine
 * unlinks a blob when no row names it, and removes orphans at start-up.
 *
 * Threads: all functions may be called concurrently; the file system arbitrates (rename is
 * atomic, and writing the same blob twice writes the same bytes). */
#ifndef IMGSEARCH_BLOBS_H
#define IMGSEARCH_BLOBS_H

#include <stddef.h>

#define BLOB_HEX_LEN 64
#define BLOBS_TEMP_STALE_SECONDS 3600

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

/* Reads a blob into a new buffer (caller frees). IS_ERR_NOT_FOUND when absent; IS_ERR_CORRUPT
 * (naming the file) when its bytes no longer hash to its name: a damaged file is never returned.
 * Hashing costs about 0.5 ms per MB with SHA extensions (README, "Checking and repairing"). */
int blobs_read(blobs *b, const char *hex, unsigned char **out, size_t *len, char *err, size_t errlen);

/* Removes a blob; absent is not an error. */
int blobs_unlink(blobs *b, const char *hex, char *err, size_t errlen);

/* Calls fn for every stored blob name; stops early when fn returns non-zero (and returns that). */
int blobs_each(blobs *b, int (*fn)(const char *hex, void *ctx), void *ctx);

/* ---- checking (`imgsearch check`) ---- */

/* Where the blob named hex lives under the blob directory dir (whether or not it exists). */
void blobs_file_path(const char *dir, const char *hex, char *path, size_t len);

/* Hashes the blob's file in pieces of 64 KiB (never whole in memory) and compares with its name:
 * IS_OK when they agree; IS_ERR_NOT_FOUND when the file is absent; IS_ERR_CORRUPT when its bytes
 * hash to another name (actual, unless NULL, gets it); IS_ERR_INVALID for a malformed name;
 * IS_ERR_IO when it cannot be read. Messages name the file. */
int blobs_verify(blobs *b, const char *hex, char actual[BLOB_HEX_LEN + 1], char *err, size_t errlen);

#endif
