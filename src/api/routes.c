#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "index/labels.h"
#include "util/status.h"
#include "util/text.h"

#define API_MAX_PATH 1024 /* bytes of a decoded path; longer ones are refused, never cut */
#define API_MAX_PATH_TEXT "1024"

/* Splits "/a/b/c" into at most 4 segments (pointers into copy, which holds API_MAX_PATH + 1 bytes).
 * strtok_r, never strtok: handlers run on several threads at once (strtok's hidden state once
 * turned "/image/add" into a 404 under load). */
static int split(const char *path, char *copy, char *seg[4]) {
    memcpy(copy, path, strlen(path) + 1);
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(copy, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (n == 4) return 5;
        seg[n++] = p;
    }
    return n;
}

/* A path id: decimal digits only, 1..INT64_MAX (every id the store can issue). */
static bool parse_id(const char *s, int64_t *id) {
    if (!*s || strlen(s) > 19) return false;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p)) return false;
    errno = 0;
    long long x = strtoll(s, NULL, 10);
    if (errno == ERANGE || x < 1) return false;
    *id = x;
    return true;
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

bool api_number_arg(const http_request *req, const char *key, double def, double lo, double hi, double *out,
                    http_response *res) {
    const char *v = http_query(req, key);
    if (!v) {
        *out = def;
        return true;
    }
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= lo && x <= hi)) { /* also refuses nan */
        char msg[160];
        snprintf(msg, sizeof msg, "%s must be a number between %g and %g", key, lo, hi);
        http_error(res, 400, msg);
        return false;
    }
    *out = x;
    return true;
}

json_t *api_text(const char *s) {
    if (!s) return json_string("");
    json_t *j = json_string(s); /* NULL when s is not valid UTF-8 */
    if (j) return j;
    char *clean = text_utf8_dup(s, strlen(s));
    j = clean ? json_string(clean) : NULL;
    free(clean);
    return j ? j : json_string("");
}

json_t *api_data_json(const char *text) {
    json_t *data = text ? json_loads(text, 0, NULL) : NULL;
    return json_is_object(data) ? data : (json_decref(data), json_object());
}

/* The labels text of a row (index/labels.h) as [{"class", "name", "prob"}]; null when it has none. */
static json_t *labels_json(const engine *e, const char *text) {
    image_labels l;
    if (!text || !labels_parse(text, UINT16_MAX + 1, &l)) return json_null();
    json_t *a = json_array();
    for (int i = 0; a && i < l.n; i++) {
        const char *name = engine_class_name(e, l.cls[i]);
        json_array_append_new(a, json_pack("{s:i,s:s?,s:f}", "class", (int)l.cls[i], "name", name,
                                           "prob", round((double)l.prob[i] * 1e4) / 1e4));
    }
    return a ? a : json_null();
}

json_t *api_row_json(const engine *e, const store_image *row) {
    char when[40];
    time_t secs = (time_t)(row->created_at / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03dZ", (int)(row->created_at % 1000));
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "id", json_integer(row->id));
    json_object_set_new(o, "name", api_text(row->name));
    json_object_set_new(o, "content_type", api_text(row->content_type));
    json_object_set_new(o, "width", json_integer(row->width));
    json_object_set_new(o, "height", json_integer(row->height));
    json_object_set_new(o, "size", json_integer(row->size));
    json_object_set_new(o, "created_at", json_string(when));
    json_object_set_new(o, "data", api_data_json(row->data));
    json_object_set_new(o, "labels", labels_json(e, row->labels));
    if (row->vector) {
        json_t *v = json_array();
        for (int i = 0; v && i < row->dims; i++) json_array_append_new(v, json_real(row->vector[i]));
        json_object_set_new(o, "vector", v);
    }
    return o;
}

