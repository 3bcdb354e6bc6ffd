/* child.c: run a function in a forked, resource-limited child and turn any end of it into one error line.
 *
 * The child gets its own process group (so a kill reaches anything it
 * started), dies with its parent (PR_SET_PDEATHSIG: a potluck killed by
 * Ctrl-C, timeout or SIGKILL leaves no recipe running, even though the
 * child's own group gets no terminal signals), RLIMIT_CPU (soft = cpu_seconds: SIGXCPU; hard = one more second:
 * SIGKILL) and RLIMIT_AS. Two pipes go back to the parent: the result pipe
 * (fn writes to it) and the error pipe, which carries the child's status code
 * (int32, host order) followed by its error line. The parent reads both with
 * poll() until EOF or the wall-clock deadline, kills the group at the
 * deadline, reaps the child with wait4 (whose rusage tells a CPU-limit
 * SIGKILL from another one) and maps:
 *   exit 0                        -> 0
 *   exit 1 + error line           -> the child's code and line
 *   child code PL_ENOMEM          -> "out of memory (address space limit N MiB): ..."
 *   SIGXCPU, or SIGKILL after the CPU time reached the limit
 *                                 -> "CPU time limit of N s exceeded" (PL_ERANGE)
 *   our deadline kill             -> "wall-clock limit of N s exceeded" (PL_ERANGE)
 *   other signals                 -> "killed by signal N (name)" (PL_EIO)
 *   other exit codes              -> "exited with status N" (PL_EIO)
 * each prefixed with `what` + ": ".
 *
 * ASan: AddressSanitizer reserves terabytes of shadow address space at
 * startup, so an RLIMIT_AS in a sanitizer build would make every allocation
 * fail. In that build (and only there) the child skips setrlimit(RLIMIT_AS);
 * the Lua allocator's own cap still bounds the recipe's memory.
 *
 * With a relay (pl_child_run_relay) two more pipes carry the child's
 * requests (pl_child_call) and the parent's answers: a request is a u64
 * length (host order) and its bytes; an answer an i32 status, a u64 length
 * and the bytes (the reply, or the error line when the status is negative).
 * The parent polls the request pipe with the others and serves a request
 * when it has read it whole.
 *
 * Not for use from inside an OpenMP parallel region, and fn should not rely
 * on the parent's threads (only the forking thread exists in the child). */
#include "../core/atomic.h"
#include "../trainer/backend.h"
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define PL_CHILD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PL_CHILD_ASAN 1
#endif
#endif
#ifndef PL_CHILD_ASAN
#define PL_CHILD_ASAN 0
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the relay ---- */

/* In the child: the request pipe's write end and the answer pipe's read end. */
static int g_req_fd = -1, g_ans_fd = -1;

/* Read exactly n bytes (1), or EOF before the first byte (0), or fail (-1). */
static int read_full(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return got == 0 && r == 0 ? 0 : -1;
        got += (size_t)r;
    }
    return 1;
}

int pl_child_has_relay(void) { return g_req_fd >= 0; }

int pl_child_call(const void *req, size_t n, char **reply, size_t *reply_n, pl_err *err) {
    *reply = NULL;
    if (reply_n) *reply_n = 0;
    if (g_req_fd < 0) return pl_err_set(err, PL_EUNSUPPORTED, "no parent to ask (not a relayed child)");
    uint64_t len = n;
    if (pl_write_all(g_req_fd, &len, sizeof len) || pl_write_all(g_req_fd, req, n))
        return pl_err_set(err, PL_EIO, "the request to the parent process: %s", strerror(errno));
    int32_t code = 0;
    if (read_full(g_ans_fd, &code, sizeof code) != 1 || read_full(g_ans_fd, &len, sizeof len) != 1)
        return pl_err_set(err, PL_EIO, "the parent process did not answer");
    char *b = malloc(len + 1);
    if (!b) return pl_err_set(err, PL_ENOMEM, "out of memory for the parent's answer (%llu bytes)", (unsigned long long)len);
    if (len && read_full(g_ans_fd, b, len) != 1) {
        free(b);
        return pl_err_set(err, PL_EIO, "the parent process's answer was cut short");
    }
    b[len] = 0;
    if (code < 0) {
        pl_err_set(err, code < -100 ? PL_EIO : code, "%s", b);
        free(b);
        return err->code;
    }
    *reply = b;
    if (reply_n) *reply_n = len;
    return PL_OK;
}

