/* file.h — whole-file reads and directory syncs. Thread-safe. */
#ifndef IMGSEARCH_FILE_H
#define IMGSEARCH_FILE_H

#include <stddef.h>

/* Reads the whole of path into a new buffer (*out, caller frees with free(); one extra NUL byte
 * follows the data so text can be used as a string). Files over max_bytes fail with
 * IS_ERR_TOO_LARGE before anything is read. Returns an is_status. */
int file_read_all(const char *path, size_t max_bytes, unsigned char **out, size_t *len,
                  char *err, size_t errlen);

/* The status of a failed write's errno: IS_ERR_NO_SPACE for a full disk or quota (ENOSPC,
 * EDQUOT), IS_ERR_IO otherwise. */
int file_write_status(int errnum);

/* fsyncs a directory so that entries created or renamed in it survive a crash. 0 or -1 (errno). */
int file_sync_dir(const char *dir);

/* Finds a project file: rel in the working directory if it exists there (probe, a file inside
 * it, tells), else ../rel beside the running executable (build/imgsearch → ./rel), else
 * ../share/imgsearch/rel beside it (an installed /usr/bin/imgsearch → /usr/share/imgsearch/rel,
 * whatever the prefix). Writes the path into out and returns out; falls back to rel when none
 * exists. Thread-safe. */
const char *file_find_project(const char *rel, const char *probe, char *out, size_t outlen);

#endif
