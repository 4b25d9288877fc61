/* A server as the destination of `imgsearch import` (cli_import.h), over libcurl: one easy handle
 * (one kept-alive connection) per worker and one for the main thread's lookups.
 *
 * Retries: 429 and 503 (rate limit, full inference queue, database briefly unreachable) are
 * refused before anything is stored, so the same request is sent again after Retry-After (1 s
 * when absent, doubling to 30 s), for up to BUSY_LIMIT_S per request. A lost connection or
 * another 5xx may come after the image was stored, so before sending again the importer asks
 * POST /images/exists for its hash: never stored twice. A server that stays unreachable stops the
 * run; a key refused (401, 403) stops it at once. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_import.h"
#include "util/status.h"

#define BUSY_LIMIT_S 600.0   /* longest wait for a busy server, per request */
#define LOST_TRIES 5         /* tries of one request over a failing connection: 1 + waits of 1, 2, 4, 8 s */
#define ERROR_TRIES 3        /* tries of an add the server failed (5xx but 503) */
#define BODY_MAX (1u << 20)  /* the most of an answer's body kept */

struct import_http {
    char *base; /* "http://host:port", no trailing slash */
    char *cacert;
    struct curl_slist *hdr_plain, *hdr_json; /* the key (when given); + JSON for the lookup */
    int workers;
    CURL **handles; /* workers + 1: the last is the main thread's */
};

typedef struct {
    CURLcode code;
    long status;
    double retry_after; /* seconds, from Retry-After; 0 when absent */
    char error[CURL_ERROR_SIZE];
    char *body;
    size_t len;
} answer;

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
    answer *a = ctx;
    size_t add = size * n;
    if (a->len + add > BODY_MAX) return add; /* kept short: the rest is dropped, not an error */
    char *b = realloc(a->body, a->len + add + 1);
    if (!b) return 0;
    memcpy(b + a->len, p, add);
    a->len += add;
    b[a->len] = 0;
    a->body = b;
    return add;
}

typedef struct {
    const unsigned char *p;
    size_t len, at;
} mem_source;

static size_t mem_read(char *buf, size_t size, size_t n, void *arg) {
    mem_source *m = arg;
    size_t take = m->len - m->at < size * n ? m->len - m->at : size * n;
    memcpy(buf, m->p + m->at, take);
    m->at += take;
    return take;
}

static int mem_seek(void *arg, curl_off_t offset, int origin) {
    mem_source *m = arg;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > m->len) return CURL_SEEKFUNC_CANTSEEK;
    m->at = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* One POST of path with either a form (mime) or a JSON body; the answer in *a (a->body freed by
 * the caller). */
static void post(import_http *h, CURL *c, const char *path, curl_mime *mime, const char *json, answer *a) {
    free(a->body);
    memset(a, 0, sizeof *a);
    size_t ulen = strlen(h->base) + strlen(path) + 1;
    char *url = malloc(ulen);
    if (!url) {
        a->code = CURLE_OUT_OF_MEMORY;
        snprintf(a->error, sizeof a->error, "out of memory");
        return;
    }
    snprintf(url, ulen, "%s%s", h->base, path);
    curl_easy_reset(c); /* keeps the connection */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    /* an add waits for inference, at most the server's queue: give up only on a stalled link */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 300L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "imgsearch-import");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, a->error);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    if (h->cacert) curl_easy_setopt(c, CURLOPT_CAINFO, h->cacert);
    if (mime) {
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
        if (h->hdr_plain) curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->hdr_plain);
    } else {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->hdr_json);
    }
    a->code = curl_easy_perform(c);
    if (a->code == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
        struct curl_header *ra;
        if (curl_easy_header(c, "Retry-After", 0, CURLH_HEADER, -1, &ra) == CURLHE_OK)
            a->retry_after = atof(ra->value);
    } else if (!a->error[0]) {
        snprintf(a->error, sizeof a->error, "%s", curl_easy_strerror(a->code));
    }
    free(url);
}

/* The answer's detail ({"detail": ...}), or a short form of its body. */
static void detail_of(const answer *a, char *out, size_t outlen) {
    json_t *o = a->body ? json_loadb(a->body, a->len, 0, NULL) : NULL;
    const char *d = json_string_value(json_object_get(o, "detail"));
    if (d) snprintf(out, outlen, "%s", d);
    else snprintf(out, outlen, "%.200s", a->body ? a->body : "no answer body");
    json_decref(o);
}

/* Sleeps s seconds in short steps; false when the run was interrupted meanwhile. */
static bool pause_for(double s) {
    for (double slept = 0; slept < s; slept += 0.1) {
        if (import_interrupted) return false;
        nanosleep(&(struct timespec){0, 100000000}, NULL);
    }
    return !import_interrupted;
}

static double next_wait(const answer *a, double *backoff) {
    double w = a->retry_after > 0 ? a->retry_after : *backoff;
    *backoff = *backoff * 2 > 30 ? 30 : *backoff * 2;
    return w > 30 ? 30 : w;
}

