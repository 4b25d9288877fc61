/* net_onednn.c — the network on oneDNN primitives in bfloat16, or in float32 (see net_impl.h).
 *
 * Why oneDNN here: its convolutions have bf16 kernels for AVX512-BF16 (vdpbf16ps, the brgemm
 * "brgconv" family) with the bias, the ReLU6 clamp and the residual sum fused in. The XNNPACK
 * Debian ships (2022) has no bf16 path on x86. OpenVINO's CPU plugin runs the same kernels on
 * this model (its per-layer profile matches ours), so the difference is in what surrounds them.
 *
 * Layout of one run: a reorder turns the caller's float32 NHWC input into bf16 for the stem,
 * which writes float32 for the first depthwise convolution; that one runs in f32, and a reorder
 * turns its output bf16. From there every convolution reads and writes bf16 in the layout oneDNN
 * picked, cycling through three activation buffers (a block's input stays alive for its
 * residual, which the project convolution adds in place with a sum post-op). The head convolution
 * writes float32, the average pool stays float32, and a reorder hands the pooled features to the
 * caller in plain [batch][dims] order. The classifier is a bf16 inner product on those features
 * with float32 logits, skipped when the caller wants no logits.
 *
 * A batch runs its early layers one image at a time and the layers from the first one at 14 × 14
 * (TAIL_MAX_SIZE) on all its images at once: each image's early result is copied into its slot
 * of a handoff tensor the tail reads whole. Results are bit for bit those of batch 1.
 *
 * Where the precision goes: rounding one layer at a time to bf16 (in PyTorch, on the 127 packaged
 * photos and wallpapers of bench/precision.py) showed that nearly all of bf16's drift from fp32
 * came from the stem's weights and output and from the first two depthwise convolutions'
 * weights. A depthwise convolution sums 9 products into a result much smaller than its terms once
 * BN is folded in, so each weight's independent rounding error swamps it. The stem's output stays
 * f32 (the first depthwise convolution amplifies its rounding: rounded, features fall to 0.988).
 * The spatial kernels' weights, the stem's and every bf16 depthwise convolution's, are rounded
 * so that their errors cancel on smooth patches (bf16_round.h) instead of each to its nearest:
 * that keeps the pooled features as close to fp32 as 16-bit weights in those layers did (lowest
 * cosine 0.9985 against 0.9983; rounded to nearest, 0.972), and lets the stem run in bf16 and the
 * second depthwise convolution in one bf16 step instead of two, 4 to 5 % of a run.
 *
 * A float32 net (fp32 on AVX-512 CPUs, net.c) is the same graph with every type float32: no
 * reorders between layers, no rounding of weights.
 *
 * Weights are converted once per net, to the net's type in the layout each primitive asked for;
 * the lanes of one net (below) share the first lane's.
 *
 * Threads: oneDNN is built on OpenMP here. A graph is planned for the thread count current when
 * its primitives are made, so graph_new and every run set the calling thread's OpenMP count. */
#include "embed/net_impl.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/bf16_round.h"
#include "util/status.h"

#define MAX_STEPS 256
#define MAX_MEMS 512
#define NBUF 3

typedef struct {
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[6];
} step;

/* `tail_batch` images on `threads` OpenMP threads: the layers before tail_step one image at a
 * time, each image's result copied into its slot of the handoff tensor; from tail_step on, all
 * of them at once (see TAIL_MAX_SIZE). With tail_batch 1 there is no handoff and tail_step is 0. */
typedef struct graph {
    int batch, threads; /* batch: images a run of the steps from tail_step on processes */
    dnnl_data_type_t act; /* the activations' and weights' type: dnnl_bf16 or dnnl_f32 */
    int tail_batch, tail_step;
    dnnl_memory_t handoff_slot; /* one image's slot of handoff_buf: handle set per image */
    void *handoff_buf;
    size_t handoff_slice; /* bytes per image in handoff_buf */
    const model *m;
    dnnl_stream_t stream;
    step steps[MAX_STEPS];
    int nsteps;
    dnnl_memory_t mems[MAX_MEMS]; /* every memory object, freed at the end */
    int nmems;
    /* Activation memories point into bufs[]; handles are set once all sizes are known. */
    dnnl_memory_t act_mem[MAX_MEMS];
    int act_buf[MAX_MEMS];
    int nact;
    void *bufs[NBUF];
    size_t buf_size;
    dnnl_memory_t scratch_mem[MAX_STEPS];
    int nscratch;
    void *scratch;
    size_t scratch_size;
    dnnl_memory_t input;    /* the caller's f32 NHWC tensor: handle set per run */
    dnnl_memory_t features; /* the caller's f32 [batch][dims]: handle set per run */
    dnnl_memory_t logits;   /* the caller's f32 [batch][num_classes]: handle set per run */
    void *pooled_buf;       /* f32 pooled features in the pool's layout */
    int classifier_step;    /* steps from here on compute the logits, skipped when none are wanted */
    dnnl_memory_t weights[MAX_STEPS]; /* in layer order; owned (in mems) unless borrowed */
    int nweights;
} graph;

#define MAX_LANES 64

