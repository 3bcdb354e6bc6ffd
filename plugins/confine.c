/* confine.c: no_new_privs, Landlock and seccomp for recipe children (confine.h). */
#include "confine.h"

#include "../core/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

/* Landlock definitions newer than Debian 12's kernel headers (ABI 1-2). */
struct pl_ll_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net; /* ABI 4 */
    uint64_t scoped;             /* ABI 6 */
};
#define LL_FS_TRUNCATE (1ULL << 14)  /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#define LL_NET_BIND_TCP (1ULL << 0)
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)

#define LL_FS_ABI1                                                                                                  \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |                    \
     LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |                 \
     LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |                     \
     LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |                  \
     LANDLOCK_ACCESS_FS_MAKE_SYM)

int pl_confine_add_read(pl_confine *c, const char *path, pl_err *err) {
    if (!path || !*path) return 0;
    if (c->n_read >= PL_CONFINE_MAX_READ)
        return pl_err_set(err, PL_ERANGE, "confinement: more than %d readable paths", PL_CONFINE_MAX_READ);
    c->read[c->n_read++] = path;
    return 0;
}

int pl_confine_landlock_abi(void) {
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : (int)v;
}

int pl_confine_seccomp_available(void) {
    /* PR_GET_SECCOMP answers 0 (none yet) or 2 (filtered) where seccomp exists, EINVAL where it does not */
    return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
}

/* ------------------------------------------------------------ Landlock */

static int ll_rule(int ruleset, const char *path, uint64_t want, uint64_t handled, pl_err *err) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return 0; /* a path that does not exist grants nothing */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return 0;
    }
    uint64_t file_rights = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE | LL_FS_TRUNCATE |
                           LL_FS_IOCTL_DEV | LANDLOCK_ACCESS_FS_EXECUTE;
    if (!S_ISDIR(st.st_mode)) want &= file_rights;
    struct landlock_path_beneath_attr pb = {.allowed_access = want & handled, .parent_fd = fd};
    long rc = syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    int e = errno;
    close(fd);
    if (rc != 0) return pl_err_set(err, PL_EIO, "confinement: Landlock rule for %s: %s", path, strerror(e));
    return 0;
}

static int apply_landlock(const pl_confine *c, int abi, pl_err *err) {
    struct pl_ll_attr a = {.handled_access_fs = LL_FS_ABI1};
    size_t sz = sizeof a.handled_access_fs;
    if (abi >= 2) a.handled_access_fs |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3) a.handled_access_fs |= LL_FS_TRUNCATE;
    if (abi >= 5) a.handled_access_fs |= LL_FS_IOCTL_DEV;
    if (abi >= 4) {
        a.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP; /* no rule: no TCP at all */
        sz = 2 * sizeof(uint64_t);
    }
    if (abi >= 6) {
        a.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL; /* nothing outside the child's own domain */
        sz = sizeof a;
    }
    int rs = (int)syscall(SYS_landlock_create_ruleset, &a, sz, 0);
    if (rs < 0) return pl_err_set(err, PL_EIO, "confinement: Landlock ruleset: %s", strerror(errno));
    const uint64_t rd = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    const uint64_t wr = rd | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_MAKE_REG |
                        LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR |
                        LANDLOCK_ACCESS_FS_REMOVE_DIR | LL_FS_TRUNCATE;
    int rc = 0;
    for (int i = 0; i < c->n_read && !rc; i++) rc = ll_rule(rs, c->read[i], rd, a.handled_access_fs, err);
    if (!rc && c->write_dir) rc = ll_rule(rs, c->write_dir, wr, a.handled_access_fs, err);
    if (!rc && syscall(SYS_landlock_restrict_self, rs, 0) != 0)
        rc = pl_err_set(err, PL_EIO, "confinement: Landlock: %s", strerror(errno));
    close(rs);
    return rc;
}

/* ------------------------------------------------------------ seccomp */

/* The calls the recipe child makes: the Lua host and its bindings (files,
 * memory, time), model code with OpenMP and OpenBLAS threads, the C library. */