static bool is_busy(long status) { return status == 429 || status == 503; }

/* POST /images/exists on handle c; tries: how many times over a failing connection. */
static int lookup(import_http *h, CURL *c, const char *const *hexes, int n, bool *stored, int tries, char *err,
                  size_t errlen) {
    json_t *list = json_array();
    for (int i = 0; list && i < n; i++) json_array_append_new(list, json_string(hexes[i]));
    json_t *req = list ? json_pack("{s:o}", "sha256", list) : NULL;
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    answer a = {0};
    double busy = 0, backoff = 1;
    int rc = IS_OK;
    for (int lost = 0;;) {
        post(h, c, "/images/exists", NULL, body, &a);
        if (a.code != CURLE_OK) {
            if (++lost < tries && pause_for((double)(1 << (lost - 1)))) continue;
            rc = is_fail(err, errlen, IS_ERR_UNAVAILABLE, "cannot reach the server at %s: %s", h->base, a.error);
            break;
        }
        if (is_busy(a.status) && busy < BUSY_LIMIT_S) {
            double w = next_wait(&a, &backoff);
            busy += w;
            if (pause_for(w)) continue;
        }
        char why[300];
        detail_of(&a, why, sizeof why);
        if (a.status == 200) {
            json_t *o = json_loadb(a.body ? a.body : "", a.len, 0, NULL), *found = json_object_get(o, "result");
            if (!json_is_array(found)) {
                rc = is_fail(err, errlen, IS_ERR_INVALID, "the server's answer to POST /images/exists is not a list");
            } else {
                for (int i = 0; i < n; i++) stored[i] = false;
                size_t k;
                json_t *v;
                json_array_foreach(found, k, v) { /* the answer follows the order asked */
                    for (int i = 0; i < n; i++)
                        if (!stored[i] && json_is_string(v) && !strcmp(json_string_value(v), hexes[i])) {
                            stored[i] = true;
                            break;
                        }
                }
            }
            json_decref(o);
        } else if (a.status == 401 || a.status == 403) {
            rc = is_fail(err, errlen, IS_ERR_INVALID, "the server refused the API key (HTTP %ld): %s", a.status, why);
        } else if (a.status == 404 || a.status == 405) {
            rc = is_fail(err, errlen, IS_ERR_INVALID,
                         "%s has no POST /images/exists (HTTP %ld): is it an imgsearch server, and as recent as "
                         "this command?", h->base, a.status);
        } else {
            rc = is_fail(err, errlen, IS_ERR_INVALID, "the server answered HTTP %ld to POST /images/exists: %s",
                         a.status, why);
        }
        break;
    }
    free(a.body);
    free(body);
    return rc;
}

int import_http_stored(import_http *h, const char *const *hexes, int n, bool *stored, char *err, size_t errlen) {
    return lookup(h, h->handles[h->workers], hexes, n, stored, LOST_TRIES, err, errlen);
}

/* After a lost answer: did the try store it? */
static bool stored_meanwhile(import_http *h, CURL *c, const char *hex) {
    bool stored = false;
    return lookup(h, c, &hex, 1, &stored, LOST_TRIES, NULL, 0) == IS_OK && stored;
}

