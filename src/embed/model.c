#include "embed/model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/weights.h"
#include "util/status.h"

typedef struct {
    const weights *w;
    double eps;
    char *err;
    size_t errlen;
} loader;

/* TensorFlow "SAME": output ceil(in/stride); the padding is split with the extra pixel after. */
static void same_padding(model_conv *c) {
    c->out_size = (c->in_size + c->stride - 1) / c->stride;
    int pad = (c->out_size - 1) * c->stride + c->kernel - c->in_size;
    if (pad < 0) pad = 0;
    c->pad_top = c->pad_left = pad / 2;
    c->pad_bottom = c->pad_right = pad - pad / 2;
}

/* Reads conv `cname` (PyTorch OIHW) and BatchNorm `bname`, folds the BN and writes NHWC weights. */
static int load_conv(loader *L, model_conv *c, const char *cname, const char *bname) {
    char key[160];
    const float *w, *gamma, *beta, *mean, *var;
    int64_t wshape[4] = {c->cout, c->depthwise ? 1 : c->cin, c->kernel, c->kernel};
    int64_t bshape[1] = {c->cout};
    int rc;
    snprintf(key, sizeof key, "%s.weight", cname);
    if ((rc = weights_get_f32(L->w, key, 4, wshape, &w, L->err, L->errlen))) return rc;
    snprintf(key, sizeof key, "%s.weight", bname);
    if ((rc = weights_get_f32(L->w, key, 1, bshape, &gamma, L->err, L->errlen))) return rc;
    snprintf(key, sizeof key, "%s.bias", bname);
    if ((rc = weights_get_f32(L->w, key, 1, bshape, &beta, L->err, L->errlen))) return rc;
    snprintf(key, sizeof key, "%s.running_mean", bname);
    if ((rc = weights_get_f32(L->w, key, 1, bshape, &mean, L->err, L->errlen))) return rc;
    snprintf(key, sizeof key, "%s.running_var", bname);
    if ((rc = weights_get_f32(L->w, key, 1, bshape, &var, L->err, L->errlen))) return rc;

    int k = c->kernel, cin = c->depthwise ? 1 : c->cin, cout = c->cout;
    c->weight = malloc(sizeof(float) * (size_t)cout * (size_t)cin * (size_t)(k * k));
    c->bias = malloc(sizeof(float) * (size_t)cout);
    if (!c->weight || !c->bias) return is_fail(L->err, L->errlen, IS_ERR_NOMEM, "out of memory");
    for (int o = 0; o < cout; o++) {
        float scale = gamma[o] / sqrtf(var[o] + (float)L->eps);
        c->bias[o] = beta[o] - mean[o] * scale;
        for (int i = 0; i < cin; i++)
            for (int y = 0; y < k; y++)
                for (int x = 0; x < k; x++) {
                    float v = w[((o * cin + i) * k + y) * k + x] * scale;
                    if (c->depthwise) /* [1][k][k][cout] */
                        c->weight[(y * k + x) * cout + o] = v;
                    else              /* [cout][k][k][cin] */
                        c->weight[((o * k + y) * k + x) * cin + i] = v;
                }
    }
    return IS_OK;
}

static int json_int(json_t *obj, const char *key, int lo, int hi, int *out, char *err, size_t errlen) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return is_fail(err, errlen, IS_ERR_MODEL, "config: \"%s\" must be an integer in %d..%d",
                       key, lo, hi);
    *out = (int)json_integer_value(v);
    return IS_OK;
}

static int json_float3(json_t *obj, const char *key, float out[3], char *err, size_t errlen) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_array(v) || json_array_size(v) != 3)
        return is_fail(err, errlen, IS_ERR_MODEL, "config: \"%s\" must be 3 numbers", key);
    for (size_t i = 0; i < 3; i++) {
        if (!json_is_number(json_array_get(v, i)))
            return is_fail(err, errlen, IS_ERR_MODEL, "config: \"%s\" must be 3 numbers", key);
        out[i] = (float)json_number_value(json_array_get(v, i));
    }
    return IS_OK;
}

