/* test_confine.c: plugins/confine.c, with a child that plays a compromised recipe process.
 *
 * The child applies the same confinement a recipe child gets (reads under one
 * folder, writes under its output folder), then tries what native code that
 * escaped the Lua sandbox would try: execve, a socket, ptrace, fork, a signal
 * to its parent, executable memory, reading and writing files outside, making
 * a device node. Each must fail; threads (pthreads and OpenMP) and the
 * permitted files must still work. The parent reads the child's
 * /proc/PID/status while it waits: Seccomp 2 (filter) and NoNewPrivs 1. */
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "../plugins/confine.h"

/* Results travel back as one line per probe: "name ok" or "name FAIL detail". */
static void report(int fd, const char *name, int good, const char *detail) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%s %s %s\n", name, good ? "ok" : "FAIL", detail ? detail : "");
    if (write(fd, buf, (size_t)n) < 0) _exit(3);
}

static void *thread_fn(void *p) {
    *(int *)p = 42;
    return NULL;
}

static void child(const char *root, int fd, int ready_fd, int go_fd) {
    char in_dir[512], out_dir[512], p[600];
    snprintf(in_dir, sizeof in_dir, "%s/in", root);
    snprintf(out_dir, sizeof out_dir, "%s/out", root);
    pl_confine c = {.write_dir = out_dir, .require = 1};
    pl_err e = {0};
    pl_confine_add_read(&c, in_dir, &e);
    if (pl_confine_apply(&c, &e)) {
        report(fd, "apply", 0, e.msg);
        _exit(1);
    }
    report(fd, "apply", 1, NULL);
    /* let the parent read /proc/PID/status, then go on */
    char b = 1;
    if (write(ready_fd, &b, 1) != 1 || read(go_fd, &b, 1) != 1) _exit(4);

    char *argv[] = {"/bin/true", NULL};
    errno = 0;
    execve("/bin/true", argv, (char *[]){NULL});
    report(fd, "execve", errno == EPERM || errno == EACCES, strerror(errno));
    int s = socket(AF_INET, SOCK_STREAM, 0);
    report(fd, "socket_inet", s < 0 && errno == EPERM, strerror(errno));
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    report(fd, "socket_unix", s < 0 && errno == EPERM, strerror(errno));
    long pr = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    report(fd, "ptrace", pr < 0 && errno == EPERM, strerror(errno));
    pid_t f = fork();
    if (f == 0) _exit(0);
    report(fd, "fork", f < 0, strerror(errno));
    int k = kill(getppid(), 0);
    report(fd, "kill_parent", k < 0 && errno == EPERM, strerror(errno));
    void *x = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    report(fd, "mmap_exec", x == MAP_FAILED && errno == EPERM, strerror(errno));
    void *rw = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    report(fd, "mmap_rw", rw != MAP_FAILED, strerror(errno));
    if (rw != MAP_FAILED) {
        int mp = mprotect(rw, 4096, PROT_READ | PROT_EXEC);
        report(fd, "mprotect_exec", mp < 0 && errno == EPERM, strerror(errno));
        munmap(rw, 4096);
    }
    int o = open("/etc/passwd", O_RDONLY);
    report(fd, "read_outside", o < 0 && errno == EACCES, strerror(errno));
    snprintf(p, sizeof p, "%s/secret.txt", root);
    o = open(p, O_RDONLY);
    report(fd, "read_sibling", o < 0 && errno == EACCES, strerror(errno));
    snprintf(p, sizeof p, "%s/data.txt", in_dir);
    o = open(p, O_RDONLY);
    char buf[16] = {0};
    report(fd, "read_inside", o >= 0 && read(o, buf, sizeof buf - 1) > 0 && !strncmp(buf, "hello", 5), strerror(errno));
    if (o >= 0) close(o);
    o = open(p, O_WRONLY | O_APPEND);
    report(fd, "write_readable", o < 0 && errno == EACCES, strerror(errno));
    snprintf(p, sizeof p, "%s/planted.txt", root);
    o = open(p, O_WRONLY | O_CREAT, 0644);
    report(fd, "create_outside", o < 0 && errno == EACCES, strerror(errno));
    snprintf(p, sizeof p, "%s/result.tmp", out_dir);
    o = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int wrote = o >= 0 && write(o, "ok", 2) == 2;
    if (o >= 0) close(o);
    char q[600];
    snprintf(q, sizeof q, "%s/result.txt", out_dir);
    report(fd, "write_own_folder", wrote && rename(p, q) == 0, strerror(errno));
    snprintf(p, sizeof p, "%s/dev", out_dir);
    int mk = mknod(p, S_IFCHR | 0600, makedev(1, 3));
    report(fd, "mknod", mk < 0, strerror(errno));
    snprintf(p, sizeof p, "%s/link", out_dir);
    int sl = symlink("/etc/passwd", p);
    report(fd, "symlink", sl < 0, strerror(errno));
    pthread_t th;
    int val = 0;
    int tc = pthread_create(&th, NULL, thread_fn, &val);
    if (tc == 0) pthread_join(th, NULL);
    report(fd, "pthread", tc == 0 && val == 42, strerror(tc));
    long sum = 0;
#pragma omp parallel for num_threads(2) reduction(+ : sum)
    for (int i = 0; i < 1000; i++) sum += i;
    report(fd, "openmp", sum == 499500, NULL);
    _exit(0);
}

