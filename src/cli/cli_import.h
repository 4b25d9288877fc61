/* cli_import.h — the parts of `imgsearch import` (cli_import.c drives them; not for other users).
 *
 *   cli_import_walk.c   the folders walked: which files are images (by their first bytes)
 *   cli_import_meta.c   each image's metadata: a sidecar JSON file or one JSON-lines / CSV mapping
 *   cli_import_http.c   a server as the destination (libcurl): which hashes it has, adds, retries
 *   cli_import_sink.c   the destination as one interface: a server, or a data directory through the
 *                       engine in this process (engine.h), with no server
 *   cli_import_show.c   the progress bar (a terminal) or line (otherwise), and the list of refusals
 *
 * Errors: functions return a status (util/status.h) and fill err; a refusal of one file is a
 * reason string, never a failed run. Threads: the walk and the metadata run on the main thread;
 * a sink's add is called from several workers at once (each with its own worker number), its
 * lookup from the main thread only; import_report is thread-safe. Memory: every *_free frees
 * what the matching *_open / *_load / walk made. */
#ifndef IMGSEARCH_CLI_IMPORT_H
#define IMGSEARCH_CLI_IMPORT_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Set by SIGINT / SIGTERM: take no new file, finish those under way, report. */
extern volatile sig_atomic_t import_interrupted;

/* ---- what happened to files that were not imported (cli_import_show.c) ---- */
typedef struct {
    pthread_mutex_t lock;
    struct import_refusal {
        char *path, *reason;
    } *items;
    size_t n, cap;
} import_report;
void import_report_init(import_report *r);
/* Records a refused file and why (both copied). */
void import_report_add(import_report *r, const char *path, const char *reason);
void import_report_free(import_report *r);

/* ---- the walk (cli_import_walk.c) ---- */
typedef struct {
    char *path; /* as walked: the PATH argument, then the names below it */
    char *rel;  /* relative to its PATH argument (for a file argument: the argument itself) */
} import_file;

typedef struct {
    import_file *files; /* images, in walk order (names sorted within each directory) */
    size_t n, cap;
    int64_t non_images; /* files skipped: no image signature (empty, text, ...), not regular, broken links */
    int64_t sidecars;   /* NAME.json files beside an image: metadata, not counted as skipped */
} import_walk;

/* Is this the start of an image file: JPEG, PNG, GIF, WebP, TIFF, BMP, HEIF/AVIF? head: the first
 * n bytes (at least 12 for all of them). The format's name, or NULL. */
const char *import_sniff(const unsigned char *head, size_t n);

/* Walks each root (a file or a folder, recursively): symbolic links are followed, but a folder
 * reached again (same device and inode: a link loop, or two links to one folder) is walked once;
 * names starting with '.' below a root are left out (hidden folders hold caches and thumbnails).
 * A folder or file that cannot be read goes to refused and the walk goes on. progress, if given,
 * is called now and then with the files looked at so far. IS_ERR_NOT_FOUND when a root does not
 * exist (nothing walked). */
int import_walk_run(char *const *roots, int nroots, import_walk *w, import_report *refused,
                    void (*progress)(int64_t seen, void *ctx), void *ctx, char *err, size_t errlen);
void import_walk_free(import_walk *w);

/* ---- metadata (cli_import_meta.c) ---- */
typedef struct import_meta import_meta;

/* Reads a mapping from paths to metadata: JSON lines ({"path": "...", "data": {...}} on each line)
 * or CSV (a header row with a `path` column; every other column becomes a string field, empty
 * cells are left out). CSV when the name ends in .csv, JSON lines for .jsonl, .ndjson and .json,
 * otherwise by the first character. Paths are relative to the PATH argument the file is found
 * under, or to the working directory, or absolute. IS_ERR_INVALID naming the line for anything
 * malformed (a duplicate path too); IS_ERR_IO when it cannot be read. */
