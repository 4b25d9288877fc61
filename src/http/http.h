/* http.h — requests and responses as the API layer sees them, and the server that runs them.
 *
 * The server (libmicrohttpd, a thread per connection) reads a request whole before handing it
 * on: multipart/form-data is split into fields, any other body is kept raw; a body over the
 * upload limit is discarded and answered 413 (a declared Content-Length over it is answered at the
 * headers, before "100 Continue"). Before a handler runs it refuses, with a JSON {"detail"}: a
 * target over 8 KiB (414), headers over 32 KiB (431), an encoded NUL (%00) anywhere in the target
 * (400; libmicrohttpd would cut the path or argument there), Content-Length headers that disagree
 * or one beside Transfer-Encoding (400), a Transfer-Encoding other than chunked (501), more than
 * 16 multipart parts or a part name sent twice (400). Connections: at most max_connections, at
 * most max_per_client from one address (more are closed at once), closed after idle_timeout of
 * silence, and shut down when a request has not arrived whole within request_timeout. What
 * libmicrohttpd refuses on its own before any of this (a malformed request line or version, a
 * non-numeric Content-Length, a request head over 128 KiB) still gets its own short HTML page.
 * Every response carries X-Content-Type-Options and Referrer-Policy. It logs one line per request:
 * method, target as sent, status, milliseconds, client address and the response's principal (the
 * API key's name, "-" for none), with control bytes escaped, and counts it (http_stats below). A
 * request and its response belong to its connection's thread; handlers run concurrently, one per
 * open connection.
 * HEAD requests reach the handler as "HEAD"; libmicrohttpd sends the headers of the response the
 * handler builds, without its body. */
#ifndef IMGSEARCH_HTTP_H
#define IMGSEARCH_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/metrics.h"

typedef struct {
    char *name, *filename, *content_type;
    unsigned char *data;
    size_t len;
} http_field;

typedef struct http_request {
    const char *method;
    const char *path;
    void *connection;     /* for query arguments */
    const char *client;   /* the client's address as text ("127.0.0.1"), "-" when unknown */
    bool multipart;       /* body came as multipart/form-data (fields below) */
    bool form_error;      /* the multipart body could not be parsed */
    http_field *fields;
    size_t nfields;
    unsigned char *body;  /* raw body when not multipart */
    size_t body_len;
    const struct http_stats *stats; /* the server's request statistics (for GET /metrics) */
} http_request;

typedef struct {
    int status;
    const char *content_type;   /* static string */
    char *body;                 /* malloc'ed, owned by the response */
    size_t len;
    char *disposition;          /* Content-Disposition value or NULL (owned) */
    const char *cache_control;  /* Cache-Control value (static string) or NULL */
    const char *csp;            /* Content-Security-Policy value (static string) or NULL */
    const char *allow;          /* Allow value for a 405 (static string) or NULL */
    char etag[24];              /* ETag value (quoted), or "" for none */
    struct {
        const char *name;       /* static string */
        char value[200];
    } headers[6];               /* more headers (http_add_header) */
    int nheaders;
    char principal[72];         /* who made the request (an API key's name), for the log; "" = nobody */
    int route;                  /* the route the path matched, 1..HTTP_ROUTES-1 (the handler's numbering),
                                 * for the statistics; 0 = none */
} http_response;

/* Adds a header to the response (value copied, cut at 199 bytes); ignored past six. */
void http_add_header(http_response *res, const char *name, const char *value);

/* A query argument, or NULL. */
const char *http_query(const http_request *req, const char *key);
/* A request header (case-insensitive name), or NULL. */
const char *http_header(const http_request *req, const char *name);
/* A cookie sent with the request, or NULL. */
const char *http_cookie(const http_request *req, const char *name);
/* A multipart field, or NULL. */
const http_field *http_field_get(const http_request *req, const char *name);

typedef void (*http_handler)(void *ctx, const http_request *req, http_response *res);

