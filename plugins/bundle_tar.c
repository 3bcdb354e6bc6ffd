/* bundle_tar.c: the .potluck file itself: writing it (pax tar + zstd through
 * libarchive, reproducible: fixed order, times, owners, modes and
 * compression level), and reading it for verify, unpack and inspect.
 *
 * Reading trusts nothing before the lock: the first entry must be the lock
 * (bounded in size); every later entry must be a plain file the lock names,
 * of the size it declares, met once; data are read at most up to the
 * declared size and hashed as they stream. Unpack writes only below a fresh
 * temporary folder it created (openat, O_EXCL|O_NOFOLLOW, directories it
 * made itself), and renames that folder to the target at the end. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../core/mapfile.h"
#include "../core/sha256.h"
#include "bundle_int.h"

#define ZSTD_LEVEL "3"
/* zstd's multi-threaded mode: its output is the same for any number of
 * workers from 1 up (not the same as the single-threaded mode's), so the
 * worker count may follow the machine without changing a byte. */
#define ZSTD_MAX_THREADS 8
#define CHUNK (1 << 20)

/* ------------------------------------------------------------ writing */

static int write_entry(struct archive *a, const char *name, const bnd_file *f, const char *mem, size_t mem_len,
                       unsigned char *buf, pl_err *err) {
    struct archive_entry *e = archive_entry_new();
    if (!e) return pl_err_set(err, PL_ENOMEM, "pack: out of memory");
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, f ? f->size : (la_int64_t)mem_len);
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    int rc = PL_OK;
    if (archive_write_header(a, e) != ARCHIVE_OK) rc = pl_err_set(err, PL_EIO, "pack: %s: %s", name, archive_error_string(a));
    archive_entry_free(e);
    if (rc) return rc;
    if (!f || !f->src) {
        const char *p = f ? f->mem : mem;
        size_t n = f ? f->mem_len : mem_len;
        if (n && archive_write_data(a, p, n) != (la_ssize_t)n) return pl_err_set(err, PL_EIO, "pack: %s: %s", name, archive_error_string(a));
        return PL_OK;
    }
    /* stream the file, hashing again: a file that changed since it was
     * hashed would make the bundle disagree with its lock */
    FILE *fp = fopen(f->src, "rb");
    if (!fp) return pl_err_set(err, PL_EIO, "pack: %s: %s", f->src, strerror(errno));
    pl_sha256 *h = pl_sha256_new();
    int64_t got = 0;
    size_t n;
    while (!rc && (n = fread(buf, 1, CHUNK, fp)) > 0) {
        pl_sha256_update(h, buf, n);
        got += (int64_t)n;
        if (got > f->size) rc = pl_err_set(err, PL_EIO, "pack: %s: grew while packing", f->src);
        else if (archive_write_data(a, buf, n) != (la_ssize_t)n) rc = pl_err_set(err, PL_EIO, "pack: %s: %s", name, archive_error_string(a));
    }
    if (!rc && ferror(fp)) rc = pl_err_set(err, PL_EIO, "pack: %s: read error", f->src);
    fclose(fp);
    uint8_t d[32];
    char hex[65];
    pl_sha256_final(h, d);
    pl_sha256_hex(d, hex);
    if (!rc && (got != f->size || strcmp(hex, f->sha))) rc = pl_err_set(err, PL_EIO, "pack: %s: changed while packing", f->src);
    return rc;
}

