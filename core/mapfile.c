/* mapfile.c: read-only memory maps of whole files, and whole-file reads. */
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int pl_map_open(pl_map *m, const char *path, pl_err *err) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return pl_err_set(err, PL_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pl_err_set(err, PL_EIO, "%s: not a regular file", path);
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size > (unsigned long long)SIZE_MAX) {
        close(fd);
        return pl_err_set(err, PL_ERANGE, "%s: file size %lld cannot be mapped", path, (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return PL_OK;
    }
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return pl_err_set(err, PL_EIO, "%s: cannot map %zu bytes: %s", path, size, strerror(e));
    m->data = p;
    m->size = size;
    return PL_OK;
}

void pl_map_close(pl_map *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

/* Reads until EOF rather than trusting st_size, so pipes and files that change
 * size while being read still give a consistent, bounded result. */
int pl_read_file(const char *path, size_t max_bytes, char **out, size_t *len, pl_err *err) {
    *out = NULL;
    if (len) *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pl_err_set(err, PL_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return pl_err_set(err, PL_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return pl_err_set(err, PL_EIO, "%s: is a directory", path);
    }
    if (S_ISREG(st.st_mode) && (unsigned long long)st.st_size > (unsigned long long)max_bytes) {
        close(fd);
        return pl_err_set(err, PL_ERANGE, "%s: file is %lld bytes, more than the limit of %zu bytes", path,
                          (long long)st.st_size, max_bytes);
    }
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096;
    if (cap > max_bytes + 1 && max_bytes < SIZE_MAX) cap = max_bytes + 1;
    if (cap == 0) cap = 1;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate %zu bytes", path, cap);
    }
    size_t n = 0;
    for (;;) {
        if (n + 1 >= cap) { /* keep room for the NUL */
            if (n > max_bytes) break;
            size_t ncap = cap < SIZE_MAX / 2 ? cap * 2 : SIZE_MAX;
            if (max_bytes < SIZE_MAX - 1 && ncap > max_bytes + 2) ncap = max_bytes + 2;
            if (ncap <= cap) break;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                close(fd);
                return pl_err_set(err, PL_ENOMEM, "%s: cannot allocate %zu bytes", path, ncap);
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return pl_err_set(err, PL_EIO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (n > max_bytes) {
        free(buf);
        return pl_err_set(err, PL_ERANGE, "%s: file is more than the limit of %zu bytes", path, max_bytes);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return PL_OK;
}

void pl_map_drop(const void *p, size_t len) {
    const long pg = sysconf(_SC_PAGESIZE);
    if (!p || pg <= 0 || len < (size_t)pg) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t e = ((uintptr_t)p + len) & ~((uintptr_t)pg - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
}
