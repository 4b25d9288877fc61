/* `imgsearch embed` and `imgsearch classify`: run the engine over files, one JSON line each. */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "embed/embed.h"
#include "util/file.h"
#include "util/status.h"

/* Files larger than this are refused before reading (the server's upload limit is lower). */
#define CLI_MAX_FILE_BYTES (1024ull << 20)

typedef struct {
    const char *model;
    const char *precision;  /* NULL: $IMGSEARCH_PRECISION, else auto */
    int threads;
    int batch;
    int top;
    unsigned long long max_pixels;
    const char *dump_input; /* directory: write each preprocessed tensor as raw float32 NHWC */
    int features;           /* print pooled features (what a head is fitted on), not vectors */
} cli_opts;

const char *cli_default_model(void) {
    static char path[PATH_MAX];
    const char *env = getenv("IMGSEARCH_MODEL");
    if (env && *env) return env;
    return file_find_project("models/efficientnet_lite0.json", NULL, path, sizeof path);
}

static void print_json_string(const char *s) {
    json_t *j = json_string(s);
    char *out = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fputs(out ? out : "\"?\"", stdout);
    free(out);
    json_decref(j);
}

static void report_error(const char *file, int status, const char *msg) {
    fputs("{\"file\":", stdout);
    print_json_string(file);
    printf(",\"error\":\"%s\",\"message\":", is_status_name(status));
    print_json_string(msg);
    fputs("}\n", stdout);
    fprintf(stderr, "imgsearch: %s: %s\n", file, msg);
}

static void report_embedding(const char *file, const float *v, int dims) {
    fputs("{\"file\":", stdout);
    print_json_string(file);
    printf(",\"dims\":%d,\"vector\":[", dims);
    for (int d = 0; d < dims; d++) printf(d ? ",%.8g" : "%.8g", v[d]);
    fputs("]}\n", stdout);
}

static void report_classes(const embed_engine *e, const char *file, const float *logits, int top_k) {
    int nc = embed_num_classes(e);
    float *probs = malloc(sizeof(float) * (size_t)nc);
    int *top = malloc(sizeof(int) * (size_t)top_k);
    if (!probs || !top) {
        free(probs);
        free(top);
        report_error(file, IS_ERR_NOMEM, "out of memory");
        return;
    }
    embed_top_classes(e, logits, probs, top_k, top);
    fputs("{\"file\":", stdout);
    print_json_string(file);
    fputs(",\"top\":[", stdout);
    for (int j = 0; j < top_k && j < nc; j++) {
        printf("%s{\"class\":%d,\"label\":", j ? "," : "", top[j]);
        print_json_string(embed_label(e, top[j]));
        printf(",\"prob\":%.6f}", probs[top[j]]);
    }
    fputs("]}\n", stdout);
    free(probs);
    free(top);
}

static void usage(const char *cmd, FILE *f) {
    fprintf(f,
            "usage: imgsearch %s [OPTIONS] FILE...\n"
            "  --model PATH       model config (default: %s)\n"
            "  --threads N        inference threads (default 1)\n"
            "  --precision P      auto (bf16 on CPUs with AVX512-BF16, else fp32), fp32 or bf16\n"
            "  --batch N          images per inference batch (default 1)\n"
            "  --max-pixels N     refuse images with more pixels (default %llu)\n"
            "  --dump-input DIR   also write each preprocessed input tensor to DIR/<n>.f32\n"
            "                     (float32, size x size x 3, n counts files from 0)\n"
            "%s",
            cmd, cli_default_model(), DECODE_DEFAULT_MAX_PIXELS,
            strcmp(cmd, "classify") ? "  --features         print the pooled network features before the head and\n"
                                      "                     normalisation (what tools/fetch-model --fit-head fits on)\n"
                                    : "  --top K            classes to print (default 5)\n");
}

static int parse_opts(const char *cmd, int argc, char **argv, cli_opts *o) {
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"threads", required_argument, 0, 't'},
        {"batch", required_argument, 0, 'b'}, {"max-pixels", required_argument, 0, 'p'},
        {"top", required_argument, 0, 'k'},   {"help", no_argument, 0, 'h'},
        {"dump-input", required_argument, 0, 'd'}, {"features", no_argument, 0, 'f'},
        {"precision", required_argument, 0, 'r'},
        {0, 0, 0, 0}};
    *o = (cli_opts){.model = NULL, .threads = 1, .batch = 1, .top = 5, .max_pixels = 0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        long long v = 0;
        if (c != 'm' && c != 'd' && c != 'f' && c != 'r' && c != 'h' && c != '?') {
            v = strtoll(optarg, &end, 10);
            if (!*optarg || *end || v < 1) {
                fprintf(stderr, "imgsearch %s: '%s' is not a positive integer\n", cmd, optarg);
                return 2;
            }
        }
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'd': o->dump_input = optarg; break;
        case 'r': o->precision = optarg; break;
        case 'f': o->features = !strcmp(cmd, "embed"); break;
        case 't': o->threads = v > 256 ? 256 : (int)v; break;
        case 'b': o->batch = v > 256 ? 256 : (int)v; break;
        case 'p': o->max_pixels = (unsigned long long)v; break;
        case 'k': o->top = v > 1000 ? 1000 : (int)v; break;
        case 'h': usage(cmd, stdout); return 1;
        default: usage(cmd, stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(cmd, stderr);
        return 2;
    }
    if (!o->model) o->model = cli_default_model();
    return 0;
}