/* A batch runs its early layers image by image and its late ones batched (TAIL_MAX_SIZE). With
 * several threads and several images, each thread takes its own share of the images on its own
 * graph (a lane), all lanes reading the first lane's weights; one image on several threads splits
 * each layer instead. Measured at batch 8 on 2 threads (before the batched tail): lanes 665
 * images/s (615 with a weights copy per lane), one batched graph 579, batch-1 graph on 2 threads
 * in a loop 501. */
struct onednn_net {
    int batch, threads, nlanes;
    graph *lanes[MAX_LANES];
    int first[MAX_LANES]; /* lane k takes images first[k] .. first[k] + lanes[k]->tail_batch - 1 */
};

typedef struct {
    graph *n;
    const graph *share; /* lanes after the first read the first lane's weights */
    int next_weights;   /* the next of share->weights to use */
    int mb;             /* images per step being built: 1 before the tail, tail_batch from it */
    dnnl_status_t st;
    char what[96]; /* the step that failed */
} builder;

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t cpu_engine;
static dnnl_status_t engine_status = dnnl_runtime_error;

static void engine_init(void) { engine_status = dnnl_engine_create(&cpu_engine, dnnl_cpu, 0); }

bool onednn_bf16_native(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

bool onednn_bf16_possible(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
}

bool onednn_f32_fast(void) { return onednn_bf16_possible(); }

static bool ok(builder *b, dnnl_status_t st, const char *what) {
    if (b->st != dnnl_success) return false;
    b->st = st;
    if (st != dnnl_success) snprintf(b->what, sizeof b->what, "%s", what);
    return st == dnnl_success;
}

static dnnl_memory_t track(builder *b, dnnl_memory_t mem) {
    if (b->n->nmems < MAX_MEMS) {
        b->n->mems[b->n->nmems++] = mem;
        return mem;
    }
    dnnl_memory_destroy(mem); /* never with Lite0..Lite4: ~100 memories */
    b->st = dnnl_out_of_memory;
    snprintf(b->what, sizeof b->what, "too many tensors");
    return NULL;
}

static dnnl_memory_t memory(builder *b, const dnnl_memory_desc_t *md, void *handle, const char *what) {
    dnnl_memory_t mem = NULL;
    if (!ok(b, dnnl_memory_create(&mem, md, cpu_engine, handle), what)) return NULL;
    return track(b, mem);
}

/* An activation tensor living in buffer `buf` (0..NBUF-1). */
static dnnl_memory_t activation(builder *b, const dnnl_memory_desc_t *md, int buf) {
    graph *n = b->n;
    dnnl_memory_t mem = memory(b, md, DNNL_MEMORY_NONE, "activation memory");
    if (!mem || n->nact >= MAX_MEMS) return NULL;
    n->act_mem[n->nact] = mem;
    n->act_buf[n->nact++] = buf;
    size_t size = dnnl_memory_desc_get_size(md);
    if (size > n->buf_size) n->buf_size = size;
    return mem;
}

static void add_step(builder *b, dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args) {
    graph *n = b->n;
    if (n->nsteps >= MAX_STEPS) {
        dnnl_primitive_destroy(prim);
        b->st = dnnl_out_of_memory;
        snprintf(b->what, sizeof b->what, "too many layers");
        return;
    }
    step *s = &n->steps[n->nsteps++];
    s->prim = prim;
    s->nargs = nargs;
    memcpy(s->args, args, (size_t)nargs * sizeof *args);
}

/* The primitive for pd, its scratchpad argument appended to args; pd is consumed. */
static void add_primitive(builder *b, dnnl_primitive_desc_t pd, int nargs, dnnl_exec_arg_t *args) {
    graph *n = b->n;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (n->nsteps >= MAX_STEPS) { /* add_step would refuse it: keep scratch_mem in bounds */
        b->st = dnnl_out_of_memory;
        snprintf(b->what, sizeof b->what, "too many layers");
        goto out;
    }
    if (smd && smd->ndims > 0) {
        size_t size = dnnl_memory_desc_get_size(smd);
        dnnl_memory_t sm = memory(b, smd, DNNL_MEMORY_NONE, "scratchpad memory");
        if (!sm) goto out;
        n->scratch_mem[n->nscratch++] = sm;
        if (size > n->scratch_size) n->scratch_size = size;
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, sm};
    }
    dnnl_primitive_t prim = NULL;
    if (ok(b, dnnl_primitive_create(&prim, pd), "primitive")) add_step(b, prim, nargs, args);
out:
    dnnl_primitive_desc_destroy(pd);
}

