/* net.c — picks the back end for a precision and forwards to it (see net.h). */
#include "embed/net.h"

#include <stdlib.h>

#include "embed/net_impl.h"
#include "util/status.h"

struct net {
    int batch;
    xnnpack_net *xnn; /* exactly one of the two */
    onednn_net *dnn;
};

/* fp32 runs on oneDNN where its AVX-512 kernels are there: measured on an AVX512-BF16 EPYC,
 * batch 1, one thread, 197-202 images/s against XNNPACK's 157-161 (the XNNPACK Debian ships is a
 * 2022 snapshot). Below AVX-512, XNNPACK's f32 stays. */
static bool fp32_on_onednn(void) { return onednn_f32_fast(); }

bool net_uses_pool(net_precision p) { return p == NET_FP32 && !fp32_on_onednn(); }

int net_global_init(char *err, size_t errlen) { return xnnpack_global_init(err, errlen); }

int net_pick_precision(net_precision asked, net_precision *out, char *err, size_t errlen) {
    switch (asked) {
    case NET_AUTO: *out = onednn_bf16_native() ? NET_BF16 : NET_FP32; return IS_OK;
    case NET_FP32: *out = NET_FP32; return IS_OK;
    case NET_BF16:
        if (!onednn_bf16_possible())
            return is_fail(err, errlen, IS_ERR_INVALID, "precision bf16 needs a CPU with AVX-512; this one has not got it");
        *out = NET_BF16;
        return IS_OK;
    }
    return is_fail(err, errlen, IS_ERR_INVALID, "unknown precision %d", (int)asked);
}

const char *net_precision_describe(net_precision p) {
    switch (p) {
    case NET_FP32: return fp32_on_onednn() ? "fp32 (oneDNN, AVX-512)" : "fp32 (XNNPACK)";
    case NET_BF16: return onednn_bf16_native() ? "bf16 (oneDNN, AVX512-BF16)" : "bf16 (oneDNN, emulated on AVX-512)";
    default: return "auto";
    }
}

int net_new(const model *m, int batch, net_precision p, pthreadpool_t pool, int threads, net **out,
            char *err, size_t errlen) {
    *out = NULL;
    if (batch < 1 || batch > 4096)
        return is_fail(err, errlen, IS_ERR_INVALID, "batch %d is outside 1..4096", batch);
    net *n = calloc(1, sizeof *n);
    if (!n) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    n->batch = batch;
    int rc = p == NET_BF16         ? onednn_net_new(m, true, batch, threads, &n->dnn, err, errlen)
             : fp32_on_onednn() ? onednn_net_new(m, false, batch, threads, &n->dnn, err, errlen)
                                : xnnpack_net_new(m, batch, pool, &n->xnn, err, errlen);
    if (rc) {
        free(n);
        return rc;
    }
    *out = n;
    return IS_OK;
}

void net_free(net *n) {
    if (!n) return;
    xnnpack_net_free(n->xnn);
    onednn_net_free(n->dnn);
    free(n);
}

int net_batch(const net *n) { return n->batch; }

int net_run(net *n, const float *input, float *features, float *logits, char *err, size_t errlen) {
    return n->dnn ? onednn_net_run(n->dnn, input, features, logits, err, errlen)
                  : xnnpack_net_run(n->xnn, input, features, logits, err, errlen);
}