typedef struct {
    const char *host;      /* numeric IPv4 address or name; "0.0.0.0" for all */
    int port;
    int max_connections;   /* connections open at once (each on its own thread); more are closed at once */
    int max_per_client;    /* connections open at once from one client address (0 = no cap) */
    int idle_timeout;      /* seconds a connection may stay silent (also idle keep-alive) before it is closed */
    int request_timeout;   /* seconds a request may take to arrive whole, head and body, however busy the
                            * client keeps the line: a client trickling bytes is cut off (0 = none) */
    size_t max_upload;     /* bytes */
    const char *tls_cert;  /* PEM text of the certificate chain, or NULL for plain HTTP */
    const char *tls_key;   /* PEM text of its private key (with tls_cert) */
    http_handler handler;
    void *ctx;
} http_config;

/* Serves until SIGINT or SIGTERM, then stops gracefully: no new connections, the requests under
 * way finish (at most 30 s, or until a second signal), then the connections close. Returns an
 * is_status (binding failures and unusable TLS certificates say why). */
int http_serve(const http_config *cfg, char *err, size_t errlen);

/* ---- request statistics (server.c), for GET /metrics ----
 * The server counts every request it answers, at the moment its response is queued (so a client
 * that has its answer finds it counted): by route (http_response.route, set by the handler: the
 * route's template, never the raw path, so the number of series is bounded; 0 for paths no route
 * matches and for requests refused before the handler ran: an oversized target, headers or body,
 * a malformed multipart body, an encoded NUL, an unsupported Transfer-Encoding), by method and by
 * status, and the time from its request line to its answer, per route. Requests that get no
 * answer (the client went away, the request timed out, libmicrohttpd refused it itself) are not
 * counted. Counting is a few relaxed atomic additions (no lock); the read functions may be called
 * from any thread while requests are counted. The statistics live as long as http_serve runs. */
typedef struct http_stats http_stats;
#define HTTP_ROUTES 32 /* route ids 0..31; an id out of range counts as 0 */
enum { HTTP_METHOD_GET, HTTP_METHOD_HEAD, HTTP_METHOD_POST, HTTP_METHOD_PUT, HTTP_METHOD_DELETE,
       HTTP_METHOD_OPTIONS, HTTP_METHOD_PATCH, HTTP_METHOD_OTHER, HTTP_METHODS };
/* "GET" ... "PATCH", "other" for HTTP_METHOD_OTHER. */
const char *http_method_name(int method);
/* Statuses are counted in slots: slot 0 holds any status not in the table (none the server sends
 * today); http_status_of_slot gives the status a slot counts (0 for slot 0). */
#define HTTP_STATUS_SLOTS 33
int http_status_of_slot(int slot);
/* Requests answered so far with that route, method and status slot. */
uint64_t http_stats_requests(const http_stats *s, int route, int method, int slot);
/* The answering times of the route's requests. */
void http_stats_duration(const http_stats *s, int route, metrics_histogram_value *out);
/* Requests begun (their target read) and not yet completed, this one included. */
int http_stats_in_flight(const http_stats *s);

/* ---- responses (response.c) ---- */

/* {"detail": msg} with the given HTTP status. */
void http_error(http_response *res, int status, const char *msg);
/* The HTTP status for an is_status, and the error body with err as detail. A 5xx never shows err
 * to the client (it names files and internals): err goes to the log under a reference number,
 * and the detail says "<status name>: ... (error N in the server log)". IS_ERR_BUSY is the
 * exception: a 503 with err as detail and Retry-After. */
void http_fail(http_response *res, int status_code, const char *err);
/* Serialises body (steals the reference) with the given status. */
void http_json(http_response *res, int status, json_t *body);
/* {"result": result, "message": message} (steals result; message may be NULL). */
void http_result(http_response *res, int status, json_t *result, const char *message);
/* Takes ownership of bytes. */
void http_bytes(http_response *res, const char *content_type, unsigned char *bytes, size_t len);

#endif
