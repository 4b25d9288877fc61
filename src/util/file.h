/* file.h — whole-file reads. Thread-safe. */
#ifndef IMGSEARCH_FILE_H
#define IMGSEARCH_FILE_H

#include <stddef.h>

/* Reads the whole of path into a new buffer (*out, caller frees with free(); one extra NUL byte
 * follows the data so text can be used as a string). Files over max_bytes fail with
 * IS_ERR_TOO_LARGE before anything is read. Returns an is_status. */
int file_read_all(const char *path, size_t max_bytes, unsigned char **out, size_t *len,
                  char *err, size_t errlen);

#endif
