#include "embed/embed.h"

#include <math.h>
#include <pthreadpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/head.h"
#include "embed/model.h"
#include "embed/net.h"
#include "util/status.h"

struct embed_engine {
    model *m;
    head *h;        /* NULL: the vector is the L2-normalised pooled feature */
    net_precision precision; /* resolved: never NET_AUTO */
    char id[128];   /* "<model>" or "<model>+<head>" */
};

/* Runtimes kept per session: batch 1 (queries) and the few batch sizes a caller uses. */
#define SESSION_NETS 4

struct embed_session {
    const embed_engine *e;
    int threads;
    pthreadpool_t pool; /* XNNPACK's threads (net_uses_pool; oneDNN runs on OpenMP's) */
    net *nets[SESSION_NETS];
    float *pooled;  /* pooled features of the largest batch so far, when a head maps them */
    size_t pooled_len;
};

int embed_engine_new(const char *model_config, embed_engine **out, char *err, size_t errlen) {
    *out = NULL;
    int rc = decode_global_init(NULL, err, errlen);
    if (!rc) rc = net_global_init(err, errlen);
    if (rc) return rc;
    embed_engine *e = calloc(1, sizeof *e);
    if (!e) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    const char *env = getenv("IMGSEARCH_PRECISION");
    embed_precision asked = EMBED_PRECISION_AUTO;
    if (env && *env && embed_precision_parse(env, &asked))
        rc = is_fail(err, errlen, IS_ERR_INVALID, "IMGSEARCH_PRECISION=%s: use auto, fp32 or bf16", env);
    if (!rc) rc = embed_engine_set_precision(e, asked, err, errlen);
    if (!rc) rc = model_load(model_config, &e->m, err, errlen);
    if (rc) {
        free(e);
        return rc;
    }
    /* models/<name>.json → models/<name>.head.json, used when it exists */
    char head_path[4096];
    size_t n = strlen(model_config);
    size_t stem = n > 5 && !strcmp(model_config + n - 5, ".json") ? n - 5 : n;
    snprintf(head_path, sizeof head_path, "%.*s.head.json", (int)stem, model_config);
    rc = head_load(head_path, e->m->dims, &e->h, err, errlen);
    if (rc) {
        embed_engine_free(e);
        return rc;
    }
    snprintf(e->id, sizeof e->id, "%s%s%s", e->m->name, e->h ? "+" : "", e->h ? head_name(e->h) : "");
    *out = e;
    return IS_OK;
}

void embed_engine_free(embed_engine *e) {
    if (!e) return;
    head_free(e->h);
    model_free(e->m);
    free(e);
}

const char *embed_model_name(const embed_engine *e) { return e->id; }
const char *embed_plain_name(const embed_engine *e) { return e->m->name; }

void embed_engine_drop_head(embed_engine *e) {
    head_free(e->h);
    e->h = NULL;
    snprintf(e->id, sizeof e->id, "%s", e->m->name);
}
int embed_precision_parse(const char *text, embed_precision *out) {
    static const char *names[] = {"auto", "fp32", "bf16"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(text, names[i])) {
            *out = (embed_precision)i;
            return 0;
        }
    return -1;
}

int embed_engine_set_precision(embed_engine *e, embed_precision p, char *err, size_t errlen) {
    net_precision asked = p == EMBED_PRECISION_FP32 ? NET_FP32 : p == EMBED_PRECISION_BF16 ? NET_BF16 : NET_AUTO;
    return net_pick_precision(asked, &e->precision, err, errlen);
}

int embed_apply_precision(embed_engine *e, const char *text, char *err, size_t errlen) {
    embed_precision p;
    if (!text) return IS_OK;
    if (embed_precision_parse(text, &p))
        return is_fail(err, errlen, IS_ERR_INVALID, "precision '%s': use auto, fp32 or bf16", text);
    return embed_engine_set_precision(e, p, err, errlen);
}

embed_precision embed_engine_precision(const embed_engine *e) {
    return e->precision == NET_BF16 ? EMBED_PRECISION_BF16 : EMBED_PRECISION_FP32;
}

const char *embed_precision_describe(const embed_engine *e) { return net_precision_describe(e->precision); }

int embed_dims(const embed_engine *e) { return e->h ? head_dims(e->h) : e->m->dims; }
int embed_feature_dims(const embed_engine *e) { return e->m->dims; }
int embed_input_size(const embed_engine *e) { return e->m->input_size; }
int embed_num_classes(const embed_engine *e) { return e->m->num_classes; }

const char *embed_label(const embed_engine *e, int cls) {
    return cls >= 0 && cls < e->m->num_classes ? e->m->labels[cls] : "?";
}

decode_params embed_decode_params(const embed_engine *e, uint64_t max_pixels) {
    decode_params p = {.size = e->m->input_size, .crop_fraction = e->m->crop_fraction,
                       .max_pixels = max_pixels};
    memcpy(p.mean, e->m->mean, sizeof p.mean);
    memcpy(p.std, e->m->std, sizeof p.std);
    return p;
}

