/* /image/... and /images: add, get, delete, search, similar, list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/status.h"

/* Content types we serve images as: a fixed set, so the response never echoes stored text. */
static const char *served_type(const char *stored) {
    static const char *known[] = {"image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff", "image/heif"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (stored && !strcmp(stored, known[i])) return known[i];
    return "application/octet-stream";
}

static const http_field *image_field(const http_request *req, http_response *res) {
    if (!req->multipart) {
        http_error(res, 415, "send the image as multipart/form-data with a field named 'image'");
        return NULL;
    }
    const http_field *f = http_field_get(req, "image");
    if (!f) http_error(res, 400, "missing form field 'image'");
    return f;
}

void api_image_add(engine *e, const http_request *req, http_response *res) {
    const http_field *img = image_field(req, res);
    if (!img) return;
    const http_field *data = http_field_get(req, "data");
    char err[512];
    int64_t id;
    int rc = engine_add(e, img->data, img->len, img->filename ? img->filename : "image",
                        data && data->len ? (const char *)data->data : NULL, &id, err, sizeof err);
    if (rc) {
        http_fail(res, rc, err);
        return;
    }
    http_result(res, 201, json_integer(id), "saved");
}

void api_image_get(engine *e, int64_t id, http_response *res) {
    unsigned char *bytes;
    size_t len;
    store_image row;
    char err[512];
    int rc = engine_image(e, id, &bytes, &len, &row, err, sizeof err);
    if (rc) {
        http_fail(res, rc, err);
        return;
    }
    /* the name is user text: keep it to safe characters inside the quotes */
    char safe[256];
    size_t j = 0;
    for (const char *p = row.name; *p && j < sizeof safe - 1; p++)
        safe[j++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? '_' : *p;
    safe[j] = 0;
    http_bytes(res, served_type(row.content_type), bytes, len);
    size_t dl = strlen(safe) + 40;
    res->disposition = malloc(dl);
    if (res->disposition) snprintf(res->disposition, dl, "attachment; filename=\"%s\"", safe);
    store_image_clear(&row);
}

void api_image_thumbnail(engine *e, int64_t id, const http_request *req, http_response *res) {
    long long size;
    if (!api_int_arg(req, "size", 256, 16, 2048, &size, res)) return;
    const char *format = http_query(req, "format");
    if (!format) format = "jpeg";
    unsigned char *bytes;
    size_t len;
    char err[512];
    int rc = engine_thumbnail(e, id, (int)size, format, &bytes, &len, err, sizeof err);
    if (rc) http_fail(res, rc, err);
    else http_bytes(res, strcmp(format, "webp") ? "image/jpeg" : "image/webp", bytes, len);
}

void api_image_delete(engine *e, int64_t id, http_response *res) {
    char err[512];
    int rc = engine_delete(e, id, err, sizeof err);
    if (rc) http_fail(res, rc, err);
    else http_result(res, 200, json_integer(id), "deleted");
}

void api_image_delete_all(engine *e, http_response *res) {
    char err[512];
    int64_t n;
    int rc = engine_delete_all(e, &n, err, sizeof err);
    if (rc) http_fail(res, rc, err);
    else http_result(res, 200, json_integer(n), "deleted");
}

static void send_hits(http_response *res, engine_hit *hits, int n) {
    json_t *list = json_array();
    for (int i = 0; i < n; i++) {
        json_t *data = json_loads(hits[i].data, 0, NULL);
        json_array_append_new(list, json_pack("{s:I,s:f,s:s,s:o}", "id", (json_int_t)hits[i].id, "dist",
                                              (double)hits[i].dist, "name", hits[i].name, "data",
                                              data ? data : json_object()));
    }
    engine_hits_free(hits, n);
    http_result(res, 200, list, NULL);
}

/* The filter: query parameter `query`, else form field `query`. */
static const char *filter_of(const http_request *req) {
    const char *q = http_query(req, "query");
    if (q && *q) return q;
    const http_field *f = http_field_get(req, "query");
    return f && f->len ? (const char *)f->data : NULL;
}

void api_image_search(engine *e, const http_request *req, http_response *res) {
    long long k, ef;
    if (!api_int_arg(req, "k", 10, 1, 1000, &k, res) || !api_int_arg(req, "ef", 0, 0, 4096, &ef, res)) return;
    const http_field *img = image_field(req, res);
    if (!img) return;
    engine_hit *hits;
    int n;
    char err[512];
    int rc = engine_search(e, img->data, img->len, (int)k, (int)ef, filter_of(req), &hits, &n, err, sizeof err);
    if (rc) http_fail(res, rc, err);
    else send_hits(res, hits, n);
}

void api_image_similar(engine *e, int64_t id, const http_request *req, http_response *res) {
    long long k, ef;
    if (!api_int_arg(req, "k", 10, 1, 1000, &k, res) || !api_int_arg(req, "ef", 0, 0, 4096, &ef, res)) return;
    engine_hit *hits;
    int n;
    char err[512];
    int rc = engine_similar(e, id, (int)k, (int)ef, filter_of(req), &hits, &n, err, sizeof err);
    if (rc) http_fail(res, rc, err);
    else send_hits(res, hits, n);
}

void api_images_list(engine *e, const http_request *req, http_response *res) {
    api_rows_page(e, http_query(req, "query"), req, res);
}
