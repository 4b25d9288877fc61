#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"
#include "util/status.h"
#include "util/text.h"

/* Limits checked before a handler runs. libmicrohttpd answers requests over its own limits with
 * HTML pages of its own; its per-connection memory is set well above these (HTTP_CONNECTION_MEMORY),
 * so that a long target or header block reaches us first and gets a JSON answer. */
#define HTTP_MAX_TARGET 8192          /* request target (path and query), bytes as sent */
#define HTTP_MAX_HEADER_BYTES 32768   /* names and values of all headers together */
#define HTTP_MAX_FIELDS 16            /* multipart parts: the API uses three at most */
#define HTTP_MAX_FIELDS_TEXT "16"
#define HTTP_CONNECTION_MEMORY (128u * 1024u)
#define HTTP_DRAIN_SECONDS 30         /* a graceful stop waits this long for requests under way */

typedef struct {
    http_request req;
    struct MHD_PostProcessor *pp;
    size_t received;
    bool started;        /* the handler has seen this request's headers */
    bool too_large;
    char form_problem[160]; /* why the multipart body is refused ("" = fine) */
    http_field field_store[HTTP_MAX_FIELDS]; /* req.fields points here */
    size_t field_caps[HTTP_MAX_FIELDS];       /* allocated bytes of each field's data */
    size_t body_cap;
    char *target;        /* the request target exactly as sent (not unescaped) */
    int status;
    char principal[72];  /* the response's principal, for the log line */
    char client[64];     /* the client's address, for the log line */
    struct timespec started_at;
    const http_config *cfg;
    http_stats *stats;
} request_state;

/* What on_target needs to set up a request: the configuration and the server's statistics. */
typedef struct {
    const http_config *cfg;
    http_stats *stats;
} server_ctx;

/* ---- request statistics (http.h) ----
 * A fixed table, indexed by route id, method and status slot, of counters that only ever grow, and
 * a latency histogram per route: counting a request is two atomic additions and a bucket's. */
struct http_stats {
    metrics_counter requests[HTTP_ROUTES][HTTP_METHODS][HTTP_STATUS_SLOTS];
    metrics_histogram duration[HTTP_ROUTES];
};

static const char *const method_names[HTTP_METHODS] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
                                                       "other"};
/* Every status the server sends, and the common ones it might (slot 0: any other). */
static const int status_slots[HTTP_STATUS_SLOTS] = {0,   200, 201, 202, 204, 206, 301, 302, 304, 400, 401,
                                                    403, 404, 405, 406, 408, 409, 411, 412, 413, 414, 415,
                                                    416, 422, 429, 431, 500, 501, 502, 503, 504, 505, 507};

const char *http_method_name(int method) {
    return method >= 0 && method < HTTP_METHODS ? method_names[method] : method_names[HTTP_METHOD_OTHER];
}

int http_status_of_slot(int slot) { return slot > 0 && slot < HTTP_STATUS_SLOTS ? status_slots[slot] : 0; }

static int route_index(int route) { return route > 0 && route < HTTP_ROUTES ? route : 0; }

uint64_t http_stats_requests(const http_stats *s, int route, int method, int slot) {
    if (!s || method < 0 || method >= HTTP_METHODS || slot < 0 || slot >= HTTP_STATUS_SLOTS) return 0;
    return metrics_counter_get(&s->requests[route_index(route)][method][slot]);
}

void http_stats_duration(const http_stats *s, int route, metrics_histogram_value *out) {
    if (!s) {
        *out = (metrics_histogram_value){0};
        return;
    }
    metrics_histogram_read(&s->duration[route_index(route)], out);
}

static http_stats *stats_new(void) {
    http_stats *s = calloc(1, sizeof *s);
    for (int r = 0; s && r < HTTP_ROUTES; r++)
        metrics_histogram_init(&s->duration[r], metrics_latency_buckets, metrics_latency_nbuckets);
    return s;
}

/* Counts an answered request (its response about to be queued). */
static void stats_count(http_stats *s, int route, const char *method, int status, const struct timespec *since) {
    if (!s) return;
    int m = HTTP_METHOD_OTHER, slot = 0;
    for (int i = 0; method && i < HTTP_METHOD_OTHER; i++)
        if (!strcmp(method, method_names[i])) m = i;
    for (int i = 1; i < HTTP_STATUS_SLOTS; i++)
        if (status_slots[i] == status) slot = i;
    route = route_index(route);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns = (int64_t)(now.tv_sec - since->tv_sec) * 1000000000 + (now.tv_nsec - since->tv_nsec);
    metrics_counter_add(&s->requests[route][m][slot], 1);
    metrics_histogram_observe_ns(&s->duration[route], ns > 0 ? (uint64_t)ns : 0);
}