static int dump_tensor(const char *dir, int index, const float *t, size_t n, char *err, size_t errlen) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%d.f32", dir, index);
    FILE *f = fopen(path, "wb");
    if (!f) return is_fail(err, errlen, IS_ERR_IO, "cannot write %s", path);
    size_t w = fwrite(t, sizeof *t, n, f);
    if (fclose(f) != 0 || w != n) return is_fail(err, errlen, IS_ERR_IO, "cannot write %s", path);
    return IS_OK;
}

/* Decodes up to batch files into tensors, runs them together, prints one line per file. */
static int run_files(const char *cmd, int classify, int argc, char **argv) {
    cli_opts o;
    int rc = parse_opts(cmd, argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    char err[512];
    embed_engine *e = NULL;
    embed_session *s = NULL;
    if ((rc = embed_engine_new(o.model, &e, err, sizeof err)) ||
        (rc = embed_apply_precision(e, o.precision, err, sizeof err)) ||
        (rc = embed_session_new(e, o.threads, &s, err, sizeof err))) {
        fprintf(stderr, "imgsearch %s: %s\n", cmd, err);
        embed_engine_free(e);
        return 2;
    }
    int dims = o.features ? embed_feature_dims(e) : embed_dims(e), nc = embed_num_classes(e), size = embed_input_size(e);
    size_t tlen = (size_t)size * (size_t)size * 3;
    float *tensors = malloc(sizeof(float) * tlen * (size_t)o.batch);
    float *vectors = malloc(sizeof(float) * (size_t)dims * (size_t)o.batch);
    float *logits = malloc(sizeof(float) * (size_t)nc * (size_t)o.batch);
    /* one slot per file read in a window: at most batch successes plus the failures among them */
    struct slot {
        int status;
        char message[512];
    } *slots = malloc(sizeof(struct slot) * (size_t)(argc - optind));
    int failed = 0;
    if (!tensors || !vectors || !logits || !slots) {
        fprintf(stderr, "imgsearch %s: out of memory\n", cmd);
        failed = 1;
        goto done;
    }
    decode_params dp = embed_decode_params(e, o.max_pixels);
    /* Results are printed in input order: a file that fails to decode is reported in its place
     * among the successes of the batch it was read with. */
    for (int i = optind; i < argc;) {
        int n = 0, first = i;
        for (; i < argc && n < o.batch; i++) {
            unsigned char *buf = NULL;
            size_t len = 0;
            rc = file_read_all(argv[i], CLI_MAX_FILE_BYTES, &buf, &len, err, sizeof err);
            if (!rc) rc = decode_preprocess(buf, len, &dp, tensors + tlen * (size_t)n, NULL, err, sizeof err);
            free(buf);
            if (!rc && o.dump_input)
                rc = dump_tensor(o.dump_input, i - optind, tensors + tlen * (size_t)n, tlen, err, sizeof err);
            slots[i - first].status = rc;
            if (rc) {
                snprintf(slots[i - first].message, sizeof slots[i - first].message, "%s", err);
                failed = 1;
                continue;
            }
            n++;
        }
        int run_rc = !n ? IS_OK
                     : o.features ? embed_run_pooled(s, tensors, n, vectors, err, sizeof err)
                                  : embed_run(s, tensors, n, vectors, logits, err, sizeof err);
        for (int f = first, j = 0; f < i; f++) {
            if (slots[f - first].status) {
                report_error(argv[f], slots[f - first].status, slots[f - first].message);
            } else if (run_rc) {
                report_error(argv[f], run_rc, err);
                failed = 1;
            } else if (classify) {
                report_classes(e, argv[f], logits + (size_t)nc * (size_t)j++, o.top);
            } else {
                report_embedding(argv[f], vectors + (size_t)dims * (size_t)j++, dims);
            }
        }
        fflush(stdout);
    }
done:
    free(tensors);
    free(vectors);
    free(logits);
    free(slots);
    embed_session_free(s);
    embed_engine_free(e);
    return failed;
}

int cli_embed(int argc, char **argv) { return run_files("embed", 0, argc, argv); }
int cli_classify(int argc, char **argv) { return run_files("classify", 1, argc, argv); }
