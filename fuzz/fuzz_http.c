/* fuzz_http.c — the whole HTTP layer as a client meets it: libmicrohttpd's parsing under our
 * server (src/http/server.c: request limits, Content-Length and Transfer-Encoding checks,
 * multipart fields through MHD's post processor, the request clock), the router and access
 * control (src/api/routes.c, access.c: paths, ids, methods, API keys, CORS, rate), query
 * arguments, JSON bodies and every handler, on a real engine (the real model, an embedded store
 * in a scratch directory, the HNSW index) — nothing is mocked.
 *
 * The server runs in this process (http_serve on a thread, 127.0.0.1, a free port). Each input is
 * the raw bytes a client sends on one connection (one request or several, kept alive): the
 * harness connects, sends them, closes its sending side and reads the answer until the server
 * closes. "@KEY@" in the input is replaced by the server's admin API key (made at start), so that
 * seeds reach the handlers behind the key check; a request without it gets 401. The store keeps
 * two images at least (added again after a delete-all) and at most 200 (emptied then), so runs
 * stay comparable and fast.
 *
 * Leaks: scripts/fuzz runs this target with -detect_leaks=0, so LeakSanitizer looks once, at exit,
 * instead of after every input: the connection threads end on their own time, and GLib frees its
 * per-thread cache as a thread ends, which a check between two inputs now and then caught.
 *
 * Checks, beyond the sanitizers: the server answers and closes the connection within 8 seconds
 * (a hang is a finding: a connection that never ends holds a thread); every answer is a well-formed
 * HTTP/1.x status line; no answer is 500 (an internal error: a bug, or a server that cannot tell a
 * client's mistake from its own). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "api/api.h"
#include "engine/engine.h"
#include "fuzz_util.h"
#include "http/http.h"
#include "util/ratelimit.h"
#include "util/status.h"

#define ANSWER_SECONDS 8
#define MAX_ANSWER (8u << 20)
#define KEY_MARK "@KEY@"

static engine *eng;
static api_context api;
static http_config hcfg;
static char data_dir[400];
static char key[AUTH_KEY_LEN + 1];
static const char *const origins[] = {"https://app.example"};
static unsigned char *seed_png, *seed_jpg;
static size_t seed_png_len, seed_jpg_len;

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        abort();
    }
    unsigned char *buf = malloc(1 << 20);
    if (!buf) abort();
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A port nobody listens on now (the kernel's choice for a socket bound to port 0). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &alen)) {
        perror("fuzz_http: free port");
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* A connection to the server, or -1 (errno set). A signal (libFuzzer's timer ticks every second)
 * may interrupt connect: then it is tried again. */
static int connect_server(void) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)hcfg.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int tries = 0;; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        if (!connect(fd, (struct sockaddr *)&a, sizeof a)) return fd;
        int e = errno;
        close(fd);
        errno = e;
        if (e != EINTR || tries == 100) return -1;
    }
}

static void *serve(void *arg) {
    (void)arg;
    char err[512];
    int rc = http_serve(&hcfg, err, sizeof err);
    fprintf(stderr, "fuzz_http: the server stopped (%d): %s\n", rc, err);
    abort();
}