int pl_bundle_pack(const pl_pack_opts *o, pl_bundle_stats *st, pl_err *err) {
    pl_bundle_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    bnd_list l = {0};
    char *lock = NULL, *sig = NULL;
    int rc = bnd_lock_build(o, &l, &lock, st, err);
    if (rc) goto out;
    size_t lock_len = strlen(lock);
    if (o->sign_key) {
        /* the signature covers the lock and every subject */
        bnd_list s = {0};
        rc = bnd_list_add(&s, PL_BUNDLE_LOCK, NULL, NULL, 0, err);
        if (!rc) {
            uint8_t d[32];
            pl_sha256_buf(lock, lock_len, d);
            pl_sha256_hex(d, s.v[0].sha);
        }
        for (int i = 0; i < l.n && !rc; i++) {
            rc = bnd_list_add(&s, l.v[i].name, NULL, NULL, 0, err);
            if (!rc) memcpy(s.v[s.n - 1].sha, l.v[i].sha, 65);
        }
        if (!rc) {
            bnd_list_sort(&s);
            char model[256];
            const char *b = strrchr(o->out, '/') ? strrchr(o->out, '/') + 1 : o->out;
            snprintf(model, sizeof model, "%s", b);
            char *dot = strstr(model, ".potluck");
            if (dot && dot != model) *dot = 0;
            rc = bnd_sign(o->sign_key, model, &s, &sig, err);
        }
        bnd_list_free(&s);
        if (rc) goto out;
        bnd_sig_hint(sig, strlen(sig), st->signer);
    }
    pl_afile af = {0};
    if ((rc = pl_afile_open(&af, o->out, err))) goto out;
    struct archive *a = archive_write_new();
    unsigned char *buf = malloc(CHUNK);
    char zthreads[16];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(zthreads, sizeof zthreads, "%ld", ncpu < 1 ? 1 : ncpu > ZSTD_MAX_THREADS ? ZSTD_MAX_THREADS : ncpu);
    if (!a || !buf) rc = pl_err_set(err, PL_ENOMEM, "pack: out of memory");
    else if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK || archive_write_add_filter_zstd(a) != ARCHIVE_OK ||
             archive_write_set_filter_option(a, "zstd", "compression-level", ZSTD_LEVEL) != ARCHIVE_OK ||
             archive_write_set_filter_option(a, "zstd", "threads", zthreads) != ARCHIVE_OK ||
             archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK || /* no zero padding after the zstd frame */
             archive_write_open_FILE(a, af.fp) != ARCHIVE_OK)
        rc = pl_err_set(err, PL_EIO, "pack: %s: libarchive: %s", o->out, archive_error_string(a));
    if (!rc) rc = write_entry(a, PL_BUNDLE_LOCK, NULL, lock, lock_len, buf, err);
    if (!rc && sig) rc = write_entry(a, PL_BUNDLE_SIG, NULL, sig, strlen(sig), buf, err);
    st->files = 1 + (sig ? 1 : 0);
    st->bytes = (int64_t)lock_len + (sig ? (int64_t)strlen(sig) : 0);
    for (int i = 0; i < l.n && !rc; i++) {
        rc = write_entry(a, l.v[i].name, &l.v[i], NULL, 0, buf, err);
        st->files++;
        st->bytes += l.v[i].size;
    }
    if (!rc && archive_write_close(a) != ARCHIVE_OK) rc = pl_err_set(err, PL_EIO, "pack: %s: %s", o->out, archive_error_string(a));
    if (a) archive_write_free(a);
    free(buf);
    if (!rc) {
        fflush(af.fp);
        st->archive_bytes = (int64_t)ftello(af.fp);
        rc = pl_afile_commit(&af, err);
    } else {
        pl_afile_abort(&af);
    }
out:
    bnd_list_free(&l);
    free(lock);
    free(sig);
    return rc;
}

/* ------------------------------------------------------------ reading */

typedef enum { SCAN_VERIFY, SCAN_UNPACK, SCAN_INSPECT } scan_mode;

/* Create the parent folders of name below dfd (each one made here, never
 * followed through a link); returns an fd of the innermost, or -1. */
static int open_parent(int root, const char *name, const char **leaf, pl_err *err) {
    int dfd = dup(root);
    const char *p = name;
    char comp[BND_MAX_NAME + 1];
    for (;;) {
        const char *s = strchr(p, '/');
        if (!s) break;
        size_t n = (size_t)(s - p);
        memcpy(comp, p, n);
        comp[n] = 0;
        if (mkdirat(dfd, comp, 0755) && errno != EEXIST) {
            pl_err_set(err, PL_EIO, "%s: mkdir %s: %s", name, comp, strerror(errno));
            close(dfd);
            return -1;
        }
        int nfd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(dfd);
        if (nfd < 0) {
            pl_err_set(err, PL_EIO, "%s: %s: %s", name, comp, strerror(errno));
            return -1;
        }
        dfd = nfd;
        p = s + 1;
    }
    *leaf = p;
    return dfd;
}

/* Read entry data (at most want bytes plus one, to see an overrun), hash
 * it, write it to fd when fd >= 0, keep it in *keep when keep (small). */