static int load_config(model *m, json_t *cfg, json_t **blocks_out, char *err, size_t errlen) {
    int rc;
    json_t *arch = json_object_get(cfg, "architecture");
    if (!json_is_string(arch) || strcmp(json_string_value(arch), "efficientnet_lite"))
        return is_fail(err, errlen, IS_ERR_MODEL, "config: architecture must be efficientnet_lite");
    json_t *name = json_object_get(cfg, "name");
    snprintf(m->name, sizeof m->name, "%s", json_is_string(name) ? json_string_value(name) : "?");
    if ((rc = json_int(cfg, "input_size", 32, 1024, &m->input_size, err, errlen))) return rc;
    if ((rc = json_int(cfg, "head_channels", 1, 8192, &m->dims, err, errlen))) return rc;
    if ((rc = json_int(cfg, "stem_channels", 1, 8192, &m->stem.cout, err, errlen))) return rc;
    if ((rc = json_int(cfg, "num_classes", 1, 100000, &m->num_classes, err, errlen))) return rc;
    if ((rc = json_float3(cfg, "mean", m->mean, err, errlen))) return rc;
    if ((rc = json_float3(cfg, "std", m->std, err, errlen))) return rc;
    for (int i = 0; i < 3; i++)
        if (!(m->std[i] > 0)) return is_fail(err, errlen, IS_ERR_MODEL, "config: std must be > 0");
    json_t *crop = json_object_get(cfg, "crop_fraction");
    if (!json_is_number(crop) || json_number_value(crop) <= 0.1 || json_number_value(crop) > 1.0)
        return is_fail(err, errlen, IS_ERR_MODEL, "config: crop_fraction must be in (0.1, 1]");
    m->crop_fraction = json_number_value(crop);
    json_t *blocks = json_object_get(cfg, "blocks");
    if (!json_is_array(blocks) || json_array_size(blocks) == 0 || json_array_size(blocks) > 256)
        return is_fail(err, errlen, IS_ERR_MODEL, "config: blocks must be a non-empty array");
    json_t *labels = json_object_get(cfg, "labels");
    if (!json_is_array(labels) || json_array_size(labels) != (size_t)m->num_classes)
        return is_fail(err, errlen, IS_ERR_MODEL, "config: labels must list num_classes names");
    m->labels = calloc((size_t)m->num_classes, sizeof *m->labels);
    if (!m->labels) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->num_classes; i++) {
        json_t *l = json_array_get(labels, (size_t)i);
        m->labels[i] = strdup(json_is_string(l) ? json_string_value(l) : "?");
        if (!m->labels[i]) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    *blocks_out = blocks;
    return IS_OK;
}

static int load_blocks(loader *L, model *m, json_t *blocks, int *size) {
    int rc;
    m->nblocks = (int)json_array_size(blocks);
    m->blocks = calloc((size_t)m->nblocks, sizeof *m->blocks);
    if (!m->blocks) return is_fail(L->err, L->errlen, IS_ERR_NOMEM, "out of memory");
    int prev_out = m->stem.cout;
    for (int i = 0; i < m->nblocks; i++) {
        json_t *jb = json_array_get(blocks, (size_t)i);
        int k = 0, s = 0, e = 0, cin = 0, cout = 0;
        if ((rc = json_int(jb, "kernel", 1, 15, &k, L->err, L->errlen)) ||
            (rc = json_int(jb, "stride", 1, 4, &s, L->err, L->errlen)) ||
            (rc = json_int(jb, "expand", 1, 16, &e, L->err, L->errlen)) ||
            (rc = json_int(jb, "in", 1, 8192, &cin, L->err, L->errlen)) ||
            (rc = json_int(jb, "out", 1, 8192, &cout, L->err, L->errlen)))
            return rc;
        if (cin != prev_out)
            return is_fail(L->err, L->errlen, IS_ERR_MODEL,
                           "config: block %d takes %d channels but gets %d", i, cin, prev_out);
        model_block *b = &m->blocks[i];
        char cn[96], bn[96];
        int mid = cin * e;
        b->has_expand = e != 1;
        if (b->has_expand) {
            b->expand = (model_conv){.kernel = 1, .stride = 1, .cin = cin, .cout = mid,
                                     .relu6 = true, .in_size = *size};
            same_padding(&b->expand);
            snprintf(cn, sizeof cn, "_blocks.%d._expand_conv", i);
            snprintf(bn, sizeof bn, "_blocks.%d._bn0", i);
            if ((rc = load_conv(L, &b->expand, cn, bn))) return rc;
        }
        b->depthwise = (model_conv){.kernel = k, .stride = s, .cin = mid, .cout = mid,
                                    .depthwise = true, .relu6 = true, .in_size = *size};
        same_padding(&b->depthwise);
        snprintf(cn, sizeof cn, "_blocks.%d._depthwise_conv", i);
        snprintf(bn, sizeof bn, "_blocks.%d._bn1", i);
        if ((rc = load_conv(L, &b->depthwise, cn, bn))) return rc;
        *size = b->depthwise.out_size;
        b->project = (model_conv){.kernel = 1, .stride = 1, .cin = mid, .cout = cout,
                                  .relu6 = false, .in_size = *size};
        same_padding(&b->project);
        snprintf(cn, sizeof cn, "_blocks.%d._project_conv", i);
        snprintf(bn, sizeof bn, "_blocks.%d._bn2", i);
        if ((rc = load_conv(L, &b->project, cn, bn))) return rc;
        b->residual = s == 1 && cin == cout;
        prev_out = cout;
    }
    return IS_OK;
}

