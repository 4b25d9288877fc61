/* /index/...: rebuild the index, report its health and status. */
#include "api/api.h"
#include "util/status.h"

void api_index_reindex(engine *e, http_response *res) {
    char err[512], msg[200];
    int64_t labelled = 0, failed = 0;
    int rc = engine_reindex(e, err, sizeof err);
    /* images stored before labels existed get theirs (a no-op once every image has them) */
    if (!rc) rc = engine_label_missing(e, NULL, NULL, &labelled, &failed, err, sizeof err);
    if (rc) {
        http_fail(res, rc, err);
        return;
    }
    if (!labelled && !failed) snprintf(msg, sizeof msg, "reindex finished");
    else
        snprintf(msg, sizeof msg, "reindex finished; labelled %lld image(s) stored before labels existed%s", (long long)labelled,
                 failed ? " (some could not be decoded: see the server log)" : "");
    http_result(res, 200, NULL, msg);
}

void api_index_health(engine *e, http_response *res) {
    bool healthy = false;
    char msg[512];
    int rc = engine_health(e, &healthy, msg, sizeof msg);
    /* the message names no file or library here: a node cut off from its database says so */
    if (rc == IS_ERR_UNAVAILABLE) http_result(res, 503, json_false(), msg);
    else if (rc) http_fail(res, rc, msg);
    else http_result(res, 200, json_boolean(healthy), msg);
}

void api_index_status(engine *e, http_response *res) {
    engine_status_info st;
    engine_status(e, &st);
    json_t *o = json_pack("{s:I,s:I,s:s,s:{s:b,s:I,s:I},s:I,s:{s:i,s:i,s:i,s:s,s:I}}", "count", (json_int_t)st.count,
                          "seq", (json_int_t)st.seq, "kind", st.kind, "reindex", "running", st.building, "done",
                          (json_int_t)st.build_done, "total", (json_int_t)st.build_total, "threshold",
                          (json_int_t)st.threshold, "hnsw", "m", st.m, "ef_construction", st.ef_construction,
                          "ef_search", st.ef_search, "storage", st.storage, "memory_bytes",
                          (json_int_t)st.memory_bytes);
    if (o) {
        json_object_set_new(o, "embedding", json_string(st.embedding));
        json_object_set_new(o, "dims", json_integer(st.dims));
        json_object_set_new(o, "inference", json_string(st.inference));
        /* vectors of an older embedding are served as they are until `imgsearch reembed` */
        json_object_set_new(o, "reembed_to", st.upgrade_to ? json_string(st.upgrade_to) : json_null());
        /* where the truth is, and how far behind it this node's index may be */
        json_t *store = json_pack("{s:s,s:b,s:I,s:I,s:b}", "kind", st.store, "shared", st.shared, "seq",
                                  (json_int_t)st.store_seq, "lag", (json_int_t)(st.store_seq - st.seq), "stale", st.stale);
        if (store && st.shared)
            json_object_set_new(store, "synced_ms_ago", st.synced_ms_ago < 0 ? json_null() : json_integer(st.synced_ms_ago));
        json_object_set_new(o, "store", store);
    }
    http_result(res, 200, o, st.building ? "building" : "ready");
}
