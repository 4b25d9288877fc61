#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/status.h"

int file_write_status(int errnum) { return errnum == ENOSPC || errnum == EDQUOT ? IS_ERR_NO_SPACE : IS_ERR_IO; }

int file_read_all(const char *path, size_t max_bytes, unsigned char **out, size_t *len,
                  char *err, size_t errlen) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return is_fail(err, errlen, errno == ENOENT ? IS_ERR_NOT_FOUND : IS_ERR_IO, "%s: %s",
                       path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return is_fail(err, errlen, IS_ERR_IO, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        fclose(f);
        return is_fail(err, errlen, IS_ERR_TOO_LARGE, "%s: %lld bytes is over the limit of %zu",
                       path, (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    unsigned char *buf = malloc(size + 1);
    if (!buf) {
        fclose(f);
        return is_fail(err, errlen, IS_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, size);
    }
    size_t got = fread(buf, 1, size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != size) {
        free(buf);
        return is_fail(err, errlen, IS_ERR_IO, "%s: short read", path);
    }
    buf[size] = 0;
    *out = buf;
    *len = size;
    return IS_OK;
}

/* Whether base + rel (+ "/" probe) is readable; if so, writes base + rel into out. */
static bool project_path(const char *base, const char *rel, const char *probe, char *out, size_t outlen) {
    snprintf(out, outlen, "%s%s%s%s", base, rel, probe ? "/" : "", probe ? probe : "");
    if (access(out, R_OK) != 0) return false;
    snprintf(out, outlen, "%s%s", base, rel);
    return true;
}

const char *file_find_project(const char *rel, const char *probe, char *out, size_t outlen) {
    if (project_path("", rel, probe, out, outlen)) return out;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = 0, strrchr(exe, '/')) : NULL;
    if (slash) {
        char base[4096 + 32];
        slash[1] = 0; /* the directory, with its slash */
        snprintf(base, sizeof base, "%s../", exe); /* build/imgsearch: the source tree */
        if (project_path(base, rel, probe, out, outlen)) return out;
        snprintf(base, sizeof base, "%s../share/imgsearch/", exe); /* installed: /usr/bin -> /usr/share */
        if (project_path(base, rel, probe, out, outlen)) return out;
    }
    snprintf(out, outlen, "%s", rel);
    return out;
}

int file_sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}