/* In the parent: read one request whole from fd, serve it, write the answer
 * to ans. 0: served (or the pipe ended: *eof); < 0: the pipes failed. */
static int serve_one(const pl_child_relay *relay, int fd, int ans, int *eof) {
    uint64_t len = 0;
    int r = read_full(fd, &len, sizeof len);
    if (r == 0) {
        *eof = 1;
        return 0;
    }
    char *req = r == 1 && len < ((uint64_t)1 << 40) ? malloc(len + 1) : NULL;
    if (!req || (len && read_full(fd, req, len) != 1)) {
        free(req);
        *eof = 1;
        return -1;
    }
    req[len] = 0;
    char *rep = NULL;
    size_t rn = 0;
    pl_err e;
    pl_err_clear(&e);
    int32_t code = relay->serve(relay->user, req, (size_t)len, &rep, &rn, &e);
    free(req);
    if (code < 0) {
        free(rep);
        rep = NULL;
        rn = strnlen(e.msg, sizeof e.msg);
    } else {
        code = 0;
    }
    uint64_t out = rn;
    int w = pl_write_all(ans, &code, sizeof code) || pl_write_all(ans, &out, sizeof out) ||
            pl_write_all(ans, code < 0 ? e.msg : (rep ? rep : ""), rn);
    free(rep);
    return w ? -1 : 0;
}

