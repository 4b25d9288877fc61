/* /image/... and /images: add, get, delete, search, similar, list. */
#include <stdint.h>
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
    const char *data;
    if (!img || !api_text_field(req, "data", &data, res)) return;
    char err[512];
    int64_t id;
    int rc = engine_add(e, img->data, img->len, img->filename ? img->filename : "image", data, &id, err, sizeof err);
    if (rc) {
        http_fail(res, rc, err);
        return;
    }
    http_result(res, 201, json_integer(id), "saved");
}

/* Content-Disposition for a stored name (RFC 6266): a plain ASCII fallback in filename= and the
 * exact UTF-8 name percent-encoded in filename*=. */
static char *disposition_of(const char *name) {
    size_t n = strlen(name);
    char *out = malloc(n * 4 + 64);
    if (!out) return NULL;
    size_t j = (size_t)sprintf(out, "attachment; filename=\"");
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        out[j++] = (*p < 0x20 || *p >= 0x7F || *p == '"' || *p == '\\') ? '_' : (char)*p;
    j += (size_t)sprintf(out + j, "\"; filename*=UTF-8''");
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
            out[j++] = (char)*p;
        } else {
            out[j++] = '%';
            out[j++] = hex[*p >> 4];
            out[j++] = hex[*p & 15];
        }
    }
    out[j] = 0;
    return out;
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
    http_bytes(res, served_type(row.content_type), bytes, len);
    res->disposition = disposition_of(row.name);
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
    api_list list = {0};
    for (int i = 0; i < n; i++) {
        json_t *hit = json_object();
        if (hit) {
            json_object_set_new(hit, "id", json_integer(hits[i].id));
            json_object_set_new(hit, "dist", json_real(hits[i].dist));
            json_object_set_new(hit, "name", api_text(hits[i].name));
            json_object_set_new(hit, "data", api_data_json(hits[i].data));
        }
        api_list_add(&list, hit, SIZE_MAX);
    }
    engine_hits_free(hits, n);
    api_list_finish(&list, 200, NULL, res);
}

/* The filter: query parameter `query`, else form field `query`; false (400 written) when the field
 * holds a NUL byte. */
static bool filter_of(const http_request *req, const char **filter, http_response *res) {
    const char *q = http_query(req, "query");
    if (q && *q) {
        *filter = q;
        return true;
    }
    return api_text_field(req, "query", filter, res);
}

/* k, ef, max_dist and the filter of a search; false with a 400 written when one is invalid. */
static bool search_opts(const http_request *req, engine_search_opts *o, http_response *res) {
    long long k, ef;
    if (!api_int_arg(req, "k", 10, 1, 1000, &k, res) || !api_int_arg(req, "ef", 0, 0, 4096, &ef, res) ||
        !api_number_arg(req, "max_dist", -1, 0, 2, &o->max_dist, res))
        return false;
    o->k = (int)k;
    o->ef = (int)ef;
    return filter_of(req, &o->filter_json, res) && api_label_args(req, &o->label, &o->label_min, res);
}

void api_image_search(engine *e, const http_request *req, http_response *res) {
    engine_search_opts o;
    if (!search_opts(req, &o, res)) return;
    const http_field *img = image_field(req, res);
    if (!img) return;
    engine_hit *hits;
    int n;
    char err[512];
    int rc = engine_search(e, img->data, img->len, &o, &hits, &n, err, sizeof err);
    if (rc) http_fail(res, rc, err);
    else send_hits(res, hits, n);
}

void api_image_similar(engine *e, int64_t id, const http_request *req, http_response *res) {
    engine_search_opts o;
    if (!search_opts(req, &o, res)) return;
    engine_hit *hits;
    int n;
    char err[512];
    int rc = engine_similar(e, id, &o, &hits, &n, err, sizeof err);
    if (rc) http_fail(res, rc, err);
    else send_hits(res, hits, n);
}

void api_images_list(engine *e, const http_request *req, http_response *res) {
    api_rows_page(e, http_query(req, "query"), req, res);
}

/* Body {"sha256": [names]}: the names of the list that a stored image has, in the list's order.
 * Lets an importer skip what is stored (its own earlier, interrupted run) without sending it. */
void api_images_exists(engine *e, const http_request *req, http_response *res) {
    const char *text;
    if (!api_body_text(req, &text, res)) return;
    /* refused before parsing: each name costs at most ~70 bytes of JSON */
    size_t max = (size_t)ENGINE_HASHES_MAX * 80 + 256;
    if (req->body_len > max) {
        char msg[160];
        snprintf(msg, sizeof msg, "the body is %zu bytes; at most %d hashes (%zu bytes) at a time", req->body_len,
                 ENGINE_HASHES_MAX, max);
        http_error(res, 413, msg);
        return;
    }
    json_error_t jerr;
    json_t *body = text ? json_loadb(text, req->body_len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    json_t *list = json_object_get(body, "sha256");
    size_t n = json_array_size(list);
    if (!json_is_array(list) || json_object_size(body) != 1) {
        json_decref(body);
        http_error(res, 400, "the body must be JSON like {\"sha256\": [\"<64 hex digits>\", ...]}");
        return;
    }
    if (n > ENGINE_HASHES_MAX) {
        json_decref(body);
        char msg[120];
        snprintf(msg, sizeof msg, "at most %d hashes at a time, not %zu", ENGINE_HASHES_MAX, n);
        http_error(res, 400, msg);
        return;
    }
    const char *names[ENGINE_HASHES_MAX];
    bool stored[ENGINE_HASHES_MAX];
    for (size_t i = 0; i < n; i++) {
        if (!(names[i] = json_string_value(json_array_get(list, i)))) {
            json_decref(body);
            char msg[80];
            snprintf(msg, sizeof msg, "sha256[%zu] must be a string", i);
            http_error(res, 400, msg);
            return;
        }
    }
    char err[512];
    int rc = engine_hashes_stored(e, names, (int)n, stored, err, sizeof err);
    json_t *found = rc ? NULL : json_array();
    for (size_t i = 0; found && i < n; i++)
        if (stored[i]) json_array_append_new(found, json_string(names[i]));
    json_decref(body);
    if (rc) http_fail(res, rc, err);
    else http_result(res, 200, found, NULL);
}
