#include "embed/head.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/weights.h"
#include "util/status.h"

struct head {
    char name[48];
    bool power;
    int in_dims, dims;
    weights *w;              /* owns the mapping mean and projection point into */
    const float *mean;       /* [in_dims] */
    const float *projection; /* [dims][in_dims] */
};

void head_l2(float *v, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)v[i] * v[i];
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (int i = 0; i < n; i++) v[i] *= inv;
}

/* A head's name goes into data directories and answers: a short token only. */
static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof((head *)0)->name) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

int head_load(const char *json_path, int in_dims, head **out, char *err, size_t errlen) {
    *out = NULL;
    FILE *probe = fopen(json_path, "rb");
    if (!probe) {
        if (errno == ENOENT) return IS_OK;
        return is_fail(err, errlen, IS_ERR_MODEL, "cannot read %s: %s", json_path, strerror(errno));
    }
    fclose(probe);
    json_error_t jerr;
    json_t *cfg = json_load_file(json_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!cfg) return is_fail(err, errlen, IS_ERR_MODEL, "%s: %s (line %d)", json_path, jerr.text, jerr.line);
    const char *name = json_string_value(json_object_get(cfg, "name"));
    const char *file = json_string_value(json_object_get(cfg, "weights"));
    json_t *power = json_object_get(cfg, "power");
    int dims = (int)json_integer_value(json_object_get(cfg, "dims"));
    int rc = IS_OK;
    if (!name || !name_ok(name) || !file || strchr(file, '/') || !json_is_boolean(power) || dims < 8 || dims > in_dims ||
        json_integer_value(json_object_get(cfg, "input_dims")) != in_dims)
        rc = is_fail(err, errlen, IS_ERR_MODEL,
                     "%s: needs name ([a-z0-9._-]), weights (a file beside it), power (true/false), "
                     "input_dims = %d and dims in 8..%d",
                     json_path, in_dims, in_dims);
    head *h = rc ? NULL : calloc(1, sizeof *h);
    if (!rc && !h) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    if (!rc) {
        snprintf(h->name, sizeof h->name, "%s", name);
        h->power = json_is_true(power);
        h->in_dims = in_dims;
        h->dims = dims;
        char path[4096];
        const char *slash = strrchr(json_path, '/');
        int dir = slash ? (int)(slash - json_path + 1) : 0;
        snprintf(path, sizeof path, "%.*s%s", dir, json_path, file);
        rc = weights_load(path, &h->w, err, errlen);
        int64_t mean_shape[1] = {in_dims}, proj_shape[2] = {dims, in_dims};
        if (!rc) rc = weights_get_f32(h->w, "mean", 1, mean_shape, &h->mean, err, errlen);
        if (!rc) rc = weights_get_f32(h->w, "projection", 2, proj_shape, &h->projection, err, errlen);
    }
    json_decref(cfg);
    if (rc) {
        head_free(h);
        return rc;
    }
    *out = h;
    return IS_OK;
}

void head_free(head *h) {
    if (!h) return;
    weights_free(h->w);
    free(h);
}

const char *head_name(const head *h) { return h->name; }
int head_dims(const head *h) { return h->dims; }

/* out = projection · x, projection [rows][n]. 16 independent partial sums per row let the
 * compiler use whole vector registers (a single running sum may not be reordered); the clones
 * give AVX-512 and AVX2 builds of it, picked at load time by the CPU (GCC's target_clones). The
 * scalar version took 11 % of a bf16 inference's time. */
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static void project(const float *restrict projection, int rows, int n, const float *restrict x, float *restrict out) {
    enum { LANES = 16 };
    for (int d = 0; d < rows; d++) {
        const float *row = projection + (size_t)d * (size_t)n;
        float part[LANES] = {0};
        int i = 0;
        for (; i + LANES <= n; i += LANES)
            for (int j = 0; j < LANES; j++) part[j] += row[i + j] * x[i + j];
        float acc = 0;
        for (int j = 0; j < LANES; j++) acc += part[j];
        for (; i < n; i++) acc += row[i] * x[i];
        out[d] = acc;
    }
}

void head_apply(const head *h, float *x, float *out) {
    int n = h->in_dims;
    if (h->power)
        for (int i = 0; i < n; i++) x[i] = x[i] < 0 ? -sqrtf(-x[i]) : sqrtf(x[i]);
    head_l2(x, n);
    for (int i = 0; i < n; i++) x[i] -= h->mean[i];
    project(h->projection, h->dims, n, x, out);
    head_l2(out, h->dims);
}
