/* The walk of `imgsearch import` (cli_import.h): which files under the PATH arguments are images.
 * An image is known by its first bytes, never by its name; folders are walked in name order, each
 * (device, inode) once, so a symbolic link loop costs one look. Main thread only. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_import.h"
#include "util/status.h"

const char *import_sniff(const unsigned char *h, size_t n) {
    if (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) return "jpeg";
    if (n >= 8 && !memcmp(h, "\x89PNG\r\n\x1a\n", 8)) return "png";
    if (n >= 6 && (!memcmp(h, "GIF87a", 6) || !memcmp(h, "GIF89a", 6))) return "gif";
    if (n >= 12 && !memcmp(h, "RIFF", 4) && !memcmp(h + 8, "WEBP", 4)) return "webp";
    if (n >= 4 && (!memcmp(h, "II*\0", 4) || !memcmp(h, "MM\0*", 4))) return "tiff";
    /* BMP: "BM", then the file size and two reserved zero words */
    if (n >= 10 && h[0] == 'B' && h[1] == 'M' && !h[6] && !h[7] && !h[8] && !h[9]) return "bmp";
    /* ISO media with an image brand: HEIF (heic, heix, mif1, ...) and AVIF */
    if (n >= 12 && !memcmp(h + 4, "ftyp", 4)) {
        static const char *brands[] = {"heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1", "avif", "avis"};
        for (size_t i = 0; i < sizeof brands / sizeof *brands; i++)
            if (!memcmp(h + 8, brands[i], 4)) return brands[i][0] == 'a' ? "avif" : "heif";
    }
    return NULL;
}

/* Folders already walked, by (device, inode): an open-addressing set. */
typedef struct {
    struct dev_ino {
        dev_t dev;
        ino_t ino;
        bool used;
    } *slots;
    size_t n, cap;
} seen_set;

static size_t seen_hash(dev_t d, ino_t i) {
    unsigned long long x = (unsigned long long)d * 0x9E3779B97F4A7C15ull ^ (unsigned long long)i;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    return (size_t)(x ^ (x >> 32));
}

/* Adds (dev, ino); false when it was there already. *oom on allocation failure. */
static bool seen_add(seen_set *s, dev_t dev, ino_t ino, bool *oom) {
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct dev_ino *slots = calloc(cap, sizeof *slots);
        if (!slots) {
            *oom = true;
            return false;
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slots[i].used) continue;
            size_t j = seen_hash(s->slots[i].dev, s->slots[i].ino) & (cap - 1);
            while (slots[j].used) j = (j + 1) & (cap - 1);
            slots[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t j = seen_hash(dev, ino) & (s->cap - 1);
    for (; s->slots[j].used; j = (j + 1) & (s->cap - 1))
        if (s->slots[j].dev == dev && s->slots[j].ino == ino) return false;
    s->slots[j] = (struct dev_ino){dev, ino, true};
    s->n++;
    return true;
}

typedef struct {
    import_walk *w;
    import_report *refused;
    seen_set seen;
    void (*progress)(int64_t seen, void *ctx);
    void *ctx;
    int64_t looked;
    bool oom;
} walker;

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    bool slash = la && a[la - 1] != '/';
    char *s = malloc(la + slash + lb + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    if (slash) s[la] = '/';
    memcpy(s + la + slash, b, lb + 1);
    return s;
}

static void refuse_errno(walker *wk, const char *path, const char *what) {
    char reason[300];
    snprintf(reason, sizeof reason, "cannot %s: %s", what, strerror(errno));
    import_report_add(wk->refused, path, reason);
}

/* Keeps path as an image (both strings taken). */
static void keep(walker *wk, char *path, char *rel) {
    import_walk *w = wk->w;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        import_file *f = realloc(w->files, cap * sizeof *f);
        if (!f) {
            wk->oom = true;
            free(path);
            free(rel);
            return;
        }
        w->files = f;
        w->cap = cap;
    }
    w->files[w->n++] = (import_file){path, rel};
}

