#include "embed/head.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/bf16_round.h"
#include "embed/head_project.h"
#include "embed/weights.h"
#include "util/status.h"

struct head {
    char name[48];
    bool power;
    int in_dims, dims;
    weights *w;              /* owns the mapping mean and projection point into */
    const float *mean;       /* [in_dims] */
    const float *projection; /* [dims][in_dims] */
    uint16_t *projection_bf16; /* the same rounded to bfloat16 (owned), for reduced precision */
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

/* The projection rounded to bfloat16 (bf16_nearest), kept as the top 16 bits of each float. */
static int make_bf16(head *h, char *err, size_t errlen) {
    size_t n = (size_t)h->dims * (size_t)h->in_dims;
    h->projection_bf16 = malloc(n * sizeof *h->projection_bf16);
    if (!h->projection_bf16) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        float r = bf16_nearest(h->projection[i]);
        uint32_t u;
        memcpy(&u, &r, sizeof u);
        h->projection_bf16[i] = (uint16_t)(u >> 16);
    }
    return IS_OK;
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
        if (!rc) rc = make_bf16(h, err, errlen);
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
    free(h->projection_bf16);
    weights_free(h->w);
    free(h);
}

const char *head_name(const head *h) { return h->name; }
int head_dims(const head *h) { return h->dims; }

void head_apply(const head *h, bool reduced, float *x, int n, float *out) {
    int len = h->in_dims;
    for (int k = 0; k < n; k++) {
        float *xk = x + (size_t)k * (size_t)len;
        if (h->power)
            for (int i = 0; i < len; i++) xk[i] = xk[i] < 0 ? -sqrtf(-xk[i]) : sqrtf(xk[i]);
        head_l2(xk, len);
        for (int i = 0; i < len; i++) xk[i] -= h->mean[i];
    }
    head_simd level = head_simd_used();
    if (reduced) head_project_bf16(level, h->projection_bf16, h->dims, len, x, n, out);
    else head_project_f32(level, h->projection, h->dims, len, x, n, out);
    for (int k = 0; k < n; k++) head_l2(out + (size_t)k * (size_t)h->dims, h->dims);
}
