/* net.h — one XNNPACK runtime for a model at a fixed batch size (internal to src/embed).
 *
 * A net is used by one thread at a time (XNNPACK runtimes are not re-entrant); build one per
 * worker. It may share a pthreadpool with other nets of the same thread. The model must outlive it. */
#ifndef IMGSEARCH_NET_H
#define IMGSEARCH_NET_H

#include <pthreadpool.h>
#include <stddef.h>

#include "embed/model.h"

typedef struct net net;

/* Initialises XNNPACK once per process; safe to call from any thread, any number of times. */
int net_global_init(char *err, size_t errlen);

/* Builds the graph for `batch` images; pool may be NULL (run on the calling thread). */
int net_new(const model *m, int batch, pthreadpool_t pool, net **out, char *err, size_t errlen);
void net_free(net *n);
int net_batch(const net *n);

/* input: batch × S × S × 3 floats (NHWC, normalised). features: batch × dims (pooled, not
 * normalised). logits: batch × num_classes. All three are caller-owned. */
int net_run(net *n, const float *input, float *features, float *logits, char *err, size_t errlen);

#endif