static dnnl_primitive_attr_t attr_new(builder *b, bool relu6, bool sum) {
    dnnl_primitive_attr_t attr = NULL;
    if (!ok(b, dnnl_primitive_attr_create(&attr), "attributes")) return NULL;
    ok(b, dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad mode");
    if (relu6 || sum) {
        dnnl_post_ops_t po = NULL;
        if (ok(b, dnnl_post_ops_create(&po), "post-ops")) { /* the clip applies to the sum */
            if (sum) ok(b, dnnl_post_ops_append_sum(po, 1.0f), "sum");
            if (relu6) ok(b, dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, 0.0f, 6.0f), "ReLU6");
            ok(b, dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
            dnnl_post_ops_destroy(po);
        }
    }
    if (b->st != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    return attr;
}

/* Runs a reorder once, now (weights conversion at build time). */
static void reorder_now(builder *b, dnnl_memory_t from, dnnl_memory_t to) {
    const dnnl_memory_desc_t *fmd, *tmd;
    if (!ok(b, dnnl_memory_get_memory_desc(from, &fmd), "reorder") ||
        !ok(b, dnnl_memory_get_memory_desc(to, &tmd), "reorder"))
        return;
    dnnl_primitive_desc_t pd = NULL;
    if (!ok(b, dnnl_reorder_primitive_desc_create(&pd, fmd, cpu_engine, tmd, cpu_engine, NULL), "weights reorder"))
        return;
    dnnl_primitive_t prim = NULL;
    if (ok(b, dnnl_primitive_create(&prim, pd), "weights reorder")) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        if (ok(b, dnnl_primitive_execute(prim, b->n->stream, 2, args), "weights reorder"))
            ok(b, dnnl_stream_wait(b->n->stream), "weights reorder");
        dnnl_primitive_destroy(prim);
    }
    dnnl_primitive_desc_destroy(pd);
}

/* A reorder step in the run: from → to. */
static void reorder_step(builder *b, dnnl_memory_t from, dnnl_memory_t to) {
    const dnnl_memory_desc_t *fmd, *tmd;
    if (!ok(b, dnnl_memory_get_memory_desc(from, &fmd), "reorder") ||
        !ok(b, dnnl_memory_get_memory_desc(to, &tmd), "reorder"))
        return;
    dnnl_primitive_attr_t attr = attr_new(b, false, false);
    if (!attr) return;
    dnnl_primitive_desc_t pd = NULL;
    if (ok(b, dnnl_reorder_primitive_desc_create(&pd, fmd, cpu_engine, tmd, cpu_engine, attr), "reorder")) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        add_primitive(b, pd, 2, args);
    }
    dnnl_primitive_attr_destroy(attr);
}

/* The weights pd asks for, from the model's floats (`logical` gives them in oneDNN's logical
 * order, the caller frees them) or, on a later lane, the first lane's very memory: the lanes run
 * at once, and one copy in the caches serves both. */
static dnnl_memory_t weights(builder *b, const_dnnl_primitive_desc_t pd, const dnnl_memory_desc_t *user_md,
                             const float *(*logical)(const void *ctx, float **owned), const void *ctx) {
    graph *n = b->n;
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_memory_t wk = NULL;
    if (b->share && b->next_weights < b->share->nweights) {
        const dnnl_memory_desc_t *smd;
        dnnl_memory_t cand = b->share->weights[b->next_weights++];
        if (dnnl_memory_get_memory_desc(cand, &smd) == dnnl_success && dnnl_memory_desc_equal(smd, md)) wk = cand;
    }
    if (!wk) {
        float *owned = NULL;
        const float *data = logical(ctx, &owned);
        dnnl_memory_t wu = NULL;
        if (!data) {
            b->st = dnnl_out_of_memory;
            snprintf(b->what, sizeof b->what, "weights");
        } else if (ok(b, dnnl_memory_create(&wu, user_md, cpu_engine, (void *)data), "weights memory")) {
            wk = memory(b, md, DNNL_MEMORY_ALLOCATE, "weights memory");
            if (wk) reorder_now(b, wu, wk);
            dnnl_memory_destroy(wu);
        }
        free(owned);
    }
    if (wk && n->nweights < MAX_STEPS) n->weights[n->nweights++] = wk;
    return b->st == dnnl_success ? wk : NULL;
}

/* How many weights a convolution has. */
static size_t weight_count(const model_conv *c) {
    return (size_t)c->cout * (size_t)(c->kernel * c->kernel) * (size_t)(c->depthwise ? 1 : c->cin);
}

/* The convolution's weights in oneDNN's logical order: dense [cout][cin][k][k] (OIHW), depthwise
 * [c][1][1][k][k] (GOIHW). The model keeps dense as [cout][k][k][cin] and depthwise as
 * [k][k][c]. Returns a malloc'd float array. */
static float *logical_weights(const model_conv *c) {
    int k = c->kernel;
    float *w = malloc(weight_count(c) * sizeof *w);
    if (!w) return NULL;
    if (c->depthwise) {
        for (int ch = 0; ch < c->cout; ch++)
            for (int y = 0; y < k; y++)
                for (int x = 0; x < k; x++)
                    w[((size_t)ch * (size_t)k + (size_t)y) * (size_t)k + (size_t)x] =
                        c->weight[((size_t)y * (size_t)k + (size_t)x) * (size_t)c->cout + (size_t)ch];
    } else {
        for (int o = 0; o < c->cout; o++)
            for (int y = 0; y < k; y++)
                for (int x = 0; x < k; x++)
                    for (int i = 0; i < c->cin; i++)
                        w[(((size_t)o * (size_t)c->cin + (size_t)i) * (size_t)k + (size_t)y) * (size_t)k + (size_t)x] =
                            c->weight[(((size_t)o * (size_t)k + (size_t)y) * (size_t)k + (size_t)x) * (size_t)c->cin + (size_t)i];
    }
    return w;
}

static const float *conv_weights(const void *ctx, float **owned) { return *owned = logical_weights(ctx); }

/* The weights rounded to bfloat16 so that their errors cancel on smooth images (bf16_round.h),
 * kept in floats bfloat16 holds exactly, so the reorder to bf16 changes nothing. */