/* ---- the request clock ----
 * libmicrohttpd's own timeout counts silence only: a client sending a byte every few seconds keeps
 * its connection, and its thread, for ever. Every connection is registered here while it is open,
 * with when it started to wait for the request it is receiving; the serving thread (http_serve)
 * looks once a second and shuts down the socket of any connection whose request has not arrived
 * whole within request_timeout. The time a handler takes does not count: only the client's. An
 * entry leaves the registry (MHD_CONNECTION_NOTIFY_CLOSED) before libmicrohttpd closes its socket,
 * so a shutdown never reaches a socket number that was reused. */
typedef struct conn_watch {
    struct conn_watch *prev, *next;
    int fd;
    int64_t waiting_since_ms; /* monotonic: when the request being received began to be awaited */
    bool receiving;           /* false while a handler runs or a response is sent */
    bool cut;                 /* already shut down */
} conn_watch;

static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static conn_watch *watch_head;
/* Requests begun (their target read) and not yet completed: what a graceful stop waits for. */
static atomic_int requests_in_flight;

int http_stats_in_flight(const http_stats *s) {
    (void)s;
    return atomic_load(&requests_in_flight);
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    (void)cls;
    pthread_mutex_lock(&watch_lock);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_watch *w = ci ? calloc(1, sizeof *w) : NULL;
        if (w) {
            w->fd = ci->connect_fd;
            w->waiting_since_ms = mono_ms();
            w->receiving = true;
            w->next = watch_head;
            if (watch_head) watch_head->prev = w;
            watch_head = w;
        }
        *socket_context = w;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        conn_watch *w = *socket_context;
        if (w->prev) w->prev->next = w->next;
        else watch_head = w->next;
        if (w->next) w->next->prev = w->prev;
        free(w);
        *socket_context = NULL;
    }
    pthread_mutex_unlock(&watch_lock);
}

/* The connection's request is now with the handler (receiving false), or the connection waits for
 * its next one (true, from now). */
static void watch_set(struct MHD_Connection *c, bool receiving) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    pthread_mutex_lock(&watch_lock);
    conn_watch *w = ci ? ci->socket_context : NULL;
    if (w) {
        w->receiving = receiving;
        if (receiving) w->waiting_since_ms = mono_ms();
    }
    pthread_mutex_unlock(&watch_lock);
}

/* Shuts down every connection whose request is overdue; their threads then see the end of the
 * stream and close them. Returns how many. */
static int watch_sweep(int timeout_s) {
    int64_t now = mono_ms();
    int cut = 0;
    pthread_mutex_lock(&watch_lock);
    for (conn_watch *w = watch_head; w; w = w->next)
        if (w->receiving && !w->cut && now - w->waiting_since_ms > (int64_t)timeout_s * 1000) {
            shutdown(w->fd, SHUT_RDWR);
            w->cut = true;
            cut++;
        }
    pthread_mutex_unlock(&watch_lock);
    return cut;
}