int import_meta_load(const char *file, import_meta **out, char *err, size_t errlen);
/* The metadata to send with f, as compact JSON text (*json, caller frees; NULL: none). With a
 * mapping (m not NULL): its entry for f, if any. Without: f's sidecar, PATH.json (photo.jpg.json)
 * or else the name without its extension + .json (photo.json); IS_ERR_INVALID with the reason
 * when that file is not a JSON object (the image is refused, the run goes on). */
int import_meta_for(import_meta *m, const import_file *f, char **json, char *err, size_t errlen);
/* Calls fn for each mapping entry no import_meta_for call used (paths that matched no image). */
void import_meta_unused(import_meta *m, void (*fn)(const char *path, void *ctx), void *ctx);
void import_meta_free(import_meta *m);

/* ---- destinations (cli_import_sink.c, cli_import_http.c) ---- */
typedef enum {
    IMPORT_ADDED,   /* stored now */
    IMPORT_REFUSED, /* this file was not stored: reason says why; the run goes on */
    IMPORT_STOP,    /* the run cannot go on (key refused, server gone, disk full): reason says why */
    IMPORT_ABANDONED, /* not stored, not refused: the run is being interrupted (the next run sends it) */
} import_outcome;

typedef struct import_sink import_sink;

typedef struct {
    const char *server;  /* http(s)://host:port of a server, or NULL with data_dir */
    const char *api_key; /* NULL: none */
    const char *cacert;  /* PEM file to trust for https (NULL: the system's) */
    const char *data_dir; /* the engine in this process on this data directory */
    const char *model;    /* with data_dir */
    int workers;          /* add may be called with worker 0..workers-1 at once */
} import_sink_config;

/* Opens the destination and checks that it can be used: a server answers (with the key, when it
 * has keys) and knows POST /images/exists; a data directory opens (refused while a server or
 * another command holds it: engine.h). Any failure means the run cannot start (exit 2). */
int import_sink_open(const import_sink_config *cfg, import_sink **out, char *err, size_t errlen);
/* Which of n hashes (n <= 1000) the destination has (stored[i] for hexes[i]). Main thread only.
 * A failure stops the run. */
int import_sink_stored(import_sink *s, const char *const *hexes, int n, bool *stored, char *err, size_t errlen);
/* Stores one image (name: its file name; json: metadata or NULL). hex: the SHA-256 of bytes, so a
 * retry after a lost answer can ask whether the first try stored it (never stored twice). */
import_outcome import_sink_add(import_sink *s, int worker, const void *bytes, size_t len, const char *name,
                               const char *json, const char *hex, char *reason, size_t reasonlen);
void import_sink_close(import_sink *s);

/* The server destination (cli_import_http.c); the contracts above. */
typedef struct import_http import_http;
int import_http_open(const import_sink_config *cfg, import_http **out, char *err, size_t errlen);
int import_http_stored(import_http *h, const char *const *hexes, int n, bool *stored, char *err, size_t errlen);
import_outcome import_http_add(import_http *h, int worker, const void *bytes, size_t len, const char *name,
                               const char *json, const char *hex, char *reason, size_t reasonlen);
void import_http_close(import_http *h);

/* ---- progress (cli_import_show.c) ---- */
typedef struct {
    int64_t total;                       /* images found by the walk */
    int64_t imported, stored, dups, refused; /* so far (atomics) */
    int64_t sent;                        /* images the destination answered for (rate) */
} import_counts;

/* A thread drawing progress on standard error until import_show_stop: on a terminal a bar redrawn
 * at most 10 times a second ("[#####.....] 1234/5000 25 % 41.2 img/s ETA 1m32s refused 3"),
 * otherwise one plain line every 5 seconds. */
typedef struct import_show import_show;
import_show *import_show_start(const import_counts *c);
void import_show_stop(import_show *s);
/* Seconds since the process's first import_show_start (monotonic). */
double import_seconds(void);
/* "1m32s" / "12s" / "2h05m" */
void import_duration_text(double seconds, char *out, size_t outlen);

#endif
