/* head.h — what turns the network's pooled features into the vector we store and compare
 * (internal to src/embed).
 *
 * Globally average-pooled CNN features share a large common component: every vector points
 * roughly the same way, so cosine similarities crowd into a narrow band and a few dominant
 * channels decide the ranking. A head fitted on a reference set of images removes that:
 *   signed square root ("power" normalisation, optional) → L2 → minus the reference mean →
 *   projection on the top principal directions, each divided by (a power of) its standard
 *   deviation (PCA whitening) → L2.
 * The parameters live beside the model: models/<name>.head.json names the head and its settings,
 * models/<name>.head.safetensors holds "mean" [in_dims] and "projection" [dims][in_dims]
 * (float32). tools/fetch-model --fit-head fits them (see there for the reference set).
 *
 * Without a head file the vector is the L2-normalised pooled feature, as before heads existed.
 *
 * The embedding's identity (stored in every data directory) is "<model>" without a head and
 * "<model>+<head name>" with one, so a store made with another embedding is recognised.
 *
 * Ownership: head_load returns an immutable object (free with head_free); head_apply only reads
 * it, so any number of threads may apply one head at once. head_load keeps a bfloat16 copy of
 * the projection (1.3 MB) beside the mapped float32 one. */
#ifndef IMGSEARCH_HEAD_H
#define IMGSEARCH_HEAD_H

#include <stdbool.h>
#include <stddef.h>

typedef struct head head;

/* Loads the head described by json_path, which must take in_dims features. *out stays NULL
 * (and IS_OK is returned) when json_path does not exist. Errors: IS_ERR_MODEL with the reason. */
int head_load(const char *json_path, int in_dims, head **out, char *err, size_t errlen);
void head_free(head *h);

const char *head_name(const head *h);
int head_dims(const head *h);

/* n images' features ([n][in_dims] floats, consumed as scratch) → out ([n][head_dims] floats,
 * each of unit length). reduced: project with the weights rounded to bfloat16 (half the memory
 * traffic; the engine's bf16 precision uses it), otherwise float32. */
void head_apply(const head *h, bool reduced, float *features, int n, float *out);

/* L2-normalises v in place (zeros stay zeros). */
void head_l2(float *v, int n);

#endif