int model_load(const char *config_path, model **out, char *err, size_t errlen) {
    *out = NULL;
    json_error_t jerr;
    json_t *cfg = json_load_file(config_path, 0, &jerr);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        return is_fail(err, errlen, IS_ERR_MODEL, "%s: %s (run tools/fetch-model)", config_path,
                       jerr.text);
    }
    model *m = calloc(1, sizeof *m);
    weights *w = NULL;
    int rc;
    if (!m) {
        json_decref(cfg);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    json_t *blocks = NULL;
    if ((rc = load_config(m, cfg, &blocks, err, errlen))) goto done;

    /* The weights live next to the config: same name, .safetensors instead of .json. */
    size_t plen = strlen(config_path);
    char *wpath = malloc(plen + 16);
    if (!wpath) {
        rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(wpath, config_path, plen + 1);
    if (plen > 5 && !strcmp(wpath + plen - 5, ".json")) wpath[plen - 5] = 0;
    strcat(wpath, ".safetensors");
    rc = weights_load(wpath, &w, err, errlen);
    free(wpath);
    if (rc) goto done;

    json_t *eps = json_object_get(cfg, "batchnorm_epsilon");
    loader L = {.w = w, .eps = json_is_number(eps) ? json_number_value(eps) : 1e-3,
                .err = err, .errlen = errlen};
    int size = m->input_size;
    m->stem = (model_conv){.kernel = 3, .stride = 2, .cin = 3, .cout = m->stem.cout,
                           .relu6 = true, .in_size = size};
    same_padding(&m->stem);
    if ((rc = load_conv(&L, &m->stem, "_conv_stem", "_bn0"))) goto done;
    size = m->stem.out_size;
    if ((rc = load_blocks(&L, m, blocks, &size))) goto done;
    m->head = (model_conv){.kernel = 1, .stride = 1, .cin = m->blocks[m->nblocks - 1].project.cout,
                           .cout = m->dims, .relu6 = true, .in_size = size};
    same_padding(&m->head);
    if ((rc = load_conv(&L, &m->head, "_conv_head", "_bn1"))) goto done;

    const float *fw, *fb;
    int64_t fws[2] = {m->num_classes, m->dims}, fbs[1] = {m->num_classes};
    if ((rc = weights_get_f32(w, "_fc.weight", 2, fws, &fw, err, errlen))) goto done;
    if ((rc = weights_get_f32(w, "_fc.bias", 1, fbs, &fb, err, errlen))) goto done;
    m->fc_weight = malloc(sizeof(float) * (size_t)m->num_classes * (size_t)m->dims);
    m->fc_bias = malloc(sizeof(float) * (size_t)m->num_classes);
    if (!m->fc_weight || !m->fc_bias) {
        rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(m->fc_weight, fw, sizeof(float) * (size_t)m->num_classes * (size_t)m->dims);
    memcpy(m->fc_bias, fb, sizeof(float) * (size_t)m->num_classes);

done:
    weights_free(w); /* every weight we keep was copied out (folded) above */
    json_decref(cfg);
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return IS_OK;
}

static void conv_free(model_conv *c) {
    free(c->weight);
    free(c->bias);
}

void model_free(model *m) {
    if (!m) return;
    conv_free(&m->stem);
    for (int i = 0; m->blocks && i < m->nblocks; i++) {
        conv_free(&m->blocks[i].expand);
        conv_free(&m->blocks[i].depthwise);
        conv_free(&m->blocks[i].project);
    }
    free(m->blocks);
    conv_free(&m->head);
    free(m->fc_weight);
    free(m->fc_bias);
    for (int i = 0; m->labels && i < m->num_classes; i++) free(m->labels[i]);
    free(m->labels);
    free(m);
}
