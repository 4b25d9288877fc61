/* fuzz_util.h — what the libFuzzer targets in this directory share: a check that aborts (so that
 * libFuzzer records the input as a crash) and a private scratch directory in memory.
 *
 * Each target is one process, one thread calling LLVMFuzzerTestOneInput at a time (the HTTP
 * target's server has threads of its own). The scratch directory lives under /dev/shm (no disk
 * I/O per input) and is removed at exit (after a crash, by scripts/fuzz). */
#ifndef IMGSEARCH_FUZZ_UTIL_H
#define IMGSEARCH_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An invariant the product promises: a violation is a finding, reported like a crash. */
#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

static char fuzz_scratch_dir[256];

static inline void fuzz_scratch_remove(void) {
    if (!fuzz_scratch_dir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_scratch_dir);
    if (system(cmd)) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_scratch_dir);
}

/* Makes (once) and returns the scratch directory, /dev/shm/imgsearch-fuzz-<target>-<pid>-XXXXXX. A
 * crash ends the process without atexit: scripts/fuzz removes the directories of processes gone. */
static inline const char *fuzz_scratch(const char *target) {
    if (fuzz_scratch_dir[0]) return fuzz_scratch_dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_scratch_dir, sizeof fuzz_scratch_dir, "%s/imgsearch-fuzz-%s-%d-XXXXXX", base, target, (int)getpid());
    if (!mkdtemp(fuzz_scratch_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_scratch_remove);
    return fuzz_scratch_dir;
}

/* Writes len bytes to path (replacing it); aborts when it cannot: the harness is broken then. */
static inline void fuzz_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        abort();
    }
    size_t wrote = len ? fwrite(data, 1, len, f) : 0;
    if (fclose(f) || wrote != len) {
        perror(path);
        abort();
    }
}

/* A NUL-terminated copy of the input (caller frees). */
static inline char *fuzz_cstr(const uint8_t *data, size_t len) {
    char *s = malloc(len + 1);
    if (!s) abort();
    if (len) memcpy(s, data, len);
    s[len] = 0;
    return s;
}

#endif
