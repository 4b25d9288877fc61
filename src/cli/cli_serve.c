/* `imgsearch serve`: the HTTP service, on the embedded store or a shared PostgreSQL one. */
#include <ctype.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#include "api/api.h"
#include "cli/cli.h"
#include "engine/engine.h"
#include "http/http.h"
#include "util/file.h"
#include "util/status.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: imgsearch serve [OPTIONS]\n"
            "  --host ADDR          address to listen on (default 0.0.0.0)\n"
            "  --port N             port (default 8001)\n"
            "  --data DIR           data directory (default ./data): the embedded store, or with --store\n"
            "                       this node's cache (its index snapshot)\n"
            "  --store URL          PostgreSQL shared by any number of servers: a libpq URI\n"
            "                       (postgresql://user:pass@host:port/db) or key=value string\n"
            "                       (default: $IMGSEARCH_STORE, else the embedded store in --data)\n"
            "  --model PATH         model config (default: %s)\n"
            "  --threads N          images decoded and embedded at once (default: the number of CPUs)\n"
            "  --max-connections N  connections open at once, each on its own thread; more are closed at once\n"
            "                       (default 256)\n"
            "  --max-connections-per-client N  of those, from one client address (default 64; behind a\n"
            "                       proxy every request comes from its address: raise it there)\n"
            "  --idle-timeout S     close a connection silent for S seconds, idle keep-alive too (default 30)\n"
            "  --request-timeout S  close a connection whose request has not arrived whole within S seconds,\n"
            "                       however busy its client keeps it (default 60; 0 = no limit)\n"
            "  --queue N            images that may wait for inference; more get 503 + Retry-After (default 64)\n"
            "  --rate-limit N       requests a second per API key, or per client address without one; more\n"
            "                       get 429 + Retry-After (default 500; 0 = no limit; the UI's files, and\n"
            "                       keyless requests from 127.0.0.1 or ::1 (a local proxy) are not counted)\n"
            "  --tls-cert FILE      serve HTTPS with this PEM certificate (chain) ...\n"
            "  --tls-key FILE       ... and this PEM private key\n"
            "  --infer-threads N    threads per inference (default 1)\n"
            "  --precision P        inference arithmetic: auto (bf16 on CPUs with AVX512-BF16, else\n"
            "                       fp32), fp32 or bf16 (default: $IMGSEARCH_PRECISION, else auto)\n"
            "  --max-upload BYTES   largest request body (default 52428800 = 50 MB)\n"
            "  --max-pixels N       largest image in pixels (default 100000000)\n"
            "  --max-data-bytes N   largest metadata of one image, JSON bytes (default 65536)\n"
            "  --max-data-keys N    most object keys in one image's metadata, all levels (default 1000)\n"
            "  --max-data-depth N   deepest nesting of one image's metadata (default 32)\n"
            "  --web DIR            web assets (default: ./web, else beside the binary: ../web, else\n"
            "                       ../share/imgsearch/web: /usr/share/imgsearch/web when installed)\n"
            "  --hnsw-threshold N   exact scan up to N images, HNSW above (default 10000; 0 = always HNSW)\n"
            "  --hnsw-m N           HNSW links per node (default 16; 2m on the bottom layer)\n"
            "  --hnsw-ef-construction N  candidates while inserting (default 200)\n"
            "  --hnsw-ef-search N   default candidates while searching (default 64; per query: ?ef=)\n"
            "  --hnsw-int8          store HNSW vectors as int8 (4x smaller), re-ranked exactly from the store\n"
            "  --require-keys       refuse to start while the store holds no API key (imgsearch keys)\n"
            "  --cors-origin ORIGIN a web origin (https://app.example) whose pages may call the API; repeatable\n",
            cli_default_model());
}

static int positive(const char *opt, const char *v, long long max, long long *out) {
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < 1 || x > max) {
        fprintf(stderr, "imgsearch serve: %s needs an integer from 1 to %lld, not '%s'\n", opt, max, v);
        return 2;
    }
    *out = x;
    return 0;
}

/* scheme://host[:port], nothing after: what a browser sends as Origin. */
static bool valid_origin(const char *o) {
    const char *h = !strncmp(o, "http://", 7) ? o + 7 : !strncmp(o, "https://", 8) ? o + 8 : NULL;
    if (!h || !*h || strlen(o) > 190) return false;
    for (; *h; h++)
        if (!isalnum((unsigned char)*h) && !strchr(".-:[]", *h)) return false;
    return true;
}

/* An address only this machine reaches? */
static bool loopback(const char *host) {
    return !strncmp(host, "127.", 4) || !strcmp(host, "localhost") || !strcmp(host, "::1");
}