bool api_list_add(api_list *l, json_t *item, size_t budget) {
    char *text = item ? json_dumps(item, JSON_COMPACT) : NULL;
    json_decref(item);
    if (!text) {
        l->failed = true;
        return false;
    }
    size_t n = strlen(text), need = l->len + n + 2;
    if (l->items && need > budget) {
        free(text);
        return false;
    }
    if (need > l->cap) {
        size_t cap = l->cap ? l->cap : 4096;
        while (cap < need) cap *= 2;
        char *b = realloc(l->buf, cap);
        if (!b) {
            free(text);
            l->failed = true;
            return false;
        }
        l->buf = b;
        l->cap = cap;
    }
    if (l->items) l->buf[l->len++] = ',';
    memcpy(l->buf + l->len, text, n);
    l->len += n;
    l->items++;
    free(text);
    return true;
}

void api_list_finish(api_list *l, int status, json_t *members, http_response *res) {
    char *rest = members && json_object_size(members) ? json_dumps(members, JSON_COMPACT) : NULL;
    json_decref(members);
    size_t total = l->len + (rest ? strlen(rest) : 0) + 32;
    char *body = l->failed ? NULL : malloc(total);
    if (!body) {
        free(l->buf);
        free(rest);
        http_fail(res, IS_ERR_NOMEM, "out of memory");
        return;
    }
    /* {"result":[items]} or {"result":[items],<the other members>} */
    int n = snprintf(body, total, "{\"result\":[%.*s]%s%s", (int)l->len, l->buf ? l->buf : "", rest ? "," : "}",
                     rest ? rest + 1 : "");
    free(l->buf);
    free(rest);
    res->status = status;
    res->content_type = "application/json";
    res->body = body;
    res->len = (size_t)n;
}

void api_rows_page(engine *e, const char *filter, const http_request *req, http_response *res) {
    long long offset, limit;
    if (!api_int_arg(req, "offset", 0, 0, INT64_MAX / 2, &offset, res) ||
        !api_int_arg(req, "limit", 100, 1, 1000, &limit, res))
        return;
    const char *label = http_query(req, "label");
    double label_min;
    if (!api_number_arg(req, "label_min", ENGINE_LABEL_MIN, 0.001, 1, &label_min, res)) return;
    store_image *rows;
    float *scores;
    int n;
    int64_t total;
    char err[512];
    int rc = engine_query(e, filter, label && *label ? label : NULL, label_min, offset, (int)limit, &rows, &scores,
                          &n, &total, err, sizeof err);
    if (rc) {
        http_fail(res, rc, err);
        return;
    }
    /* rows are rendered one at a time into text, and the page ends early rather than grow past
     * API_PAGE_MAX_BYTES; next_offset says where the next page starts */
    api_list list = {0};
    int shown = 0;
    for (; shown < n; shown++) {
        json_t *item = api_row_json(e, &rows[shown]);
        if (item && scores)
            json_object_set_new(item, "label_score", json_real(round((double)scores[shown] * 1e4) / 1e4));
        if (!api_list_add(&list, item, API_PAGE_MAX_BYTES)) break;
    }
    engine_rows_free(rows, n);
    free(scores);
    json_t *more = offset + shown < total ? json_integer(offset + shown) : json_null();
    api_list_finish(&list, 200, json_pack("{s:I,s:I,s:I,s:o}", "total", (json_int_t)total, "offset", (json_int_t)offset,
                                          "limit", (json_int_t)limit, "next_offset", more), res);
}

static void no_route(const http_request *req, http_response *res, const char *allow) {
    char msg[300], method[40], path[200];
    text_log_escape(req->method, method, sizeof method);
    text_log_escape(req->path, path, sizeof path);
    snprintf(msg, sizeof msg, allow ? "method %s is not allowed on %s" : "no route for %s %s", method, path);
    http_error(res, allow ? 405 : 404, msg);
    res->allow = allow;
}

static void bad_id(const char *s, http_response *res) {
    char msg[200], shown[48];
    text_log_escape(s, shown, sizeof shown);
    snprintf(msg, sizeof msg, "image id must be an integer from 1 to 9223372036854775807, not '%s'", shown);
    http_error(res, 400, msg);
}