const char *http_query(const http_request *req, const char *key) {
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_header(const http_request *req, const char *name) {
    return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const char *http_cookie(const http_request *req, const char *name) {
    return MHD_lookup_connection_value(req->connection, MHD_COOKIE_KIND, name);
}

/* The connection's peer address as text, or "-". */
static void client_address(struct MHD_Connection *c, char *out, size_t outlen) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    const void *where = !sa ? NULL
                      : sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                      : sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                                  : NULL;
    if (!where || !inet_ntop(sa->sa_family, where, out, (socklen_t)outlen)) snprintf(out, outlen, "-");
}

const http_field *http_field_get(const http_request *req, const char *name) {
    for (size_t i = 0; i < req->nfields; i++)
        if (!strcmp(req->fields[i].name, name)) return &req->fields[i];
    return NULL;
}

/* Grows *buf (of *cap bytes) to hold at least need bytes, doubling, so that n appends cost O(n). */
static bool grow(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 4;
    while (c < need) c *= 2;
    void *b = realloc(*buf, c * elem);
    if (!b) return false;
    *buf = b;
    *cap = c;
    return true;
}

static void form_refuse(request_state *rs, const char *fmt, const char *name) {
    if (!rs->form_problem[0]) snprintf(rs->form_problem, sizeof rs->form_problem, fmt, name);
    rs->req.form_error = true;
}

/* Multipart fields arrive in pieces; consecutive pieces of the same field are appended. A field
 * name sent twice, or more than HTTP_MAX_FIELDS parts, refuses the whole body (and the rest of
 * it is read and dropped, not parsed). */
static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                const char *content_type, const char *encoding, const char *data,
                                uint64_t off, size_t size) {
    (void)kind;
    (void)encoding;
    request_state *rs = cls;
    http_request *r = &rs->req;
    if (r->form_error) return MHD_NO;
    if (!key) { /* libmicrohttpd passes NULL for a part whose Content-Disposition has no name */
        form_refuse(rs, "a form part has no name%s", "");
        return MHD_NO;
    }
    http_field *f = r->nfields ? &r->fields[r->nfields - 1] : NULL;
    /* a new part starts at offset 0; an empty part may be reported once more at offset 0 */
    bool continues = f && !strcmp(f->name, key) && (off > 0 || f->len == 0);
    if (!continues) {
        if (http_field_get(r, key)) {
            form_refuse(rs, "form field '%.60s' is sent more than once", key);
            return MHD_NO;
        }
        if (r->nfields >= HTTP_MAX_FIELDS) {
            form_refuse(rs, "more than %s form fields", HTTP_MAX_FIELDS_TEXT);
            return MHD_NO;
        }
        f = &r->fields[r->nfields++];
        *f = (http_field){.name = strdup(key), .filename = filename ? strdup(filename) : NULL,
                          .content_type = content_type ? strdup(content_type) : NULL};
        if (!f->name) return MHD_NO;
    }
    if (size) {
        size_t *cap = &rs->field_caps[r->nfields - 1];
        if (!grow((void **)&f->data, cap, f->len + size + 1, 1)) return MHD_NO;
        memcpy(f->data + f->len, data, size);
        f->len += size;
        f->data[f->len] = 0; /* text fields can be used as strings */
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
    free(rs->req.body);
    free(rs->target);
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
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    if (res->allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, res->allow);
    if (res->cache_control) MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, res->cache_control);
    if (res->csp) MHD_add_response_header(r, "Content-Security-Policy", res->csp);
    if (res->etag[0]) MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, res->etag);
    for (int i = 0; i < res->nheaders; i++) MHD_add_response_header(r, res->headers[i].name, res->headers[i].value);
    free(res->disposition);
    rs->status = res->status;
    snprintf(rs->principal, sizeof rs->principal, "%s", res->principal);
    /* counted before it is queued: a client holding the answer finds the request counted */
    stats_count(rs->stats, res->route, rs->req.method, res->status, &rs->started_at);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)res->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Called by libmicrohttpd with the request target exactly as sent, before any header is read; what
 * it returns is the request's state from then on (freed by on_completed, which libmicrohttpd also
 * calls for requests it refuses itself after this point). */
static void *on_target(void *cls, const char *target, struct MHD_Connection *c) {
    (void)c;
    request_state *rs = calloc(1, sizeof *rs);
    if (!rs) return NULL;
    clock_gettime(CLOCK_MONOTONIC, &rs->started_at);
    const server_ctx *srv = cls;
    rs->cfg = srv->cfg;
    rs->stats = srv->stats;
    rs->req.stats = srv->stats;
    rs->target = strdup(target ? target : "");
    atomic_fetch_add(&requests_in_flight, 1);
    return rs;
}

typedef struct {
    size_t bytes;           /* names and values of all headers */
    int content_lengths;    /* Content-Length headers */
    bool lengths_differ;    /* ... with different values */
    const char *length;     /* the first one's value */
} header_census;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    header_census *h = cls;
    h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        if (h->content_lengths++ && strcmp(h->length, value ? value : "")) h->lengths_differ = true;
        if (!h->length) h->length = value ? value : "";
    }
    return MHD_YES;
}

/* Checks what can be checked from the request line and headers alone; false with *res written
 * when the request is refused before its body is read. */