int embed_session_new(const embed_engine *e, int threads, embed_session **out, char *err, size_t errlen) {
    *out = NULL;
    if (threads < 1 || threads > 256)
        return is_fail(err, errlen, IS_ERR_INVALID, "threads must be in 1..256, not %d", threads);
    embed_session *s = calloc(1, sizeof *s);
    if (!s) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    s->e = e;
    s->threads = threads;
    if (threads > 1 && net_uses_pool(e->precision)) {
        s->pool = pthreadpool_create((size_t)threads);
        if (!s->pool) {
            free(s);
            return is_fail(err, errlen, IS_ERR_NOMEM, "cannot create a pool of %d threads", threads);
        }
    }
    *out = s;
    return IS_OK;
}

void embed_session_free(embed_session *s) {
    if (!s) return;
    for (int i = 0; i < SESSION_NETS; i++) net_free(s->nets[i]);
    if (s->pool) pthreadpool_destroy(s->pool);
    free(s->pooled);
    free(s);
}

/* The runtime for batch n: reused if kept, else built into a free slot, or into the last slot
 * when all are taken (callers use one or two batch sizes, so this rarely rebuilds). */
static int session_net(embed_session *s, int n, net **out, char *err, size_t errlen) {
    for (int i = 0; i < SESSION_NETS; i++)
        if (s->nets[i] && net_batch(s->nets[i]) == n) {
            *out = s->nets[i];
            return IS_OK;
        }
    int slot = SESSION_NETS - 1;
    for (int i = 0; i < SESSION_NETS; i++)
        if (!s->nets[i]) {
            slot = i;
            break;
        }
    net *fresh;
    int rc = net_new(s->e->m, n, s->e->precision, s->pool, s->threads, &fresh, err, errlen);
    if (rc) return rc;
    net_free(s->nets[slot]);
    s->nets[slot] = fresh;
    *out = fresh;
    return IS_OK;
}

int embed_run(embed_session *s, const float *tensors, int n, float *vectors, float *logits,
              char *err, size_t errlen) {
    if (n < 1) return is_fail(err, errlen, IS_ERR_INVALID, "batch must hold at least one image");
    const model *m = s->e->m;
    net *nt;
    int rc = session_net(s, n, &nt, err, errlen);
    if (rc) return rc;
    const head *h = s->e->h;
    if (h && (size_t)n * (size_t)m->dims > s->pooled_len) {
        float *f = realloc(s->pooled, (size_t)n * (size_t)m->dims * sizeof *f);
        if (!f) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        s->pooled = f;
        s->pooled_len = (size_t)n * (size_t)m->dims;
    }
    rc = net_run(nt, tensors, h ? s->pooled : vectors, logits, err, errlen);
    if (rc) return rc;
    if (h) {
        head_apply(h, s->e->precision == NET_BF16, s->pooled, n, vectors);
        return IS_OK;
    }
    /* ReLU6 features are never all zero on a real image; if they are, the zeros stay. */
    for (int i = 0; i < n; i++) head_l2(vectors + (size_t)i * (size_t)m->dims, m->dims);
    return IS_OK;
}

int embed_run_pooled(embed_session *s, const float *tensors, int n, float *features, char *err, size_t errlen) {
    if (n < 1) return is_fail(err, errlen, IS_ERR_INVALID, "batch must hold at least one image");
    net *nt;
    int rc = session_net(s, n, &nt, err, errlen);
    if (rc) return rc;
    return net_run(nt, tensors, features, NULL, err, errlen);
}

int embed_image(embed_session *s, const void *bytes, size_t len, uint64_t max_pixels,
                float *vector, float *logits, decode_info *info, char *err, size_t errlen) {
    const model *m = s->e->m;
    size_t tlen = (size_t)m->input_size * (size_t)m->input_size * 3;
    float *tensor = malloc(tlen * sizeof *tensor);
    if (!tensor) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    decode_params p = embed_decode_params(s->e, max_pixels);
    int rc = decode_preprocess(bytes, len, &p, tensor, info, err, errlen);
    if (!rc) rc = embed_run(s, tensor, 1, vector, logits, err, errlen);
    free(tensor);
    return rc;
}

void embed_top_classes(const embed_engine *e, const float *logits, float *probs, int k, int *top) {
    int nc = e->m->num_classes;
    float mx = logits[0];
    for (int i = 1; i < nc; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < nc; i++) sum += (probs[i] = expf(logits[i] - mx));
    for (int i = 0; i < nc; i++) probs[i] = (float)(probs[i] / sum);
    if (k > nc) k = nc;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < nc; i++) {
            int taken = 0;
            for (int t = 0; t < j; t++) taken |= top[t] == i;
            if (!taken && (best < 0 || probs[i] > probs[best])) best = i;
        }
        top[j] = best;
    }
}
