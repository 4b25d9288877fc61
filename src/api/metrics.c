/* GET /metrics: the Prometheus text exposition (format 0.0.4) of this server.
 *
 * Families, all with an imgsearch_ prefix but the standard process_* ones (README, "Monitoring"):
 * requests by method, route template and status and their answering times per route (the HTTP
 * server's statistics, http.h); images added, refused by reason and deleted, inferences, the
 * inference queue (depth, busy sessions, wait times), the index (images, kind, memory, building,
 * last change), its snapshot's age, the store's last change and, for the embedded store, the size
 * of its files (engine.h: engine_metrics). Counters only grow for the life of the process. Series
 * of labelled request families appear once counted; the refusal reasons are all written from the
 * start (at 0). The snapshot age is left out while there is no snapshot (the exact index, or an
 * HNSW not saved yet), the store size on PostgreSQL. Thread-safe: reads atomics and the engine's
 * thread-safe snapshots; the text is built on the calling thread. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "util/metrics.h"
#include "util/status.h"

static void request_families(metrics_text *t, const http_stats *s) {
    metrics_family(t, "imgsearch_http_requests_total", "counter",
                   "HTTP requests answered, by method, route template (\"other\": no route, or refused before "
                   "routing) and status.");
    for (int r = 0; r < API_ROUTES; r++)
        for (int m = 0; m < HTTP_METHODS; m++)
            for (int slot = 0; slot < HTTP_STATUS_SLOTS; slot++) {
                uint64_t n = http_stats_requests(s, r, m, slot);
                if (!n) continue;
                char status[16];
                int code = http_status_of_slot(slot);
                snprintf(status, sizeof status, code ? "%d" : "other", code);
                metrics_label l[] = {{"method", http_method_name(m)}, {"route", api_route_template(r)},
                                     {"status", status}};
                metrics_sample_u64(t, "imgsearch_http_requests_total", l, 3, n);
            }
    metrics_family(t, "imgsearch_http_request_duration_seconds", "histogram",
                   "Time from a request's first line to its answer being ready, by route template.");
    for (int r = 0; r < API_ROUTES; r++) {
        metrics_histogram_value v;
        http_stats_duration(s, r, &v);
        if (!v.count) continue;
        metrics_label l[] = {{"route", api_route_template(r)}};
        metrics_write_histogram(t, "imgsearch_http_request_duration_seconds", l, 1, &v);
    }
    metrics_family(t, "imgsearch_http_requests_in_flight", "gauge", "Requests begun and not completed (this one too).");
    metrics_sample(t, "imgsearch_http_requests_in_flight", NULL, 0, http_stats_in_flight(s));
}

static void engine_families(metrics_text *t, const engine_metrics_info *m) {
    metrics_family(t, "imgsearch_images_added_total", "counter", "Images stored by POST /image/add.");
    metrics_sample_u64(t, "imgsearch_images_added_total", NULL, 0, m->added);
    metrics_family(t, "imgsearch_images_refused_total", "counter",
                   "Images POST /image/add refused after reading them, by reason (the error's status name).");
    for (int i = 0; i < ENGINE_REFUSAL_SLOTS; i++) {
        const char *reason = i ? is_status_name(-i) : "unknown";
        if (!m->refused[i] && (!i || !strcmp(reason, "unknown"))) continue; /* codes that do not exist */
        metrics_label l[] = {{"reason", reason}};
        metrics_sample_u64(t, "imgsearch_images_refused_total", l, 1, m->refused[i]);
    }
    metrics_family(t, "imgsearch_images_deleted_total", "counter",
                   "Images deleted, one by one or by DELETE /image/all/records.");
    metrics_sample_u64(t, "imgsearch_images_deleted_total", NULL, 0, m->deleted);
    metrics_family(t, "imgsearch_inferences_total", "counter",
                   "Images decoded and run through the network (adds and searches, refused ones included).");
    metrics_sample_u64(t, "imgsearch_inferences_total", NULL, 0, m->inferences);
    metrics_family(t, "imgsearch_inference_runs_total", "counter",
                   "Network runs: concurrent images are batched into one (inferences / runs = mean batch).");
    metrics_sample_u64(t, "imgsearch_inference_runs_total", NULL, 0, m->inference_runs);
    metrics_family(t, "imgsearch_inference_queue_depth", "gauge", "Decoded images waiting for an inference session.");
    metrics_sample(t, "imgsearch_inference_queue_depth", NULL, 0, m->queue_waiting);
    metrics_family(t, "imgsearch_inference_sessions_busy", "gauge", "Inference sessions running an image now.");
    metrics_sample(t, "imgsearch_inference_sessions_busy", NULL, 0, m->sessions_busy);
    metrics_family(t, "imgsearch_inference_sessions_max", "gauge", "Inference sessions there may be (--threads).");
    metrics_sample(t, "imgsearch_inference_sessions_max", NULL, 0, m->sessions_max);
    metrics_family(t, "imgsearch_inference_queue_wait_seconds", "histogram",
                   "Time from queuing a decoded image to its batch starting (refused as busy: not counted).");
    metrics_write_histogram(t, "imgsearch_inference_queue_wait_seconds", NULL, 0, &m->queue_wait);
}

