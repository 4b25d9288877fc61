/* /data/...: read and replace an image's metadata, query by filter. */
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
    http_result(res, 200, api_row_json(&row), NULL);
    store_image_clear(&row);
}

/* Body {"image_data": {...}}: that object becomes the metadata. */
void api_data_set(engine *e, int64_t id, const http_request *req, http_response *res) {
    json_error_t jerr;
    json_t *body = req->body ? json_loadb((const char *)req->body, req->body_len, 0, &jerr) : NULL;
    if (!body) {
        char msg[300];
        snprintf(msg, sizeof msg, "the body must be JSON like {\"image_data\": {...}}%s%s",
                 req->body ? ": " : "", req->body ? jerr.text : "");
        http_error(res, 400, msg);
        return;
    }
    json_t *data = json_object_get(body, "image_data");
    if (!json_is_object(data)) {
        json_decref(body);
        http_error(res, 400, "image_data must be a JSON object");
        return;
    }
    char *text = json_dumps(data, JSON_COMPACT);
    json_decref(body);
    char err[512];
    int rc = text ? engine_set_data(e, id, text, err, sizeof err) : IS_ERR_NOMEM;
    free(text);
    if (rc) http_fail(res, rc, err);
    else http_result(res, 201, json_integer(id), "saved");
}

/* Body: a filter; offset and limit as query parameters. An empty body matches everything. */
void api_data_query(engine *e, const http_request *req, http_response *res) {
    api_rows_page(e, req->body_len ? (const char *)req->body : NULL, req, res);
}
