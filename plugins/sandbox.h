/* sandbox.h: the Lua 5.4 sandbox every recipe and plugin runs in, and the
 * forked child process that holds it.
 *
 * In-process limits (pl_sandbox):
 *   - only base (without dofile, loadfile, collectgarbage's "step"-less
 *     misuse is harmless), string (without string.dump), table, math, utf8
 *     and coroutine are opened; no io, os, package, debug;
 *   - load() takes text chunks only (mode forced to "t") and chunks run in
 *     the sandbox's global table unless an env is given;
 *   - setmetatable refuses a metatable with a __gc field (Lua runs no hooks
 *     inside finalizers), and the string metatable is locked;
 *   - a custom allocator caps the bytes the state may hold;
 *   - a count hook caps the VM instructions of each pl_sandbox_pcall, and the
 *     string library's pattern functions (lpattern.h) charge their matching
 *     steps to the same count.
 * Out-of-process limits (pl_child_run): what the hook cannot stop is
 * stopped by RLIMIT_CPU, RLIMIT_AS and a wall-clock deadline on a forked
 * child; the parent turns any death of the child into one clean error line.
 *
 * Files: recipes reach files only through the potluck API, which resolves
 * every path with pl_sandbox_resolve: relative to the recipe's directory,
 * reads inside the recipe directory or the run directory, writes inside the
 * run directory only, no symlink or ".." escapes. */
#ifndef PL_SANDBOX_H
#define PL_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include "../core/error.h"

typedef struct pl_lua_limits {
    int64_t mem_bytes;      /* Lua allocator cap (default 512 MiB) */
    int64_t instructions;   /* VM instructions per pl_sandbox_pcall (default 2e9) */
    int cpu_seconds;        /* child's RLIMIT_CPU (default 3600) */
    int64_t as_bytes;       /* child's RLIMIT_AS (default 16 GiB; models are mapped) */
    double wall_seconds;    /* child's wall-clock deadline (default 7200) */
    int require_confinement; /* refuse to run recipe code where the kernel lacks Landlock or
                              * seccomp (confine.h; default: one warning line and go on) */
} pl_lua_limits;

/* Defaults, then the environment's POTLUCK_LUA_MEM_MB, POTLUCK_LUA_INSTRUCTIONS,
 * POTLUCK_LUA_CPU_S, POTLUCK_LUA_AS_MB, POTLUCK_LUA_WALL_S (recipes cannot
 * raise their own limits: only the user's command line and environment do). */
void pl_lua_limits_default(pl_lua_limits *l);
/* One command-line flag (--lua-mem MB, --lua-instructions N, --lua-cpu S,
 * --lua-as MB, --lua-wall S, --require-confinement); *used = argv entries
 * taken (0: not ours). */
int pl_lua_limits_flag(pl_lua_limits *l, int argc, char **argv, int *used, pl_err *err);
const char *pl_lua_limits_help(void);

typedef struct pl_sandbox pl_sandbox;

/* A fresh sandboxed state. recipe_dir: the directory relative paths start
 * from and reads may use, except its dot-files and dot-folders (NULL: none);
 * run_dir: where reads and writes may go (NULL: none; created by the caller). */
int pl_sandbox_new(pl_sandbox **out, const pl_lua_limits *lim, const char *recipe_dir, const char *run_dir,
                   pl_err *err);
void pl_sandbox_free(pl_sandbox *sb);
lua_State *pl_sandbox_L(pl_sandbox *sb);
/* The sandbox that owns L (from inside C functions called by Lua). */
pl_sandbox *pl_sandbox_of(lua_State *L);
const char *pl_sandbox_recipe_dir(const pl_sandbox *sb);
const char *pl_sandbox_run_dir(const pl_sandbox *sb);
/* Narrow writes (recipe children, as confine.h narrows them at the kernel):
 * only below dir (a stage's own output folder), or none at all (dir NULL:
 * plans and metrics). Reads are unchanged. */
int pl_sandbox_limit_writes(pl_sandbox *sb, const char *dir, pl_err *err);
/* Let recipe code read path too (a file or a directory and everything below
 * it, dot-files included): the user's --allow-read. At most
 * PL_SANDBOX_MAX_ALLOW of them. */
#define PL_SANDBOX_MAX_ALLOW 16
int pl_sandbox_allow_read(pl_sandbox *sb, const char *path, pl_err *err);

/* Load a Lua source file as a text chunk named "@<display>" (so messages
 * read "display:LINE: ...") with the sandbox globals (or, when env_idx != 0,
 * the table at that stack index) as _ENV, and push the function. The file is
 * read by the host (trusted path, not checked against the roots). */
