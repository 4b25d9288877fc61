/* weights.h — read-only access to a safetensors file.
 *
 * The file is mapped, its JSON header parsed and validated (offsets inside the data, sizes that
 * match dtype × shape, no overlaps past the end). Tensors point into the mapping: they stay valid
 * until weights_free(). Lookups are thread-safe once loaded; nothing is modified after load. */
#ifndef IMGSEARCH_WEIGHTS_H
#define IMGSEARCH_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#define WEIGHTS_MAX_DIMS 8

typedef struct {
    const char *name;
    char dtype[8];              /* "F32", "I64", ... as written in the file */
    int ndims;
    int64_t shape[WEIGHTS_MAX_DIMS];
    size_t nbytes;
    const void *data;           /* into the mapping; aligned as the file aligned it */
} weights_tensor;

typedef struct weights weights;

/* Maps and validates path. On success *out owns the mapping (free with weights_free). */
int weights_load(const char *path, weights **out, char *err, size_t errlen);
/* The same over len bytes in memory (what names them in messages): the tensors point into buf,
 * which must outlive *out; nothing is copied. weights_load maps the file and calls this. */
int weights_load_buffer(const void *buf, size_t len, const char *what, weights **out, char *err, size_t errlen);
void weights_free(weights *w);

/* The tensor called name, or NULL. */
const weights_tensor *weights_get(const weights *w, const char *name);
size_t weights_count(const weights *w);

/* Finds a float32 tensor with exactly the given shape; fails with IS_ERR_MODEL naming the tensor
 * and what differs. */
int weights_get_f32(const weights *w, const char *name, int ndims, const int64_t *shape,
                    const float **data, char *err, size_t errlen);

#endif
