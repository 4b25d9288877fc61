/* engine_duplicates: groups of stored images that are the same picture (engine.h).
 *
 * Every image's nearest neighbours come from the index (exact scan or HNSW, as searches do); a
 * pair is a candidate when its cosine distance is at most max_dist. Groups are formed around
 * anchors, not by chaining pairs: the image with the most candidates (then the lowest id) takes
 * every ungrouped candidate of its own, then the next, so every member is within max_dist of its
 * group's anchor. Chaining would glue a burst of similar photos (A near B near C ...) into one
 * group whose ends look nothing alike. The result is cached until the next write. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "util/status.h"

#define DUP_NEIGHBOURS 32      /* candidates looked at first per image */
#define DUP_NEIGHBOURS_MAX 1024 /* ... and at most, when all of the first are within max_dist (many copies) */

typedef struct {
    int64_t id;
    int *cand;       /* indexes of candidates (into the id array) */
    float *cand_dist;
    int ncand;
    int group;       /* -1 while ungrouped */
} dup_node;

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int find_index(const int64_t *ids, size_t n, int64_t id) {
    const int64_t *p = bsearch(&id, ids, n, sizeof *ids, cmp_i64);
    return p ? (int)(p - ids) : -1;
}

#define DUP_READ_BATCH 256 /* stored vectors read per store call (one round trip on PostgreSQL) */