static int read_data(struct archive *a, const char *name, bnd_file *f, int fd, char **keep, size_t cap, size_t *keep_len,
                     unsigned char *buf, pl_err *err) {
    pl_sha256 *h = pl_sha256_new();
    int64_t got = 0;
    int rc = PL_OK;
    int64_t limit = f ? f->size : (int64_t)cap;
    char *k = NULL;
    if (keep) {
        k = malloc((size_t)limit + 1);
        if (!k) rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", name);
    }
    for (;;) {
        if (rc) break;
        la_ssize_t n = archive_read_data(a, buf, CHUNK);
        if (n < 0) { rc = pl_err_set(err, PL_EFORMAT, "entry '%s': %s", name, archive_error_string(a)); break; }
        if (n == 0) break;
        if (got + n > limit) {
            rc = pl_err_set(err, PL_EFORMAT, "entry '%s': more data than %s (%lld bytes): refused", name,
                            f ? "the lock declares" : "allowed", (long long)limit);
            break;
        }
        pl_sha256_update(h, buf, (size_t)n);
        if (k) memcpy(k + got, buf, (size_t)n);
        if (fd >= 0 && pl_write_all(fd, buf, (size_t)n)) rc = pl_err_set(err, PL_EIO, "%s: %s", name, strerror(errno));
        got += n;
    }
    uint8_t d[32];
    char hex[65];
    pl_sha256_final(h, d);
    pl_sha256_hex(d, hex);
    if (!rc && f && got != f->size) rc = pl_err_set(err, PL_EFORMAT, "%s: %lld bytes, the lock says %lld", name, (long long)got, (long long)f->size);
    if (!rc && f && strcmp(hex, f->sha))
        rc = pl_err_set(err, PL_EFORMAT, "%s: sha256 %.16s... differs from the lock's %.16s...", name, hex, f->sha);
    if (!rc && keep) {
        k[got] = 0;
        *keep = k;
        if (keep_len) *keep_len = (size_t)got;
    } else {
        free(k);
    }
    return rc;
}

/* a top-level file of the unpack folder (the lock, the signature) */
static int write_at(int dfd, const char *name, const char *data, size_t n, pl_err *err) {
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return pl_err_set(err, PL_EIO, "%s: %s", name, strerror(errno));
    int bad = pl_write_all(fd, data, n);
    if (close(fd)) bad = 1;
    return bad ? pl_err_set(err, PL_EIO, "%s: %s", name, strerror(errno)) : PL_OK;
}

static const char *entry_kind(struct archive_entry *e) {
    if (archive_entry_hardlink(e)) return "a hard link";
    switch (archive_entry_filetype(e)) {
    case AE_IFREG: return NULL;
    case AE_IFLNK: return "a symbolic link";
    case AE_IFDIR: return "a directory entry";
    case AE_IFCHR: return "a character device";
    case AE_IFBLK: return "a block device";
    case AE_IFIFO: return "a FIFO";
    case AE_IFSOCK: return "a socket";
    default: return "not a regular file";
    }
}

