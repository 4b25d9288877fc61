/* net_impl.h — the two network back ends behind net.h (internal to src/embed).
 *
 * xnnpack_net: float32 on XNNPACK, every x86-64 CPU (AVX2/AVX-512 kernels picked by XNNPACK);
 *              net.c uses it for fp32 below AVX-512.
 * onednn_net:  bfloat16 or float32 on oneDNN, for CPUs with AVX-512 (bf16 native with
 *              AVX512-BF16, emulated without it — correct but slower, so net.c only picks bf16
 *              by itself on BF16 CPUs); bf16 keeps the stem's output and the first depthwise
 *              convolution in f32 and rounds the spatial kernels' weights so their errors
 *              cancel; a batch runs its layers from 14 × 14 on batched, bit for bit as batch 1
 *              (net_onednn.c).
 *
 * Both obey net.h's contract (net_new has checked the batch: 1..4096): built for one model and
 * batch size, used by one thread at a time, the model outliving the net. Errors: IS_ERR_MODEL (the library refused a layer or the CPU),
 * IS_ERR_NOMEM, IS_ERR_INTERNAL (a run failed). */
#ifndef IMGSEARCH_NET_IMPL_H
#define IMGSEARCH_NET_IMPL_H

#include <pthreadpool.h>
#include <stdbool.h>
#include <stddef.h>

#include "embed/model.h"

typedef struct xnnpack_net xnnpack_net;
int xnnpack_global_init(char *err, size_t errlen);
int xnnpack_net_new(const model *m, int batch, pthreadpool_t pool, xnnpack_net **out, char *err, size_t errlen);
void xnnpack_net_free(xnnpack_net *n);
int xnnpack_net_run(xnnpack_net *n, const float *input, float *features, float *logits, char *err, size_t errlen);

typedef struct onednn_net onednn_net;
/* What oneDNN reports for this CPU (capped by DNNL_MAX_CPU_ISA when set). */
bool onednn_bf16_native(void);   /* AVX512-BF16 instructions */
bool onednn_bf16_possible(void); /* AVX-512 core: bf16 runs, emulated when not native */
bool onednn_f32_fast(void);      /* AVX-512 core: oneDNN's f32 beats XNNPACK's (net.c) */
/* bf16: bfloat16 (needs onednn_bf16_possible) or float32. threads: OpenMP threads each run uses
 * (set on the calling thread before every run). */
int onednn_net_new(const model *m, bool bf16, int batch, int threads, onednn_net **out, char *err, size_t errlen);
void onednn_net_free(onednn_net *n);
int onednn_net_run(onednn_net *n, const float *input, float *features, float *logits, char *err, size_t errlen);

#endif
