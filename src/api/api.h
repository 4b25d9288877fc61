/* api.h — the HTTP API over the engine: routing, request parsing, JSON rendering.
 *
 * Success bodies are {"result": ..., "message": ...}; errors are {"detail": "..."} with the
 * status from util/status.h's table (a 5xx shows a log reference, not its reason). Thread-safe
 * (the engine is; the rate limiter has its own lock). One file per resource: image.c, data.c,
 * duplicates.c, index.c, static.c, metrics.c; access.c decides who may do what; routes.c
 * dispatches (every request through access first) and holds the shared helpers. */
#ifndef IMGSEARCH_API_H
#define IMGSEARCH_API_H

#include <stdint.h>

#include "engine/engine.h"
#include "http/http.h"
#include "util/ratelimit.h"

typedef struct {
    engine *engine;
    const char *web_dir; /* static assets: openapi.json, docs.html, the UI */
    const char *const *cors_origins; /* web origins ("https://app.example") allowed to call the API */
    int ncors_origins;
    rate_limiter *limiter; /* requests a second per key, or per client address without one; NULL = no limit */
    double rate_limit;     /* its rate, for the message */
} api_context;

/* An http_handler; ctx is an api_context*. */
void api_handle(void *ctx, const http_request *req, http_response *res);

/* The routes, by template: what the request statistics count (http_response.route, set for every
 * request whose path matches one, whatever the method or the answer) and GET /metrics names. */
typedef enum {
    API_ROUTE_OTHER = 0, /* no route matches the path */
    API_ROUTE_ROOT, API_ROUTE_UI, API_ROUTE_DOCS, API_ROUTE_OPENAPI,
    API_ROUTE_IMAGE_ADD, API_ROUTE_IMAGE_SEARCH, API_ROUTE_IMAGE_ALL, API_ROUTE_IMAGE,
    API_ROUTE_IMAGE_THUMBNAIL, API_ROUTE_IMAGE_SIMILAR, API_ROUTE_IMAGES, API_ROUTE_IMAGES_EXISTS,
    API_ROUTE_DATA_QUERY, API_ROUTE_DATA, API_ROUTE_DUPLICATES, API_ROUTE_INDEX_REINDEX, API_ROUTE_INDEX_HEALTH,
    API_ROUTE_INDEX_STATUS, API_ROUTE_METRICS,
    API_ROUTES
} api_route;
/* The route's template ("/image/{id}"); "other" for API_ROUTE_OTHER and ids out of range. */
const char *api_route_template(int route);

/* Serves web_dir/name with the given type, Cache-Control: no-cache and an ETag (304 when the
 * request's If-None-Match has it); a missing file is a 500 (static.c). name is fixed by the caller. */
void api_static(const char *web_dir, const char *name, const char *content_type, const http_request *req,
                http_response *res);
/* Serves the HTML page web_dir/name like api_static, with the UI's Content-Security-Policy
 * (only this server, no framing). Every HTML page goes through here or api_ui_asset. */
void api_html_page(const char *web_dir, const char *name, const http_request *req, http_response *res);
/* Serves the UI asset web_dir/name if name passes the whitelist [a-z0-9_-]+.(html|js|css|svg|png),
 * else (or when missing) 404; HTML pages get a Content-Security-Policy that allows only this server. */
void api_ui_asset(const char *web_dir, const char *name, const http_request *req, http_response *res);

/* ---- access (access.c) ----
 * Scopes: the UI's files need none; searches and reads need read; adds, deletes of one image and
 * metadata changes need write; delete-all and reindex need admin (routes.c says which is which).
 * While the store holds no key every request is allowed, as in the replaced API. */
/* The web UI keeps its key in this cookie too (SameSite=Strict), for what <img> loads. */
#define API_KEY_COOKIE "imgsearch_key"
/* May this request go on? The key comes from Authorization: Bearer, X-API-Key, or else the UI's
 * cookie. Sets res->principal to the key's name. false with res written: 401 (no,
 * malformed, unknown or revoked key; with WWW-Authenticate) or 403 (a key without the scope). */
bool api_authorize(const api_context *api, const http_request *req, auth_scope need, http_response *res);
/* May a request that changes state come from where it comes from? A browser names the page that
 * made it (Origin, Sec-Fetch-Site): a page of another origin is refused (403) unless --cors-origin
 * allows it; clients that are not browsers send neither and pass. */
bool api_cross_origin_ok(const api_context *api, const http_request *req, http_response *res);
/* Takes one request from the budget of the request's key (res->principal, set by api_authorize)
 * or, without one, of its client address (but 127.0.0.1 and ::1, where a proxy in front of the
 * server speaks for all its clients, have none); false with a 429 and Retry-After written when
 * spent. The UI's own files are not counted. */
