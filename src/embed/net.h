/* net.h — the network at a fixed batch size on one of two back ends (internal to src/embed).
 *
 * NET_BF16 runs on oneDNN (net_onednn.c). NET_FP32 runs on oneDNN too where it has AVX-512
 * kernels, else on XNNPACK (net_xnnpack.c); net_impl.h says why each. net_pick_precision turns
 * "auto" into what this CPU does best.
 *
 * A net is used by one thread at a time (neither library's runtimes are re-entrant); build one
 * per worker. An XNNPACK net may share a pthreadpool with other nets of the same thread (pass one
 * only when net_uses_pool says so); a oneDNN net runs on `threads` OpenMP threads. The model must
 * outlive the net. */
#ifndef IMGSEARCH_NET_H
#define IMGSEARCH_NET_H

#include <pthreadpool.h>
#include <stdbool.h>
#include <stddef.h>

#include "embed/model.h"

typedef enum { NET_AUTO = 0, NET_FP32, NET_BF16 } net_precision;

typedef struct net net;

/* Initialises XNNPACK once per process; safe to call from any thread, any number of times. */
int net_global_init(char *err, size_t errlen);

/* AUTO → BF16 when the CPU has AVX512-BF16, else FP32. A forced BF16 on a CPU without AVX-512 is
 * IS_ERR_INVALID (with AVX-512 but no BF16 it runs, emulated). */
int net_pick_precision(net_precision asked, net_precision *out, char *err, size_t errlen);
/* Words for logs and /index/status: "fp32 (oneDNN, AVX-512)", "fp32 (XNNPACK)",
 * "bf16 (oneDNN, AVX512-BF16)", ... */
const char *net_precision_describe(net_precision p);
/* Whether nets of precision p run on XNNPACK, whose threads are a pthreadpool (net_new's pool). */
bool net_uses_pool(net_precision p);

/* Builds the network for `batch` images. pool (XNNPACK) may be NULL: run on the calling thread.
 * threads (oneDNN): OpenMP threads per run. */
int net_new(const model *m, int batch, net_precision p, pthreadpool_t pool, int threads, net **out,
            char *err, size_t errlen);
void net_free(net *n);
int net_batch(const net *n);

/* input: batch × S × S × 3 floats (NHWC, normalised). features: batch × dims (pooled, not
 * normalised). logits: batch × num_classes, or NULL when the caller wants none: a oneDNN net then
 * skips the classifier (a 1000 × dims weight stream per image, ~5 % of a run); an XNNPACK net,
 * one runtime, runs it into a buffer of its own. All are caller-owned. */
int net_run(net *n, const float *input, float *features, float *logits, char *err, size_t errlen);

#endif