static bool request_head_ok(request_state *rs, struct MHD_Connection *c, http_response *res) {
    char msg[200];
    const char *target = rs->target ? rs->target : "";
    if (strlen(target) > HTTP_MAX_TARGET) {
        snprintf(msg, sizeof msg, "the request target is %zu bytes, over the limit of %d", strlen(target), HTTP_MAX_TARGET);
        http_error(res, 414, msg);
        return false;
    }
    /* libmicrohttpd decodes %00 into a NUL that silently ends the path or the argument: refuse */
    for (const char *p = target; (p = strchr(p, '%')); p++)
        if (p[1] == '0' && p[2] == '0') {
            http_error(res, 400, "the request target holds an encoded NUL byte (%00)");
            return false;
        }
    header_census h = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &h);
    if (h.bytes > HTTP_MAX_HEADER_BYTES) {
        snprintf(msg, sizeof msg, "the request headers are %zu bytes, over the limit of %d", h.bytes,
                 HTTP_MAX_HEADER_BYTES);
        http_error(res, 431, msg);
        return false;
    }
    /* A proxy in front and this server must agree on where a request ends, or a second request can
     * be smuggled inside the first: a message with two lengths is refused, not guessed at. */
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (h.lengths_differ || (te && h.content_lengths)) {
        http_error(res, 400, h.lengths_differ ? "the request has Content-Length headers that disagree"
                                              : "the request has both Content-Length and Transfer-Encoding");
        return false;
    }
    /* Only "chunked" is decoded; any other coding would reach us as undecoded bytes. */
    if (te && strcasecmp(te, "chunked")) {
        snprintf(msg, sizeof msg, "Transfer-Encoding '%.60s' is not supported: send the body as is or chunked", te);
        http_error(res, 501, msg);
        return false;
    }
    /* A declared body over the limit is refused now, before a byte of it is read (and before an
     * "Expect: 100-continue" client is told to send it). */
    if (h.length) {
        char *end;
        errno = 0;
        unsigned long long declared = strtoull(h.length, &end, 10);
        if (errno == ERANGE || declared > rs->cfg->max_upload) {
            snprintf(msg, sizeof msg, "the request body is over the upload limit of %zu bytes", rs->cfg->max_upload);
            http_error(res, 413, msg);
            return false;
        }
    }
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    const http_config *cfg = cls;
    request_state *rs = *con_cls;
    if (!rs) return MHD_NO; /* on_target ran out of memory */
    if (!rs->started) { /* first call: headers only */
        rs->started = true;
        rs->req.method = method;
        rs->req.path = url;
        rs->req.connection = c;
        rs->req.fields = rs->field_store;
        client_address(c, rs->client, sizeof rs->client);
        rs->req.client = rs->client;
        http_response res = {0};
        if (!request_head_ok(rs, c, &res)) return send_response(c, rs, &res);
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (ct && !strncasecmp(ct, "multipart/form-data", 19)) {
            rs->req.multipart = true;
            rs->pp = MHD_create_post_processor(c, 64 * 1024, on_field, rs);
            if (!rs->pp) rs->req.form_error = true;
        }
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
            if (!grow((void **)&rs->req.body, &rs->body_cap, rs->req.body_len + n + 1, 1)) return MHD_NO;
            memcpy(rs->req.body + rs->req.body_len, upload, n);
            rs->req.body_len += n;
            rs->req.body[rs->req.body_len] = 0;
        }
        return MHD_YES;
    }
    watch_set(c, false); /* the whole request is here: the handler's time is not the client's */
    http_response res = {0};
    if (rs->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is over the upload limit of %zu bytes", cfg->max_upload);
        http_error(&res, 413, msg);
    } else if (rs->req.form_error) {
        http_error(&res, 400, rs->form_problem[0] ? rs->form_problem : "the multipart/form-data body is malformed");
    } else {
        cfg->handler(cfg->ctx, &rs->req, &res);
    }
    return send_response(c, rs, &res);
}