/* Whether the keys in the store let the server start (--require-keys), with a warning when none
 * exists and the address is reachable from elsewhere. Says why on standard error. */
static bool keys_allow_start(engine *e, bool require_keys, const char *host, long long port) {
    int nkeys = 0;
    char err[512];
    if (engine_keys_count(e, &nkeys, err, sizeof err)) {
        fprintf(stderr, "imgsearch serve: cannot read the API keys: %s\n", err);
        return false;
    }
    if (!nkeys && require_keys) {
        fprintf(stderr, "imgsearch serve: --require-keys, but the store holds no API key: make one with "
                        "`imgsearch keys create --scope admin` (same --data or --store)\n");
        return false;
    }
    if (!nkeys && !loopback(host))
        fprintf(stderr, "imgsearch: warning: no API key exists, so anyone who can reach %s:%lld may read, change "
                        "and delete every image (make keys with `imgsearch keys create`)\n", host, port);
    return true;
}

int cli_serve(int argc, char **argv) {
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'},       {"port", required_argument, 0, 'p'},
        {"data", required_argument, 0, 'd'},       {"model", required_argument, 0, 'm'},
        {"threads", required_argument, 0, 't'},    {"infer-threads", required_argument, 0, 'i'},
        {"max-upload", required_argument, 0, 'u'}, {"max-pixels", required_argument, 0, 'x'},
        {"web", required_argument, 0, 'w'},        {"help", no_argument, 0, 'h'},
        {"hnsw-threshold", required_argument, 0, 'T'}, {"hnsw-m", required_argument, 0, 'M'},
        {"hnsw-ef-construction", required_argument, 0, 'C'}, {"hnsw-ef-search", required_argument, 0, 'S'},
        {"hnsw-int8", no_argument, 0, '8'},        {"max-connections", required_argument, 0, 'c'},
        {"max-data-bytes", required_argument, 0, 'B'}, {"max-data-keys", required_argument, 0, 'K'},
        {"max-data-depth", required_argument, 0, 'D'}, {"store", required_argument, 0, 'P'},
        {"precision", required_argument, 0, 'r'}, {"require-keys", no_argument, 0, 'R'},
        {"cors-origin", required_argument, 0, 'O'}, {"tls-cert", required_argument, 0, 'E'},
        {"tls-key", required_argument, 0, 'Y'},   {"max-connections-per-client", required_argument, 0, 'L'},
        {"idle-timeout", required_argument, 0, 'I'}, {"request-timeout", required_argument, 0, 'Q'},
        {"queue", required_argument, 0, 'W'},     {"rate-limit", required_argument, 0, 'A'},
        {0, 0, 0, 0}};
    const char *host = "0.0.0.0", *data = "./data", *model = NULL, *web = NULL, *precision = NULL, *store_url = getenv("IMGSEARCH_STORE");
    long long port = 8001, threads = 0, connections = 256, infer = 1, max_upload = 50ll << 20, max_pixels = 100000000;
    long long threshold = 10000, hnsw_m = 16, ef_construction = 200, ef_search = 64;
    long long data_bytes = ENGINE_DATA_MAX_BYTES, data_keys = ENGINE_DATA_MAX_KEYS, data_depth = ENGINE_DATA_MAX_DEPTH;
    long long per_client = 64, idle_timeout = 30, request_timeout = 60, queue = ENGINE_DEFAULT_QUEUE, rate = 500;
    const char *tls_cert = NULL, *tls_key = NULL;
    bool int8 = false, require_keys = false;
    enum { MAX_ORIGINS = 16 };
    const char *origins[MAX_ORIGINS];
    int norigins = 0;
    optind = 1;
    int c, bad = 0;
    while (!bad && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'H': host = optarg; break;
        case 'd': data = optarg; break;
        case 'P': store_url = optarg; break;
        case 'r': precision = optarg; break;
        case 'm': model = optarg; break;
        case 'w': web = optarg; break;
        case 'p': bad = positive("--port", optarg, 65535, &port); break;
        case 't': bad = positive("--threads", optarg, 256, &threads); break;
        case 'c': bad = positive("--max-connections", optarg, 65536, &connections); break;
        case 'i': bad = positive("--infer-threads", optarg, 64, &infer); break;
        case 'u': bad = positive("--max-upload", optarg, 1ll << 32, &max_upload); break;
        case 'x': bad = positive("--max-pixels", optarg, 1ll << 40, &max_pixels); break;
        case 'T':
            if (!strcmp(optarg, "0")) threshold = 0;
            else bad = positive("--hnsw-threshold", optarg, 1ll << 40, &threshold);
            break;
        case 'M': bad = positive("--hnsw-m", optarg, 64, &hnsw_m); break;
        case 'C': bad = positive("--hnsw-ef-construction", optarg, 4096, &ef_construction); break;
        case 'S': bad = positive("--hnsw-ef-search", optarg, 4096, &ef_search); break;
        case '8': int8 = true; break;
        case 'R': require_keys = true; break;
        case 'W': bad = positive("--queue", optarg, 1 << 20, &queue); break;
        case 'A':
            if (!strcmp(optarg, "0")) rate = 0;
            else bad = positive("--rate-limit", optarg, 1 << 30, &rate);
            break;
        case 'E': tls_cert = optarg; break;
        case 'Y': tls_key = optarg; break;
        case 'L': bad = positive("--max-connections-per-client", optarg, 65536, &per_client); break;
        case 'I': bad = positive("--idle-timeout", optarg, 86400, &idle_timeout); break;
        case 'Q':
            if (!strcmp(optarg, "0")) request_timeout = 0;
            else bad = positive("--request-timeout", optarg, 86400, &request_timeout);
            break;
        case 'O':
            if (norigins == MAX_ORIGINS || !valid_origin(optarg)) {
                fprintf(stderr, "imgsearch serve: --cors-origin needs an origin like https://app.example:8443 "
                                "(scheme, host, optional port; at most 16), not '%s'\n", optarg);
                return 2;
            }
            origins[norigins++] = optarg;
            break;
        case 'B': bad = positive("--max-data-bytes", optarg, 16ll << 20, &data_bytes); break;
        case 'K': bad = positive("--max-data-keys", optarg, 1000000, &data_keys); break;
        case 'D': bad = positive("--max-data-depth", optarg, 1000, &data_depth); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (bad) return bad;
    if (optind < argc) {
        fprintf(stderr, "imgsearch serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!tls_cert != !tls_key) {
        fprintf(stderr, "imgsearch serve: --tls-cert and --tls-key go together\n");
        return 2;
    }
    char err[512] = "";
    unsigned char *cert_pem = NULL, *key_pem = NULL;
    size_t pem_len;
    if (tls_cert && (file_read_all(tls_cert, 1u << 20, &cert_pem, &pem_len, err, sizeof err) ||
                     file_read_all(tls_key, 1u << 20, &key_pem, &pem_len, err, sizeof err))) {
        fprintf(stderr, "imgsearch serve: %s\n", err);
        free(cert_pem);
        return 2;
    }
    engine_config cfg = {.data_dir = data, .store_url = store_url && *store_url ? store_url : NULL, .model_config = model ? model : cli_default_model(),
                         .infer_threads = (int)infer, .sessions = (int)threads, .max_queue = (int)queue, .precision = precision, .max_pixels = (uint64_t)max_pixels,
                         .hnsw_threshold = threshold ? threshold : -1, .hnsw_m = (int)hnsw_m,
                         .hnsw_ef_construction = (int)ef_construction, .hnsw_ef_search = (int)ef_search,
                         .hnsw_int8 = int8,
                         .data_limits = {.max_bytes = (size_t)data_bytes, .max_keys = (int)data_keys,
                                         .max_depth = (int)data_depth}};
    char web_default[PATH_MAX]; /* ./web, ../web or ../share/imgsearch/web beside the binary */
    api_context api = {.web_dir = web ? web : file_find_project("web", "openapi.json", web_default, sizeof web_default),
                       .cors_origins = origins, .ncors_origins = norigins,
                       .limiter = rate_limiter_new((double)rate), .rate_limit = (double)rate};
    http_config http = {.host = host, .port = (int)port, .max_connections = (int)connections,
                        .max_per_client = (int)per_client, .idle_timeout = (int)idle_timeout,
                        .request_timeout = (int)request_timeout, .max_upload = (size_t)max_upload,
                        .tls_cert = (const char *)cert_pem, .tls_key = (const char *)key_pem,
                        .handler = api_handle, .ctx = &api};
    int status = 2;
    if (rate && !api.limiter) snprintf(err, sizeof err, "out of memory");
    else if (!engine_open(&cfg, &api.engine, err, sizeof err) && keys_allow_start(api.engine, require_keys, host, port))
        status = http_serve(&http, err, sizeof err) ? 2 : 0;
    if (status && *err) fprintf(stderr, "imgsearch serve: %s\n", err);
    engine_close(api.engine);
    rate_limiter_free(api.limiter);
    if (key_pem) memset(key_pem, 0, pem_len);
    free(cert_pem);
    free(key_pem);
    return status;
}