static const float *smooth_weights(const void *ctx, float **owned) {
    const model_conv *c = ctx;
    float *w = *owned = logical_weights(c);
    if (w && bf16_round_smooth(w, c->cout, c->depthwise ? 1 : c->cin, c->kernel))
        for (size_t i = 0, count = weight_count(c); i < count; i++) w[i] = bf16_nearest(w[i]);
    return w;
}
static const float *fc_weights(const void *ctx, float **owned) {
    *owned = NULL;
    return ((const model *)ctx)->fc_weight; /* [classes][dims] is already oneDNN's OIHW */
}

/* How a convolution's weights become the kernel's type: as they are (f32), or rounded to bf16 one
 * by one by oneDNN's reorder (WEIGHTS_NEAREST) or by bf16_round_smooth (WEIGHTS_SMOOTH, for
 * spatial kernels: the stem and the depthwise convolutions). */
typedef enum { WEIGHTS_NEAREST, WEIGHTS_SMOOTH } weights_rounding;

/* Adds one convolution reading `src`, with weights of src's type (f32 or bf16: oneDNN has no
 * mixed kernels). dst_into NULL: oneDNN picks the layout (of type dst_type); otherwise the result
 * goes to `dst_into` with that exact descriptor, summed into what it holds when `sum`. Returns the
 * output memory (in buffer out_buf unless dst_into is given). */
static dnnl_memory_t conv_rounded(builder *b, const model_conv *c, weights_rounding rounding, dnnl_memory_t src,
                                  dnnl_data_type_t dst_type, int out_buf, dnnl_memory_t dst_into, bool sum) {
    if (b->st != dnnl_success) return NULL;
    const dnnl_memory_desc_t *src_md;
    if (!ok(b, dnnl_memory_get_memory_desc(src, &src_md), "source")) return NULL;
    dnnl_dim_t k = c->kernel;
    dnnl_dims_t wdims_dense = {c->cout, c->cin, k, k};
    dnnl_dims_t wdims_dw = {c->cout, 1, 1, k, k};
    dnnl_dims_t bdims = {c->cout};
    dnnl_dims_t ddims = {b->mb, c->cout, c->out_size, c->out_size};
    dnnl_memory_desc_t w_any, b_md, d_any, w_user;
    int wnd = c->depthwise ? 5 : 4;
    const dnnl_dim_t *wd = c->depthwise ? wdims_dw : wdims_dense;
    ok(b, dnnl_memory_desc_init_by_tag(&w_any, wnd, wd, src_md->data_type, dnnl_format_tag_any), "weights desc");
    ok(b, dnnl_memory_desc_init_by_tag(&w_user, wnd, wd, dnnl_f32, c->depthwise ? dnnl_goihw : dnnl_oihw), "weights desc");
    ok(b, dnnl_memory_desc_init_by_tag(&b_md, 1, bdims, dnnl_f32, dnnl_x), "bias desc");
    ok(b, dnnl_memory_desc_init_by_tag(&d_any, 4, ddims, dst_type, dnnl_format_tag_any), "output desc");
    const dnnl_memory_desc_t *dst_md = &d_any;
    if (dst_into && !ok(b, dnnl_memory_get_memory_desc(dst_into, &dst_md), "output desc")) return NULL;
    dnnl_dims_t strides = {c->stride, c->stride};
    dnnl_dims_t pad_l = {c->pad_top, c->pad_left}, pad_r = {c->pad_bottom, c->pad_right};
    dnnl_convolution_desc_t cd;
    if (!ok(b, dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, src_md,
                                                  &w_any, &b_md, dst_md, strides, pad_l, pad_r),
            c->depthwise ? "depthwise convolution" : "convolution"))
        return NULL;
    dnnl_primitive_attr_t attr = attr_new(b, c->relu6, sum);
    if (!attr) return NULL;
    dnnl_primitive_desc_t pd = NULL;
    ok(b, dnnl_primitive_desc_create(&pd, &cd, attr, cpu_engine, NULL),
       c->depthwise ? "depthwise convolution (no kernel for this CPU)" : "convolution (no kernel for this CPU)");
    dnnl_primitive_attr_destroy(attr);
    if (b->st != dnnl_success) return NULL;

    /* Weights: the model's floats, reordered once into the layout and type the kernel wants. */
    bool smooth = rounding == WEIGHTS_SMOOTH && src_md->data_type == dnnl_bf16;
    dnnl_memory_t wk = weights(b, pd, &w_user, smooth ? smooth_weights : conv_weights, c);
    dnnl_memory_t bias = memory(b, &b_md, c->bias, "bias memory");
    dnnl_memory_t dst = dst_into;
    if (!dst) dst = activation(b, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), out_buf);
    if (b->st != dnnl_success || !dst) {
        dnnl_primitive_desc_destroy(pd);
        return NULL;
    }
    dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wk}, {DNNL_ARG_DST, dst}, {DNNL_ARG_BIAS, bias}};
    add_primitive(b, pd, 4, args);
    return b->st == dnnl_success ? dst : NULL;
}

static dnnl_memory_t conv(builder *b, const model_conv *c, dnnl_memory_t src, dnnl_data_type_t dst_type,
                          int out_buf, dnnl_memory_t dst_into, bool sum) {
    return conv_rounded(b, c, WEIGHTS_NEAREST, src, dst_type, out_buf, dst_into, sum);
}

/* The first buffer that is neither a nor c (-1 for none). */
static int other_buf(int a, int c) {
    for (int i = 0; i < NBUF; i++)
        if (i != a && i != c) return i;
    return -1;
}

