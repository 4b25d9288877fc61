#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "util/status.h"

/* Splits "/a/b/c" into at most 4 segments (pointers into a copy). strtok_r, never strtok: handlers run
 * on several threads at once (strtok's hidden state once turned "/image/add" into a 404 under load). */
static int split(const char *path, char *copy, size_t copylen, char *seg[4]) {
    snprintf(copy, copylen, "%s", path);
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(copy, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (n == 4) return 5;
        seg[n++] = p;
    }
    return n;
}

/* A path id: decimal digits only, 1..INT64_MAX. */
static bool parse_id(const char *s, int64_t *id) {
    if (!*s || strlen(s) > 18) return false;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p)) return false;
    *id = strtoll(s, NULL, 10);
    return *id > 0;
}

bool api_int_arg(const http_request *req, const char *key, long long def, long long lo, long long hi,
                 long long *out, http_response *res) {
    const char *v = http_query(req, key);
    if (!v) {
        *out = def;
        return true;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s must be an integer between %lld and %lld", key, lo, hi);
        http_error(res, 400, msg);
        return false;
    }
    *out = x;
    return true;
}

json_t *api_row_json(const store_image *row) {
    char when[40];
    time_t secs = (time_t)(row->created_at / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03dZ", (int)(row->created_at % 1000));
    json_t *data = json_loads(row->data ? row->data : "{}", 0, NULL);
    json_t *o = json_pack("{s:I,s:s,s:s,s:i,s:i,s:I,s:s,s:o}", "id", (json_int_t)row->id, "name", row->name,
                          "content_type", row->content_type, "width", row->width, "height", row->height, "size",
                          (json_int_t)row->size, "created_at", when, "data", data ? data : json_object());
    if (o && row->vector) {
        json_t *v = json_array();
        for (int i = 0; v && i < row->dims; i++) json_array_append_new(v, json_real(row->vector[i]));
        json_object_set_new(o, "vector", v);
    }
    return o;
}

void api_rows_page(engine *e, const char *filter, const http_request *req, http_response *res) {
    long long offset, limit;
    if (!api_int_arg(req, "offset", 0, 0, INT64_MAX / 2, &offset, res) ||
        !api_int_arg(req, "limit", 100, 1, 1000, &limit, res))
        return;
    store_image *rows;
    int n;
    int64_t total;
    char err[512];
    int rc = engine_query(e, filter, offset, (int)limit, &rows, &n, &total, err, sizeof err);
    if (rc) {
        http_fail(res, rc, err);
        return;
    }
    json_t *list = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(list, api_row_json(&rows[i]));
    engine_rows_free(rows, n);
    http_json(res, 200, json_pack("{s:o,s:I,s:I,s:I}", "result", list, "total", (json_int_t)total, "offset",
                                  (json_int_t)offset, "limit", (json_int_t)limit));
}

static void no_route(const http_request *req, http_response *res, bool path_known) {
    char msg[300];
    snprintf(msg, sizeof msg, path_known ? "method %s is not allowed on %.200s" : "no route for %s %.200s",
             req->method, req->path);
    http_error(res, path_known ? 405 : 404, msg);
}

static void bad_id(const char *s, http_response *res) {
    char msg[160];
    snprintf(msg, sizeof msg, "image id must be a positive integer, not '%.40s'", s);
    http_error(res, 400, msg);
}

void api_handle(void *ctx, const http_request *req, http_response *res) {
    const api_context *api = ctx;
    engine *e = api->engine;
    char copy[512], *seg[4];
    int n = split(req->path, copy, sizeof copy, seg);
    const char *m = req->method;
    bool get = !strcmp(m, "GET"), post = !strcmp(m, "POST"), del = !strcmp(m, "DELETE");
    int64_t id = 0;
#define IS(i, s) (n > (i) && !strcmp(seg[i], s))
    if (n == 2 && IS(0, "image") && IS(1, "add")) {
        if (post) { api_image_add(e, req, res); return; }
    } else if (n == 2 && IS(0, "image") && IS(1, "search")) {
        if (post) { api_image_search(e, req, res); return; }
    } else if (n == 3 && IS(0, "image") && IS(1, "all") && IS(2, "records")) {
        if (del) { api_image_delete_all(e, res); return; }
    } else if (n == 2 && IS(0, "image")) {
        if (!parse_id(seg[1], &id)) { bad_id(seg[1], res); return; }
        if (get) { api_image_get(e, id, res); return; }
        if (del) { api_image_delete(e, id, res); return; }
    } else if (n == 3 && IS(0, "image") && IS(2, "thumbnail")) {
        if (!parse_id(seg[1], &id)) { bad_id(seg[1], res); return; }
        if (get) { api_image_thumbnail(e, id, req, res); return; }
    } else if (n == 3 && IS(0, "image") && IS(2, "similar")) {
        if (!parse_id(seg[1], &id)) { bad_id(seg[1], res); return; }
        if (get) { api_image_similar(e, id, req, res); return; }
    } else if (n == 1 && IS(0, "images")) {
        if (get) { api_images_list(e, req, res); return; }
    } else if (n == 2 && IS(0, "data") && IS(1, "query")) {
        if (post) { api_data_query(e, req, res); return; }
    } else if (n == 2 && IS(0, "data")) {
        if (!parse_id(seg[1], &id)) { bad_id(seg[1], res); return; }
        if (get) { api_data_get(e, id, res); return; }
        if (post) { api_data_set(e, id, req, res); return; }
    } else if (n == 2 && IS(0, "index") && IS(1, "reindex")) {
        if (get || post) { api_index_reindex(e, res); return; }
    } else if (n == 1 && IS(0, "openapi.json")) {
        if (get) { api_static(api->web_dir, "openapi.json", "application/json", req, res); return; }
    } else if (n == 1 && IS(0, "docs")) {
        if (get) { api_static(api->web_dir, "docs.html", "text/html; charset=utf-8", req, res); return; }
    } else if (n == 0) { /* the web UI */
        if (get) { api_ui_asset(api->web_dir, "index.html", req, res); return; }
    } else if (n == 2 && IS(0, "ui")) { /* its assets: api_ui_asset checks the name */
        if (get) { api_ui_asset(api->web_dir, seg[1], req, res); return; }
    } else if (n == 2 && IS(0, "index") && IS(1, "health")) {
        if (get) { api_index_health(e, res); return; }
    } else if (n == 2 && IS(0, "index") && IS(1, "status")) {
        if (get) { api_index_status(e, res); return; }
    } else {
        { no_route(req, res, false); return; }
    }
#undef IS
    no_route(req, res, true);
}
