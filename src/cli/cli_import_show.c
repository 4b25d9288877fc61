/* What `imgsearch import` shows while it runs (cli_import.h): the progress bar on a terminal, a
 * plain line every 5 s otherwise, and the list of refused files. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli_import.h"

void import_report_init(import_report *r) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
}

void import_report_add(import_report *r, const char *path, const char *reason) {
    char *p = strdup(path), *why = strdup(reason);
    pthread_mutex_lock(&r->lock);
    if (p && why && r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        struct import_refusal *items = realloc(r->items, cap * sizeof *items);
        if (items) {
            r->items = items;
            r->cap = cap;
        }
    }
    if (p && why && r->n < r->cap) {
        r->items[r->n++] = (struct import_refusal){p, why};
        p = why = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    if (p || why) fprintf(stderr, "imgsearch import: %s: %s\n", path, reason); /* out of memory: said at once */
    free(p);
    free(why);
}

void import_report_free(import_report *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].path);
        free(r->items[i].reason);
    }
    free(r->items);
    pthread_mutex_destroy(&r->lock);
    memset(r, 0, sizeof *r);
}

static struct timespec t0;
static pthread_once_t t0_once = PTHREAD_ONCE_INIT;
static void t0_set(void) { clock_gettime(CLOCK_MONOTONIC, &t0); }

double import_seconds(void) {
    pthread_once(&t0_once, t0_set);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
}

void import_duration_text(double s, char *out, size_t outlen) {
    long t = s < 0 ? 0 : s > 359999 ? 359999 : (long)(s + 0.5);
    if (t >= 3600) snprintf(out, outlen, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(out, outlen, "%ldm%02lds", t / 60, t % 60);
    else snprintf(out, outlen, "%lds", t);
}

struct import_show {
    const import_counts *c;
    bool tty, stop;
    double started, first_sent_at; /* the rate counts from the first answer */
    int64_t first_sent;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static int64_t get(const int64_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }

static void draw(import_show *s, bool last) {
    const import_counts *c = s->c;
    int64_t done = get(&c->imported) + get(&c->stored) + get(&c->dups) + get(&c->refused), total = c->total;
    int64_t sent = get(&c->sent);
    double now = import_seconds();
    if (sent && s->first_sent_at < 0) {
        s->first_sent_at = now;
        s->first_sent = sent;
    }
    double span = s->first_sent_at < 0 ? 0 : now - s->first_sent_at;
    double rate = span > 0.5 ? (double)(sent - s->first_sent) / span : 0;
    if (last) rate = now - s->started > 0 ? (double)sent / (now - s->started) : 0;
    char eta[32] = "?";
    if (rate > 0) import_duration_text((double)(total - done) / rate, eta, sizeof eta);
    double pct = total ? 100.0 * (double)done / (double)total : 100.0;
    if (s->tty) {
        char bar[21];
        int fill = total ? (int)(20 * done / total) : 20;
        for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
        bar[20] = 0;
        fprintf(stderr, "\r[%s] %lld/%lld %.0f %% %.1f img/s ETA %s refused %lld\033[K%s", bar, (long long)done,
                (long long)total, pct, rate, last ? "0s" : eta, (long long)get(&c->refused), last ? "\n" : "");
    } else {
        fprintf(stderr, "import: %lld/%lld images (%.0f %%), %.1f images/s, ETA %s, refused %lld\n", (long long)done,
                (long long)total, pct, rate, last ? "0s" : eta, (long long)get(&c->refused));
    }
    fflush(stderr);
}

static void *show_thread(void *arg) {
    import_show *s = arg;
    double period = s->tty ? 0.1 : 5.0;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long ns = until.tv_nsec + (long)(period * 1e9);
        until.tv_sec += ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&s->cv, &s->mu, &until);
        if (!s->stop) draw(s, false);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

import_show *import_show_start(const import_counts *c) {
    import_show *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->c = c;
    s->tty = isatty(STDERR_FILENO);
    s->started = import_seconds();
    s->first_sent_at = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, show_thread, s)) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return NULL;
    }
    return s;
}

void import_show_stop(import_show *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    draw(s, true);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