/* The scope a request needs (api.h: access): the UI's own files none, writes write, delete-all and
 * reindex admin, everything else (reads, POST /data/query and POST /images/exists among them,
 * GET /metrics as GET /index/status, and answers about paths that do not exist) read. */
static auth_scope scope_needed(int n, char *seg[4], const char *m) {
#define IS(i, s) (n > (i) && !strcmp(seg[i], s))
    bool post = !strcmp(m, "POST"), del = !strcmp(m, "DELETE");
    if (n == 0 || (n == 2 && IS(0, "ui")) || (n == 1 && (IS(0, "docs") || IS(0, "openapi.json")))) return AUTH_NONE;
    if ((n == 3 && IS(0, "image") && IS(1, "all") && IS(2, "records")) || (n == 2 && IS(0, "index") && IS(1, "reindex")))
        return AUTH_ADMIN;
    if ((n == 2 && IS(0, "image") && IS(1, "add") && post) || (n == 2 && IS(0, "image") && del) ||
        (n == 2 && IS(0, "data") && !IS(1, "query") && post))
        return AUTH_WRITE;
    return AUTH_READ;
#undef IS
}

static const char *const route_templates[API_ROUTES] = {
    [API_ROUTE_OTHER] = "other", [API_ROUTE_ROOT] = "/", [API_ROUTE_UI] = "/ui/{name}", [API_ROUTE_DOCS] = "/docs",
    [API_ROUTE_OPENAPI] = "/openapi.json", [API_ROUTE_IMAGE_ADD] = "/image/add",
    [API_ROUTE_IMAGE_SEARCH] = "/image/search", [API_ROUTE_IMAGE_ALL] = "/image/all/records",
    [API_ROUTE_IMAGE] = "/image/{id}", [API_ROUTE_IMAGE_THUMBNAIL] = "/image/{id}/thumbnail",
    [API_ROUTE_IMAGE_SIMILAR] = "/image/{id}/similar", [API_ROUTE_IMAGES] = "/images",
    [API_ROUTE_IMAGES_EXISTS] = "/images/exists", [API_ROUTE_DATA_QUERY] = "/data/query",
    [API_ROUTE_DATA] = "/data/{id}", [API_ROUTE_DUPLICATES] = "/duplicates",
    [API_ROUTE_INDEX_REINDEX] = "/index/reindex", [API_ROUTE_INDEX_HEALTH] = "/index/health",
    [API_ROUTE_INDEX_STATUS] = "/index/status", [API_ROUTE_METRICS] = "/metrics",
};
_Static_assert(API_ROUTES <= HTTP_ROUTES, "the request statistics count HTTP_ROUTES routes");

const char *api_route_template(int route) {
    return route > 0 && route < API_ROUTES && route_templates[route] ? route_templates[route] : "other";
}

/* The route a path matches, whatever the method (the same matching as api_handle's; a malformed id
 * still counts as its route), for the request statistics. */
static api_route route_of(int n, char *seg[4]) {
#define IS(i, s) (n > (i) && !strcmp(seg[i], s))
    if (n == 0) return API_ROUTE_ROOT;
    if (n == 1)
        return IS(0, "images") ? API_ROUTE_IMAGES : IS(0, "duplicates") ? API_ROUTE_DUPLICATES
               : IS(0, "openapi.json") ? API_ROUTE_OPENAPI : IS(0, "docs") ? API_ROUTE_DOCS
               : IS(0, "metrics") ? API_ROUTE_METRICS : API_ROUTE_OTHER;
    if (n == 2 && IS(0, "image"))
        return IS(1, "add") ? API_ROUTE_IMAGE_ADD : IS(1, "search") ? API_ROUTE_IMAGE_SEARCH : API_ROUTE_IMAGE;
    if (n == 2 && IS(0, "images") && IS(1, "exists")) return API_ROUTE_IMAGES_EXISTS;
    if (n == 2 && IS(0, "data")) return IS(1, "query") ? API_ROUTE_DATA_QUERY : API_ROUTE_DATA;
    if (n == 2 && IS(0, "index"))
        return IS(1, "reindex") ? API_ROUTE_INDEX_REINDEX : IS(1, "health") ? API_ROUTE_INDEX_HEALTH
               : IS(1, "status") ? API_ROUTE_INDEX_STATUS : API_ROUTE_OTHER;
    if (n == 2 && IS(0, "ui")) return API_ROUTE_UI;
    if (n == 3 && IS(0, "image"))
        return IS(1, "all") && IS(2, "records") ? API_ROUTE_IMAGE_ALL
               : IS(2, "thumbnail")             ? API_ROUTE_IMAGE_THUMBNAIL
               : IS(2, "similar")               ? API_ROUTE_IMAGE_SIMILAR
                                                : API_ROUTE_OTHER;
    return API_ROUTE_OTHER;
#undef IS
}

