/* bench_embed — timing harness for the embedding engine; bench/embed.py drives it.
 *
 *   bench_embed infer --model M --threads T --batch B --seconds S --input FILE.f32 [--logits OUT]
 *                     [--vectors OUT] [--features OUT] [--no-logits]
 *       Throughput of embed_run: loads B preprocessed tensors (raw float32 NHWC size×size×3,
 *       concatenated; repeated when FILE holds fewer), warms up, then calls embed_run on the
 *       whole batch for about S seconds. Prints {"images_per_sec":...,...}. --logits writes
 *       the batch's raw class scores (B × classes float32) and --vectors its embeddings
 *       (B × dims float32) and --features its pooled features before the head (B × feature dims,
 *       one more run), so the driver can compare precisions. --no-logits asks for none,
 *       as a search does (the bf16 net then skips the classifier).
 *   bench_embed decode --model M --iters N FILE
 *       Latency of decode_preprocess (decode, shrink, centre crop, normalise) of FILE, read into
 *       memory once; one warm-up call, then N timed calls. Prints {"ms_per_image":...,...}.
 *
 * Clock: CLOCK_MONOTONIC. This is a bench: it prints figures and judges none of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "embed/decode.h"
#include "embed/embed.h"
#include "util/file.h"

#define MAX_FILE_BYTES (1024ull << 20)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int usage(void) {
    fputs("usage: bench_embed infer --model M --threads T --batch B --seconds S --input FILE.f32"
          " [--logits OUT] [--vectors OUT] [--features OUT] [--no-logits]\n"
          "       bench_embed decode --model M --iters N FILE\n",
          stderr);
    return 2;
}

typedef struct {
    const char *model, *input, *logits_out, *vectors_out, *features_out, *file;
    int threads, batch, iters;
    double seconds;
    int no_logits;
} opts;

static int parse(int argc, char **argv, opts *o) {
    *o = (opts){.threads = 1, .batch = 1, .iters = 10, .seconds = 5};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            o->file = a;
            continue;
        }
        if (!strcmp(a, "--no-logits")) {
            o->no_logits = 1;
            continue;
        }
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--input")) o->input = v;
        else if (!strcmp(a, "--logits")) o->logits_out = v;
        else if (!strcmp(a, "--vectors")) o->vectors_out = v;
        else if (!strcmp(a, "--features")) o->features_out = v;
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--batch")) o->batch = atoi(v);
        else if (!strcmp(a, "--iters")) o->iters = atoi(v);
        else if (!strcmp(a, "--seconds")) o->seconds = atof(v);
        else return usage();
    }
    if (!o->model || o->threads < 1 || o->batch < 1 || o->iters < 1 || !(o->seconds > 0))
        return usage();
    return 0;
}

static int write_floats(const char *path, const float *f, size_t n) {
    FILE *out = fopen(path, "wb");
    if (!out) return -1;
    size_t w = fwrite(f, sizeof *f, n, out);
    return fclose(out) != 0 || w != n ? -1 : 0;
}

static int bench_infer(embed_engine *e, const opts *o) {
    char err[512];
    if (!o->input) return usage();
    size_t tlen = (size_t)embed_input_size(e) * (size_t)embed_input_size(e) * 3;
    unsigned char *raw = NULL;
    size_t len = 0;
    if (file_read_all(o->input, MAX_FILE_BYTES, &raw, &len, err, sizeof err)) {
        fprintf(stderr, "bench_embed: %s\n", err);
        return 1;
    }
    size_t have = len / (tlen * sizeof(float)), b = (size_t)o->batch;
    if (!have || len % (tlen * sizeof(float))) {
        fprintf(stderr, "bench_embed: %s is not a whole number of %zu-float tensors\n", o->input, tlen);
        free(raw);
        return 1;
    }
    float *tensors = malloc(sizeof(float) * tlen * b);
    float *vectors = malloc(sizeof(float) * (size_t)embed_dims(e) * b);
    float *logits = malloc(sizeof(float) * (size_t)embed_num_classes(e) * b);
    embed_session *s = NULL;
    int rc = 1;
    if (!tensors || !vectors || !logits) {
        fputs("bench_embed: out of memory\n", stderr);
        goto done;
    }
    for (size_t i = 0; i < b; i++)
        memcpy(tensors + i * tlen, raw + (i % have) * tlen * sizeof(float), tlen * sizeof(float));
    if (embed_session_new(e, o->threads, &s, err, sizeof err)) goto fail;

    /* Warm-up: the first call builds the network for this batch size; 20 calls, as every peer
     * gets in bench/embed.py. */
    for (int i = 0; i < 20; i++)
        if (embed_run(s, tensors, o->batch, vectors, o->no_logits ? NULL : logits, err, sizeof err)) goto fail;
    long runs = 0;
    double t0 = now_s(), t = t0;
    do {
        if (embed_run(s, tensors, o->batch, vectors, o->no_logits ? NULL : logits, err, sizeof err)) goto fail;
        runs++;
        t = now_s();
    } while (t - t0 < o->seconds);
    printf("{\"images_per_sec\":%.3f,\"ms_per_batch\":%.3f,\"batches\":%ld,\"seconds\":%.3f,"
           "\"batch\":%d,\"threads\":%d}\n",
           (double)runs * o->batch / (t - t0), (t - t0) * 1e3 / (double)runs, runs, t - t0,
           o->batch, o->threads);
    if (o->logits_out && !o->no_logits && write_floats(o->logits_out, logits, (size_t)embed_num_classes(e) * b)) {
        fprintf(stderr, "bench_embed: cannot write %s\n", o->logits_out);
        goto done;
    }
    if (o->vectors_out && write_floats(o->vectors_out, vectors, (size_t)embed_dims(e) * b)) {
        fprintf(stderr, "bench_embed: cannot write %s\n", o->vectors_out);
        goto done;
    }
    if (o->features_out) {
        size_t nf = (size_t)embed_feature_dims(e) * b;
        float *features = malloc(sizeof(float) * nf);
        if (!features || embed_run_pooled(s, tensors, o->batch, features, err, sizeof err)) {
            free(features);
            if (!features) snprintf(err, sizeof err, "out of memory");
            goto fail;
        }
        int w = write_floats(o->features_out, features, nf);
        free(features);
        if (w) {
            fprintf(stderr, "bench_embed: cannot write %s\n", o->features_out);
            goto done;
        }
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_embed: %s\n", err);
done:
    embed_session_free(s);
    free(tensors);
    free(vectors);
    free(logits);
    free(raw);
    return rc;
}

