/* /data/...: read and replace an image's metadata, query by filter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/status.h"

void api_data_get(engine *e, int64_t id, http_response *res) {
    store_image row;
    char err[512];
    int rc = engine_get(e, id, true, &row, err, sizeof err);
    if (rc) {
        http_fail(res, rc, err);
        return;
    }
    http_result(res, 200, api_row_json(e, &row), NULL);
    store_image_clear(&row);
}

/* Body {"image_data": {...}}: that object becomes the metadata. Duplicate keys are refused here as
 * everywhere else (an add's data, filters). */
void api_data_set(engine *e, int64_t id, const http_request *req, http_response *res) {
    const char *text;
    if (!api_body_text(req, &text, res)) return;
    /* refused before parsing: a 47 MB body of small keys would cost half a gigabyte to parse */
    size_t max = engine_data_limits_of(e).max_bytes;
    if (req->body_len > max + 64) {
        char msg[200];
        snprintf(msg, sizeof msg, "the body is %zu bytes; data may be at most %zu bytes (--max-data-bytes)",
                 req->body_len, max);
        http_error(res, 413, msg);
        return;
    }
    json_error_t jerr;
    json_t *body = text ? json_loadb(text, req->body_len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!body) {
        char msg[300];
        snprintf(msg, sizeof msg, "the body must be JSON like {\"image_data\": {...}}%s%s", text ? ": " : "",
                 text ? jerr.text : "");
        http_error(res, 400, msg);
        return;
    }
    json_t *data = json_object_get(body, "image_data");
    if (!json_is_object(data)) {
        json_decref(body);
        http_error(res, 400, "image_data must be a JSON object");
        return;
    }
    char *compact = json_dumps(data, JSON_COMPACT);
    json_decref(body);
    char err[512];
    int rc = compact ? engine_set_data(e, id, compact, err, sizeof err) : IS_ERR_NOMEM;
    free(compact);
    if (rc) http_fail(res, rc, err);
    else http_result(res, 201, json_integer(id), "saved");
}

/* Body: a filter; offset and limit as query parameters. An empty body matches everything. */
void api_data_query(engine *e, const http_request *req, http_response *res) {
    const char *text;
    if (api_body_text(req, &text, res)) api_rows_page(e, text, req, res);
}
