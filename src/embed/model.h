/* model.h — an EfficientNet-Lite network ready for inference (internal to src/embed).
 *
 * model_load reads models/<name>.json and the .safetensors next to it, checks every tensor's
 * shape against the architecture the config describes, folds each BatchNorm into the convolution
 * before it and re-lays weights out for NHWC (XNNPACK's layout). The result is immutable: any
 * number of threads may build runtimes from one model at the same time, and the model must
 * outlive every runtime built from it (XNNPACK keeps pointers to the weights). */
#ifndef IMGSEARCH_MODEL_H
#define IMGSEARCH_MODEL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int kernel, stride;
    int cin, cout;
    bool depthwise;          /* weights [1][k][k][c]; otherwise [cout][k][k][cin] */
    bool relu6;              /* clamp the output to [0, 6] */
    int in_size, out_size;   /* spatial size (square) before and after */
    int pad_top, pad_left, pad_bottom, pad_right; /* TensorFlow "SAME" for in_size */
    float *weight;           /* BatchNorm folded in */
    float *bias;
} model_conv;

typedef struct {
    bool has_expand;
    model_conv expand, depthwise, project;
    bool residual;           /* stride 1 and cin == cout: output = project + input */
} model_block;

typedef struct model {
    char name[64];
    int input_size;
    double crop_fraction;
    float mean[3], std[3];   /* in 0..255 pixel units */
    model_conv stem;
    model_block *blocks;
    int nblocks;
    model_conv head;
    int dims;                /* head channels = embedding size */
    int num_classes;
    float *fc_weight;        /* [num_classes][dims] */
    float *fc_bias;
    char **labels;           /* num_classes names */
} model;

int model_load(const char *config_path, model **out, char *err, size_t errlen);
void model_free(model *m);

#endif