static int buf_of(const graph *n, dnnl_memory_t mem) {
    for (int i = 0; i < n->nact; i++)
        if (n->act_mem[i] == mem) return n->act_buf[i];
    return -1;
}

/* `from` (f32) as bf16 in the same layout, in buffer `buf`. */
static dnnl_memory_t to_bf16(builder *b, dnnl_memory_t from, int buf) {
    const dnnl_memory_desc_t *fmd;
    if (!ok(b, dnnl_memory_get_memory_desc(from, &fmd), "reorder")) return NULL;
    dnnl_memory_desc_t md = *fmd; /* blocked strides count elements: only the type changes */
    md.data_type = dnnl_bf16;
    dnnl_memory_t to = activation(b, &md, buf);
    if (to) reorder_step(b, from, to);
    return b->st == dnnl_success ? to : NULL;
}

/* The data type of mem (dnnl_data_type_undef on error). */
static dnnl_data_type_t type_of(builder *b, dnnl_memory_t mem) {
    const dnnl_memory_desc_t *md;
    return mem && ok(b, dnnl_memory_get_memory_desc(mem, &md), "source") ? md->data_type : dnnl_data_type_undef;
}

/* One block, in the net's type. In a bf16 net, `in` is f32 right after the stem: then the
 * block's convolutions up to the depthwise one run in f32 (oneDNN has no f32-input bf16 kernels)
 * and the depthwise output is turned bf16 for the projection. A bf16 depthwise convolution's
 * weights are rounded with bf16_round_smooth. */
static dnnl_memory_t block(builder *b, const model_block *blk, dnnl_memory_t in) {
    dnnl_data_type_t in_type = type_of(b, in);
    int in_buf = buf_of(b->n, in);
    dnnl_memory_t cur = in;
    int cur_buf = in_buf;
    if (blk->has_expand) {
        cur_buf = other_buf(in_buf, -1);
        cur = conv(b, &blk->expand, cur, in_type, cur_buf, NULL, false);
    }
    int dw_buf = other_buf(in_buf, cur_buf);
    if (cur && in_type == dnnl_f32 && b->n->act == dnnl_bf16) {
        cur = conv(b, &blk->depthwise, cur, dnnl_f32, dw_buf, NULL, false);
        dw_buf = other_buf(dw_buf, in_buf); /* the expansion's output (or the stem's) is dead */
        if (cur) cur = to_bf16(b, cur, dw_buf);
    } else if (cur) {
        cur = conv_rounded(b, &blk->depthwise, WEIGHTS_SMOOTH, cur, b->n->act, dw_buf, NULL, false);
    }
    if (!cur) return NULL;
    /* The residual is summed into the block's input where it lies; otherwise the input is dead
     * by now and any buffer but the depthwise output's will do. (An f32 residual stream was
     * tried: no closer to fp32, the error is the convolutions' own.) */
    if (blk->residual) return conv(b, &blk->project, cur, b->n->act, -1, in, true) ? in : NULL;
    return conv(b, &blk->project, cur, b->n->act, other_buf(dw_buf, -1), NULL, false);
}

/* The classifier as an inner product in the net's type on the pooled features: at batch 1 it is
 * a stream of the 1000 × dims weights, which bf16 halves. `pooled` is f32 [batch][dims][1][1] in the pool's
 * layout; logits land in the caller's buffer (n->logits, handle set per run). */
static void classifier(builder *b, dnnl_memory_t pooled, int buf) {
    graph *n = b->n;
    const model *m = n->m;
    dnnl_dims_t sdims = {n->batch, m->dims, 1, 1}, wdims = {m->num_classes, m->dims, 1, 1};
    dnnl_dims_t bdims = {m->num_classes}, ddims = {n->batch, m->num_classes};
    dnnl_memory_desc_t s_any, w_any, w_user, b_md, d_md;
    ok(b, dnnl_memory_desc_init_by_tag(&s_any, 4, sdims, b->n->act, dnnl_format_tag_any), "classifier desc");
    ok(b, dnnl_memory_desc_init_by_tag(&w_any, 4, wdims, b->n->act, dnnl_format_tag_any), "classifier desc");
    ok(b, dnnl_memory_desc_init_by_tag(&w_user, 4, wdims, dnnl_f32, dnnl_oihw), "classifier desc");
    ok(b, dnnl_memory_desc_init_by_tag(&b_md, 1, bdims, dnnl_f32, dnnl_x), "classifier desc");
    ok(b, dnnl_memory_desc_init_by_tag(&d_md, 2, ddims, dnnl_f32, dnnl_nc), "classifier desc");
    dnnl_inner_product_desc_t ipd;
    if (!ok(b, dnnl_inner_product_forward_desc_init(&ipd, dnnl_forward_inference, &s_any, &w_any, &b_md, &d_md),
            "classifier"))
        return;
    dnnl_primitive_attr_t attr = attr_new(b, false, false);
    if (!attr) return;
    dnnl_primitive_desc_t pd = NULL;
    ok(b, dnnl_primitive_desc_create(&pd, &ipd, attr, cpu_engine, NULL), "classifier (no kernel for this CPU)");
    dnnl_primitive_attr_destroy(attr);
    if (b->st != dnnl_success) return;
    dnnl_memory_t src = activation(b, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), buf);
    dnnl_memory_t wk = weights(b, pd, &w_user, fc_weights, m);
    dnnl_memory_t bias = memory(b, &b_md, m->fc_bias, "classifier bias");
    n->logits = memory(b, &d_md, DNNL_MEMORY_NONE, "logits memory");
    n->classifier_step = n->nsteps;
    if (src) reorder_step(b, pooled, src);
    if (b->st != dnnl_success) {
        dnnl_primitive_desc_destroy(pd);
        return;
    }
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wk}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, n->logits}};
    add_primitive(b, pd, 4, args);
}