import_outcome import_http_add(import_http *h, int worker, const void *bytes, size_t len, const char *name,
                               const char *json, const char *hex, char *reason, size_t reasonlen) {
    CURL *c = h->handles[worker];
    answer a = {0};
    double busy = 0, backoff = 1;
    int lost = 0, failed = 0;
    import_outcome out;
    for (;;) {
        if (import_interrupted) {
            out = IMPORT_ABANDONED;
            break;
        }
        mem_source src = {bytes, len, 0};
        curl_mime *form = curl_mime_init(c);
        curl_mimepart *part = form ? curl_mime_addpart(form) : NULL;
        if (part) {
            curl_mime_name(part, "image");
            curl_mime_filename(part, name);
            curl_mime_data_cb(part, (curl_off_t)len, mem_read, mem_seek, NULL, &src);
        }
        if (part && json && (part = curl_mime_addpart(form))) {
            curl_mime_name(part, "data");
            curl_mime_data(part, json, CURL_ZERO_TERMINATED);
        }
        if (!part) {
            curl_mime_free(form);
            snprintf(reason, reasonlen, "out of memory");
            out = IMPORT_STOP;
            break;
        }
        post(h, c, "/image/add", form, NULL, &a);
        curl_mime_free(form);
        char why[300];
        detail_of(&a, why, sizeof why);
        if (a.code != CURLE_OK) {
            /* refused connections never carried the image; anything later may have */
            bool maybe_sent = a.code != CURLE_COULDNT_CONNECT && a.code != CURLE_COULDNT_RESOLVE_HOST;
            if (++lost < LOST_TRIES && pause_for((double)(1 << (lost - 1)))) {
                if (maybe_sent && stored_meanwhile(h, c, hex)) {
                    out = IMPORT_ADDED;
                    break;
                }
                continue;
            }
            snprintf(reason, reasonlen, "the server at %s stopped answering (%s)", h->base, a.error);
            out = import_interrupted ? IMPORT_ABANDONED : IMPORT_STOP;
        } else if (a.status == 201) {
            out = IMPORT_ADDED;
        } else if (is_busy(a.status)) {
            if (busy < BUSY_LIMIT_S) {
                double w = next_wait(&a, &backoff);
                busy += w;
                if (pause_for(w)) continue;
                out = IMPORT_ABANDONED;
                break;
            }
            snprintf(reason, reasonlen, "the server stayed busy for %.0f s: %s (HTTP %ld)", busy, why, a.status);
            out = IMPORT_REFUSED;
        } else if (a.status == 401 || a.status == 403) {
            snprintf(reason, reasonlen, "the server refused the API key (HTTP %ld): %s", a.status, why);
            out = IMPORT_STOP;
        } else if (a.status == 404 || a.status == 405) {
            snprintf(reason, reasonlen, "%s has no POST /image/add (HTTP %ld): is it an imgsearch server?", h->base,
                     a.status);
            out = IMPORT_STOP;
        } else if (a.status == 507) { /* the server's disk is full: nothing more can be stored */
            snprintf(reason, reasonlen, "%s (HTTP 507)", why);
            out = IMPORT_STOP;
        } else if (a.status >= 500) {
            if (stored_meanwhile(h, c, hex)) { /* e.g. stored, then failed to index: stored all the same */
                out = IMPORT_ADDED;
                break;
            }
            if (++failed < ERROR_TRIES && pause_for((double)failed)) continue;
            snprintf(reason, reasonlen, "%s (HTTP %ld)", why, a.status);
            out = import_interrupted ? IMPORT_ABANDONED : IMPORT_REFUSED;
        } else {
            snprintf(reason, reasonlen, "%s (HTTP %ld)", why, a.status);
            out = IMPORT_REFUSED;
        }
        break;
    }
    free(a.body);
    return out;
}

static struct curl_slist *headers(const char *key, bool json, bool *oom) {
    struct curl_slist *l = NULL, *t;
    if (key) {
        size_t n = strlen(key) + sizeof "Authorization: Bearer ";
        char *line = malloc(n);
        if (!line) {
            *oom = true;
            return NULL;
        }
        snprintf(line, n, "Authorization: Bearer %s", key);
        t = curl_slist_append(l, line);
        free(line);
        if (!t) *oom = true;
        else l = t;
    }
    if (json && !*oom) {
        if (!(t = curl_slist_append(l, "Content-Type: application/json"))) *oom = true;
        else l = t;
    }
    return l;
}

int import_http_open(const import_sink_config *cfg, import_http **out, char *err, size_t errlen) {
    *out = NULL;
    if (strncmp(cfg->server, "http://", 7) && strncmp(cfg->server, "https://", 8))
        return is_fail(err, errlen, IS_ERR_INVALID, "--server needs an http:// or https:// URL, not '%s'", cfg->server);
    if (cfg->api_key && strpbrk(cfg->api_key, "\r\n"))
        return is_fail(err, errlen, IS_ERR_INVALID, "the API key holds a line break");
    import_http *h = calloc(1, sizeof *h);
    bool oom = !h;
    if (h) {
        h->workers = cfg->workers;
        h->base = strdup(cfg->server);
        h->cacert = cfg->cacert ? strdup(cfg->cacert) : NULL;
        h->handles = calloc((size_t)cfg->workers + 1, sizeof *h->handles);
        oom = !h->base || (cfg->cacert && !h->cacert) || !h->handles;
        for (int i = 0; !oom && i <= cfg->workers; i++) oom = !(h->handles[i] = curl_easy_init());
        if (!oom) h->hdr_plain = headers(cfg->api_key, false, &oom);
        if (!oom) h->hdr_json = headers(cfg->api_key, true, &oom);
    }
    if (oom) {
        import_http_close(h);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    for (size_t n = strlen(h->base); n > 0 && h->base[n - 1] == '/'; n--) h->base[n - 1] = 0;
    bool none;
    /* reachable (at once: nothing to wait for at the start), key accepted, new enough */
    int rc = lookup(h, h->handles[h->workers], NULL, 0, &none, 1, err, errlen);
    if (rc) {
        import_http_close(h);
        return rc;
    }
    *out = h;
    return IS_OK;
}

void import_http_close(import_http *h) {
    if (!h) return;
    for (int i = 0; h->handles && i <= h->workers; i++)
        if (h->handles[i]) curl_easy_cleanup(h->handles[i]);
    free(h->handles);
    curl_slist_free_all(h->hdr_plain);
    curl_slist_free_all(h->hdr_json);
    free(h->base);
    free(h->cacert);
    free(h);
}