static const int allowed[] = {
    SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64), SCMP_SYS(pwrite64),
    SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(close), SCMP_SYS(close_range),
    SCMP_SYS(fstat), SCMP_SYS(stat), SCMP_SYS(lstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(lseek),
    SCMP_SYS(access), SCMP_SYS(faccessat), SCMP_SYS(faccessat2), SCMP_SYS(getdents64), SCMP_SYS(readlink),
    SCMP_SYS(readlinkat), SCMP_SYS(getcwd), SCMP_SYS(fcntl), SCMP_SYS(dup), SCMP_SYS(dup2), SCMP_SYS(dup3),
    SCMP_SYS(fadvise64), SCMP_SYS(ftruncate), SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(fchmod),
    SCMP_SYS(mkdir), SCMP_SYS(mkdirat), SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(renameat2),
    SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(rmdir), SCMP_SYS(umask),
    SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk), SCMP_SYS(mincore),
    SCMP_SYS(futex), SCMP_SYS(set_robust_list), SCMP_SYS(get_robust_list), SCMP_SYS(rseq), SCMP_SYS(sched_yield),
    SCMP_SYS(sched_getaffinity), SCMP_SYS(sched_setaffinity), SCMP_SYS(sched_getparam), SCMP_SYS(sched_getscheduler),
    SCMP_SYS(get_mempolicy), SCMP_SYS(membarrier),
    SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getppid), SCMP_SYS(getpgrp), SCMP_SYS(getuid), SCMP_SYS(geteuid),
    SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(getrandom), SCMP_SYS(uname), SCMP_SYS(sysinfo),
    SCMP_SYS(getrlimit), SCMP_SYS(prlimit64), SCMP_SYS(getrusage), SCMP_SYS(times),
    SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday), SCMP_SYS(time), SCMP_SYS(nanosleep),
    SCMP_SYS(clock_nanosleep), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(restart_syscall),
    SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(sigaltstack),
    SCMP_SYS(exit), SCMP_SYS(exit_group),
};

static int apply_seccomp(pl_err *err) {
    /* POTLUCK_SECCOMP_TRAP=1 (development): a refused call kills the child with SIGSYS, so the
     * parent's error names the signal and a debugger or strace shows the call */
    const char *trap = getenv("POTLUCK_SECCOMP_TRAP");
    int trapping = trap && *trap == '1';
    scmp_filter_ctx ctx = seccomp_init(trapping ? SCMP_ACT_TRAP : SCMP_ACT_ERRNO(EPERM));
    if (!ctx) return pl_err_set(err, PL_EIO, "confinement: seccomp_init failed");
    int rc = 0;
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0] && !rc; i++)
        if (allowed[i] >= 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
    /* threads, not processes: clone only with CLONE_THREAD; clone3 (flags in memory, which a
     * filter cannot read) answers ENOSYS so the C library falls back to clone */
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                                   SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* memory: never executable, no code is loaded after the fork (PCRE2's JIT fails
     * with EPERM and the tokenizer uses PCRE2's interpreter) */
    for (int i = 0; i < 2 && !rc; i++) {
        int sys = i ? SCMP_SYS(mprotect) : SCMP_SYS(mmap);
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sys, 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
        /* (the default answer already, except in trap mode; libseccomp refuses a rule equal to it) */
        if (!rc && trapping)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), sys, 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    }
    /* signals only to itself (abort, raise) */
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    /* terminal queries only (isatty, the width for progress lines) */
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, TCGETS));
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, TIOCGWINSZ));
    /* thread names and the C library's own queries */
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME));
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_DUMPABLE));
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, 0x53564d41)); /* PR_SET_VMA */
    if (!rc) rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc) return pl_err_set(err, PL_EIO, "confinement: seccomp filter: %s", strerror(-rc));
    return 0;
}

/* ------------------------------------------------------------ all layers */

int pl_confine_apply(const pl_confine *c, pl_err *err) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return pl_err_set(err, PL_EIO, "confinement: no_new_privs: %s", strerror(errno));
    int abi = pl_confine_landlock_abi(), sc = pl_confine_seccomp_available();
    if ((!abi || !sc) && c->require)
        return pl_err_set(err, PL_EUNSUPPORTED,
                          "confinement: this kernel offers no %s%s%s; refusing to run recipe code "
                          "(--require-confinement)",
                          abi ? "" : "Landlock", !abi && !sc ? " and no " : "", sc ? "" : "seccomp");
    if (!abi || !sc)
        fprintf(stderr, "potluck: warning: this kernel offers no %s%s%s: recipe code runs with the %s only "
                        "(--require-confinement refuses instead)\n",
                abi ? "" : "Landlock", !abi && !sc ? " and no " : "", sc ? "" : "seccomp",
                abi || sc ? "layers it has" : "Lua sandbox and resource limits");
    /* libcrypto reads its configuration on first use: do it while the files are in reach */
    uint8_t d[32];
    pl_sha256_buf("", 0, d);
    int rc = 0;
    if (abi) rc = apply_landlock(c, abi, err);
    if (!rc && sc) rc = apply_seccomp(err);
    return rc;
}
