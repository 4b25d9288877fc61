/* Who may do what: API keys and their scopes, and which origins may write (api.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "util/status.h"

#define REALM "Bearer realm=\"imgsearch\""

static void unauthorized(http_response *res, const char *msg, bool bad_token) {
    http_error(res, 401, msg);
    http_add_header(res, "WWW-Authenticate", bad_token ? REALM ", error=\"invalid_token\"" : REALM);
}

bool api_authorize(const api_context *api, const http_request *req, auth_scope need, http_response *res) {
    if (need == AUTH_NONE) return true;
    char err[512];
    int nkeys;
    int rc = engine_keys_count(api->engine, &nkeys, err, sizeof err);
    if (rc) {
        http_fail(res, rc, err);
        return false;
    }
    if (!nkeys) return true; /* no key made yet: open, as the replaced API was */
    const char *key;
    size_t len;
    char why[160];
    /* the UI's cookie counts only when no header names a key: <img> loads cannot send headers */
    const char *header_key = http_header(req, "X-API-Key"), *authorization = http_header(req, "Authorization");
    if (!header_key && !authorization) header_key = http_cookie(req, API_KEY_COOKIE);
    int presented = auth_key_presented(authorization, header_key, &key, &len, why, sizeof why);
    if (presented < 0) {
        unauthorized(res, why, true);
        return false;
    }
    if (!presented) {
        unauthorized(res, "this server needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                     false);
        return false;
    }
    auth_scope has;
    char name[AUTH_NAME_MAX + 1];
    rc = engine_authenticate(api->engine, key, len, &has, name, err, sizeof err);
    if (rc == IS_ERR_NOT_FOUND) {
        unauthorized(res, "the API key is not valid (unknown or revoked)", true);
        return false;
    }
    if (rc) {
        http_fail(res, rc, err);
        return false;
    }
    snprintf(res->principal, sizeof res->principal, "%s", name);
    if (has < need) {
        char msg[200];
        snprintf(msg, sizeof msg, "this needs a key with scope '%s'; key '%s' has scope '%s'", auth_scope_name(need),
                 name, auth_scope_name(has));
        http_error(res, 403, msg);
        return false;
    }
    return true;
}

bool api_within_rate(const api_context *api, const http_request *req, http_response *res) {
    char who[96];
    if (res->principal[0]) {
        snprintf(who, sizeof who, "key %s", res->principal);
    } else {
        /* a proxy (or a script) on this machine speaks for many clients: not one budget */
        if (!strcmp(req->client, "127.0.0.1") || !strcmp(req->client, "::1")) return true;
        snprintf(who, sizeof who, "address %s", req->client);
    }
    int retry = 1;
    if (rate_limiter_take(api->limiter, who, &retry)) return true;
    char msg[200], after[16];
    snprintf(msg, sizeof msg, "too many requests: at most %g a second per %s (--rate-limit); try again in %d s",
             api->rate_limit, res->principal[0] ? "key" : "client address", retry);
    http_error(res, 429, msg);
    snprintf(after, sizeof after, "%d", retry);
    http_add_header(res, "Retry-After", after);
    return false;
}

/* Does origin ("scheme://host[:port]") name this server, as the request's Host header does? */
static bool same_origin(const char *origin, const char *host) {
    const char *rest = !strncasecmp(origin, "http://", 7) ? origin + 7 : !strncasecmp(origin, "https://", 8) ? origin + 8
                                                                                                             : NULL;
    return rest && host && !strcasecmp(rest, host);
}

bool api_origin_allowed(const api_context *api, const char *origin) {
    for (int i = 0; i < api->ncors_origins; i++)
        if (!strcasecmp(api->cors_origins[i], origin)) return true;
    return false;
}

bool api_cross_origin_ok(const api_context *api, const http_request *req, http_response *res) {
    const char *origin = http_header(req, "Origin");
    const char *site = http_header(req, "Sec-Fetch-Site");
    /* X-Forwarded-Host: a proxy in front may pass its own Host on; a page cannot set it on a
     * cross-origin request without a preflight, which only --cors-origin origins pass */
    bool foreign = origin && strcmp(origin, "null") ? !same_origin(origin, http_header(req, "Host")) &&
                                                          !same_origin(origin, http_header(req, "X-Forwarded-Host")) &&
                                                          !api_origin_allowed(api, origin)
                 : origin ? true /* "null": a sandboxed page or a file: never this server's UI */
                          : site && (!strcasecmp(site, "cross-site") || !strcasecmp(site, "same-site"));
    if (!foreign) return true;
    http_error(res, 403,
               "a web page of another origin may not change this server (start it with --cors-origin ORIGIN to "
               "allow one)");
    return false;
}

void api_cors_headers(const api_context *api, const http_request *req, http_response *res) {
    const char *origin = http_header(req, "Origin");
    if (!origin || !api_origin_allowed(api, origin)) return;
    http_add_header(res, "Access-Control-Allow-Origin", origin);
    http_add_header(res, "Vary", "Origin");
}

void api_cors_preflight(const api_context *api, const http_request *req, http_response *res) {
    const char *origin = http_header(req, "Origin");
    if (!origin || !api_origin_allowed(api, origin)) {
        http_error(res, 403, "this origin is not allowed (--cors-origin)");
        return;
    }
    res->status = 204;
    res->content_type = "text/plain";
    http_add_header(res, "Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE");
    http_add_header(res, "Access-Control-Allow-Headers", "Authorization, X-API-Key, Content-Type");
    http_add_header(res, "Access-Control-Max-Age", "600");
}

bool api_json_body(const http_request *req, http_response *res) {
    const char *ct = http_header(req, "Content-Type");
    size_t n = ct ? strcspn(ct, ";") : 0;
    while (n && ct[n - 1] == ' ') n--;
    bool json = ct && ((n == 16 && !strncasecmp(ct, "application/json", 16)) ||
                       (n > 5 && !strncasecmp(ct + n - 5, "+json", 5) && !strncasecmp(ct, "application/", 12)));
    if (json) return true;
    http_error(res, 415, "the body must be sent as Content-Type: application/json");
    return false;
}