bool api_within_rate(const api_context *api, const http_request *req, http_response *res);
/* Is origin one of --cors-origin? */
bool api_origin_allowed(const api_context *api, const char *origin);
/* Access-Control-Allow-Origin for an allowed Origin (nothing otherwise). */
void api_cors_headers(const api_context *api, const http_request *req, http_response *res);
/* The answer to an OPTIONS preflight: 204 with the methods and headers allowed, or 403. */
void api_cors_preflight(const api_context *api, const http_request *req, http_response *res);
/* Is the body declared JSON (application/json or application/...+json)? false with a 415 written.
 * Browsers send text/plain and forms cross-origin without asking first: JSON they must ask for. */
bool api_json_body(const http_request *req, http_response *res);

/* handlers (id is the parsed {id} path segment, or 0) */
void api_image_add(engine *e, const http_request *req, http_response *res);
void api_image_get(engine *e, int64_t id, http_response *res);
void api_image_delete(engine *e, int64_t id, http_response *res);
void api_image_delete_all(engine *e, http_response *res);
void api_image_search(engine *e, const http_request *req, http_response *res);
void api_image_thumbnail(engine *e, int64_t id, const http_request *req, http_response *res);
void api_image_similar(engine *e, int64_t id, const http_request *req, http_response *res);
void api_images_list(engine *e, const http_request *req, http_response *res);
void api_images_exists(engine *e, const http_request *req, http_response *res);
void api_data_get(engine *e, int64_t id, http_response *res);
void api_data_set(engine *e, int64_t id, const http_request *req, http_response *res);
void api_data_query(engine *e, const http_request *req, http_response *res);
void api_duplicates(engine *e, const http_request *req, http_response *res);
void api_index_reindex(engine *e, http_response *res);
void api_index_health(engine *e, http_response *res);
void api_index_status(engine *e, http_response *res);
/* GET /metrics: the Prometheus text exposition of the server's request statistics (req->stats),
 * the engine's counters and gauges, and the process (metrics.c). */
void api_metrics(engine *e, const http_request *req, http_response *res);

/* shared helpers (routes.c) */
/* An integer query argument in lo..hi, or def when absent; false (400 written) when invalid. */
bool api_int_arg(const http_request *req, const char *key, long long def, long long lo, long long hi,
                 long long *out, http_response *res);
/* A JSON string of s; text that is not valid UTF-8 (rows stored before names were cleaned) has its
 * ill-formed bytes replaced by U+FFFD, so that no record becomes unrenderable. */
json_t *api_text(const char *s);
/* Stored metadata text as a JSON object ({} if it cannot be read). */
json_t *api_data_json(const char *text);
/* The text of a multipart field (NULL when absent or empty); false, with a 400 written, when it
 * holds a NUL byte (which would silently end it as a C string). */
bool api_text_field(const http_request *req, const char *name, const char **text, http_response *res);
/* The raw body as text (NULL when empty); false, with a 400 written, when it holds a NUL byte. */
bool api_body_text(const http_request *req, const char **text, http_response *res);

/* A response {"result": [...], ...} written one element at a time as text, so that a long list
 * never exists as a tree of JSON objects (1,000 rows of 1,000 keys would be a million). */
#define API_PAGE_MAX_BYTES (16u << 20) /* a listing page ends early rather than grow past this */
typedef struct {
    char *buf;
    size_t len, cap, items;
    bool failed;
} api_list;
/* Appends item (stolen) unless the list holds something and would pass budget bytes; false when
 * it was not appended (over budget or out of memory). */
bool api_list_add(api_list *l, json_t *item, size_t budget);
/* Writes the response: the list as "result", then the members of members (stolen, may be NULL). */
void api_list_finish(api_list *l, int status, json_t *members, http_response *res);
/* A number query argument in lo..hi, or def when absent; false (400 written) when invalid. */
bool api_number_arg(const http_request *req, const char *key, double def, double lo, double hi, double *out,
                    http_response *res);
/* A row as JSON: id, name, content_type, width, height, size, created_at (ISO 8601), data, labels
 * ([{"class", "name", "prob"}], most probable first; null until computed), and vector when the row
 * has one. */
json_t *api_row_json(const engine *e, const store_image *row);
/* Paginated rows: {"result": [...], "total": n, "offset": o, "limit": l, "next_offset": o + shown or
 * null}; a page holds at most limit rows and at most API_PAGE_MAX_BYTES of JSON. With the query
 * argument `label` (and `label_min`), only images showing it, most probable first, each with its
 * `label_score`. */
void api_rows_page(engine *e, const char *filter, const http_request *req, http_response *res);
/* The `label` of a search: query argument, else form field; false (400 written) when the field holds
 * a NUL byte. label_min from the query argument (default ENGINE_LABEL_MIN). */
bool api_label_args(const http_request *req, const char **label, double *label_min, http_response *res);

#endif
