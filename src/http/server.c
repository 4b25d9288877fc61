#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/http.h"
#include "util/status.h"

typedef struct {
    http_request req;
    struct MHD_PostProcessor *pp;
    size_t received;
    bool too_large;
    int status;
    struct timespec started;
    const http_config *cfg;
} request_state;

const char *http_query(const http_request *req, const char *key) {
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_header(const http_request *req, const char *name) {
    return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const http_field *http_field_get(const http_request *req, const char *name) {
    for (size_t i = 0; i < req->nfields; i++)
        if (!strcmp(req->fields[i].name, name)) return &req->fields[i];
    return NULL;
}

/* Multipart fields arrive in pieces; consecutive pieces of the same field are appended. */
static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                const char *content_type, const char *encoding, const char *data,
                                uint64_t off, size_t size) {
    (void)kind;
    (void)encoding;
    request_state *rs = cls;
    http_request *r = &rs->req;
    http_field *f = r->nfields ? &r->fields[r->nfields - 1] : NULL;
    if (!f || off == 0 || strcmp(f->name, key)) {
        http_field *grown = realloc(r->fields, sizeof *grown * (r->nfields + 1));
        if (!grown) return MHD_NO;
        r->fields = grown;
        f = &r->fields[r->nfields++];
        *f = (http_field){.name = strdup(key), .filename = filename ? strdup(filename) : NULL,
                          .content_type = content_type ? strdup(content_type) : NULL};
        if (!f->name) return MHD_NO;
    }
    if (size) {
        unsigned char *d = realloc(f->data, f->len + size + 1);
        if (!d) return MHD_NO;
        memcpy(d + f->len, data, size);
        f->data = d;
        f->len += size;
        d[f->len] = 0; /* text fields can be used as strings */
    }
    return MHD_YES;
}

static void free_state(request_state *rs) {
    if (rs->pp) MHD_destroy_post_processor(rs->pp);
    for (size_t i = 0; i < rs->req.nfields; i++) {
        free(rs->req.fields[i].name);
        free(rs->req.fields[i].filename);
        free(rs->req.fields[i].content_type);
        free(rs->req.fields[i].data);
    }
    free(rs->req.fields);
    free(rs->req.body);
    free(rs);
}

static enum MHD_Result send_response(struct MHD_Connection *c, request_state *rs, http_response *res) {
    struct MHD_Response *r = MHD_create_response_from_buffer(res->len, res->body ? res->body : (char *)"",
                                                             res->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(res->body);
        free(res->disposition);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type ? res->content_type : "application/json");
    if (res->disposition) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION, res->disposition);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (res->cache_control) MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, res->cache_control);
    if (res->csp) MHD_add_response_header(r, "Content-Security-Policy", res->csp);
    if (res->etag[0]) MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, res->etag);
    free(res->disposition);
    rs->status = res->status;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)res->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    const http_config *cfg = cls;
    request_state *rs = *con_cls;
    if (!rs) { /* first call: headers only */
        rs = calloc(1, sizeof *rs);
        if (!rs) return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &rs->started);
        rs->cfg = cfg;
        rs->req.method = method;
        rs->req.path = url;
        rs->req.connection = c;
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (ct && !strncasecmp(ct, "multipart/form-data", 19)) {
            rs->req.multipart = true;
            rs->pp = MHD_create_post_processor(c, 64 * 1024, on_field, rs);
            if (!rs->pp) rs->req.form_error = true;
        }
        *con_cls = rs;
        return MHD_YES;
    }
    if (*upload_size) { /* body pieces */
        size_t n = *upload_size;
        *upload_size = 0;
        rs->received += n;
        if (rs->received > cfg->max_upload) rs->too_large = true;
        if (rs->too_large || rs->req.form_error) return MHD_YES; /* read and drop the rest */
        if (rs->pp) {
            if (MHD_post_process(rs->pp, upload, n) != MHD_YES) rs->req.form_error = true;
        } else {
            unsigned char *b = realloc(rs->req.body, rs->req.body_len + n + 1);
            if (!b) return MHD_NO;
            memcpy(b + rs->req.body_len, upload, n);
            rs->req.body = b;
            rs->req.body_len += n;
            b[rs->req.body_len] = 0;
        }
        return MHD_YES;
    }
    http_response res = {0};
    if (rs->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is over the upload limit of %zu bytes", cfg->max_upload);
        http_error(&res, 413, msg);
    } else if (rs->req.form_error) {
        http_error(&res, 400, "the multipart/form-data body is malformed");
    } else {
        cfg->handler(cfg->ctx, &rs->req, &res);
    }
    return send_response(c, rs, &res);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    request_state *rs = *con_cls;
    if (!rs) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - rs->started.tv_sec) * 1e3 + (double)(now.tv_nsec - rs->started.tv_nsec) / 1e6;
    fprintf(stderr, "%s %s %d %.1fms\n", rs->req.method, rs->req.path, rs->status, ms);
    free_state(rs);
    *con_cls = NULL;
}

int http_serve(const http_config *cfg, char *err, size_t errlen) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1) {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
        if (getaddrinfo(cfg->host, NULL, &hints, &ai) || !ai)
            return is_fail(err, errlen, IS_ERR_INVALID, "cannot resolve host '%s'", cfg->host);
        addr.sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        freeaddrinfo(ai);
    }
    /* signals are taken by sigwait below, not by whichever thread happens to run */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A thread per connection, not a pool of event loops: handlers block for tens of ms (decoding,
     * inference, fsync), and a pool thread that blocks stalls every other connection it owns,
     * leaving cores idle while requests wait. How many inferences run at once is the engine's
     * business (its session pool), not the number of connections. */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG,
        (uint16_t)cfg->port, NULL, NULL, on_request, (void *)cfg, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(cfg->max_connections > 0 ? cfg->max_connections : 256),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
    if (!d) return is_fail(err, errlen, IS_ERR_IO, "cannot listen on %s:%d (in use, or not allowed)", cfg->host, cfg->port);
    fprintf(stderr, "imgsearch: listening on http://%s:%d\n", cfg->host, cfg->port);
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "imgsearch: stopping (signal %d)\n", sig);
    MHD_stop_daemon(d);
    return IS_OK;
}
