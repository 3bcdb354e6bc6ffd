/* confine.h: kernel-level confinement of a recipe child, below the Lua sandbox.
 *
 * The Lua sandbox (sandbox.h) decides what recipe code may ask for; this
 * layer holds if a bug in a C binding lets recipe code run native code. In the
 * forked child, before any recipe code runs, pl_confine_apply sets:
 *   1. no_new_privs (prctl): nothing the child executes gains privileges;
 *   2. Landlock (Linux 5.13+): files readable only under the paths in read[]
 *      (the recipe folder, --allow-read paths, the run directory, plugin
 *      folders, the models), writable only under write_dir (the stage's own
 *      output folder; none for the plan and eval-metric children), no
 *      execution, no device files, no sockets bound by path (ABI 6: no
 *      abstract UNIX sockets or signals to processes outside the child);
 *   3. seccomp-bpf (libseccomp): an allow-list of the system calls the Lua host,
 *      the model code, OpenMP and OpenBLAS threads and the C library need; every
 *      other call (execve, socket, connect, ptrace, mount, bpf, io_uring,
 *      keyctl, ...) fails with EPERM. clone is allowed for threads only.
 * Where the kernel lacks Landlock or seccomp, the child goes on with the
 * layers it has, after one warning line on stderr; with require set (the
 * --require-confinement flag) it refuses to run instead.
 * docs/security.md has the threat model. */
#ifndef PL_CONFINE_H
#define PL_CONFINE_H

#include "../core/error.h"

#define PL_CONFINE_MAX_READ 32

typedef struct pl_confine {
    const char *read[PL_CONFINE_MAX_READ]; /* files or folders readable (and their contents) */
    int n_read;
    const char *write_dir;                 /* the one folder writable (created before), or NULL */
    int require;                           /* refuse when a layer is unavailable */
} pl_confine;

/* Add a readable path (ignored when NULL or empty; PL_ERANGE past the max). */
int pl_confine_add_read(pl_confine *c, const char *path, pl_err *err);

/* In the child: apply every layer. Returns 0, or an error (a layer failed to
 * apply, or require is set and one is missing). Irreversible. */
int pl_confine_apply(const pl_confine *c, pl_err *err);

/* What this kernel offers, without applying anything: a Landlock ABI version
 * (0: none) and whether seccomp filters can be installed. */
int pl_confine_landlock_abi(void);
int pl_confine_seccomp_available(void);

#endif