/* Two images at least, 200 at most: see the header comment. */
static void keep_store_bounded(void) {
    engine_status_info st;
    if (engine_status(eng, &st)) abort();
    char err[512];
    if (st.count > 200) {
        int64_t n;
        if (engine_delete_all(eng, &n, err, sizeof err)) {
            fprintf(stderr, "fuzz_http: %s\n", err);
            abort();
        }
        st.count = 0;
    }
    for (int64_t i = st.count; i < 2; i++) {
        int64_t id;
        int rc = i % 2 ? engine_add(eng, seed_jpg, seed_jpg_len, "dog.jpg", "{\"breed\":\"pug\",\"age\":9}", &id, err,
                                    sizeof err)
                       : engine_add(eng, seed_png, seed_png_len, "cat.png", "{\"breed\":\"tabby\",\"age\":3,\"tags\":[\"a\"]}",
                                    &id, err, sizeof err);
        if (rc) {
            fprintf(stderr, "fuzz_http: cannot add a seed image: %s\n", err);
            abort();
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    snprintf(data_dir, sizeof data_dir, "%s/data", fuzz_scratch("http"));
    engine_config cfg = {.data_dir = data_dir,
                         .model_config = IMGSEARCH_SOURCE_DIR "/models/efficientnet_lite0.json",
                         .infer_threads = 1,
                         .sessions = 2,
                         .max_queue = 8,
                         .precision = "fp32", /* XNNPACK: oneDNN's OpenMP is not clang's */
                         .max_pixels = 4000000,
                         .hnsw_threshold = -1, /* always the HNSW graph: the more complex index */
                         .hnsw_m = 8,
                         .hnsw_ef_construction = 32};
    char err[512], name[AUTH_NAME_MAX + 1];
    if (engine_open(&cfg, &eng, err, sizeof err) ||
        engine_key_create(data_dir, NULL, "fuzz", AUTH_ADMIN, name, key, err, sizeof err)) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        abort();
    }
    seed_png = read_all(IMGSEARCH_SOURCE_DIR "/fuzz/corpus/decode/png_rgb.png", &seed_png_len);
    seed_jpg = read_all(IMGSEARCH_SOURCE_DIR "/fuzz/corpus/decode/jpeg_baseline.jpg", &seed_jpg_len);
    keep_store_bounded();
    api = (api_context){.engine = eng,
                        .web_dir = IMGSEARCH_SOURCE_DIR "/web",
                        .cors_origins = origins,
                        .ncors_origins = 1,
                        .limiter = rate_limiter_new(1e6),
                        .rate_limit = 1e6};
    hcfg = (http_config){.host = "127.0.0.1",
                         .port = free_port(),
                         .max_connections = 64,
                         .idle_timeout = 3,
                         .request_timeout = 3,
                         .max_upload = 256 * 1024,
                         .handler = api_handle,
                         .ctx = &api};
    pthread_t t;
    if (pthread_create(&t, NULL, serve, NULL)) abort();
    pthread_detach(t);
    for (int i = 0;; i++) { /* until it listens */
        int fd = connect_server();
        if (fd >= 0) {
            close(fd);
            break;
        }
        if (i == 200) {
            fprintf(stderr, "fuzz_http: the server does not listen on port %d\n", hcfg.port);
            abort();
        }
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return 0;
}

/* The input with every KEY_MARK replaced by the key (caller frees). */
static unsigned char *with_key(const uint8_t *data, size_t size, size_t *out_len) {
    size_t marks = 0, ml = strlen(KEY_MARK), kl = strlen(key);
    for (size_t i = 0; i + ml <= size; i++)
        if (!memcmp(data + i, KEY_MARK, ml)) marks++, i += ml - 1;
    unsigned char *out = malloc(size + marks * kl + 1);
    if (!out) abort();
    size_t j = 0;
    for (size_t i = 0; i < size;) {
        if (i + ml <= size && !memcmp(data + i, KEY_MARK, ml)) {
            memcpy(out + j, key, kl);
            j += kl;
            i += ml;
        } else {
            out[j++] = data[i++];
        }
    }
    *out_len = j;
    return out;
}

/* Every "HTTP/1.x NNN " status line that begins an answer; the first must start the reply. */
static void check_answer(const unsigned char *buf, size_t len) {
    if (!len) return; /* closed without an answer: a malformed head MHD dropped, or an incomplete request */
    FUZZ_CHECK(len >= 12 && !memcmp(buf, "HTTP/1.", 7));
    for (size_t i = 0; i + 12 <= len; i++) {
        if ((i && buf[i - 1] != '\n') || memcmp(buf + i, "HTTP/1.", 7)) continue;
        const unsigned char *s = buf + i + 9;
        if (!(s[0] >= '1' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9')) continue;
        int status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
        if (status == 500) fprintf(stderr, "fuzz_http: answer 500: %.*s\n", (int)(len - i < 600 ? len - i : 600), buf + i);
        FUZZ_CHECK(status != 500);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t len;
    unsigned char *req = with_key(data, size, &len);
    int fd = connect_server();
    if (fd < 0) {
        int e = errno, fds = 0;
        DIR *d = opendir("/proc/self/fd");
        for (struct dirent *de; d && (de = readdir(d));) fds += de->d_name[0] != '.';
        if (d) closedir(d);
        fprintf(stderr, "fuzz_http: cannot connect: %s (%d descriptors open)\n", strerror(e), fds);
    }
    FUZZ_CHECK(fd >= 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    unsigned char *answer = malloc(MAX_ANSWER);
    if (!answer) abort();
    size_t sent = 0, got = 0;
    bool shut = false, closed = false;
    int64_t deadline = now_ms() + ANSWER_SECONDS * 1000;
    while (!closed) {
        if (sent == len && !shut) {
            shutdown(fd, SHUT_WR); /* the request ends here: the server sees the end of the stream */
            shut = true;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            fprintf(stderr, "fuzz_http: no end of the answer within %d s (%zu of %zu bytes sent, %zu received)\n",
                    ANSWER_SECONDS, sent, len, got);
            FUZZ_CHECK(!"the server hangs on this input");
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (shut ? 0 : POLLOUT)};
        if (poll(&p, 1, (int)(left < 100 ? left : 100)) < 0 && errno != EINTR) abort();
        if (p.revents & POLLOUT) {
            ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
            if (n > 0) sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) sent = len; /* the server closed: stop sending */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, answer + got, MAX_ANSWER - got, 0);
            if (n > 0) got += (size_t)n;
            else if (n == 0 || (errno != EAGAIN && errno != EINTR)) closed = true;
            if (got == MAX_ANSWER) closed = true;
        }
    }
    close(fd);
    check_answer(answer, got);
    free(answer);
    free(req);
    keep_store_bounded();
    return 0;
}