/* Checks every request passes before its handler: a CORS preflight is answered here; then the
 * key's scope; then the key's (or address's) request rate; then, for what changes state, where a
 * browser says the request comes from. */
static bool admitted(const api_context *api, const http_request *req, int n, char *seg[4], http_response *res) {
    const char *m = req->method;
    api_cors_headers(api, req, res);
    if (!strcmp(m, "OPTIONS") && http_header(req, "Access-Control-Request-Method")) {
        api_cors_preflight(api, req, res);
        return false;
    }
    auth_scope need = scope_needed(n, seg, m);
    if (!api_authorize(api, req, need, res)) return false;
    if (need != AUTH_NONE && !api_within_rate(api, req, res)) return false;
    bool reads = !strcmp(m, "GET") || !strcmp(m, "HEAD");
    bool reindex = n == 2 && !strcmp(seg[0], "index") && !strcmp(seg[1], "reindex"); /* its GET writes */
    if ((!reads || reindex) && !api_cross_origin_ok(api, req, res)) return false;
    return true;
}

void api_handle(void *ctx, const http_request *req, http_response *res) {
    const api_context *api = ctx;
    engine *e = api->engine;
    if (strlen(req->path) > API_MAX_PATH) {
        http_error(res, 414, "the path is longer than " API_MAX_PATH_TEXT " bytes");
        return;
    }
    char copy[API_MAX_PATH + 1], *seg[4];
    int n = split(req->path, copy, seg);
    res->route = route_of(n, seg);
    if (!admitted(api, req, n, seg, res)) return;
    const char *m = req->method;
    /* HEAD is GET without the body (libmicrohttpd leaves it out); never on /index/reindex, whose
     * GET is a write kept from the replaced API */
    bool head = !strcmp(m, "HEAD");
    bool get = head || !strcmp(m, "GET"), post = !strcmp(m, "POST"), del = !strcmp(m, "DELETE");
    int64_t id = 0;
    const char *allow = NULL; /* what the matched path takes, for a 405 */
#define IS(i, s) (n > (i) && !strcmp(seg[i], s))
    if (n == 2 && IS(0, "image") && IS(1, "add")) {
        allow = "POST";
        if (post) { api_image_add(e, req, res); return; }
    } else if (n == 2 && IS(0, "image") && IS(1, "search")) {
        allow = "POST";
        if (post) { api_image_search(e, req, res); return; }
    } else if (n == 3 && IS(0, "image") && IS(1, "all") && IS(2, "records")) {
        allow = "DELETE";
        if (del) { api_image_delete_all(e, res); return; }
    } else if (n == 2 && IS(0, "image")) {
        if (!parse_id(seg[1], &id)) { bad_id(seg[1], res); return; }
        allow = "GET, HEAD, DELETE";
        if (get) { api_image_get(e, id, res); return; }
        if (del) { api_image_delete(e, id, res); return; }
    } else if (n == 3 && IS(0, "image") && IS(2, "thumbnail")) {
        if (!parse_id(seg[1], &id)) { bad_id(seg[1], res); return; }
        allow = "GET, HEAD";
        if (get) { api_image_thumbnail(e, id, req, res); return; }
    } else if (n == 3 && IS(0, "image") && IS(2, "similar")) {
        if (!parse_id(seg[1], &id)) { bad_id(seg[1], res); return; }
        allow = "GET, HEAD";
        if (get) { api_image_similar(e, id, req, res); return; }
    } else if (n == 1 && IS(0, "images")) {
        allow = "GET, HEAD";
        if (get) { api_images_list(e, req, res); return; }
    } else if (n == 2 && IS(0, "images") && IS(1, "exists")) { /* a read, though a POST (scope_needed) */
        allow = "POST";
        if (post) { if (api_json_body(req, res)) api_images_exists(e, req, res); return; }
    } else if (n == 2 && IS(0, "data") && IS(1, "query")) {
        allow = "POST";
        if (post) { if (api_json_body(req, res)) api_data_query(e, req, res); return; }
    } else if (n == 2 && IS(0, "data")) {
        if (!parse_id(seg[1], &id)) { bad_id(seg[1], res); return; }
        allow = "GET, HEAD, POST";
        if (get) { api_data_get(e, id, res); return; }
        if (post) { if (api_json_body(req, res)) api_data_set(e, id, req, res); return; }
    } else if (n == 1 && IS(0, "duplicates")) {
        allow = "GET, HEAD";
        if (get) { api_duplicates(e, req, res); return; }
    } else if (n == 2 && IS(0, "index") && IS(1, "reindex")) {
        allow = "GET, POST";
        if ((get && !head) || post) { api_index_reindex(e, res); return; }
    } else if (n == 1 && IS(0, "openapi.json")) {
        allow = "GET, HEAD";
        if (get) { api_static(api->web_dir, "openapi.json", "application/json", req, res); return; }
    } else if (n == 1 && IS(0, "docs")) {
        allow = "GET, HEAD";
        if (get) { api_html_page(api->web_dir, "docs.html", req, res); return; }
    } else if (n == 0) { /* the web UI */
        allow = "GET, HEAD";
        if (get) { api_ui_asset(api->web_dir, "index.html", req, res); return; }
    } else if (n == 2 && IS(0, "ui")) { /* its assets: api_ui_asset checks the name */
        allow = "GET, HEAD";
        if (get) { api_ui_asset(api->web_dir, seg[1], req, res); return; }
    } else if (n == 2 && IS(0, "index") && IS(1, "health")) {
        allow = "GET, HEAD";
        if (get) { api_index_health(e, res); return; }
    } else if (n == 2 && IS(0, "index") && IS(1, "status")) {
        allow = "GET, HEAD";
        if (get) { api_index_status(e, res); return; }
    } else if (n == 1 && IS(0, "metrics")) {
        allow = "GET, HEAD";
        if (get) { api_metrics(e, req, res); return; }
    }
#undef IS
    no_route(req, res, allow);
}

bool api_label_args(const http_request *req, const char **label, double *label_min, http_response *res) {
    if (!api_number_arg(req, "label_min", ENGINE_LABEL_MIN, 0.001, 1, label_min, res)) return false;
    const char *q = http_query(req, "label");
    if (q && *q) {
        *label = q;
        return true;
    }
    if (!api_text_field(req, "label", label, res)) return false;
    if (*label && !**label) *label = NULL;
    return true;
}

bool api_text_field(const http_request *req, const char *name, const char **text, http_response *res) {
    const http_field *f = http_field_get(req, name);
    *text = NULL;
    if (!f || !f->len) return true;
    if (memchr(f->data, 0, f->len)) {
        char msg[120];
        snprintf(msg, sizeof msg, "form field '%s' holds a NUL byte", name);
        http_error(res, 400, msg);
        return false;
    }
    *text = (const char *)f->data;
    return true;
}

bool api_body_text(const http_request *req, const char **text, http_response *res) {
    *text = NULL;
    if (!req->body_len) return true;
    if (memchr(req->body, 0, req->body_len)) {
        http_error(res, 400, "the body holds a NUL byte");
        return false;
    }
    *text = (const char *)req->body;
    return true;
}