int main(void) {
    char root[] = "/tmp/pl_confine_XXXXXX";
    REQUIRE(mkdtemp(root), "mkdtemp");
    char p[600];
    snprintf(p, sizeof p, "%s/in", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/out", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/in/data.txt", root);
    FILE *f = fopen(p, "w");
    REQUIRE(f, "fixture");
    fputs("hello\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/secret.txt", root);
    f = fopen(p, "w");
    REQUIRE(f, "fixture");
    fputs("key\n", f);
    fclose(f);
    REQUIRE(pl_confine_landlock_abi() >= 1 && pl_confine_seccomp_available(),
            "this kernel offers Landlock ABI %d and seccomp %d: the test machine must have both",
            pl_confine_landlock_abi(), pl_confine_seccomp_available());
    printf("note: Landlock ABI %d\n", pl_confine_landlock_abi());

    signal(SIGPIPE, SIG_IGN); /* a child that died early must not take the test with it */
    int res[2], ready[2], go[2];
    REQUIRE(pipe(res) == 0 && pipe(ready) == 0 && pipe(go) == 0, "pipe");
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        close(res[0]);
        close(ready[0]);
        close(go[1]);
        child(root, res[1], ready[1], go[0]);
    }
    close(res[1]);
    close(ready[1]);
    close(go[0]);
    char b;
    int seccomp = -1, nnp = -1;
    if (read(ready[0], &b, 1) == 1) {
        snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
        FILE *st = fopen(p, "r");
        char line[256];
        while (st && fgets(line, sizeof line, st)) {
            if (!strncmp(line, "Seccomp:", 8)) seccomp = atoi(line + 8);
            if (!strncmp(line, "NoNewPrivs:", 11)) nnp = atoi(line + 11);
        }
        if (st) fclose(st);
    }
    CHECK(seccomp == 2, "child's /proc status: Seccomp %d, expected 2 (filter)", seccomp);
    CHECK(nnp == 1, "child's /proc status: NoNewPrivs %d, expected 1", nnp);
    if (write(go[1], &b, 1) != 1) CHECK(0, "go pipe");
    close(go[1]);
    char out[8192];
    size_t n = 0;
    ssize_t r;
    while ((r = read(res[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)r;
    out[n] = 0;
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    static const char *probes[] = {"apply", "execve", "socket_inet", "socket_unix", "ptrace", "fork", "kill_parent",
                                   "mmap_exec", "mmap_rw", "mprotect_exec", "read_outside", "read_sibling",
                                   "read_inside", "write_readable", "create_outside", "write_own_folder", "mknod",
                                   "symlink", "pthread", "openmp"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s ok", probes[i]);
        char *at = strstr(out, key);
        CHECK(at && (at == out || at[-1] == '\n'), "probe %s: %s", probes[i],
              strstr(out, probes[i]) ? strstr(out, probes[i]) : "no report");
    }
    snprintf(p, sizeof p, "%s/planted.txt", root);
    CHECK(access(p, F_OK) != 0, "nothing was created outside the output folder");
    snprintf(p, sizeof p, "%s/out/result.txt", root);
    CHECK(access(p, F_OK) == 0, "the output folder got its file");
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return check_summary("test_confine");
}