static void index_families(metrics_text *t, const engine_status_info *st, const engine_metrics_info *m) {
    metrics_family(t, "imgsearch_index_images", "gauge", "Images in the index.");
    metrics_sample(t, "imgsearch_index_images", NULL, 0, (double)st->count);
    metrics_family(t, "imgsearch_index_info", "gauge", "The index's kind: exact (scan) or hnsw; always 1.");
    metrics_label kind[] = {{"kind", st->kind}};
    metrics_sample(t, "imgsearch_index_info", kind, 1, 1);
    metrics_family(t, "imgsearch_index_memory_bytes", "gauge",
                   "Bytes of the index's vectors and graph (not the metadata kept beside them).");
    metrics_sample(t, "imgsearch_index_memory_bytes", NULL, 0, (double)m->index_memory_bytes);
    metrics_family(t, "imgsearch_index_building", "gauge", "1 while the index is being rebuilt, else 0.");
    metrics_sample(t, "imgsearch_index_building", NULL, 0, st->building ? 1 : 0);
    metrics_family(t, "imgsearch_index_last_change_seq", "gauge", "The store change the index applied last.");
    metrics_sample(t, "imgsearch_index_last_change_seq", NULL, 0, (double)st->seq);
    metrics_family(t, "imgsearch_store_last_change_seq", "gauge",
                   "The store's last change as this server last saw it (equal to the index's unless shared).");
    metrics_sample(t, "imgsearch_store_last_change_seq", NULL, 0, (double)st->store_seq);
    if (m->snapshot_saved_ms > 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        double age = (double)now.tv_sec + (double)now.tv_nsec / 1e9 - (double)m->snapshot_saved_ms / 1e3;
        metrics_family(t, "imgsearch_index_snapshot_age_seconds", "gauge",
                       "Seconds since the HNSW snapshot on disk was written (absent while there is none).");
        metrics_sample(t, "imgsearch_index_snapshot_age_seconds", NULL, 0, age > 0 ? age : 0);
    }
    if (m->store_bytes >= 0) {
        metrics_family(t, "imgsearch_store_size_bytes", "gauge",
                       "Bytes of the embedded store's files: imgsearch.db, its -wal and blobs/ (measured at most "
                       "once a minute).");
        metrics_sample(t, "imgsearch_store_size_bytes", NULL, 0, (double)m->store_bytes);
    }
}

void api_metrics(engine *e, const http_request *req, http_response *res) {
    engine_status_info st;
    engine_metrics_info m;
    engine_status(e, &st);
    engine_metrics(e, &m);
    metrics_text t = {0};
    request_families(&t, req->stats);
    engine_families(&t, &m);
    index_families(&t, &st, &m);
    metrics_write_process(&t);
    size_t len;
    char *body = metrics_text_take(&t, &len);
    if (!body) {
        http_fail(res, IS_ERR_NOMEM, "out of memory");
        return;
    }
    res->status = 200;
    res->content_type = METRICS_CONTENT_TYPE;
    res->body = body;
    res->len = len;
    res->cache_control = "no-store";
}
