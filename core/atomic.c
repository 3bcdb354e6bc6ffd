/* atomic.c: crash-safe file writes (temp file, fsync, rename, fsync dir) and mkdir -p. */
#include "atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static atomic_uint pl_atomic_counter;

/* Directory part of path ("." when there is none); malloc'd. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static int fsync_dir(const char *path, pl_err *err) {
    char *dir = dir_of(path);
    if (!dir) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        pl_err_set(err, PL_EIO, "%s: cannot open directory %s to sync it: %s", path, dir, strerror(e));
        free(dir);
        return PL_EIO;
    }
    int rc = PL_OK;
    /* Some file systems refuse fsync on a directory (EINVAL); the rename is
     * still done, so only real I/O errors count. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = pl_err_set(err, PL_EIO, "%s: fsync of directory %s: %s", path, dir, strerror(errno));
    close(fd);
    free(dir);
    return rc;
}

/* The temp name is ".<base>.tmp.<pid>.<counter>" beside the target, so the
 * rename never crosses a file system and a crash leaves a dot file. */
int pl_afile_open(pl_afile *f, const char *path, pl_err *err) {
    memset(f, 0, sizeof *f);
    if (!path || !*path) return pl_err_set(err, PL_EINVAL, "atomic write: empty path");
    size_t plen = strlen(path);
    if (path[plen - 1] == '/') return pl_err_set(err, PL_EINVAL, "%s: expected a file name, got a directory path", path);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = (size_t)(base - path);
    f->path = strdup(path);
    size_t cap = plen + 64;
    f->tmp = malloc(cap);
    if (!f->path || !f->tmp) {
        pl_afile_abort(f);
        return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    }
    unsigned cnt = atomic_fetch_add(&pl_atomic_counter, 1u);
    snprintf(f->tmp, cap, "%.*s.%s.tmp.%ld.%u", (int)dlen, path, base, (long)getpid(), cnt);

    /* Keep the permissions of a file we replace; new files get 0666 & ~umask. */
    mode_t mode = 0666;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) mode = st.st_mode & 07777;

    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        free(f->tmp);
        f->tmp = NULL; /* nothing was created: nothing to remove */
        pl_afile_abort(f);
        return pl_err_set(err, PL_EIO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    if (mode != 0666) (void)fchmod(fd, mode);
    f->fp = fdopen(fd, "wb");
    if (!f->fp) {
        int e = errno;
        close(fd);
        pl_afile_abort(f);
        return pl_err_set(err, PL_EIO, "%s: fdopen: %s", path, strerror(e));
    }
    return PL_OK;
}

int pl_afile_commit(pl_afile *f, pl_err *err) {
    if (!f->fp || !f->tmp || !f->path) {
        pl_afile_abort(f);
        return pl_err_set(err, PL_EINVAL, "atomic write: file is not open");
    }
    const char *path = f->path;
    int rc = PL_OK;
    if (ferror(f->fp)) {
        rc = pl_err_set(err, PL_EIO, "%s: write error", path);
    } else if (fflush(f->fp) != 0) {
        rc = pl_err_set(err, PL_EIO, "%s: write: %s", path, strerror(errno));
    } else if (fsync(fileno(f->fp)) != 0) {
        rc = pl_err_set(err, PL_EIO, "%s: fsync: %s", path, strerror(errno));
    }
    int cr = fclose(f->fp);
    f->fp = NULL;
    if (rc == PL_OK && cr != 0) rc = pl_err_set(err, PL_EIO, "%s: close: %s", path, strerror(errno));
    if (rc == PL_OK && rename(f->tmp, f->path) != 0) {
        if (errno == EISDIR)
            rc = pl_err_set(err, PL_EIO, "%s: is a folder; give a file name (e.g. %s/NAME) or remove the folder",
                            path, path);
        else
            rc = pl_err_set(err, PL_EIO, "%s: cannot replace it: %s", path, strerror(errno));
    }
    if (rc != PL_OK) {
        pl_afile_abort(f);
        return rc;
    }
    /* Renamed: the temp name no longer exists. */
    free(f->tmp);
    f->tmp = NULL;
    rc = fsync_dir(f->path, err);
    pl_afile_abort(f); /* frees the names */
    return rc;
}

void pl_afile_abort(pl_afile *f) {
    if (!f) return;
    if (f->fp) fclose(f->fp);
    if (f->tmp) unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    memset(f, 0, sizeof *f);
}

int pl_write_file_atomic(const char *path, const void *data, size_t len, pl_err *err) {
    pl_afile f;
    int rc = pl_afile_open(&f, path, err);
    if (rc) return rc;
    if (len && fwrite(data, 1, len, f.fp) != len) {
        int e = errno;
        pl_afile_abort(&f);
        return pl_err_set(err, PL_EIO, "%s: write: %s", path, strerror(e));
    }
    return pl_afile_commit(&f, err);
}

int pl_mkdirs(const char *path, pl_err *err) {
    if (!path || !*path) return pl_err_set(err, PL_EINVAL, "mkdir: empty path");
    char *p = strdup(path);
    if (!p) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(p);
    /* Create every prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= n; i++) {
        if (i < n && p[i] != '/') continue;
        if (i < n && p[i - 1] == '/') continue; /* "a//b" */
        char saved = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0) {
            int e = errno;
            struct stat st;
            if (e != EEXIST || stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
                if (e == EEXIST) e = ENOTDIR;
                pl_err_set(err, PL_EIO, "%s: cannot create directory %s: %s", path, p, strerror(e));
                free(p);
                return PL_EIO;
            }
        }
        p[i] = saved;
    }
    free(p);
    return PL_OK;
}

int pl_write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}
