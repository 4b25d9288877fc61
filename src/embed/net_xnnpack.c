/* net_xnnpack.c — the network as one XNNPACK runtime in float32 (see net_impl.h). */
#include "embed/net_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <xnnpack.h>

#include "util/status.h"

enum { EXT_INPUT = 0, EXT_FEATURES = 1, EXT_LOGITS = 2, EXT_COUNT = 3 };

struct xnnpack_net {
    xnn_runtime_t runtime;
    int batch;
    float *logits; /* where the classifier writes when the caller wants no logits */
};

static pthread_once_t xnn_once = PTHREAD_ONCE_INIT;
static enum xnn_status xnn_init_status = xnn_status_uninitialized;

static void xnn_init_once(void) { xnn_init_status = xnn_initialize(NULL); }

int xnnpack_global_init(char *err, size_t errlen) {
    pthread_once(&xnn_once, xnn_init_once);
    if (xnn_init_status != xnn_status_success)
        return is_fail(err, errlen, IS_ERR_MODEL,
                       "XNNPACK failed to initialise (status %d): unsupported CPU?",
                       (int)xnn_init_status);
    return IS_OK;
}

typedef struct {
    xnn_subgraph_t sg;
    int batch;
    enum xnn_status st;
    const char *what; /* the step that failed, for the error message */
} builder;

static uint32_t tensor(builder *b, size_t ndims, const size_t *dims, const void *data,
                       uint32_t ext_id, uint32_t flags) {
    uint32_t id = XNN_INVALID_VALUE_ID;
    if (b->st != xnn_status_success) return id;
    b->st = xnn_define_tensor_value(b->sg, xnn_datatype_fp32, ndims, dims, data, ext_id, flags, &id);
    if (b->st != xnn_status_success) b->what = "define tensor";
    return id;
}

/* Adds one convolution (dense or depthwise) with its folded bias and optional ReLU6 clamp. */
static uint32_t conv(builder *b, const model_conv *c, uint32_t in_id) {
    size_t k = (size_t)c->kernel;
    size_t out_dims[4] = {(size_t)b->batch, (size_t)c->out_size, (size_t)c->out_size, (size_t)c->cout};
    size_t bias_dims[1] = {(size_t)c->cout};
    size_t w_dims[4] = {c->depthwise ? 1 : (size_t)c->cout, k, k, c->depthwise ? (size_t)c->cout : (size_t)c->cin};
    uint32_t w_id = tensor(b, 4, w_dims, c->weight, XNN_INVALID_VALUE_ID, 0);
    uint32_t b_id = tensor(b, 1, bias_dims, c->bias, XNN_INVALID_VALUE_ID, 0);
    uint32_t out_id = tensor(b, 4, out_dims, NULL, XNN_INVALID_VALUE_ID, 0);
    if (b->st != xnn_status_success) return XNN_INVALID_VALUE_ID;
    float lo = c->relu6 ? 0.0f : -INFINITY, hi = c->relu6 ? 6.0f : INFINITY;
    if (c->depthwise)
        b->st = xnn_define_depthwise_convolution_2d(
            b->sg, c->pad_top, c->pad_right, c->pad_bottom, c->pad_left, c->kernel, c->kernel,
            c->stride, c->stride, 1, 1, 1, (size_t)c->cin, lo, hi, in_id, w_id, b_id, out_id, 0);
    else
        b->st = xnn_define_convolution_2d(
            b->sg, c->pad_top, c->pad_right, c->pad_bottom, c->pad_left, c->kernel, c->kernel,
            c->stride, c->stride, 1, 1, 1, (size_t)c->cin, (size_t)c->cout, lo, hi, in_id, w_id,
            b_id, out_id, 0);
    if (b->st != xnn_status_success) b->what = c->depthwise ? "depthwise convolution" : "convolution";
    return out_id;
}

static uint32_t block(builder *b, const model_block *blk, uint32_t in_id) {
    uint32_t x = in_id;
    if (blk->has_expand) x = conv(b, &blk->expand, x);
    x = conv(b, &blk->depthwise, x);
    x = conv(b, &blk->project, x);
    if (!blk->residual || b->st != xnn_status_success) return x;
    const model_conv *p = &blk->project;
    size_t dims[4] = {(size_t)b->batch, (size_t)p->out_size, (size_t)p->out_size, (size_t)p->cout};
    uint32_t sum = tensor(b, 4, dims, NULL, XNN_INVALID_VALUE_ID, 0);
    if (b->st != xnn_status_success) return sum;
    b->st = xnn_define_add2(b->sg, -INFINITY, INFINITY, x, in_id, sum, 0);
    if (b->st != xnn_status_success) b->what = "residual add";
    return sum;
}