static int scan(const char *path, scan_mode mode, int outfd, const char *pubkey, bnd_check *c, char **card,
                pl_bundle_stats *st, pl_err *err) {
    struct archive *a = archive_read_new();
    unsigned char *buf = malloc(CHUNK);
    int rc = PL_OK;
    if (!a || !buf) { rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path); goto out; }
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        rc = pl_err_set(err, PL_EIO, "%s: %s", path, archive_error_string(a));
        goto out;
    }
    struct archive_entry *e;
    int first = 1;
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK) {
            rc = pl_err_set(err, PL_EFORMAT, "%s: not a readable .potluck (pax tar + zstd): %s", path, archive_error_string(a));
            break;
        }
        const char *name = archive_entry_pathname(e);
        if (!name) { rc = pl_err_set(err, PL_EFORMAT, "%s: an entry without a readable name: refused", path); break; }
        const char *kind = entry_kind(e);
        if (kind) { rc = pl_err_set(err, PL_EFORMAT, "entry '%s': %s: refused (bundles hold plain files only)", name, kind); break; }
        if (!archive_entry_size_is_set(e)) { rc = pl_err_set(err, PL_EFORMAT, "entry '%s': no size: refused", name); break; }
        int64_t size = archive_entry_size(e);
        if (first) {
            first = 0;
            if (strcmp(name, PL_BUNDLE_LOCK)) { rc = pl_err_set(err, PL_EFORMAT, "%s: the first entry is '%s', expected %s", path, name, PL_BUNDLE_LOCK); break; }
            if (size < 0 || size > BND_MAX_LOCK) { rc = pl_err_set(err, PL_ERANGE, "%s: %lld bytes, more than %u: refused", name, (long long)size, BND_MAX_LOCK); break; }
            char *lock = NULL;
            size_t n = 0;
            if ((rc = read_data(a, name, NULL, -1, &lock, BND_MAX_LOCK, &n, buf, err))) break;
            if ((rc = bnd_check_lock(c, lock, n, err))) break;
            if (mode == SCAN_UNPACK && (rc = write_at(outfd, PL_BUNDLE_LOCK, lock, n, err))) break;
            continue;
        }
        if (!strcmp(name, PL_BUNDLE_SIG)) {
            if (c->sig) { rc = pl_err_set(err, PL_EFORMAT, "entry '%s': duplicate entry refused", name); break; }
            if (size < 0 || size > BND_MAX_SIG) { rc = pl_err_set(err, PL_ERANGE, "%s: %lld bytes, more than %u: refused", name, (long long)size, BND_MAX_SIG); break; }
            c->files++;
            if ((rc = read_data(a, name, NULL, -1, &c->sig, BND_MAX_SIG, &c->sig_len, buf, err))) break;
            if (mode == SCAN_UNPACK && (rc = write_at(outfd, PL_BUNDLE_SIG, c->sig, c->sig_len, err))) break;
            continue;
        }
        bnd_file *f = bnd_check_entry(c, name, size, err);
        if (!f) { rc = err ? err->code : PL_EFORMAT; break; }
        int fd = -1;
        if (mode == SCAN_UNPACK) {
            const char *leaf;
            int dfd = open_parent(outfd, name, &leaf, err);
            if (dfd < 0) { rc = PL_EIO; break; }
            fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            int e2 = errno;
            close(dfd);
            if (fd < 0) { rc = pl_err_set(err, PL_EIO, "%s: %s", name, strerror(e2)); break; }
        }
        int keep = mode == SCAN_INSPECT && card && !strcmp(name, "README.md") && f->size < (16 << 20);
        rc = read_data(a, name, f, fd, keep ? card : NULL, 0, NULL, buf, err);
        if (fd >= 0 && close(fd) && !rc) rc = pl_err_set(err, PL_EIO, "%s: %s", name, strerror(errno));
        if (rc) break;
    }
    if (!rc && first) rc = pl_err_set(err, PL_EFORMAT, "%s: empty: no %s", path, PL_BUNDLE_LOCK);
    if (!rc) rc = bnd_check_done(c, err);
    if (!rc) rc = bnd_check_sig(c, pubkey, st, err);
    if (!rc && st) {
        st->files = (int)c->files;
        st->bytes = c->bytes + (int64_t)c->sig_len;
        struct stat sb;
        if (stat(path, &sb) == 0) st->archive_bytes = (int64_t)sb.st_size;
    }
out:
    if (a) archive_read_free(a);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ directories */

typedef struct walk {
    bnd_list files;
    pl_err *err;
    int rc;
    size_t root_len;
} walk;

