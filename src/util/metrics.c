#include "util/metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

const double metrics_latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const int metrics_latency_nbuckets = (int)(sizeof metrics_latency_buckets / sizeof *metrics_latency_buckets);

void metrics_histogram_init(metrics_histogram *h, const double *bounds, int n) {
    if (n > METRICS_MAX_BUCKETS) n = METRICS_MAX_BUCKETS;
    h->nbounds = n;
    for (int i = 0; i < n; i++) {
        h->bounds[i] = bounds[i];
        h->bound_ns[i] = (uint64_t)llround(bounds[i] * 1e9);
    }
    for (int i = 0; i <= METRICS_MAX_BUCKETS; i++) atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum_ns, 0);
}

void metrics_histogram_observe_ns(metrics_histogram *h, uint64_t ns) {
    int i = 0;
    while (i < h->nbounds && ns > h->bound_ns[i]) i++; /* "le": a value equal to a bound is in it */
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

void metrics_histogram_read(const metrics_histogram *h, metrics_histogram_value *out) {
    metrics_histogram *m = (metrics_histogram *)h; /* atomic loads only */
    out->nbounds = h->nbounds;
    uint64_t total = 0;
    for (int i = 0; i < h->nbounds; i++) {
        out->bounds[i] = h->bounds[i];
        total += atomic_load_explicit(&m->counts[i], memory_order_relaxed);
        out->buckets[i] = total;
    }
    out->count = total + atomic_load_explicit(&m->counts[h->nbounds], memory_order_relaxed);
    out->sum = (double)atomic_load_explicit(&m->sum_ns, memory_order_relaxed) / 1e9;
}

uint64_t metrics_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- text ---------------------------------------------------------------------------------- */

static void put(metrics_text *t, const char *s, size_t n) {
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n + 1) cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = true;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = 0;
}

static void puts_(metrics_text *t, const char *s) { put(t, s, strlen(s)); }

/* s with the given characters escaped: always backslash and newline; the double quote too in
 * label values (help text leaves it as it is). */
static void put_escaped(metrics_text *t, const char *s, bool quote) {
    const char *run = s;
    for (const char *p = s; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : quote && *p == '"' ? "\\\"" : NULL;
        if (!esc) continue;
        put(t, run, (size_t)(p - run));
        puts_(t, esc);
        run = p + 1;
    }
    puts_(t, run);
}

/* The shortest digits that read back as exactly x, in plain notation up to 6 digits before the
 * point (10, not 1e+01: what Prometheus' own clients write, so that "le" labels agree); NaN and
 * the infinities as the format spells them. */
static void format_double(double x, char out[40]) {
    if (isnan(x)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(x)) {
        strcpy(out, x > 0 ? "+Inf" : "-Inf");
        return;
    }
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(out, 40, "%.*g", prec, x);
        if (strtod(out, NULL) == x) break;
    }
    /* more precision than the shortest adds only zeros, which %g drops */
    snprintf(out, 40, "%.*g", prec < 6 ? 6 : prec, x);
}

void metrics_family(metrics_text *t, const char *name, const char *type, const char *help) {
    puts_(t, "# HELP ");
    puts_(t, name);
    puts_(t, " ");
    put_escaped(t, help, false);
    puts_(t, "\n# TYPE ");
    puts_(t, name);
    puts_(t, " ");
    puts_(t, type);
    puts_(t, "\n");
}

static void put_labels(metrics_text *t, const metrics_label *labels, int nlabels, const char *le) {
    if (nlabels <= 0 && !le) return;
    puts_(t, "{");
    for (int i = 0; i < nlabels; i++) {
        if (i) puts_(t, ",");
        puts_(t, labels[i].name);
        puts_(t, "=\"");
        put_escaped(t, labels[i].value ? labels[i].value : "", true);
        puts_(t, "\"");
    }
    if (le) {
        if (nlabels > 0) puts_(t, ",");
        puts_(t, "le=\"");
        puts_(t, le);
        puts_(t, "\"");
    }
    puts_(t, "}");
}