int xnnpack_net_new(const model *m, int batch, pthreadpool_t pool, xnnpack_net **out, char *err, size_t errlen) {
    *out = NULL;
    int rc = xnnpack_global_init(err, errlen);
    if (rc) return rc;
    builder b = {.batch = batch, .st = xnn_status_success};
    b.st = xnn_create_subgraph(EXT_COUNT, 0, &b.sg);
    if (b.st != xnn_status_success)
        return is_fail(err, errlen, IS_ERR_NOMEM, "XNNPACK: cannot create subgraph (%d)", (int)b.st);

    size_t s = (size_t)m->input_size;
    size_t in_dims[4] = {(size_t)batch, s, s, 3};
    uint32_t x = tensor(&b, 4, in_dims, NULL, EXT_INPUT, XNN_VALUE_FLAG_EXTERNAL_INPUT);
    x = conv(&b, &m->stem, x);
    for (int i = 0; i < m->nblocks && b.st == xnn_status_success; i++) x = block(&b, &m->blocks[i], x);
    x = conv(&b, &m->head, x);

    size_t feat_dims[4] = {(size_t)batch, 1, 1, (size_t)m->dims};
    uint32_t feat = tensor(&b, 4, feat_dims, NULL, EXT_FEATURES, XNN_VALUE_FLAG_EXTERNAL_OUTPUT);
    if (b.st == xnn_status_success) {
        b.st = xnn_define_global_average_pooling_2d(b.sg, -INFINITY, INFINITY, x, feat, 0);
        if (b.st != xnn_status_success) b.what = "global average pooling";
    }
    size_t fcw_dims[2] = {(size_t)m->num_classes, (size_t)m->dims};
    size_t fcb_dims[1] = {(size_t)m->num_classes};
    size_t logit_dims[2] = {(size_t)batch, (size_t)m->num_classes};
    uint32_t fcw = tensor(&b, 2, fcw_dims, m->fc_weight, XNN_INVALID_VALUE_ID, 0);
    uint32_t fcb = tensor(&b, 1, fcb_dims, m->fc_bias, XNN_INVALID_VALUE_ID, 0);
    uint32_t logits = tensor(&b, 2, logit_dims, NULL, EXT_LOGITS, XNN_VALUE_FLAG_EXTERNAL_OUTPUT);
    if (b.st == xnn_status_success) {
        b.st = xnn_define_fully_connected(b.sg, -INFINITY, INFINITY, feat, fcw, fcb, logits,
                                          XNN_FLAG_TENSORFLOW_RESHAPE_2D);
        if (b.st != xnn_status_success) b.what = "classifier";
    }
    if (b.st != xnn_status_success) {
        xnn_delete_subgraph(b.sg);
        return is_fail(err, errlen, IS_ERR_MODEL, "XNNPACK rejected the %s (status %d)",
                       b.what ? b.what : "graph", (int)b.st);
    }

    xnnpack_net *n = calloc(1, sizeof *n);
    if (!n) {
        xnn_delete_subgraph(b.sg);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    n->batch = batch;
    n->logits = malloc(sizeof(float) * (size_t)batch * (size_t)m->num_classes);
    if (!n->logits) {
        xnn_delete_subgraph(b.sg);
        free(n);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    enum xnn_status st = xnn_create_runtime_v2(b.sg, pool, 0, &n->runtime);
    xnn_delete_subgraph(b.sg); /* the runtime keeps what it needs */
    if (st != xnn_status_success) {
        free(n->logits);
        free(n);
        return is_fail(err, errlen, st == xnn_status_out_of_memory ? IS_ERR_NOMEM : IS_ERR_MODEL,
                       "XNNPACK cannot create the runtime (status %d)", (int)st);
    }
    *out = n;
    return IS_OK;
}

void xnnpack_net_free(xnnpack_net *n) {
    if (!n) return;
    if (n->runtime) xnn_delete_runtime(n->runtime);
    free(n->logits);
    free(n);
}

int xnnpack_net_run(xnnpack_net *n, const float *input, float *features, float *logits, char *err, size_t errlen) {
    struct xnn_external_value ext[EXT_COUNT] = {
        {EXT_INPUT, (void *)input},
        {EXT_FEATURES, features},
        {EXT_LOGITS, logits ? logits : n->logits},
    };
    enum xnn_status st = xnn_setup_runtime(n->runtime, EXT_COUNT, ext);
    if (st == xnn_status_success) st = xnn_invoke_runtime(n->runtime);
    if (st != xnn_status_success)
        return is_fail(err, errlen, IS_ERR_INTERNAL, "XNNPACK inference failed (status %d)", (int)st);
    return IS_OK;
}
