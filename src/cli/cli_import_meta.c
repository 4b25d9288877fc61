/* Metadata for `imgsearch import` (cli_import.h): a sidecar JSON file beside each image, or one
 * mapping file (JSON lines or CSV) from paths to metadata. Main thread only. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_import.h"
#include "util/status.h"

/* A sidecar bigger than this is refused unread (the server takes 64 KiB of metadata by default). */
#define SIDECAR_MAX_BYTES (1u << 20)

struct import_meta {
    json_t *map;  /* normalised path → metadata object */
    json_t *used; /* normalised path → true, for the entries an image took */
};

/* Lexically normalised path (caller frees): "./" segments and repeated slashes dropped, ".."
 * kept as it is (no file system access). */
static char *normalise(const char *p) {
    size_t n = strlen(p);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    bool abs = p[0] == '/';
    if (abs) out[o++] = '/';
    for (const char *s = p; *s;) {
        while (*s == '/') s++;
        const char *e = s;
        while (*e && *e != '/') e++;
        size_t len = (size_t)(e - s);
        if (len && !(len == 1 && s[0] == '.')) {
            if (o && out[o - 1] != '/') out[o++] = '/';
            memcpy(out + o, s, len);
            o += len;
        }
        s = e;
    }
    out[o] = 0;
    return out;
}

static int put(import_meta *m, const char *path, json_t *data, const char *file, long line, char *err,
               size_t errlen) {
    char *key = normalise(path);
    if (!key) {
        json_decref(data);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    int rc = IS_OK;
    if (!*key) rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line %ld: the path is empty", file, line);
    else if (json_object_get(m->map, key))
        rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line %ld: the path %s is given twice", file, line, path);
    else if (json_object_set_new_nocheck(m->map, key, data)) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    if (rc && rc != IS_ERR_NOMEM) json_decref(data);
    free(key);
    return rc;
}

static int load_jsonl(import_meta *m, FILE *f, const char *file, char *err, size_t errlen) {
    char *line = NULL;
    size_t cap = 0;
    long no = 0;
    int rc = IS_OK;
    for (ssize_t len; !rc && (len = getline(&line, &cap, f)) >= 0;) {
        no++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue; /* blank */
        json_error_t jerr;
        json_t *o = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
        json_t *path = json_object_get(o, "path"), *data = json_object_get(o, "data");
        const char *key;
        json_t *v;
        bool others = false;
        json_object_foreach(o, key, v) others |= strcmp(key, "path") && strcmp(key, "data");
        if (!o) rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line %ld: %s", file, no, jerr.text);
        else if (!json_is_string(path))
            rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line %ld: needs \"path\": a string", file, no);
        else if (!json_is_object(data))
            rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line %ld: needs \"data\": a JSON object", file, no);
        else if (others)
            rc = is_fail(err, errlen, IS_ERR_INVALID,
                         "%s line %ld: only \"path\" and \"data\" may be given (metadata goes in \"data\")", file, no);
        else rc = put(m, json_string_value(path), json_incref(data), file, no, err, errlen);
        json_decref(o);
    }
    free(line);
    if (!rc && ferror(f)) rc = is_fail(err, errlen, IS_ERR_IO, "cannot read %s: %s", file, strerror(errno));
    return rc;
}

/* One CSV record (RFC 4180: quoted fields may hold commas, quotes doubled, line breaks) into
 * fields; false at the end of the file. *lines counts the lines it spanned. */
typedef struct {
    char **v;
    size_t n, cap;
} fields;

static bool field_add(fields *fs, const char *s, size_t len) {
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 16;
        char **v = realloc(fs->v, cap * sizeof *v);
        if (!v) return false;
        fs->v = v;
        fs->cap = cap;
    }
    char *copy = malloc(len + 1); /* s is not NUL-terminated */
    if (!copy) return false;
    memcpy(copy, s, len);
    copy[len] = 0;
    fs->v[fs->n++] = copy;
    return true;
}

static void fields_clear(fields *fs) {
    for (size_t i = 0; i < fs->n; i++) free(fs->v[i]);
    fs->n = 0;
}

