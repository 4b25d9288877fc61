/* metrics.h — counters and histograms that many threads update at once, and the Prometheus text
 * exposition format (version 0.0.4) that a scrape reads them in.
 *
 * Counters and histograms are plain structs of C11 atomics, zero-initialised (a histogram also
 * needs metrics_histogram_init for its bounds), owned by whoever embeds them (the HTTP server, the
 * engine). Updating one is a few relaxed atomic additions: no lock, no allocation, any thread.
 * Reading is lock-free too: a scrape sees each number as a value it had. A histogram keeps a
 * count per bucket (not cumulative) and its reader sums them, so the buckets it reports are
 * cumulative and its +Inf bucket always equals its _count, even while other threads observe;
 * only _sum may be an observation or two apart from the counts during a scrape.
 *
 * metrics_text builds one exposition (owned by one thread): families announced once each with
 * their # HELP and # TYPE lines before their samples, label values and help text escaped as the
 * format says, values written so that they read back exactly (integers as integers, NaN, +Inf).
 * Allocation failures are sticky: the text is then unusable (metrics_text_take returns NULL).
 *
 * metrics_write_process writes the standard process_* families from /proc/self (Linux). */
#ifndef IMGSEARCH_METRICS_H
#define IMGSEARCH_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A monotonically increasing count. */
typedef struct {
    atomic_uint_least64_t v;
} metrics_counter;

static inline void metrics_counter_add(metrics_counter *c, uint64_t n) {
    atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}
static inline uint64_t metrics_counter_get(const metrics_counter *c) {
    return atomic_load_explicit(&((metrics_counter *)c)->v, memory_order_relaxed);
}

/* A histogram of durations: the upper bounds of its buckets in seconds, ascending. */
#define METRICS_MAX_BUCKETS 16
typedef struct {
    int nbounds;
    double bounds[METRICS_MAX_BUCKETS];        /* seconds */
    uint64_t bound_ns[METRICS_MAX_BUCKETS];    /* the same in nanoseconds (what observe compares) */
    atomic_uint_least64_t counts[METRICS_MAX_BUCKETS + 1]; /* per bucket; the last: above every bound */
    atomic_uint_least64_t sum_ns;
} metrics_histogram;

/* Request latencies: 5 ms to 10 s (Prometheus' client default buckets). */
extern const double metrics_latency_buckets[];
extern const int metrics_latency_nbuckets;

/* Sets the bounds (n <= METRICS_MAX_BUCKETS, ascending, copied) and zeroes the counts. Not
 * thread-safe: before any observe. */
void metrics_histogram_init(metrics_histogram *h, const double *bounds, int n);
/* Counts one duration. Thread-safe, lock-free. */
void metrics_histogram_observe_ns(metrics_histogram *h, uint64_t ns);

/* A histogram as read at one moment: cumulative bucket counts (buckets[i] = observations of at
 * most bounds[i] seconds), the total count (the +Inf bucket) and the sum in seconds. */
typedef struct {
    int nbounds;
    double bounds[METRICS_MAX_BUCKETS];
    uint64_t buckets[METRICS_MAX_BUCKETS];
    uint64_t count;
    double sum;
} metrics_histogram_value;

/* Reads h; thread-safe while others observe. */
void metrics_histogram_read(const metrics_histogram *h, metrics_histogram_value *out);

/* Nanoseconds on the monotonic clock (for durations). */
uint64_t metrics_now_ns(void);

/* ---- the text exposition ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool failed; /* out of memory: the text is lost */
} metrics_text;

typedef struct {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" */
    const char *value; /* any UTF-8; escaped on output */
} metrics_label;

/* Announces a family: "# HELP name help" and "# TYPE name type" (type "counter", "gauge" or
 * "histogram"). Call once per family, before its samples. */
void metrics_family(metrics_text *t, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value. name is the family's (or, for histograms, written by
 * metrics_write_histogram). nlabels may be 0 (labels NULL). */
void metrics_sample(metrics_text *t, const char *name, const metrics_label *labels, int nlabels, double value);
/* The same with an exact integer value (counters past 2^53 stay exact). */
void metrics_sample_u64(metrics_text *t, const char *name, const metrics_label *labels, int nlabels, uint64_t value);
/* A histogram's samples (its family announced before): name_bucket{labels,le="..."} for every
 * bound and +Inf, cumulative; name_sum; name_count. */
void metrics_write_histogram(metrics_text *t, const char *name, const metrics_label *labels, int nlabels,
                             const metrics_histogram_value *v);
/* The standard process metrics of the calling process: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
 * process_max_fds, process_start_time_seconds. A family whose source cannot be read is left out. */
void metrics_write_process(metrics_text *t);
/* The text (malloc'ed, NUL-terminated, the caller frees) and its length; NULL after a failed
 * allocation (nothing to free then). t is empty afterwards. */
char *metrics_text_take(metrics_text *t, size_t *len);
/* Frees what t holds (when it was not taken). */
void metrics_text_free(metrics_text *t);

/* The Content-Type of the exposition. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
