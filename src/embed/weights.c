#include "embed/weights.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/status.h"

/* A header larger than this is not a model we wrote: refuse it rather than parse it. */
#define WEIGHTS_MAX_HEADER (64u << 20)

struct weights {
    void *map;
    size_t map_len;
    weights_tensor *tensors;
    size_t count;
    char *names; /* one allocation holding every tensor name */
};

static size_t dtype_size(const char *dtype) {
    if (!strcmp(dtype, "F32") || !strcmp(dtype, "I32")) return 4;
    if (!strcmp(dtype, "F64") || !strcmp(dtype, "I64")) return 8;
    if (!strcmp(dtype, "F16") || !strcmp(dtype, "BF16") || !strcmp(dtype, "I16")) return 2;
    if (!strcmp(dtype, "U8") || !strcmp(dtype, "I8") || !strcmp(dtype, "BOOL")) return 1;
    return 0;
}

static int parse_tensor(const char *name, json_t *desc, const unsigned char *data, size_t data_len,
                        weights_tensor *t, char *err, size_t errlen) {
    json_t *dtype = json_object_get(desc, "dtype");
    json_t *shape = json_object_get(desc, "shape");
    json_t *offsets = json_object_get(desc, "data_offsets");
    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offsets) ||
        json_array_size(offsets) != 2)
        return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s: malformed header entry", name);
    size_t esize = dtype_size(json_string_value(dtype));
    if (!esize || strlen(json_string_value(dtype)) >= sizeof t->dtype)
        return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s: unknown dtype %s", name,
                       json_string_value(dtype));
    strcpy(t->dtype, json_string_value(dtype));
    if (json_array_size(shape) > WEIGHTS_MAX_DIMS)
        return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s: too many dimensions", name);
    t->ndims = (int)json_array_size(shape);
    size_t numel = 1;
    for (int i = 0; i < t->ndims; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1ll << 40))
            return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s: bad dimension %d", name, i);
        t->shape[i] = json_integer_value(d);
        if (t->shape[i] && numel > SIZE_MAX / (size_t)t->shape[i])
            return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s: shape overflows", name);
        numel *= (size_t)t->shape[i];
    }
    json_t *b = json_array_get(offsets, 0), *e = json_array_get(offsets, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b) || (size_t)json_integer_value(e) > data_len)
        return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s: data offsets outside the file", name);
    t->nbytes = (size_t)(json_integer_value(e) - json_integer_value(b));
    if (numel > SIZE_MAX / esize || t->nbytes != numel * esize)
        return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s: %zu bytes for %zu elements of %s",
                       name, t->nbytes, numel, t->dtype);
    t->data = data + json_integer_value(b);
    /* The format pads its header so tensors can be used in place; one that is not aligned to its
     * element size would be undefined behaviour to read as such. */
    if ((uintptr_t)t->data % esize)
        return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s: data is not aligned to %zu bytes", name, esize);
    return IS_OK;
}

int weights_load_buffer(const void *buf, size_t len, const char *what, weights **out, char *err, size_t errlen) {
    *out = NULL;
    if (len < 8) return is_fail(err, errlen, IS_ERR_MODEL, "%s: not a safetensors file", what);
    int rc = IS_ERR_MODEL;
    json_t *hdr = NULL;
    weights *w = calloc(1, sizeof *w);
    if (!w) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");

    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | ((const unsigned char *)buf)[i];
    if (hlen > WEIGHTS_MAX_HEADER || hlen > len - 8) {
        rc = is_fail(err, errlen, IS_ERR_MODEL, "%s: header length %llu is impossible", what,
                     (unsigned long long)hlen);
        goto fail;
    }
    json_error_t jerr;
    hdr = json_loadb((const char *)buf + 8, (size_t)hlen, 0, &jerr);
    if (!json_is_object(hdr)) {
        rc = is_fail(err, errlen, IS_ERR_MODEL, "%s: header is not a JSON object: %s", what,
                     jerr.text);
        goto fail;
    }
    const unsigned char *data = (const unsigned char *)buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;

    size_t n = 0, names_len = 0;
    const char *key;
    json_t *val;
    json_object_foreach(hdr, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        n++;
        names_len += strlen(key) + 1;
    }
    w->tensors = calloc(n ? n : 1, sizeof *w->tensors);
    w->names = malloc(names_len ? names_len : 1);
    if (!w->tensors || !w->names) {
        rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    char *np = w->names;
    json_object_foreach(hdr, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        weights_tensor *t = &w->tensors[w->count];
        rc = parse_tensor(key, val, data, data_len, t, err, errlen);
        if (rc) goto fail;
        size_t kl = strlen(key) + 1;
        memcpy(np, key, kl);
        t->name = np;
        np += kl;
        w->count++;
    }
    json_decref(hdr);
    *out = w;
    return IS_OK;

fail:
    json_decref(hdr);
    weights_free(w);
    return rc;
}

int weights_load(const char *path, weights **out, char *err, size_t errlen) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return is_fail(err, errlen, IS_ERR_MODEL, "%s: %s (run tools/fetch-model)", path,
                       strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 8) { /* a directory cannot be mapped */
        close(fd);
        return is_fail(err, errlen, IS_ERR_MODEL, "%s: not a safetensors file", path);
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return is_fail(err, errlen, IS_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    int rc = weights_load_buffer(map, len, path, out, err, errlen);
    if (rc) {
        munmap(map, len);
        return rc;
    }
    (*out)->map = map; /* the tensors point into it: unmapped by weights_free */
    (*out)->map_len = len;
    return IS_OK;
}

void weights_free(weights *w) {
    if (!w) return;
    if (w->map) munmap(w->map, w->map_len);
    free(w->tensors);
    free(w->names);
    free(w);
}

const weights_tensor *weights_get(const weights *w, const char *name) {
    for (size_t i = 0; i < w->count; i++)
        if (!strcmp(w->tensors[i].name, name)) return &w->tensors[i];
    return NULL;
}

size_t weights_count(const weights *w) { return w->count; }

int weights_get_f32(const weights *w, const char *name, int ndims, const int64_t *shape,
                    const float **data, char *err, size_t errlen) {
    const weights_tensor *t = weights_get(w, name);
    if (!t) return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s is missing from the weights", name);
    if (strcmp(t->dtype, "F32"))
        return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s is %s, expected F32", name, t->dtype);
    if (t->ndims != ndims)
        return is_fail(err, errlen, IS_ERR_MODEL, "tensor %s has %d dimensions, expected %d", name,
                       t->ndims, ndims);
    for (int i = 0; i < ndims; i++)
        if (t->shape[i] != shape[i])
            return is_fail(err, errlen, IS_ERR_MODEL,
                           "tensor %s dimension %d is %lld, expected %lld", name, i,
                           (long long)t->shape[i], (long long)shape[i]);
    *data = t->data;
    return IS_OK;
}
