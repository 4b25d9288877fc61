/* test_util.h — small helpers shared by the unit tests (header-only, test code only). */
#ifndef IMGSEARCH_TEST_UTIL_H
#define IMGSEARCH_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/file.h"

/* Where make_images.py wrote the generated images (set by ctest). */
static inline const char *test_images_dir(void) {
    const char *d = getenv("IMGSEARCH_TEST_IMAGES");
    return d ? d : "build/testdata";
}

/* Reads dir/name (dir NULL = generated images) or aborts the test run: a missing fixture is a
 * broken setup, not a passing test. */
static inline unsigned char *test_read(const char *dir, const char *name, size_t *len) {
    char path[4096], err[256];
    unsigned char *buf;
    snprintf(path, sizeof path, "%s/%s", dir ? dir : test_images_dir(), name);
    if (file_read_all(path, 1u << 30, &buf, len, err, sizeof err)) {
        fprintf(stderr, "test fixture missing: %s\n", err);
        abort();
    }
    return buf;
}

/* A fresh directory /tmp/<name>_XXXXXX into dir (64 bytes), for a group's setup; 0 or -1. */
static inline int test_make_dir(char dir[64], const char *name) {
    snprintf(dir, 64, "/tmp/%s_XXXXXX", name);
    return mkdtemp(dir) ? 0 : -1;
}

/* Removes it with everything in it, for a group's teardown. */
static inline int test_remove_dir(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static inline double test_cosine(const float *a, const float *b, int n) {
    double d = 0, na = 0, nb = 0;
    for (int i = 0; i < n; i++) {
        d += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return d / (sqrt(na) * sqrt(nb));
}

#define SKIMAGE_DATA "/usr/lib/python3/dist-packages/skimage/data"
#define DARKNET_DATA "/usr/share/darknet/data"
#define BACKGROUNDS "/usr/share/backgrounds" /* gnome-backgrounds, mate-backgrounds */
#define WALLPAPERS "/usr/share/wallpapers"   /* plasma-workspace-wallpapers */

#endif
