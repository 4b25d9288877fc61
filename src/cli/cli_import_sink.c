/* Where `imgsearch import` stores images (cli_import.h): a server over HTTP (cli_import_http.c),
 * or a data directory through the engine in this process. The engine takes the directory's lock
 * (engine.h), so a data directory that a server (or another command) uses is refused at open. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_import.h"
#include "engine/engine.h"
#include "util/status.h"

struct import_sink {
    import_http *http; /* one of the two */
    engine *engine;
};

int import_sink_open(const import_sink_config *cfg, import_sink **out, char *err, size_t errlen) {
    *out = NULL;
    import_sink *s = calloc(1, sizeof *s);
    if (!s) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    int rc;
    if (cfg->server) {
        rc = import_http_open(cfg, &s->http, err, errlen);
    } else {
        /* one inference session per worker, each on one thread: the workers are the parallelism */
        engine_config ec = {.data_dir = cfg->data_dir, .model_config = cfg->model ? cfg->model : cli_default_model(),
                            .infer_threads = 1, .sessions = cfg->workers, .max_queue = cfg->workers + 1};
        rc = engine_open(&ec, &s->engine, err, errlen);
    }
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return IS_OK;
}

int import_sink_stored(import_sink *s, const char *const *hexes, int n, bool *stored, char *err, size_t errlen) {
    if (s->http) return import_http_stored(s->http, hexes, n, stored, err, errlen);
    return engine_hashes_stored(s->engine, hexes, n, stored, err, errlen);
}

/* What the engine refuses about one image (the run goes on), as opposed to what stops every add
 * (a full disk, a failing store). */
static bool about_the_image(int rc) {
    return rc == IS_ERR_INVALID || rc == IS_ERR_EMPTY_IMAGE || rc == IS_ERR_UNSUPPORTED_IMAGE ||
           rc == IS_ERR_CORRUPT_IMAGE || rc == IS_ERR_IMAGE_TOO_LARGE || rc == IS_ERR_TOO_LARGE;
}

import_outcome import_sink_add(import_sink *s, int worker, const void *bytes, size_t len, const char *name,
                               const char *json, const char *hex, char *reason, size_t reasonlen) {
    if (s->http) return import_http_add(s->http, worker, bytes, len, name, json, hex, reason, reasonlen);
    char err[512];
    int64_t id;
    for (;;) {
        int rc = engine_add(s->engine, bytes, len, name, json, &id, err, sizeof err);
        if (!rc) return IMPORT_ADDED;
        if (rc == IS_ERR_BUSY && !import_interrupted) { /* more workers than sessions: cannot happen, but wait */
            nanosleep(&(struct timespec){0, 50000000}, NULL);
            continue;
        }
        snprintf(reason, reasonlen, "%s: %s", is_status_name(rc), err);
        return about_the_image(rc) ? IMPORT_REFUSED : rc == IS_ERR_BUSY ? IMPORT_ABANDONED : IMPORT_STOP;
    }
}

void import_sink_close(import_sink *s) {
    if (!s) return;
    import_http_close(s->http);
    engine_close(s->engine);
    free(s);
}