static int csv_record(FILE *f, fields *fs, long *lines, const char *file, long at, char *err, size_t errlen,
                      bool *eof) {
    fields_clear(fs);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool quoted = false, was_quoted = false, any = false;
    int rc = IS_OK;
    *eof = false;
    for (int c; !rc;) {
        c = fgetc(f);
        if (c == EOF) {
            if (quoted) rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line %ld: a quoted field never ends", file, at);
            else if (!any) *eof = true;
            else {
                if (len && buf[len - 1] == '\r' && !was_quoted) len--;
                if (!field_add(fs, buf ? buf : "", len)) rc = IS_ERR_NOMEM;
            }
            break;
        }
        any = true;
        if (quoted) {
            if (c == '"') {
                int d = fgetc(f);
                if (d == '"') c = '"';
                else {
                    if (d != EOF) ungetc(d, f);
                    quoted = false;
                    continue;
                }
            } else if (c == '\n') {
                ++*lines;
            }
        } else if (c == '"' && len == 0 && !was_quoted) {
            quoted = was_quoted = true;
            continue;
        } else if (c == ',' || c == '\n') {
            if (len && buf[len - 1] == '\r' && !was_quoted) len--;
            if (!field_add(fs, buf ? buf : "", len)) rc = IS_ERR_NOMEM;
            len = 0;
            was_quoted = false;
            if (c == '\n') {
                ++*lines;
                break;
            }
            continue;
        } else if (was_quoted && c != '\r') {
            rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line %ld: text after a quoted field", file, at);
            break;
        } else if (was_quoted) {
            continue; /* the \r of \r\n after a quoted field */
        }
        if (len + 1 >= cap) {
            cap = cap ? cap * 2 : 256;
            char *b = realloc(buf, cap);
            if (!b) {
                rc = IS_ERR_NOMEM;
                break;
            }
            buf = b;
        }
        buf[len++] = (char)c;
    }
    free(buf);
    if (rc == IS_ERR_NOMEM) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    return rc;
}

static int load_csv(import_meta *m, FILE *f, const char *file, char *err, size_t errlen) {
    fields head = {0}, row = {0};
    long line = 1, next = 1;
    bool eof;
    int c0 = fgetc(f), c1 = c0 == 0xEF ? fgetc(f) : EOF, c2 = c1 == 0xBB ? fgetc(f) : EOF;
    if (!(c0 == 0xEF && c1 == 0xBB && c2 == 0xBF)) rewind(f); /* a UTF-8 byte order mark is skipped */
    int rc = csv_record(f, &head, &next, file, line, err, errlen, &eof);
    long path_col = -1;
    for (size_t i = 0; !rc && i < head.n; i++) {
        json_t *probe = json_string(head.v[i]);
        if (!probe) rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line 1: column %zu's name is not UTF-8", file, i + 1);
        json_decref(probe);
        for (size_t j = 0; !rc && j < i; j++)
            if (!strcmp(head.v[i], head.v[j]))
                rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line 1: the column %s is named twice", file, head.v[i]);
        if (!rc && !strcmp(head.v[i], "path")) path_col = (long)i;
    }
    if (!rc && (eof || path_col < 0))
        rc = is_fail(err, errlen, IS_ERR_INVALID, "%s: the first row must name the columns, one of them `path`", file);
    while (!rc) {
        line = next;
        rc = csv_record(f, &row, &next, file, line, err, errlen, &eof);
        if (rc || eof) break;
        if (row.n == 1 && !*row.v[0]) continue; /* an empty line */
        if (row.n != head.n) {
            rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line %ld: %zu fields, but the first row names %zu", file,
                         line, row.n, head.n);
            break;
        }
        json_t *data = json_object();
        for (size_t i = 0; data && !rc && i < row.n; i++) {
            if ((long)i == path_col || !*row.v[i]) continue;
            json_t *v = json_string(row.v[i]);
            if (!v) rc = is_fail(err, errlen, IS_ERR_INVALID, "%s line %ld: field %s is not UTF-8", file, line, head.v[i]);
            else json_object_set_new(data, head.v[i], v);
        }
        if (!data) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
        else if (rc) json_decref(data);
        else rc = put(m, row.v[path_col], data, file, line, err, errlen);
    }
    fields_clear(&head);
    fields_clear(&row);
    free(head.v);
    free(row.v);
    return rc;
}

static bool ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && !strcasecmp(s + n - t, tail);
}

int import_meta_load(const char *file, import_meta **out, char *err, size_t errlen) {
    *out = NULL;
    FILE *f = fopen(file, "rb");
    if (!f) return is_fail(err, errlen, IS_ERR_IO, "cannot read %s: %s", file, strerror(errno));
    import_meta *m = calloc(1, sizeof *m);
    if (!m || !(m->map = json_object()) || !(m->used = json_object())) {
        fclose(f);
        import_meta_free(m);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    }
    bool csv = ends_with(file, ".csv");
    if (!csv && !ends_with(file, ".jsonl") && !ends_with(file, ".ndjson") && !ends_with(file, ".json")) {
        int c;
        while ((c = fgetc(f)) == ' ' || c == '\t' || c == '\r' || c == '\n') {}
        csv = c != '{';
        rewind(f);
    }
    int rc = csv ? load_csv(m, f, file, err, errlen) : load_jsonl(m, f, file, err, errlen);
    fclose(f);
    if (rc) {
        import_meta_free(m);
        return rc;
    }
    *out = m;
    return IS_OK;
}