/* Layers whose input is at most TAIL_MAX_SIZE² run once for the whole batch instead of image by
 * image. Early layers are large (112² × 96 channels) and batched they spill the caches: per image,
 * the first 19 steps of Lite0 took 1.6 times as long at batch 8 as at batch 1. From 14² on the
 * activations are small and each weight is used only 196 or 49 times per image, so batching
 * reuses them: 1.1 to 1.6 times faster per image there (DNNL_VERBOSE, one thread, batch 8). */
#define TAIL_MAX_SIZE 14

/* From here on the steps process tail_batch images: x, one image's output of the early layers,
 * is copied into its slot of the handoff tensor, which the tail reads whole. Returns the handoff
 * tensor (x itself when there is no tail). */
static dnnl_memory_t start_tail(builder *b, dnnl_memory_t x) {
    graph *n = b->n;
    if (!x || n->tail_batch <= 1 || n->tail_step) return x;
    const dnnl_memory_desc_t *md;
    if (!ok(b, dnnl_memory_get_memory_desc(x, &md), "handoff")) return NULL;
    /* the batch dimension must be outermost and unblocked, so an image's slot is contiguous */
    const dnnl_blocking_desc_t *blk = &md->format_desc.blocking;
    bool batch_blocked = false;
    for (int i = 0; i < blk->inner_nblks; i++) batch_blocked |= blk->inner_idxs[i] == 0;
    size_t slice = (size_t)blk->strides[0] * dnnl_data_type_size(md->data_type);
    if (md->format_kind != dnnl_blocked || batch_blocked || slice != dnnl_memory_desc_get_size(md)) {
        b->st = dnnl_unimplemented;
        snprintf(b->what, sizeof b->what, "handoff (batch dimension not outermost)");
        return NULL;
    }
    dnnl_memory_desc_t tail_md = *md;
    tail_md.dims[0] = tail_md.padded_dims[0] = n->tail_batch;
    n->handoff_slice = slice;
    n->handoff_buf = aligned_alloc(64, (slice * (size_t)n->tail_batch + 63) / 64 * 64);
    if (!n->handoff_buf) {
        b->st = dnnl_out_of_memory;
        snprintf(b->what, sizeof b->what, "handoff");
        return NULL;
    }
    n->handoff_slot = memory(b, md, DNNL_MEMORY_NONE, "handoff slot");
    dnnl_memory_t handoff = memory(b, &tail_md, n->handoff_buf, "handoff");
    if (n->handoff_slot) reorder_step(b, x, n->handoff_slot);
    n->tail_step = n->nsteps;
    n->batch = b->mb = n->tail_batch;
    return b->st == dnnl_success ? handoff : NULL;
}

static void graph_free(graph *n);

static int fail(builder *b, graph *n, char *err, size_t errlen) {
    graph_free(n);
    return is_fail(err, errlen, b->st == dnnl_out_of_memory ? IS_ERR_NOMEM : IS_ERR_MODEL,
                   "oneDNN rejected the %s (status %d)", b->what[0] ? b->what : "network", (int)b->st);
}