/* One line per request: method, target as sent, status, milliseconds. Both come from the client,
 * so every byte that could end or forge a line is escaped. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)toe;
    watch_set(c, true); /* a kept-alive connection now awaits its next request */
    request_state *rs = *con_cls;
    if (!rs) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - rs->started_at.tv_sec) * 1e3 +
                (double)(now.tv_nsec - rs->started_at.tv_nsec) / 1e6;
    char method[40], target[600], who[80];
    text_log_escape(rs->req.method ? rs->req.method : "-", method, sizeof method);
    text_log_escape(rs->target ? rs->target : "-", target, sizeof target);
    text_log_escape(rs->principal[0] ? rs->principal : "-", who, sizeof who);
    fprintf(stderr, "%s %s %d %.1fms %s key=%s\n", method, target, rs->status, ms, rs->client[0] ? rs->client : "-",
            who);
    free_state(rs);
    atomic_fetch_sub(&requests_in_flight, 1);
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
    /* signals are taken by sigtimedwait below, not by whichever thread happens to run */
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
    server_ctx srv = {.cfg = cfg};
    struct MHD_OptionItem opts[16];
    int n = 0;
#define OPT(o, v, p) (opts[n++] = (struct MHD_OptionItem){(o), (intptr_t)(v), (p)})
    OPT(MHD_OPTION_SOCK_ADDR, 0, &addr);
    OPT(MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections > 0 ? cfg->max_connections : 256, NULL);
    if (cfg->max_per_client > 0) OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_per_client, NULL);
    OPT(MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout > 0 ? cfg->idle_timeout : 30, NULL);
    OPT(MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL);
    OPT(MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL);
    OPT(MHD_OPTION_URI_LOG_CALLBACK, on_target, &srv);
    OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTP_CONNECTION_MEMORY, NULL);
    /* ITC: what MHD_quiesce_daemon needs to stop listening while connections go on */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (cfg->tls_cert) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
            return is_fail(err, errlen, IS_ERR_INVALID, "this libmicrohttpd was built without TLS");
        flags |= MHD_USE_TLS;
        OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cfg->tls_cert);
        OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->tls_key);
        /* GnuTLS's own defaults minus what is broken: TLS 1.2 and 1.3 only */
        OPT(MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2");
    }
    OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
    if (!(srv.stats = stats_new())) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, (void *)cfg,
                                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!d) {
        free(srv.stats);
        return is_fail(err, errlen, IS_ERR_IO,
                       cfg->tls_cert ? "cannot listen on %s:%d (in use, not allowed, or the TLS certificate and key "
                                       "do not load or do not match)"
                                     : "cannot listen on %s:%d (in use, or not allowed)",
                       cfg->host, cfg->port);
    }
    fprintf(stderr, "imgsearch: listening on %s://%s:%d\n", cfg->tls_cert ? "https" : "http", cfg->host, cfg->port);
    int sig = 0;
    struct timespec tick = {1, 0};
    while ((sig = sigtimedwait(&stop, NULL, &tick)) < 0)
        if (cfg->request_timeout > 0) {
            int cut = watch_sweep(cfg->request_timeout);
            if (cut)
                fprintf(stderr, "imgsearch: closed %d connection(s) whose request did not arrive within %d s\n", cut,
                        cfg->request_timeout);
        }
    /* Graceful stop: no new connections, the requests under way finish (for at most
     * HTTP_DRAIN_SECONDS, or until a second signal; the request clock keeps cutting tricklers
     * meanwhile), then every connection is closed. */
    MHD_socket listener = MHD_quiesce_daemon(d);
    /* the kernel would still complete handshakes on the quiet socket (its backlog): refuse them */
    if (listener != MHD_INVALID_SOCKET) shutdown(listener, SHUT_RDWR);
    fprintf(stderr, "imgsearch: stopping (signal %d): no new connections, %d request(s) under way\n", sig,
            atomic_load(&requests_in_flight));
    struct timespec pause = {0, 100 * 1000 * 1000};
    for (int waited = 0; atomic_load(&requests_in_flight) > 0 && waited < HTTP_DRAIN_SECONDS * 10; waited++) {
        if (sigtimedwait(&stop, NULL, &pause) >= 0) break; /* asked twice: stop now */
        if (cfg->request_timeout > 0 && waited % 10 == 9) watch_sweep(cfg->request_timeout);
    }
    if (atomic_load(&requests_in_flight) > 0)
        fprintf(stderr, "imgsearch: %d request(s) still under way after %d s: closing them\n",
                atomic_load(&requests_in_flight), HTTP_DRAIN_SECONDS);
    MHD_stop_daemon(d);
    if (listener != MHD_INVALID_SOCKET) close(listener); /* after the stop: libmicrohttpd's threads may use it */
    free(srv.stats);
    return IS_OK;
}
