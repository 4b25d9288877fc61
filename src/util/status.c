#include "util/status.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    int status;
    const char *name;
    int http;
} status_table[] = {
    {IS_OK, "ok", 200},
    {IS_ERR_INVALID, "invalid", 400},
    {IS_ERR_NOT_FOUND, "not_found", 404},
    {IS_ERR_EMPTY_IMAGE, "empty_image", 400},
    {IS_ERR_UNSUPPORTED_IMAGE, "unsupported_image", 415},
    {IS_ERR_CORRUPT_IMAGE, "corrupt_image", 400},
    {IS_ERR_IMAGE_TOO_LARGE, "image_too_large", 413},
    {IS_ERR_TOO_LARGE, "too_large", 413},
    {IS_ERR_IO, "io_error", 500},
    {IS_ERR_NOMEM, "out_of_memory", 503},
    {IS_ERR_MODEL, "model_error", 500},
    {IS_ERR_INTERNAL, "internal_error", 500},
    {IS_ERR_CORRUPT, "corrupt_data", 500},
    {IS_ERR_UNAVAILABLE, "store_unavailable", 503},
    {IS_ERR_BUSY, "busy", 503},
    {IS_ERR_NO_SPACE, "insufficient_storage", 507},
};

const char *is_status_name(int status) {
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
        if (status_table[i].status == status) return status_table[i].name;
    return "unknown";
}

int is_status_http(int status) {
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
        if (status_table[i].status == status) return status_table[i].http;
    return 500;
}

int is_fail(char *err, size_t errlen, int status, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}