static int graph_new(const model *m, dnnl_data_type_t act, int threads, int tail_batch, const graph *share,
                     graph **out, char *err, size_t errlen) {
    *out = NULL;
    const int batch = 1; /* the early layers' */
    graph *n = calloc(1, sizeof *n);
    if (!n) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    n->batch = batch;
    n->tail_batch = tail_batch;
    n->act = act;
    n->threads = threads;
    n->m = m;
    builder b = {.n = n, .share = share, .st = dnnl_success, .mb = batch};
    /* Kernels are planned for the thread count current when their descriptor is made. */
    omp_set_num_threads(threads);
    if (!ok(&b, dnnl_stream_create(&n->stream, cpu_engine, dnnl_stream_default_flags), "stream"))
        return fail(&b, n, err, errlen);

    /* The caller's input, f32 NHWC, is reordered into the bf16 layout the stem chose (a throw-away
     * stem descriptor tells which). */
    dnnl_dim_t s = m->input_size;
    dnnl_dims_t in_dims = {batch, 3, s, s};
    dnnl_memory_desc_t in_user_md, in_any;
    ok(&b, dnnl_memory_desc_init_by_tag(&in_user_md, 4, in_dims, dnnl_f32, dnnl_nhwc), "input desc");
    ok(&b, dnnl_memory_desc_init_by_tag(&in_any, 4, in_dims, n->act, dnnl_format_tag_any), "input desc");
    n->input = memory(&b, &in_user_md, DNNL_MEMORY_NONE, "input memory");
    {
        const model_conv *c = &m->stem;
        dnnl_dims_t wd = {c->cout, c->cin, c->kernel, c->kernel}, bd = {c->cout};
        dnnl_dims_t dd = {batch, c->cout, c->out_size, c->out_size};
        dnnl_dims_t st = {c->stride, c->stride}, pl = {c->pad_top, c->pad_left}, pr = {c->pad_bottom, c->pad_right};
        dnnl_memory_desc_t w_any, b_md, d_any;
        ok(&b, dnnl_memory_desc_init_by_tag(&w_any, 4, wd, n->act, dnnl_format_tag_any), "stem desc");
        ok(&b, dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x), "stem desc");
        ok(&b, dnnl_memory_desc_init_by_tag(&d_any, 4, dd, dnnl_f32, dnnl_format_tag_any), "stem desc");
        dnnl_convolution_desc_t cd;
        dnnl_primitive_desc_t pd = NULL;
        if (ok(&b, dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &in_any,
                                                      &w_any, &b_md, &d_any, st, pl, pr), "stem") &&
            ok(&b, dnnl_primitive_desc_create(&pd, &cd, NULL, cpu_engine, NULL), "stem")) {
            const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
            dnnl_memory_t in = n->input;
            if (!dnnl_memory_desc_equal(want, &in_user_md)) {
                in = activation(&b, want, 0);
                if (in) reorder_step(&b, n->input, in);
            }
            dnnl_primitive_desc_destroy(pd);
            /* The stem reads bf16 and writes f32 for the first depthwise convolution (why: the
             * comment at the top). */
            dnnl_memory_t x = in ? conv_rounded(&b, &m->stem, WEIGHTS_SMOOTH, in, dnnl_f32, 1, NULL, false) : NULL;
            for (int i = 0; i < m->nblocks && x; i++) {
                if (m->blocks[i].depthwise.in_size <= TAIL_MAX_SIZE) x = start_tail(&b, x);
                if (x) x = block(&b, &m->blocks[i], x);
            }
            x = start_tail(&b, x); /* a model with no block that small: the head is the tail */
            int hb = x ? other_buf(buf_of(n, x), -1) : 0;
            dnnl_memory_t head = x ? conv(&b, &m->head, x, dnnl_f32, hb, NULL, false) : NULL;

            /* Global average pooling in f32, then the pooled features to the caller. */
            const dnnl_memory_desc_t *hmd = NULL;
            if (head && ok(&b, dnnl_memory_get_memory_desc(head, &hmd), "head")) {
                dnnl_dim_t hs = m->head.out_size;
                dnnl_dims_t pdims = {n->batch, m->dims, 1, 1};
                dnnl_dims_t pst = {1, 1}, pk = {hs, hs}, pdil = {0, 0}, pz = {0, 0};
                dnnl_memory_desc_t pool_any, feat_md;
                ok(&b, dnnl_memory_desc_init_by_tag(&pool_any, 4, pdims, dnnl_f32, dnnl_format_tag_any), "pool desc");
                ok(&b, dnnl_memory_desc_init_by_tag(&feat_md, 4, pdims, dnnl_f32, dnnl_nchw), "features desc");
                dnnl_pooling_v2_desc_t pdsc;
                dnnl_primitive_attr_t attr = attr_new(&b, false, false);
                dnnl_primitive_desc_t ppd = NULL;
                if (attr &&
                    ok(&b, dnnl_pooling_v2_forward_desc_init(&pdsc, dnnl_forward_inference, dnnl_pooling_avg_exclude_padding,
                                                             hmd, &pool_any, pst, pk, pdil, pz, pz), "average pool") &&
                    ok(&b, dnnl_primitive_desc_create(&ppd, &pdsc, attr, cpu_engine, NULL), "average pool")) {
                    const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(ppd, dnnl_query_dst_md, 0);
                    size_t psize = dnnl_memory_desc_get_size(pmd);
                    n->pooled_buf = aligned_alloc(64, (psize + 63) / 64 * 64);
                    dnnl_memory_t pooled = n->pooled_buf ? memory(&b, pmd, n->pooled_buf, "pool memory") : NULL;
                    if (!n->pooled_buf) b.st = dnnl_out_of_memory;
                    if (pooled) {
                        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, head}, {DNNL_ARG_DST, pooled}};
                        add_primitive(&b, ppd, 2, args);
                        ppd = NULL;
                        n->features = memory(&b, &feat_md, DNNL_MEMORY_NONE, "features memory");
                        if (n->features) reorder_step(&b, pooled, n->features);
                        classifier(&b, pooled, other_buf(hb, -1));
                    }
                }
                if (ppd) dnnl_primitive_desc_destroy(ppd);
                if (attr) dnnl_primitive_attr_destroy(attr);
            }
        }
    }
    if (b.st != dnnl_success) return fail(&b, n, err, errlen);

    /* Now every size is known: the shared activation buffers and scratchpad. */
    size_t bs = (n->buf_size + 63) / 64 * 64;
    for (int i = 0; i < NBUF; i++)
        if (!(n->bufs[i] = aligned_alloc(64, bs))) b.st = dnnl_out_of_memory;
    if (n->scratch_size && !(n->scratch = aligned_alloc(64, (n->scratch_size + 63) / 64 * 64)))
        b.st = dnnl_out_of_memory;
    if (b.st != dnnl_success) {
        snprintf(b.what, sizeof b.what, "activation buffers");
        return fail(&b, n, err, errlen);
    }
    for (int i = 0; i < n->nact; i++)
        ok(&b, dnnl_memory_set_data_handle(n->act_mem[i], n->bufs[n->act_buf[i]]), "activation memory");
    for (int i = 0; i < n->nscratch; i++)
        ok(&b, dnnl_memory_set_data_handle(n->scratch_mem[i], n->scratch), "scratchpad memory");
    if (b.st != dnnl_success) return fail(&b, n, err, errlen);
    *out = n;
    return IS_OK;
}

