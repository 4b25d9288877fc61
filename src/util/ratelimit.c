#include "util/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 4096              /* hash chains */
#define NAME_MAX_LEN 71
#define FORGET_AFTER_S 10.0     /* a name whose bucket is full and untouched this long is dropped */

typedef struct bucket {
    struct bucket *next;
    char name[NAME_MAX_LEN + 1];
    double tokens, last; /* tokens at time last (seconds, monotonic) */
} bucket;

struct rate_limiter {
    pthread_mutex_t lock;
    double rate;
    bucket *slots[SLOTS];
    bucket overflow;     /* shared by names that found the table full */
    int names;
    double swept_at;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t hash(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

rate_limiter *rate_limiter_new(double rate) {
    if (!(rate > 0)) return NULL;
    rate_limiter *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->rate = rate;
    r->overflow.tokens = rate;
    r->overflow.last = r->swept_at = now_s();
    return r;
}

void rate_limiter_free(rate_limiter *r) {
    if (!r) return;
    for (int i = 0; i < SLOTS; i++)
        for (bucket *b = r->slots[i], *next; b; b = next) {
            next = b->next;
            free(b);
        }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void refill(const rate_limiter *r, bucket *b, double now) {
    b->tokens = fmin(r->rate, b->tokens + (now - b->last) * r->rate);
    b->last = now;
}

/* Drops the names whose buckets would be full again and were not used lately (lock held). */
static void sweep(rate_limiter *r, double now) {
    r->swept_at = now;
    for (int i = 0; i < SLOTS; i++)
        for (bucket **p = &r->slots[i]; *p;) {
            bucket *b = *p;
            if (now - b->last > FORGET_AFTER_S && b->tokens + (now - b->last) * r->rate >= r->rate) {
                *p = b->next;
                free(b);
                r->names--;
            } else {
                p = &b->next;
            }
        }
}

bool rate_limiter_take(rate_limiter *r, const char *name, int *retry_after) {
    if (!r) return true;
    double now = now_s();
    pthread_mutex_lock(&r->lock);
    if (now - r->swept_at > FORGET_AFTER_S) sweep(r, now);
    uint32_t slot = hash(name) % SLOTS;
    bucket *b = r->slots[slot];
    while (b && strncmp(b->name, name, NAME_MAX_LEN)) b = b->next;
    if (!b && r->names < RATE_MAX_NAMES && (b = calloc(1, sizeof *b))) {
        snprintf(b->name, sizeof b->name, "%s", name);
        b->tokens = r->rate;
        b->last = now;
        b->next = r->slots[slot];
        r->slots[slot] = b;
        r->names++;
    }
    if (!b) b = &r->overflow;
    refill(r, b, now);
    bool ok = b->tokens >= 1.0;
    if (ok) b->tokens -= 1.0;
    else *retry_after = (int)ceil((1.0 - b->tokens) / r->rate);
    if (!ok && *retry_after < 1) *retry_after = 1;
    pthread_mutex_unlock(&r->lock);
    return ok;
}
