/* engine_follow.c — keeping a node's index in step with a shared store (PostgreSQL).
 *
 * Other nodes write to the same database; this node learns of their changes from the store's
 * change log. A thread waits for the store's notification (LISTEN) or for FOLLOW_POLL_MS, whichever
 * comes first, then applies every change after the index's sequence (index_catch_up, under
 * write_lock). Correctness never depends on the notification: a lost one, a dropped connection or
 * a restarted database cost at most one poll interval, after which the node reads everything after
 * the last sequence it applied. The store guarantees that no change can commit below a sequence
 * already seen (store.h), so nothing is skipped. */
#include <stdio.h>

#include "engine/engine_internal.h"
#include "util/status.h"

#define FOLLOW_POLL_MS 500

static void *follow(void *arg) {
    engine *e = arg;
    bool was_failing = false;
    while (!__atomic_load_n(&e->stopping, __ATOMIC_RELAXED)) {
        store_wait_changes(e->db, FOLLOW_POLL_MS);
        if (__atomic_load_n(&e->stopping, __ATOMIC_RELAXED)) break;
        char err[512];
        pthread_mutex_lock(&e->write_lock);
        int rc = index_catch_up(e, err, sizeof err);
        int64_t seq = e->idx.applied_seq;
        pthread_mutex_unlock(&e->write_lock);
        /* one line when following stops working and one when it works again, not one per poll */
        if (rc && !was_failing) fprintf(stderr, "imgsearch: cannot follow the store (%s); retrying\n", err);
        if (!rc && was_failing) fprintf(stderr, "imgsearch: following the store again, at change %lld\n", (long long)seq);
        was_failing = rc != IS_OK;
    }
    store_stop_waiting(e->db);
    return NULL;
}

void engine_follow_start(engine *e) {
    if (!e->follower_started && !pthread_create(&e->follower, NULL, follow, e)) e->follower_started = true;
}

void engine_follow_stop(engine *e) {
    __atomic_store_n(&e->stopping, true, __ATOMIC_RELAXED);
    if (e->follower_started) {
        store_wake(e->db);
        pthread_join(e->follower, NULL);
    }
    e->follower_started = false;
}