static int bench_decode(embed_engine *e, const opts *o) {
    char err[512];
    if (!o->file) return usage();
    unsigned char *buf = NULL;
    size_t len = 0;
    if (file_read_all(o->file, MAX_FILE_BYTES, &buf, &len, err, sizeof err)) {
        fprintf(stderr, "bench_embed: %s\n", err);
        return 1;
    }
    decode_params p = embed_decode_params(e, 0);
    float *out = malloc(sizeof(float) * (size_t)p.size * (size_t)p.size * 3);
    decode_info info;
    int rc = 1;
    if (!out) {
        fputs("bench_embed: out of memory\n", stderr);
        goto done;
    }
    if (decode_preprocess(buf, len, &p, out, &info, err, sizeof err)) goto fail; /* warm-up */
    double best = 1e30, t0 = now_s();
    for (int i = 0; i < o->iters; i++) {
        double a = now_s();
        if (decode_preprocess(buf, len, &p, out, &info, err, sizeof err)) goto fail;
        double d = now_s() - a;
        best = d < best ? d : best;
    }
    double total = now_s() - t0;
    printf("{\"ms_per_image\":%.3f,\"ms_min\":%.3f,\"iters\":%d,\"width\":%d,\"height\":%d,"
           "\"format\":\"%s\"}\n",
           total * 1e3 / o->iters, best * 1e3, o->iters, info.width, info.height, info.format);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_embed: %s\n", err);
done:
    free(out);
    free(buf);
    return rc;
}

int main(int argc, char **argv) {
    opts o;
    if (argc < 2) return usage();
    if (parse(argc, argv, &o)) return 2;
    char err[512];
    embed_engine *e = NULL;
    if (embed_engine_new(o.model, &e, err, sizeof err)) {
        fprintf(stderr, "bench_embed: %s\n", err);
        return 1;
    }
    int rc;
    if (!strcmp(argv[1], "infer")) rc = bench_infer(e, &o);
    else if (!strcmp(argv[1], "decode")) rc = bench_decode(e, &o);
    else rc = usage();
    embed_engine_free(e);
    return rc;
}