/* A regular file: an image by its first bytes, or skipped. */
static void look_at_file(walker *wk, char *path, char *rel) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    unsigned char head[16];
    ssize_t got = fd < 0 ? -1 : read(fd, head, sizeof head);
    if (fd >= 0) close(fd);
    if (got < 0) {
        refuse_errno(wk, path, "read it");
    } else if (import_sniff(head, (size_t)got)) {
        keep(wk, path, rel);
        return;
    } else {
        wk->w->non_images++;
    }
    free(path);
    free(rel);
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The first of names[0..n) (sorted) that is >= key. */
static size_t lower_bound(char **names, size_t n, const char *key) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(names[mid], key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Is name (ending in .json) the metadata of another entry of its folder: NAME.EXT.json beside
 * NAME.EXT, or NAME.json beside NAME.<anything>? names: the folder's entries, sorted. */
static bool is_sidecar(char **names, size_t n, const char *name) {
    size_t len = strlen(name);
    if (len <= 5 || strcmp(name + len - 5, ".json")) return false;
    char *key = strdup(name);
    if (!key) return false;
    key[len - 4] = 0; /* "NAME." */
    bool found = false;
    for (size_t i = lower_bound(names, n, key); !found && i < n && !strncmp(names[i], key, len - 4); i++)
        found = strcmp(names[i], name) != 0;
    key[len - 5] = 0; /* "NAME" */
    size_t i = lower_bound(names, n, key);
    found = found || (i < n && !strcmp(names[i], key));
    free(key);
    return found;
}

static void walk_dir(walker *wk, const char *path, const char *rel);

/* One entry (or a root): stat through links, then a folder, a file, or skipped. */
static void walk_entry(walker *wk, char *path, char *rel, bool root) {
    if (++wk->looked % 256 == 0 && wk->progress) wk->progress(wk->looked, wk->ctx);
    struct stat st;
    if (stat(path, &st)) {
        if (errno == ENOENT || errno == ELOOP) wk->w->non_images++; /* a broken link */
        else refuse_errno(wk, path, "look at it");
        free(path);
        free(rel);
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        if (seen_add(&wk->seen, st.st_dev, st.st_ino, &wk->oom)) walk_dir(wk, path, root ? "" : rel);
        free(path);
        free(rel);
    } else if (S_ISREG(st.st_mode)) {
        look_at_file(wk, path, rel);
    } else { /* devices, pipes, sockets: never opened (a pipe would block) */
        wk->w->non_images++;
        free(path);
        free(rel);
    }
}

static void walk_dir(walker *wk, const char *path, const char *rel) {
    DIR *d = opendir(path);
    if (!d) {
        refuse_errno(wk, path, "read the folder");
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; !wk->oom && !import_interrupted && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue; /* ".", "..", and hidden entries */
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **more = realloc(names, cap * sizeof *names);
            if (!more) {
                wk->oom = true;
                break;
            }
            names = more;
        }
        if (!(names[n] = strdup(e->d_name))) wk->oom = true;
        else n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_name);
    for (size_t i = 0; i < n && !wk->oom && !import_interrupted; i++) {
        if (is_sidecar(names, n, names[i])) {
            wk->w->sidecars++;
            continue;
        }
        char *child = join(path, names[i]), *child_rel = *rel ? join(rel, names[i]) : strdup(names[i]);
        if (!child || !child_rel) {
            free(child);
            free(child_rel);
            wk->oom = true;
            break;
        }
        walk_entry(wk, child, child_rel, false);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

int import_walk_run(char *const *roots, int nroots, import_walk *w, import_report *refused,
                    void (*progress)(int64_t seen, void *ctx), void *ctx, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    for (int i = 0; i < nroots; i++) {
        struct stat st;
        if (stat(roots[i], &st))
            return is_fail(err, errlen, IS_ERR_NOT_FOUND, "%s: %s", roots[i], strerror(errno));
    }
    walker wk = {.w = w, .refused = refused, .progress = progress, .ctx = ctx};
    for (int i = 0; i < nroots && !wk.oom && !import_interrupted; i++) {
        char *path = strdup(roots[i]), *rel = strdup(roots[i]);
        if (!path || !rel) {
            free(path);
            free(rel);
            wk.oom = true;
            break;
        }
        walk_entry(&wk, path, rel, true);
    }
    if (progress) progress(wk.looked, ctx);
    free(wk.seen.slots);
    if (wk.oom) {
        import_walk_free(w);
        return is_fail(err, errlen, IS_ERR_NOMEM, "out of memory while walking the folders");
    }
    return IS_OK;
}

void import_walk_free(import_walk *w) {
    for (size_t i = 0; i < w->n; i++) {
        free(w->files[i].path);
        free(w->files[i].rel);
    }
    free(w->files);
    memset(w, 0, sizeof *w);
}