static void graph_free(graph *n) {
    if (!n) return;
    for (int i = 0; i < n->nsteps; i++) dnnl_primitive_destroy(n->steps[i].prim);
    for (int i = 0; i < n->nmems; i++) dnnl_memory_destroy(n->mems[i]);
    if (n->stream) dnnl_stream_destroy(n->stream);
    for (int i = 0; i < NBUF; i++) free(n->bufs[i]);
    free(n->scratch);
    free(n->pooled_buf);
    free(n->handoff_buf);
    free(n);
}

static dnnl_status_t run_steps(graph *n, int from, int to) {
    dnnl_status_t st = dnnl_success;
    for (int i = from; i < to && st == dnnl_success; i++)
        st = dnnl_primitive_execute(n->steps[i].prim, n->stream, n->steps[i].nargs, n->steps[i].args);
    return st;
}

/* n->tail_batch images: input [tail_batch][size][size][3], features and logits likewise. */
static dnnl_status_t graph_run(graph *n, const float *input, float *features, float *logits) {
    size_t in_len = (size_t)n->m->input_size * (size_t)n->m->input_size * 3;
    dnnl_status_t st = dnnl_memory_set_data_handle(n->features, features);
    if (st == dnnl_success && logits) st = dnnl_memory_set_data_handle(n->logits, logits);
    int end = logits ? n->nsteps : n->classifier_step;
    /* the early layers image by image (all of them when there is no tail) */
    for (int i = 0; i < n->tail_batch && st == dnnl_success; i++) {
        st = dnnl_memory_set_data_handle(n->input, (void *)(input + in_len * (size_t)i));
        if (st == dnnl_success && n->handoff_slot)
            st = dnnl_memory_set_data_handle(n->handoff_slot, (char *)n->handoff_buf + n->handoff_slice * (size_t)i);
        if (st == dnnl_success) st = run_steps(n, 0, n->tail_step ? n->tail_step : end);
    }
    if (st == dnnl_success && n->tail_step) st = run_steps(n, n->tail_step, end);
    if (st == dnnl_success) st = dnnl_stream_wait(n->stream);
    return st;
}

int onednn_net_new(const model *m, bool bf16, int batch, int threads, onednn_net **out, char *err, size_t errlen) {
    *out = NULL;
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success)
        return is_fail(err, errlen, IS_ERR_MODEL, "oneDNN: no CPU engine (status %d)", (int)engine_status);
    if (bf16 && !onednn_bf16_possible())
        return is_fail(err, errlen, IS_ERR_MODEL, "bf16 inference needs AVX-512 (this CPU has not got it)");
    onednn_net *n = calloc(1, sizeof *n);
    if (!n) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    n->batch = batch;
    n->threads = threads;
    n->nlanes = batch > 1 && threads > 1 ? (batch < threads ? batch : threads) : 1;
    if (n->nlanes > MAX_LANES) n->nlanes = MAX_LANES;
    for (int i = 0, first = 0; i < n->nlanes; i++) {
        int share = batch / n->nlanes + (i < batch % n->nlanes);
        n->first[i] = first;
        first += share;
        int rc = graph_new(m, bf16 ? dnnl_bf16 : dnnl_f32, n->nlanes > 1 ? 1 : threads, share, i ? n->lanes[0] : NULL,
                           &n->lanes[i], err, errlen);
        if (rc) {
            onednn_net_free(n);
            return rc;
        }
    }
    *out = n;
    return IS_OK;
}

void onednn_net_free(onednn_net *n) {
    if (!n) return;
    for (int i = 0; i < n->nlanes; i++) graph_free(n->lanes[i]);
    free(n);
}

/* Lane k's images of the batch through its graph. */
static dnnl_status_t run_lane(onednn_net *n, int k, const float *input, float *features, float *logits) {
    const model *m = n->lanes[k]->m;
    size_t in_len = (size_t)m->input_size * (size_t)m->input_size * 3, i = (size_t)n->first[k];
    return graph_run(n->lanes[k], input + in_len * i, features + (size_t)m->dims * i,
                     logits ? logits + (size_t)m->num_classes * i : NULL);
}

int onednn_net_run(onednn_net *n, const float *input, float *features, float *logits, char *err, size_t errlen) {
    int failed = 0;
    /* OpenMP's thread count is per calling thread: set it for this session's share. Inside the
     * lanes' parallel region oneDNN runs each lane's layers on that lane's thread alone. */
    omp_set_num_threads(n->threads);
    if (n->nlanes == 1) {
        failed = run_lane(n, 0, input, features, logits);
    } else {
#pragma omp parallel num_threads(n->nlanes) reduction(| : failed)
        failed |= run_lane(n, omp_get_thread_num(), input, features, logits);
    }
    if (failed) return is_fail(err, errlen, IS_ERR_INTERNAL, "oneDNN inference failed (status %d)", failed);
    return IS_OK;
}