static void sample_text(metrics_text *t, const char *name, const char *suffix, const metrics_label *labels,
                        int nlabels, const char *le, const char *value) {
    puts_(t, name);
    if (suffix) puts_(t, suffix);
    put_labels(t, labels, nlabels, le);
    puts_(t, " ");
    puts_(t, value);
    puts_(t, "\n");
}

void metrics_sample(metrics_text *t, const char *name, const metrics_label *labels, int nlabels, double value) {
    char v[40];
    format_double(value, v);
    sample_text(t, name, NULL, labels, nlabels, NULL, v);
}

void metrics_sample_u64(metrics_text *t, const char *name, const metrics_label *labels, int nlabels, uint64_t value) {
    char v[24];
    snprintf(v, sizeof v, "%" PRIu64, value);
    sample_text(t, name, NULL, labels, nlabels, NULL, v);
}

void metrics_write_histogram(metrics_text *t, const char *name, const metrics_label *labels, int nlabels,
                             const metrics_histogram_value *v) {
    char le[40], n[40];
    for (int i = 0; i < v->nbounds; i++) {
        format_double(v->bounds[i], le);
        snprintf(n, sizeof n, "%" PRIu64, v->buckets[i]);
        sample_text(t, name, "_bucket", labels, nlabels, le, n);
    }
    snprintf(n, sizeof n, "%" PRIu64, v->count);
    sample_text(t, name, "_bucket", labels, nlabels, "+Inf", n);
    format_double(v->sum, le);
    sample_text(t, name, "_sum", labels, nlabels, NULL, le);
    sample_text(t, name, "_count", labels, nlabels, NULL, n);
}

char *metrics_text_take(metrics_text *t, size_t *len) {
    char *b = t->failed ? NULL : t->buf ? t->buf : strdup("");
    if (t->failed) free(t->buf);
    *len = b ? t->len : 0;
    *t = (metrics_text){0};
    return b;
}

void metrics_text_free(metrics_text *t) {
    free(t->buf);
    *t = (metrics_text){0};
}

/* ---- the process --------------------------------------------------------------------------- */

/* The boot time (seconds since the epoch) from /proc/stat, or 0. */
static long long boot_time(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    char line[256];
    long long btime = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lld", &btime) == 1) break;
    fclose(f);
    return btime;
}

void metrics_write_process(metrics_text *t) {
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char line[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    bool have_stat = false;
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    if (f) {
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = 0;
        /* after the command name (in parentheses, which may hold anything): field 3 onwards */
        const char *p = strrchr(line, ')');
        /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt, utime stime, cutime
         * cstime priority nice threads itrealvalue, starttime vsize rss */
        have_stat = p && ticks > 0 &&
                    sscanf(p + 1, " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu %*s %*s %*s %*s %*s %*s"
                                  " %llu %llu %lld", &utime, &stime, &start, &vsize, &rss) == 5;
    }
    if (have_stat) {
        metrics_family(t, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        metrics_sample(t, "process_cpu_seconds_total", NULL, 0, (double)(utime + stime) / (double)ticks);
        metrics_family(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        metrics_sample_u64(t, "process_resident_memory_bytes", NULL, 0, (uint64_t)(rss > 0 ? rss : 0) * (uint64_t)page);
        metrics_family(t, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        metrics_sample_u64(t, "process_virtual_memory_bytes", NULL, 0, vsize);
        long long btime = boot_time();
        if (btime > 0) {
            metrics_family(t, "process_start_time_seconds", "gauge",
                           "Start time of the process since unix epoch in seconds.");
            metrics_sample(t, "process_start_time_seconds", NULL, 0, (double)btime + (double)start / (double)ticks);
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        uint64_t open = 0;
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.') open++;
        closedir(d);
        metrics_family(t, "process_open_fds", "gauge", "Number of open file descriptors.");
        metrics_sample_u64(t, "process_open_fds", NULL, 0, open ? open - 1 : 0); /* less the one listing them */
    }
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        metrics_family(t, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        if (rl.rlim_cur == RLIM_INFINITY) metrics_sample(t, "process_max_fds", NULL, 0, INFINITY);
        else metrics_sample_u64(t, "process_max_fds", NULL, 0, (uint64_t)rl.rlim_cur);
    }
}