/* Candidates of every image (ids ascending): its neighbours within max_dist. */
static int collect_candidates(engine *e, const int64_t *ids, size_t n, double max_dist, dup_node *nodes, char *err,
                              size_t errlen) {
    index_hit *hits = malloc(sizeof *hits * DUP_NEIGHBOURS_MAX);
    store_image *rows = calloc(DUP_READ_BATCH, sizeof *rows);
    if (!hits || !rows) {
        free(hits);
        free(rows);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    int rc = IS_OK;
    for (size_t at = 0; !rc && at < n; at += DUP_READ_BATCH) {
        size_t end = at + DUP_READ_BATCH < n ? at + DUP_READ_BATCH : n;
        int got = 0, r = 0;
        rc = store_get_many(e->db, ids + at, (int)(end - at), true, rows, &got, err, errlen);
        for (size_t i = at; !rc && i < end; i++) {
            nodes[i] = (dup_node){.id = ids[i], .group = -1};
            while (r < got && rows[r].id < ids[i]) r++; /* both ascending */
            if (r >= got || rows[r].id != ids[i]) continue; /* deleted meanwhile */
            const float *vec = rows[r].vector;
            int found = 0, keep = 0;
            /* a picture stored many times has more copies than the first look shows: look wider */
            for (int k = DUP_NEIGHBOURS; !rc && k <= DUP_NEIGHBOURS_MAX; k *= 2) {
                pthread_rwlock_rdlock(&e->index_lock);
                rc = index_search(e, vec, k, 0, NULL, NULL, ids[i], hits, &found, err, errlen);
                pthread_rwlock_unlock(&e->index_lock);
                keep = 0;
                while (!rc && keep < found && hits[keep].dist <= max_dist) keep++; /* nearest first */
                if (keep < k) break;
            }
            if (!rc && keep) {
                nodes[i].cand = malloc(sizeof(int) * (size_t)keep);
                nodes[i].cand_dist = malloc(sizeof(float) * (size_t)keep);
                if (!nodes[i].cand || !nodes[i].cand_dist) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
                for (int j = 0; !rc && j < keep; j++) {
                    int pos = find_index(ids, n, hits[j].id);
                    if (pos < 0) continue; /* added after the id list was taken */
                    nodes[i].cand[nodes[i].ncand] = pos;
                    nodes[i].cand_dist[nodes[i].ncand++] = hits[j].dist < 0 ? 0 : hits[j].dist;
                }
            }
        }
        for (int j = 0; j < got; j++) store_image_clear(&rows[j]);
    }
    free(rows);
    free(hits);
    return rc;
}

/* Anchors are tried in this order: most candidates first, then the lowest id. */
typedef struct {
    int ncand;
    int64_t id;
    int index;
} anchor_key;

static int cmp_anchor(const void *a, const void *b) {
    const anchor_key *x = a, *y = b;
    if (x->ncand != y->ncand) return y->ncand - x->ncand;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_group(const void *a, const void *b) {
    const engine_dup_group *x = a, *y = b;
    if (x->n != y->n) return y->n - x->n;
    return (x->members[0].id > y->members[0].id) - (x->members[0].id < y->members[0].id);
}

/* Members: the anchor first, then the others nearest first. */
static int build_groups(dup_node *nodes, size_t n, engine_dup_group **out, int *nout, char *err, size_t errlen) {
    anchor_key *order = malloc(sizeof *order * (n ? n : 1));
    engine_dup_group *groups = calloc(n / 2 + 1, sizeof *groups);
    int ng = 0;
    if (!order || !groups) {
        free(order);
        free(groups);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) order[i] = (anchor_key){nodes[i].ncand, nodes[i].id, (int)i};
    qsort(order, n, sizeof *order, cmp_anchor);
    for (size_t o = 0; o < n; o++) {
        dup_node *a = &nodes[order[o].index];
        if (a->group >= 0 || !a->ncand) continue;
        int free_cands = 0;
        for (int j = 0; j < a->ncand; j++) free_cands += nodes[a->cand[j]].group < 0;
        if (!free_cands) continue;
        engine_dup_group *g = &groups[ng];
        g->members = malloc(sizeof *g->members * (size_t)(free_cands + 1));
        if (!g->members) {
            engine_dup_groups_free(groups, ng);
            free(order);
            return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        }
        a->group = ng;
        g->members[g->n++] = (engine_dup_member){a->id, 0};
        for (int j = 0; j < a->ncand; j++) { /* candidates come nearest first */
            dup_node *m = &nodes[a->cand[j]];
            if (m->group >= 0) continue;
            m->group = ng;
            g->members[g->n++] = (engine_dup_member){m->id, a->cand_dist[j]};
        }
        ng++;
    }
    free(order);
    qsort(groups, (size_t)ng, sizeof *groups, cmp_group);
    *out = groups;
    *nout = ng;
    return IS_OK;
}

void engine_dup_groups_free(engine_dup_group *groups, int n) {
    for (int i = 0; groups && i < n; i++) free(groups[i].members);
    free(groups);
}

static int copy_groups(const engine_dup_group *src, int n, engine_dup_group **out, char *err, size_t errlen) {
    engine_dup_group *g = calloc((size_t)n + 1, sizeof *g);
    if (!g) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        g[i].n = src[i].n;
        g[i].members = malloc(sizeof *g[i].members * (size_t)src[i].n);
        if (!g[i].members) {
            engine_dup_groups_free(g, i);
            return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        }
        memcpy(g[i].members, src[i].members, sizeof *g[i].members * (size_t)src[i].n);
    }
    *out = g;
    return IS_OK;
}

int engine_duplicates(engine *e, double max_dist, engine_dup_group **groups, int *ngroups, int64_t *checked,
                      char *err, size_t errlen) {
    *groups = NULL;
    *ngroups = 0;
    *checked = 0;
    if (!(max_dist >= 0 && max_dist <= 1))
        return is_fail(err, errlen, IS_ERR_INVALID, "max_dist must be a cosine distance between 0 and 1");
    /* one computation at a time; a second caller with the same question gets the cached answer */
    pthread_mutex_lock(&e->dup_lock);
    pthread_rwlock_rdlock(&e->index_lock);
    int64_t seq = e->idx.applied_seq;
    size_t n = json_object_size(e->idx.meta);
    pthread_rwlock_unlock(&e->index_lock);
    int rc = IS_OK;
    if (!e->dup_cache.valid || e->dup_cache.seq != seq || e->dup_cache.max_dist != max_dist) {
        int64_t *ids = malloc(sizeof *ids * (n ? n : 1));
        dup_node *nodes = calloc(n ? n : 1, sizeof *nodes);
        size_t m = 0;
        if (!ids || !nodes) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        if (!rc) {
            const char *key;
            json_t *doc;
            pthread_rwlock_rdlock(&e->index_lock);
            json_object_foreach(e->idx.meta, key, doc) {
                if (m < n) ids[m++] = strtoll(key, NULL, 10);
            }
            pthread_rwlock_unlock(&e->index_lock);
            qsort(ids, m, sizeof *ids, cmp_i64);
            rc = collect_candidates(e, ids, m, max_dist, nodes, err, errlen);
        }
        engine_dup_group *built = NULL;
        int nbuilt = 0;
        if (!rc) rc = build_groups(nodes, m, &built, &nbuilt, err, errlen);
        for (size_t i = 0; nodes && i < m; i++) {
            free(nodes[i].cand);
            free(nodes[i].cand_dist);
        }
        free(nodes);
        free(ids);
        if (!rc) {
            engine_dup_groups_free(e->dup_cache.groups, e->dup_cache.n);
            e->dup_cache = (struct dup_cache){.valid = true, .seq = seq, .max_dist = max_dist, .groups = built,
                                              .n = nbuilt, .checked = (int64_t)m};
        }
    }
    if (!rc) rc = copy_groups(e->dup_cache.groups, e->dup_cache.n, groups, err, errlen);
    if (!rc) {
        *ngroups = e->dup_cache.n;
        *checked = e->dup_cache.checked;
    }
    pthread_mutex_unlock(&e->dup_lock);
    return rc;
}
