/* embed.h — image bytes → L2-normalised embedding and ImageNet class scores.
 *
 * Two objects:
 *  - embed_engine: the model (weights folded, labels) and preprocessing parameters. Immutable
 *    after embed_engine_new; share one across all threads. Free it after every session.
 *  - embed_session: one inference context (the networks for each batch size, built on first use
 *    and kept, and their threads). Use a session from one thread at a time; give each worker its
 *    own.
 *
 * Precision: bf16 runs on oneDNN with AVX-512; fp32 on oneDNN with AVX-512, else on XNNPACK
 * (src/embed/net_impl.h).
 * "auto" picks bf16 when the CPU has AVX512-BF16, else fp32. bf16 keeps the stem's output and the
 * first depthwise convolution in f32 and rounds the spatial kernels' weights so that their errors
 * cancel (net_onednn.c, bf16_round.h): that is where nearly all of its drift came from. On the 127
 * packaged photos and wallpapers (bench/precision.py) the stored vectors of both are within cosine
 * 0.996 (0.998 on small 160 × 120 crops; a flat grey square, with next to no activation, 0.92)
 * and the top class is the same but for near ties of the first two
 * (tests/unit/test_net.c, test_reference.py). So the precision is not part of the embedding's
 * identity: vectors of both mix in one index.
 *
 * The vector: global average pooling of the last feature map, then the head fitted beside the
 * model when there is one (embed/head.h: power normalisation, PCA whitening), L2-normalised.
 *
 * Memory: vectors, logits and tensors are caller-owned buffers of the sizes stated below. */
#ifndef IMGSEARCH_EMBED_H
#define IMGSEARCH_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "embed/decode.h"

typedef struct embed_engine embed_engine;
typedef struct embed_session embed_session;

typedef enum { EMBED_PRECISION_AUTO = 0, EMBED_PRECISION_FP32, EMBED_PRECISION_BF16 } embed_precision;

/* "auto", "fp32" or "bf16" → *out; -1 for anything else. */
int embed_precision_parse(const char *text, embed_precision *out);

/* Loads models/<name>.json and the .safetensors beside it, with the precision named by
 * IMGSEARCH_PRECISION (auto when unset). Errors: IS_ERR_MODEL with the reason; IS_ERR_INVALID for
 * a precision this CPU cannot run. */
int embed_engine_new(const char *model_config, embed_engine **out, char *err, size_t errlen);
void embed_engine_free(embed_engine *e);

/* Chooses the precision of sessions made from now on (call before any session exists).
 * AUTO resolves here. Errors: IS_ERR_INVALID when bf16 is forced on a CPU without AVX-512. */
int embed_engine_set_precision(embed_engine *e, embed_precision p, char *err, size_t errlen);
embed_precision embed_engine_precision(const embed_engine *e); /* resolved: FP32 or BF16 */
/* embed_engine_set_precision from a flag's text; NULL leaves the engine's choice as it is.
 * IS_ERR_INVALID names the accepted words. */
int embed_apply_precision(embed_engine *e, const char *text, char *err, size_t errlen);
const char *embed_precision_describe(const embed_engine *e);   /* e.g. "bf16 (oneDNN, AVX512-BF16)" */

/* The embedding's identity: "<model>" or "<model>+<head>" when models/<name>.head.json exists
 * (embed/head.h). Data directories record it; vectors of different identities never mix. */
const char *embed_model_name(const embed_engine *e);
/* The identity of the same network without a head: "<model>", what data directories made before
 * heads existed record. */
const char *embed_plain_name(const embed_engine *e);
/* Drops the head: from now on vectors are the L2-normalised pooled features ("<model>"), so that a
 * data directory of that embedding can still be searched. Call before any session exists. */
void embed_engine_drop_head(embed_engine *e);
int embed_dims(const embed_engine *e);          /* stored vector size: the head's, else the features' */
int embed_feature_dims(const embed_engine *e);  /* pooled feature size (1280 for Lite0) */
int embed_input_size(const embed_engine *e);    /* input is size × size × 3 */
int embed_num_classes(const embed_engine *e);
const char *embed_label(const embed_engine *e, int cls);
/* Preprocessing parameters for this model, with the given pixel limit (0 = default). */
decode_params embed_decode_params(const embed_engine *e, uint64_t max_pixels);

/* threads: 1 runs inference on the calling thread; n > 1 runs each inference on n threads. */
int embed_session_new(const embed_engine *e, int threads, embed_session **out, char *err, size_t errlen);
void embed_session_free(embed_session *s);

/* Runs n preprocessed tensors (n × size × size × 3 floats) through the network. vectors gets
 * n × dims L2-normalised embeddings; logits (may be NULL) gets n × num_classes raw scores. */
int embed_run(embed_session *s, const float *tensors, int n, float *vectors, float *logits,
              char *err, size_t errlen);

/* The pooled network features before any head or normalisation (n × embed_feature_dims floats):
 * what a head is fitted on (imgsearch embed --features). */
int embed_run_pooled(embed_session *s, const float *tensors, int n, float *features, char *err, size_t errlen);

/* Decode + preprocess + run for one encoded image. info may be NULL; logits may be NULL. */
int embed_image(embed_session *s, const void *bytes, size_t len, uint64_t max_pixels,
                float *vector, float *logits, decode_info *info, char *err, size_t errlen);

/* Softmax of logits into probs (both num_classes long), then the top k indices by probability. */
void embed_top_classes(const embed_engine *e, const float *logits, float *probs, int k, int *top);

#endif