int pl_sandbox_loadfile(pl_sandbox *sb, const char *path, const char *display, int env_idx, pl_err *err);
/* Same for a string. */
int pl_sandbox_loadstring(pl_sandbox *sb, const char *src, size_t len, const char *chunkname, int env_idx,
                          pl_err *err);

/* lua_pcall with the instruction counter reset and a traceback handler;
 * on error the message (first line: "file:line: message", including
 * "memory limit of N MiB exceeded" / "instruction limit of N exceeded") goes
 * to err and the stack is restored. */
int pl_sandbox_pcall(pl_sandbox *sb, int nargs, int nresults, pl_err *err);

/* Resolve a path given by recipe code. Relative paths start at the recipe
 * directory (or the run directory when there is none). The result must lie
 * inside the recipe directory (not in a dot-file or dot-folder below it), the
 * run directory or a path given to pl_sandbox_allow_read for reads, inside the
 * run directory for writes (for writes the file need not exist; its parent
 * must). *out is malloc'd. Errors name the path as given. */
int pl_sandbox_resolve(pl_sandbox *sb, const char *path, int for_write, char **out, pl_err *err);
/* Same with an explicit length (a Lua string): refuses embedded NUL bytes. */
int pl_sandbox_resolvel(pl_sandbox *sb, const char *path, size_t len, int for_write, char **out, pl_err *err);

/* The full text (message and traceback) of the last error pl_sandbox_pcall
 * reported ("" before any). Valid until the next failing pcall. */
const char *pl_sandbox_traceback(const pl_sandbox *sb);
/* Bytes the state holds now. */
size_t pl_sandbox_mem_used(const pl_sandbox *sb);
/* Push a read-only proxy of the table at idx: reads go to the table, writes
 * (t.k = v and the sandbox's rawset) raise errors, getmetatable returns
 * false, pairs and # see the table. For the potluck API table and objects. */
void pl_sandbox_push_readonly(lua_State *L, int idx);
/* Push a deep read-only view of the table at idx (what require returns): as
 * pl_sandbox_push_readonly, and every table read through it (t.sub, pairs,
 * ipairs) comes back as a read-only view too, the same view each time. A
 * table whose metatable is already protected (__metatable set: the potluck
 * module, objects) is pushed as it is. Non-tables are pushed as they are. */
void pl_sandbox_push_frozen(lua_State *L, int idx);

/* ------------------------------------------------------------- the child */

/* The function a child runs. It may write a result to fd (a pipe the parent
 * reads into *out). It returns 0 or a negative status with err filled. */
typedef int (*pl_child_fn)(void *ctx, int fd, pl_err *err);

/* Fork; in the child apply RLIMIT_CPU/RLIMIT_AS from lim, run fn, send its
 * error line (if any) to the parent and _exit. In the parent, collect what
 * the child wrote to fd (into *out, *out_len when out != NULL; malloc'd and
 * NUL-terminated) and wait, killing the child (SIGKILL, whole process group)
 * at the wall-clock deadline. Any abnormal end becomes one error line
 * prefixed with `what` (e.g. "recipe.lua"): "CPU time limit of 30 s
 * exceeded", "wall-clock limit of 10 s exceeded", "out of memory (address
 * space limit 4096 MiB)", "killed by signal 11 (Segmentation fault)". */
int pl_child_run(const pl_lua_limits *lim, const char *what, pl_child_fn fn, void *ctx, char **out, size_t *out_len,
                 pl_err *err);

/* Requests from the child to its parent, answered while the child waits:
 * what a sandboxed child cannot do itself (it cannot use MPI after the fork,
 * and its seccomp filter allows no sockets), the parent does for it. A
 * request is bytes; serve (in the parent) answers with bytes (*reply,
 * malloc'd) or an error, which the child's pl_child_call returns as its own
 * (same code and message). serve may block as long as it must (the
 * wall-clock deadline is checked between requests). */
typedef int (*pl_child_serve_fn)(void *user, const char *req, size_t n, char **reply, size_t *reply_n, pl_err *err);
typedef struct pl_child_relay {
    pl_child_serve_fn serve;
    void *user;
} pl_child_relay;
/* pl_child_run with a relay (NULL: none, as pl_child_run). */
int pl_child_run_relay(const pl_lua_limits *lim, const char *what, pl_child_fn fn, void *ctx,
                       const pl_child_relay *relay, char **out, size_t *out_len, pl_err *err);
/* In a child started with a relay: send req to the parent's serve and wait
 * for its answer (*reply malloc'd, NUL-terminated). PL_EUNSUPPORTED when this
 * process is no such child; PL_EIO when the parent is gone. */
int pl_child_has_relay(void);
int pl_child_call(const void *req, size_t n, char **reply, size_t *reply_n, pl_err *err);

#endif