/* The mapping's entry for key (normalised here), marked used; NULL when none. */
static json_t *lookup(import_meta *m, const char *path) {
    char *key = normalise(path);
    json_t *v = key ? json_object_get(m->map, key) : NULL;
    if (v) json_object_set_new_nocheck(m->used, key, json_true());
    free(key);
    return v;
}

static int from_map(import_meta *m, const import_file *f, char **json, char *err, size_t errlen) {
    json_t *v = lookup(m, f->rel);
    if (!v) v = lookup(m, f->path);
    char cwd[PATH_MAX], *abs = NULL;
    if (!v && f->path[0] != '/' && getcwd(cwd, sizeof cwd)) {
        size_t n = strlen(cwd) + strlen(f->path) + 2;
        if ((abs = malloc(n))) {
            snprintf(abs, n, "%s/%s", cwd, f->path);
            v = lookup(m, abs);
        }
    }
    free(abs);
    char *real = v ? NULL : realpath(f->path, NULL);
    if (real) v = lookup(m, real);
    free(real);
    if (v && !(*json = json_dumps(v, JSON_COMPACT))) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    return IS_OK;
}

/* Reads the sidecar at path: IS_ERR_NOT_FOUND when there is none. */
static int read_sidecar(const char *path, char **json, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR) return IS_ERR_NOT_FOUND;
        return is_fail(err, errlen, IS_ERR_INVALID, "cannot read the metadata file %s: %s", path, strerror(errno));
    }
    char *buf = malloc(SIDECAR_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, SIDECAR_MAX_BYTES + 1, f) : 0;
    bool failed = buf && ferror(f);
    fclose(f);
    int rc = IS_OK;
    if (!buf) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    else if (failed) rc = is_fail(err, errlen, IS_ERR_INVALID, "cannot read the metadata file %s", path);
    else if (n > SIDECAR_MAX_BYTES)
        rc = is_fail(err, errlen, IS_ERR_INVALID, "the metadata file %s is over %u bytes", path, SIDECAR_MAX_BYTES);
    json_error_t jerr;
    json_t *o = rc ? NULL : json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!rc && !o)
        rc = is_fail(err, errlen, IS_ERR_INVALID, "the metadata file %s is not JSON: %s (line %d)", path, jerr.text,
                     jerr.line);
    else if (!rc && !json_is_object(o))
        rc = is_fail(err, errlen, IS_ERR_INVALID, "the metadata file %s is not a JSON object", path);
    else if (!rc && !(*json = json_dumps(o, JSON_COMPACT))) rc = is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    json_decref(o);
    free(buf);
    return rc;
}

static int from_sidecar(const import_file *f, char **json, char *err, size_t errlen) {
    size_t n = strlen(f->path);
    char *side = malloc(n + 6);
    if (!side) return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory");
    snprintf(side, n + 6, "%s.json", f->path); /* photo.jpg.json */
    int rc = read_sidecar(side, json, err, errlen);
    const char *base = strrchr(f->path, '/');
    base = base ? base + 1 : f->path;
    const char *dot = strrchr(base, '.');
    if (rc == IS_ERR_NOT_FOUND && dot && dot > base) { /* photo.json */
        size_t stem = (size_t)(dot - f->path);
        memcpy(side, f->path, stem);
        memcpy(side + stem, ".json", 6);
        rc = read_sidecar(side, json, err, errlen);
    }
    free(side);
    return rc == IS_ERR_NOT_FOUND ? IS_OK : rc;
}

int import_meta_for(import_meta *m, const import_file *f, char **json, char *err, size_t errlen) {
    *json = NULL;
    return m ? from_map(m, f, json, err, errlen) : from_sidecar(f, json, err, errlen);
}

void import_meta_unused(import_meta *m, void (*fn)(const char *path, void *ctx), void *ctx) {
    const char *key;
    json_t *v;
    json_object_foreach(m->map, key, v) {
        if (!json_object_get(m->used, key)) fn(key, ctx);
    }
}

void import_meta_free(import_meta *m) {
    if (!m) return;
    json_decref(m->map);
    json_decref(m->used);
    free(m);
}
