/* engine_keys.c — API keys: made, listed and revoked by `imgsearch keys` straight on the store, and
 * checked by a running server against a copy it reads again every ENGINE_KEYS_REFRESH_MS
 * (engine.h). The copy is guarded by keys_lock, which is taken after no other engine lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/engine_internal.h"
#include "util/status.h"

static int64_t clock_ms(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The store alone: no model check (model NULL), no index, no directory lock. */
static int open_store(const char *data_dir, const char *store_url, store **s, char *err, size_t errlen) {
    if (!(store_url && *store_url) && mkdir(data_dir, 0755) && errno != EEXIST)
        return is_fail(err, errlen, IS_ERR_IO, "cannot create %s: %s", data_dir, strerror(errno));
    return store_open(data_dir, store_url, NULL, 0, s, err, errlen);
}

int engine_key_create(const char *data_dir, const char *store_url, const char *name, auth_scope scope,
                      char name_out[AUTH_NAME_MAX + 1], char key[AUTH_KEY_LEN + 1], char *err, size_t errlen) {
    if (name && !auth_name_valid(name))
        return is_fail(err, errlen, IS_ERR_INVALID, "a key name is 1 to %d of A-Z a-z 0-9 . _ -", AUTH_NAME_MAX);
    if (scope < AUTH_READ || scope > AUTH_ADMIN)
        return is_fail(err, errlen, IS_ERR_INVALID, "a key's scope is read, write or admin");
    store_key k = {.created_at = clock_ms(CLOCK_REALTIME)};
    snprintf(k.scope, sizeof k.scope, "%s", auth_scope_name(scope));
    if (!auth_key_generate(key)) return is_fail(err, errlen, IS_ERR_INTERNAL, "the random generator failed");
    auth_key_digest(key, strlen(key), k.digest);
    if (name) snprintf(k.name, sizeof k.name, "%s", name);
    else snprintf(k.name, sizeof k.name, "%s-%.8s", k.scope, k.digest);
    snprintf(name_out, AUTH_NAME_MAX + 1, "%s", k.name);
    store *s;
    int rc = open_store(data_dir, store_url, &s, err, errlen);
    if (rc) return rc;
    rc = store_key_add(s, &k, err, errlen);
    store_close(s);
    if (rc) memset(key, 0, AUTH_KEY_LEN + 1);
    return rc;
}

int engine_key_list(const char *data_dir, const char *store_url, store_key **keys, int *n, char *err, size_t errlen) {
    *keys = NULL;
    *n = 0;
    store *s;
    int rc = open_store(data_dir, store_url, &s, err, errlen);
    if (rc) return rc;
    rc = store_key_list(s, keys, n, err, errlen);
    store_close(s);
    return rc;
}

int engine_key_revoke(const char *data_dir, const char *store_url, const char *name, char *err, size_t errlen) {
    store *s;
    int rc = open_store(data_dir, store_url, &s, err, errlen);
    if (rc) return rc;
    rc = store_key_revoke(s, name, err, errlen);
    store_close(s);
    return rc;
}

/* Reads the store's keys when the copy is stale (keys_lock held). A failed read keeps the old copy
 * and is tried again at the next refresh; only a server that never read its keys fails. */
static int refresh_locked(engine *e, char *err, size_t errlen) {
    int64_t now = clock_ms(CLOCK_MONOTONIC);
    if (e->keys_read_ms && now - e->keys_read_ms < ENGINE_KEYS_REFRESH_MS) return IS_OK;
    store_key *keys;
    int n;
    int rc = store_key_list(e->db, &keys, &n, err, errlen);
    if (rc) {
        if (!e->keys_read_ms) return rc;
        e->keys_read_ms = now; /* keep the last copy until the next try */
        return IS_OK;
    }
    free(e->keys);
    e->keys = keys;
    e->nkeys = n;
    e->keys_read_ms = now;
    return IS_OK;
}

int engine_keys_count(engine *e, int *n, char *err, size_t errlen) {
    pthread_mutex_lock(&e->keys_lock);
    int rc = refresh_locked(e, err, errlen);
    *n = e->nkeys;
    pthread_mutex_unlock(&e->keys_lock);
    return rc;
}

int engine_authenticate(engine *e, const char *key, size_t len, auth_scope *scope, char *name, char *err,
                        size_t errlen) {
    char digest[AUTH_DIGEST_HEX + 1];
    auth_key_digest(key, len, digest);
    pthread_mutex_lock(&e->keys_lock);
    int rc = refresh_locked(e, err, errlen);
    int found = -1;
    for (int i = 0; !rc && i < e->nkeys; i++) /* every entry compared: the time does not tell which */
        if (auth_digest_equal(e->keys[i].digest, digest) && found < 0) found = i;
    bool touch = false;
    if (!rc && found >= 0) {
        store_key *k = &e->keys[found];
        snprintf(name, AUTH_NAME_MAX + 1, "%s", k->name);
        if (!auth_scope_parse(k->scope, scope)) *scope = AUTH_NONE;
        int64_t wall = clock_ms(CLOCK_REALTIME);
        if (wall - k->last_used >= ENGINE_KEY_TOUCH_MS) {
            k->last_used = wall;
            touch = true;
        }
    } else if (!rc) {
        rc = is_fail(err, errlen, IS_ERR_NOT_FOUND, "no such key");
    }
    pthread_mutex_unlock(&e->keys_lock);
    /* outside the lock: a slow store must not hold up other requests' checks */
    if (touch) store_key_touch(e->db, name, clock_ms(CLOCK_REALTIME), NULL, 0);
    return rc;
}