static int walk_dir(walk *w, const char *dir, const char *rel) {
    DIR *d = opendir(dir);
    if (!d) return pl_err_set(w->err, PL_EIO, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = PL_OK;
    while (!rc && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[PATH_MAX], r[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        snprintf(r, sizeof r, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        struct stat st;
        if (lstat(p, &st)) { rc = pl_err_set(w->err, PL_EIO, "%s: %s", p, strerror(errno)); break; }
        if (S_ISDIR(st.st_mode)) rc = walk_dir(w, p, r);
        else if (!S_ISREG(st.st_mode)) rc = pl_err_set(w->err, PL_EFORMAT, "%s: %s: refused (bundles hold plain files only)", r, S_ISLNK(st.st_mode) ? "a symbolic link" : "not a regular file");
        else if ((rc = bnd_list_add(&w->files, r, p, NULL, 0, w->err)) == 0) w->files.v[w->files.n - 1].size = (int64_t)st.st_size;
    }
    closedir(d);
    return rc;
}

static int file_sha(const char *p, char hex[65], pl_err *err) {
    uint8_t d[32];
    int rc = pl_sha256_file(p, d, err);
    if (!rc) pl_sha256_hex(d, hex);
    return rc;
}

static int ignored(const char *name, char **ign, int nign) {
    static const char *git[] = {".git", ".gitattributes", ".github", ".gitignore", PL_BUNDLE_SIG};
    for (int k = 0; k < 5 + nign; k++) {
        const char *g = k < 5 ? git[k] : ign[k - 5];
        size_t n = strlen(g);
        while (n && g[n - 1] == '/') n--;
        if (!strncmp(name, g, n) && (name[n] == 0 || name[n] == '/')) return 1;
    }
    return 0;
}

/* A directory signed by `model_signing sign key`, without a potluck lock. */
static int verify_signed_dir(const char *dir, walk *w, const char *pubkey, pl_bundle_stats *st, pl_err *err) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, PL_BUNDLE_SIG);
    char *sig = NULL;
    size_t n = 0;
    int rc = pl_read_file(p, BND_MAX_SIG, &sig, &n, err);
    if (rc) return rc;
    bnd_list got = {0};
    char **ign = NULL;
    int nign = 0;
    rc = bnd_sig_verify(pubkey, sig, n, &got, &ign, &nign, st->signer, err);
    free(sig);
    for (int i = 0; i < w->files.n && !rc; i++) {
        bnd_file *f = &w->files.v[i];
        if (ignored(f->name, ign, nign)) continue;
        bnd_file *g = bnd_list_find(&got, f->name);
        if (!g) { rc = pl_err_set(err, PL_EFORMAT, "%s: not covered by the signature (an added file)", f->name); break; }
        g->seen = 1;
        char hex[65];
        if ((rc = file_sha(f->src, hex, err))) break;
        if (strcmp(hex, g->sha)) rc = pl_err_set(err, PL_EFORMAT, "%s: sha256 %.16s... differs from the signed %.16s...", f->name, hex, g->sha);
        st->files++;
        st->bytes += f->size;
    }
    for (int i = 0; i < got.n && !rc; i++)
        if (!got.v[i].seen) rc = pl_err_set(err, PL_ENOTFOUND, "%s: signed but missing", got.v[i].name);
    if (!rc) st->signed_ok = 1;
    for (int i = 0; i < nign; i++) free(ign[i]);
    free(ign);
    bnd_list_free(&got);
    return rc;
}

static int verify_dir(const char *dir, const char *pubkey, pl_bundle_stats *st, pl_err *err) {
    walk w = {.err = err};
    int rc = walk_dir(&w, dir, "");
    bnd_list_sort(&w.files);
    bnd_check c = {0};
    if (rc) goto out;
    if (!bnd_list_find(&w.files, PL_BUNDLE_LOCK)) {
        if (pubkey && bnd_list_find(&w.files, PL_BUNDLE_SIG)) rc = verify_signed_dir(dir, &w, pubkey, st, err);
        else rc = pl_err_set(err, PL_ENOTFOUND, "%s: no %s (not an unpacked bundle)%s", dir, PL_BUNDLE_LOCK,
                             bnd_list_find(&w.files, PL_BUNDLE_SIG) ? "; give --key PUB to check its model.sig" : "");
        goto out;
    }
    {
        bnd_file *lf = bnd_list_find(&w.files, PL_BUNDLE_LOCK);
        if (lf->size > BND_MAX_LOCK) { rc = pl_err_set(err, PL_ERANGE, "%s: too large", PL_BUNDLE_LOCK); goto out; }
        char *lock = NULL;
        size_t n = 0;
        if ((rc = pl_read_file(lf->src, BND_MAX_LOCK, &lock, &n, err))) goto out;
        if ((rc = bnd_check_lock(&c, lock, n, err))) goto out;
    }
    for (int i = 0; i < w.files.n && !rc; i++) {
        bnd_file *f = &w.files.v[i];
        if (!strcmp(f->name, PL_BUNDLE_LOCK)) continue;
        if (!strcmp(f->name, PL_BUNDLE_SIG)) {
            c.files++;
            rc = pl_read_file(f->src, BND_MAX_SIG, &c.sig, &c.sig_len, err);
            continue;
        }
        bnd_file *want = bnd_check_entry(&c, f->name, f->size, err);
        if (!want) { rc = err ? err->code : PL_EFORMAT; break; }
        char hex[65];
        if ((rc = file_sha(f->src, hex, err))) break;
        if (strcmp(hex, want->sha)) rc = pl_err_set(err, PL_EFORMAT, "%s: sha256 %.16s... differs from the lock's %.16s...", f->name, hex, want->sha);
    }
    if (!rc) rc = bnd_check_done(&c, err);
    if (!rc) rc = bnd_check_sig(&c, pubkey, st, err);
    if (!rc) {
        st->files = (int)c.files;
        st->bytes = c.bytes + (int64_t)c.sig_len;
    }
out:
    bnd_check_free(&c);
    bnd_list_free(&w.files);
    return rc;
}

/* ------------------------------------------------------------ entry points */

int pl_bundle_verify(const char *path, const char *pubkey, pl_bundle_stats *st, pl_err *err) {
    pl_bundle_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    struct stat sb;
    if (stat(path, &sb)) return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return verify_dir(path, pubkey, st, err);
    bnd_check c = {0};
    int rc = scan(path, SCAN_VERIFY, -1, pubkey, &c, NULL, st, err);
    bnd_check_free(&c);
    return rc;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

int pl_bundle_unpack(const char *path, const char *dir, const char *pubkey, pl_bundle_stats *st, pl_err *err) {
    pl_bundle_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    struct stat sb;
    if (lstat(dir, &sb) == 0) return pl_err_set(err, PL_EINVAL, "%s: already exists (unpack makes a new folder)", dir);
    int rc = pl_bundle_verify(path, pubkey, st, err);
    if (rc) return rc;
    /* a fresh folder beside dir */
    size_t dl = strlen(dir);
    char *tmp = malloc(dl + 32);
    if (!tmp) return pl_err_set(err, PL_ENOMEM, "out of memory");
    snprintf(tmp, dl + 32, "%s", dir);
    while (strlen(tmp) > 1 && tmp[strlen(tmp) - 1] == '/') tmp[strlen(tmp) - 1] = 0;
    char *slash = strrchr(tmp, '/');
    char base[PATH_MAX];
    snprintf(base, sizeof base, "%s", slash ? slash + 1 : tmp);
    if (slash) slash[1] = 0;
    else tmp[0] = 0;
    size_t tl = strlen(tmp) + strlen(base) + 32;
    char *t2 = malloc(tl);
    if (!t2) { free(tmp); return pl_err_set(err, PL_ENOMEM, "out of memory"); }
    snprintf(t2, tl, "%s.%s.unpack-XXXXXX", tmp, base);
    free(tmp);
    if (!mkdtemp(t2)) {
        rc = pl_err_set(err, PL_EIO, "%s: cannot make the temporary folder beside it: %s", dir, strerror(errno));
        free(t2);
        return rc;
    }
    int fd = open(t2, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bnd_check c = {0};
    if (fd < 0) rc = pl_err_set(err, PL_EIO, "%s: %s", t2, strerror(errno));
    else rc = scan(path, SCAN_UNPACK, fd, pubkey, &c, NULL, st, err);
    bnd_check_free(&c);
    if (fd >= 0) {
        mode_t um = umask(022);
        umask(um);
        if (!rc && fchmod(fd, 0755 & ~um)) rc = pl_err_set(err, PL_EIO, "%s: %s", t2, strerror(errno)); /* mkdtemp made it 0700 */
        if (!rc && fsync(fd)) rc = pl_err_set(err, PL_EIO, "%s: %s", t2, strerror(errno));
        close(fd);
    }
    if (!rc && rename(t2, dir)) rc = pl_err_set(err, PL_EIO, "rename %s -> %s: %s", t2, dir, strerror(errno));
    if (rc) nftw(t2, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(t2);
    return rc;
}

int pl_bundle_inspect(const char *path, cJSON **lock, char **card, pl_bundle_stats *st, pl_err *err) {
    pl_bundle_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    *lock = NULL;
    *card = NULL;
    struct stat sb;
    if (stat(path, &sb)) return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return pl_err_set(err, PL_EINVAL, "%s: a directory: inspect reads a .potluck file (verify DIR checks a folder)", path);
    bnd_check c = {0};
    int rc = scan(path, SCAN_INSPECT, -1, NULL, &c, card, st, err);
    if (c.sig) bnd_sig_hint(c.sig, c.sig_len, st->signer);
    *lock = c.lock;
    c.lock = NULL;
    bnd_check_free(&c);
    return rc;
}
