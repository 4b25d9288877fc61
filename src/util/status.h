/* status.h — the project's status codes.
 *
 * Every fallible function returns one of these (IS_OK == 0, errors negative) and, where the caller
 * passes a buffer, writes a human-readable reason into it. One table maps codes to stable names
 * (used in JSON errors and CLI output) and to HTTP statuses. Thread-safe: pure functions. */
#ifndef IMGSEARCH_STATUS_H
#define IMGSEARCH_STATUS_H

#include <stddef.h>

typedef enum {
    IS_OK = 0,
    IS_ERR_INVALID = -1,           /* a malformed argument or request */
    IS_ERR_NOT_FOUND = -2,         /* no such file, id or resource */
    IS_ERR_EMPTY_IMAGE = -3,       /* zero bytes */
    IS_ERR_UNSUPPORTED_IMAGE = -4, /* not an image format we can decode */
    IS_ERR_CORRUPT_IMAGE = -5,     /* a known format, but truncated or damaged */
    IS_ERR_IMAGE_TOO_LARGE = -6,   /* more pixels than the configured limit */
    IS_ERR_TOO_LARGE = -7,         /* more bytes than the configured limit */
    IS_ERR_IO = -8,                /* the operating system refused a read or write */
    IS_ERR_NOMEM = -9,             /* an allocation failed */
    IS_ERR_MODEL = -10,            /* the model files are missing, inconsistent or unusable */
    IS_ERR_INTERNAL = -11,         /* a bug or a library failure we did not expect */
    IS_ERR_CORRUPT = -12,          /* a file of ours (index snapshot) is damaged or inconsistent */
    IS_ERR_UNAVAILABLE = -13,      /* a shared store (PostgreSQL) cannot be reached just now */
    IS_ERR_BUSY = -14,             /* too much work waits already: try again shortly */
    IS_ERR_NO_SPACE = -15,         /* the disk (or the database's) is full: nothing was stored */
} is_status;

/* Stable snake_case name of a status ("corrupt_image"); "unknown" for codes not in the table. */
const char *is_status_name(int status);

/* The HTTP status a request failing with this status should get (200 for IS_OK). */
int is_status_http(int status);

/* Writes printf-style text into err (if err && errlen) and returns status, so that a failure
 * can be reported in one line: return is_fail(err, errlen, IS_ERR_IO, "read %s: %s", ...). */
int is_fail(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
