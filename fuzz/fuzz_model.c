/* fuzz_model.c — the model config (src/embed/model.h): models/<name>.json names the architecture
 * and every block, and model_load checks the weights beside it against it (shapes), folds the
 * BatchNorm layers and re-lays the weights out. The file is downloaded or hand-edited, so it is
 * outside bytes too.
 *
 * Input: the config JSON, written to a scratch directory beside the real EfficientNet-Lite0
 * weights (a link to models/efficientnet_lite0.safetensors), so that a config close to the real
 * one reaches the shape checks and the folding. Checks, beyond the sanitizers: a refusal is
 * IS_ERR_MODEL or IS_ERR_NOMEM with a reason; a model that loads has consistent sizes (blocks
 * chain their channels, every convolution has weights, the head's channels are the embedding's). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "embed/model.h"
#include "fuzz_util.h"
#include "util/status.h"

static char config_path[400];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = fuzz_scratch("model");
    char link_path[400];
    snprintf(config_path, sizeof config_path, "%s/m.json", dir);
    snprintf(link_path, sizeof link_path, "%s/m.safetensors", dir);
    if (symlink(IMGSEARCH_SOURCE_DIR "/models/efficientnet_lite0.safetensors", link_path)) {
        perror("fuzz_model: symlink");
        abort();
    }
    return 0;
}

static void check_conv(const model_conv *c) {
    FUZZ_CHECK(c->weight && c->bias && c->kernel >= 1 && c->stride >= 1 && c->cin >= 1 && c->cout >= 1);
    FUZZ_CHECK(c->in_size >= 1 && c->out_size >= 1 && c->pad_top >= 0 && c->pad_left >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(config_path, data, size);
    model *m = NULL;
    char err[512];
    int rc = model_load(config_path, &m, err, sizeof err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "fuzz_model: %d %s\n", rc, rc ? err : "loaded");
    if (rc) {
        FUZZ_CHECK(m == NULL && (rc == IS_ERR_MODEL || rc == IS_ERR_NOMEM) && err[0]);
        return 0;
    }
    check_conv(&m->stem);
    int prev = m->stem.cout;
    for (int i = 0; i < m->nblocks; i++) {
        const model_block *b = &m->blocks[i];
        const model_conv *first = b->has_expand ? &b->expand : &b->depthwise;
        FUZZ_CHECK(first->cin == prev);
        if (b->has_expand) check_conv(&b->expand);
        check_conv(&b->depthwise);
        check_conv(&b->project);
        prev = b->project.cout;
    }
    check_conv(&m->head);
    FUZZ_CHECK(m->head.cin == prev && m->head.cout == m->dims);
    FUZZ_CHECK(m->fc_weight && m->fc_bias && m->num_classes >= 1);
    for (int i = 0; i < m->num_classes; i++) FUZZ_CHECK(m->labels[i]);
    model_free(m);
    return 0;
}