/* The child's side: never returns. */
static void __attribute__((noreturn))
child_main(const pl_lua_limits *lim, pl_child_fn fn, void *ctx, int res_fd, int err_fd, pid_t parent) {
    /* Die with the parent; if it is already gone, the signal will never come. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    setpgid(0, 0);
    signal(SIGPIPE, SIG_DFL);
    if (lim->cpu_seconds > 0) {
        struct rlimit r = {(rlim_t)lim->cpu_seconds, (rlim_t)lim->cpu_seconds + 1};
        setrlimit(RLIMIT_CPU, &r);
    }
#if !PL_CHILD_ASAN
    if (lim->as_bytes > 0) {
        struct rlimit r = {(rlim_t)lim->as_bytes, (rlim_t)lim->as_bytes};
        setrlimit(RLIMIT_AS, &r);
    }
#endif
    pl_err e;
    pl_err_clear(&e);
    int rc = fn(ctx, res_fd, &e);
    close(res_fd);
    if (rc < 0) {
        int32_t code = rc;
        size_t n = strnlen(e.msg, sizeof e.msg - 1);
        if (n == 0) {
            snprintf(e.msg, sizeof e.msg, "failed (%s)", pl_status_name(rc));
            n = strlen(e.msg);
        }
        char buf[sizeof code + sizeof e.msg];
        memcpy(buf, &code, sizeof code);
        memcpy(buf + sizeof code, e.msg, n);
        pl_write_all(err_fd, buf, sizeof code + n);
    }
    close(err_fd);
    _exit(rc < 0 ? 1 : 0);
}

int pl_child_run(const pl_lua_limits *lim, const char *what, pl_child_fn fn, void *ctx, char **out, size_t *out_len,
                 pl_err *err) {
    return pl_child_run_relay(lim, what, fn, ctx, NULL, out, out_len, err);
}

int pl_child_run_relay(const pl_lua_limits *lim, const char *what, pl_child_fn fn, void *ctx,
                       const pl_child_relay *relay, char **out, size_t *out_len, pl_err *err) {
    pl_lua_limits dflt;
    if (!lim) {
        pl_lua_limits_default(&dflt);
        lim = &dflt;
    }
    if (!what) what = "child";
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    int res[2], ep[2];
    if (pipe2(res, O_CLOEXEC) != 0) return pl_err_set(err, PL_EIO, "%s: pipe: %s", what, strerror(errno));
    if (pipe2(ep, O_CLOEXEC) != 0) {
        int e = errno;
        close(res[0]);
        close(res[1]);
        return pl_err_set(err, PL_EIO, "%s: pipe: %s", what, strerror(e));
    }
    int rq[2] = {-1, -1}, an[2] = {-1, -1}; /* the relay's requests (child -> parent) and answers */
    if (relay && (pipe2(rq, O_CLOEXEC) != 0 || pipe2(an, O_CLOEXEC) != 0)) {
        int e = errno;
        int fds[] = {res[0], res[1], ep[0], ep[1], rq[0], rq[1], an[0], an[1]};
        for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
            if (fds[i] >= 0) close(fds[i]);
        return pl_err_set(err, PL_EIO, "%s: pipe: %s", what, strerror(e));
    }
    fflush(NULL); /* else buffered stdio output would be written twice */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        int fds[] = {res[0], res[1], ep[0], ep[1], rq[0], rq[1], an[0], an[1]};
        for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
            if (fds[i] >= 0) close(fds[i]);
        return pl_err_set(err, PL_EIO, "%s: fork: %s", what, strerror(e));
    }
    if (pid == 0) {
        close(res[0]);
        close(ep[0]);
        if (relay) {
            close(rq[0]);
            close(an[1]);
            g_req_fd = rq[1];
            g_ans_fd = an[0];
        } else { /* a child of a relayed child has no relay of its own */
            g_req_fd = g_ans_fd = -1;
        }
        pl_backend_set_default("cpu", NULL); /* a device context does not survive fork */
        child_main(lim, fn, ctx, res[1], ep[1], parent);
    }
    setpgid(pid, pid); /* also from this side: no race with an early kill */
    close(res[1]);
    close(ep[1]);
    if (relay) {
        close(rq[1]);
        close(an[0]);
    }

    double deadline = lim->wall_seconds > 0 ? now_s() + lim->wall_seconds : 0;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char ebuf[sizeof(int32_t) + sizeof err->msg];
    size_t elen = 0;
    int fds_open[2] = {res[0], ep[0]};
    int timed_out = 0, nomem = 0;

    while (fds_open[0] >= 0 || fds_open[1] >= 0) {
        struct pollfd pf[3];
        int np = 0;
        for (int i = 0; i < 2; i++)
            if (fds_open[i] >= 0) pf[np++] = (struct pollfd){.fd = fds_open[i], .events = POLLIN};
        if (rq[0] >= 0) pf[np++] = (struct pollfd){.fd = rq[0], .events = POLLIN};
        int timeout = -1;
        if (deadline > 0) {
            double left = deadline - now_s();
            if (left <= 0) {
                timed_out = 1;
                break;
            }
            timeout = (int)(left * 1000) + 1;
        }
        int r = poll(pf, (nfds_t)np, timeout);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int k = 0; k < np; k++) {
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (pf[k].fd == rq[0]) { /* a request: served whole; the child waits for the answer */
                int eof = 0;
                if (serve_one(relay, rq[0], an[1], &eof) || eof) {
                    close(rq[0]);
                    close(an[1]);
                    rq[0] = an[1] = -1;
                }
                continue;
            }
            int is_res = pf[k].fd == fds_open[0];
            char tmp[65536];
            ssize_t got = read(pf[k].fd, tmp, sizeof tmp);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (got <= 0) {
                close(pf[k].fd);
                fds_open[is_res ? 0 : 1] = -1;
                continue;
            }
            if (is_res) {
                if (!out || nomem) continue; /* drained and dropped */
                if (len + (size_t)got + 1 > cap) {
                    size_t nc = cap ? cap : 65536;
                    while (nc < len + (size_t)got + 1 && nc < SIZE_MAX / 2) nc *= 2;
                    char *nb = realloc(buf, nc);
                    if (!nb) {
                        nomem = 1;
                        continue;
                    }
                    buf = nb;
                    cap = nc;
                }
                memcpy(buf + len, tmp, (size_t)got);
                len += (size_t)got;
            } else {
                size_t room = sizeof ebuf - elen;
                size_t take = (size_t)got < room ? (size_t)got : room;
                memcpy(ebuf + elen, tmp, take);
                elen += take;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds_open[i] >= 0) close(fds_open[i]);
    if (rq[0] >= 0) close(rq[0]);
    if (an[1] >= 0) close(an[1]);

    /* Wait for the child, still bound by the deadline (it may have closed
     * its pipes and kept running). */
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    if (timed_out) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    }
    for (;;) {
        /* Wait without reaping first, so the group can still be killed while
         * its id cannot be reused; then reap. */
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int wr = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT | (timed_out ? 0 : WNOHANG));
        if (wr < 0 && errno == EINTR) continue;
        if (wr < 0) {
            free(buf);
            return pl_err_set(err, PL_EIO, "%s: waitid: %s", what, strerror(errno));
        }
        if (si.si_pid == pid) {
            kill(-pid, SIGKILL); /* whatever the child started in its group goes with it */
            pid_t w;
            do
                w = wait4(pid, &status, 0, &ru);
            while (w < 0 && errno == EINTR);
            if (w != pid) {
                free(buf);
                return pl_err_set(err, PL_EIO, "%s: wait4: %s", what, strerror(errno));
            }
            break;
        }
        if (deadline > 0 && now_s() >= deadline) {
            timed_out = 1;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            continue;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }

    int rc = 0;
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec * 1e-6;
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (sig == SIGXCPU || (sig == SIGKILL && lim->cpu_seconds > 0 && cpu >= lim->cpu_seconds - 0.05))
            rc = pl_err_set(err, PL_ERANGE, "%s: CPU time limit of %d s exceeded", what, lim->cpu_seconds);
        else if (timed_out && sig == SIGKILL)
            rc = pl_err_set(err, PL_ERANGE, "%s: wall-clock limit of %g s exceeded", what, lim->wall_seconds);
        else
            rc = pl_err_set(err, PL_EIO, "%s: killed by signal %d (%s)", what, sig, strsignal(sig));
    } else if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        if (code == 0 && !timed_out) {
            rc = 0;
        } else if (code == 1 && elen > sizeof(int32_t)) {
            int32_t c;
            memcpy(&c, ebuf, sizeof c);
            if (c >= 0 || c < -100) c = PL_EFORMAT;
            int n = (int)(elen - sizeof c);
            if (c == PL_ENOMEM && lim->as_bytes > 0)
                rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory (address space limit %lld MiB): %.*s", what,
                                (long long)(lim->as_bytes >> 20), n, ebuf + sizeof c);
            else {
                /* the child's message may already start with what ("recipe.lua:12: ...") */
                size_t wl = strlen(what);
                const char *m = ebuf + sizeof c;
                if ((size_t)n > wl && !strncmp(m, what, wl) && m[wl] == ':')
                    rc = pl_err_set(err, c, "%.*s", n, m);
                else
                    rc = pl_err_set(err, c, "%s: %.*s", what, n, m);
            }
        } else if (timed_out) {
            rc = pl_err_set(err, PL_ERANGE, "%s: wall-clock limit of %g s exceeded", what, lim->wall_seconds);
        } else {
            rc = pl_err_set(err, PL_EIO, "%s: exited with status %d", what, code);
        }
    } else {
        rc = pl_err_set(err, PL_EIO, "%s: ended with wait status 0x%x", what, status);
    }
    if (rc == 0 && nomem) rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory collecting the child's result", what);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    if (out) {
        if (!buf) {
            buf = malloc(1);
            if (!buf) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", what);
        }
        buf[len] = '\0';
        *out = buf;
        if (out_len) *out_len = len;
    } else {
        free(buf);
    }
    return 0;
}
