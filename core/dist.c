/* dist.c: ranks and fixed-order collectives (dist.h), over MPI when the
 * build has it (PL_HAVE_MPI), else a world of one. */
#include "dist.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef PL_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_init = 0;
static double g_comm = 0;

static int parse_size(const char *s) {
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v >= 1 && v <= 1 << 20 ? (int)v : 0;
}

int pl_dist_env_size(void) {
    const char *off = getenv("POTLUCK_DIST");
    if (off && !strcmp(off, "off")) return 1;
    int n;
    if ((n = parse_size(getenv("OMPI_COMM_WORLD_SIZE")))) return n;
    if ((n = parse_size(getenv("PMI_SIZE")))) return n;
    /* srun sets the step's task count for each task; a batch script's own
     * shell (no step) is one process even when the allocation has more */
    if (getenv("SLURM_STEP_ID") && (n = parse_size(getenv("SLURM_STEP_NUM_TASKS")))) return n;
    return 1;
}

int pl_dist_env_local_size(void) {
    if (pl_dist_env_size() <= 1) return 1;
    int n;
    if ((n = parse_size(getenv("OMPI_COMM_WORLD_LOCAL_SIZE")))) return n;
    if ((n = parse_size(getenv("MPI_LOCALNRANKS")))) return n;
    return 1;
}

int pl_dist_rank(void) { return g_rank; }
int pl_dist_size(void) { return g_size; }
size_t pl_dist_shard_lo(size_t n, int rank) {
    if (rank >= g_size) return n;
    /* n * rank / size without overflow for any n below 2^63 / 2^20 */
    return (size_t)((unsigned __int128)n * (unsigned)rank / (unsigned)g_size);
}
void pl_dist_sum_slices(float *out, const float *slices, int P, size_t len) {
    /* rank order, element by element: the same bits at any thread count */
    long L = (long)len;
#pragma omp parallel for schedule(static) if (L >= 65536)
    for (long j = 0; j < L; j++) {
        float s = slices[j];
        for (int r = 1; r < P; r++) s += slices[(size_t)r * len + (size_t)j];
        out[j] = s;
    }
}
double pl_dist_comm_seconds(void) {
    double t = g_comm;
    g_comm = 0;
    return t;
}

#ifdef PL_HAVE_MPI
int pl_dist_have_mpi(void) { return 1; }

static int g_mpi = 0;
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the collective in progress (NULL: none) and when it began, for the watchdog */
static _Atomic(const char *) g_op;
static _Atomic long long g_op_ms;
static double g_timeout = 900;

static long long now_ms(void) { return (long long)(now_s() * 1000.0); }

static void *watchdog(void *arg) {
    (void)arg;
    for (;;) {
        sleep(1);
        const char *op = atomic_load(&g_op);
        long long t0 = atomic_load(&g_op_ms);
        if (op && t0 > 0 && (double)(now_ms() - t0) > g_timeout * 1000.0) {
            fprintf(stderr,
                    "potluck: rank %d of %d: %s has waited %.0f s for the other ranks (one died or hangs); "
                    "ending the job (POTLUCK_DIST_TIMEOUT sets the limit)\n",
                    g_rank, g_size, op, g_timeout);
            fflush(stderr);
            _exit(70);
        }
    }
    return NULL;
}

static double op_begin(const char *name) {
    atomic_store(&g_op_ms, now_ms());
    atomic_store(&g_op, name);
    return now_s();
}
static void op_end(double t0) {
    atomic_store(&g_op, (const char *)NULL);
    g_comm += now_s() - t0;
}

static int mpi_fail(pl_err *err, int rc, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", rc);
    return pl_err_set(err, PL_EIO, "dist: rank %d: %s: %s", g_rank, what, s);
}

int pl_dist_init(pl_err *err) {
    if (g_init) return PL_OK;
    int want = pl_dist_env_size();
    if (want <= 1) { g_init = 1; return PL_OK; }
    int prov = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &prov);
    if (rc != MPI_SUCCESS) return pl_err_set(err, PL_EIO, "dist: MPI_Init failed (error %d)", rc);
    g_mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_init = 1;
    atexit(pl_dist_finalize);
    if (g_size != want)
        return pl_err_set(err, PL_EINVAL, "dist: the launcher announced %d ranks, MPI has %d (mixed launchers?)", want,
                          g_size);
    const char *t = getenv("POTLUCK_DIST_TIMEOUT");
    if (t && *t) g_timeout = atof(t);
    if (g_timeout > 0) {
        pthread_t th;
        if (!pthread_create(&th, NULL, watchdog, NULL)) pthread_detach(th);
    }
    return PL_OK;
}

void pl_dist_finalize(void) {
    if (!g_mpi) return;
    g_mpi = 0;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
    g_size = 1; /* what goes on after MPI is one process's work: the collectives above copy */
}

void pl_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    if (g_mpi) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

int pl_dist_barrier(pl_err *err) {
    if (g_size == 1) return PL_OK;
    double t0 = op_begin("barrier");
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    op_end(t0);
    return rc == MPI_SUCCESS ? PL_OK : mpi_fail(err, rc, "barrier");
}

int pl_dist_bcast(void *buf, size_t bytes, int root, pl_err *err) {
    if (g_size == 1) return PL_OK;
    double t0 = op_begin("broadcast");
    int rc = MPI_SUCCESS;
    for (size_t o = 0; o < bytes && rc == MPI_SUCCESS;) {
        size_t k = bytes - o < (1u << 30) ? bytes - o : (1u << 30);
        rc = MPI_Bcast((char *)buf + o, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
        o += k;
    }
    op_end(t0);
    return rc == MPI_SUCCESS ? PL_OK : mpi_fail(err, rc, "broadcast");
}

int pl_dist_allreduce_f64(double *v, int n, pl_err *err) {
    if (g_size == 1 || n <= 0) return PL_OK;
    double *all = malloc((size_t)g_size * (size_t)n * sizeof *all);
    if (!all) return pl_err_set(err, PL_ENOMEM, "dist: out of memory");
    double t0 = op_begin("all-reduce");
    int rc = MPI_Allgather(v, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD);
    op_end(t0);
    if (rc == MPI_SUCCESS)
        for (int i = 0; i < n; i++) {
            double s = all[i];
            for (int r = 1; r < g_size; r++) s += all[(size_t)r * n + i];
            v[i] = s;
        }
    free(all);
    return rc == MPI_SUCCESS ? PL_OK : mpi_fail(err, rc, "all-reduce");
}

/* counts and displacements of the shards of n floats (int, as MPI takes them) */
static int shard_counts(size_t n, int *cnt, int *dsp, pl_err *err) {
    for (int r = 0; r < g_size; r++) {
        size_t lo = pl_dist_shard_lo(n, r), hi = pl_dist_shard_lo(n, r + 1);
        if (hi - lo > INT_MAX || lo > INT_MAX)
            return pl_err_set(err, PL_ERANGE, "dist: %zu floats: a shard above 2^31 elements is not supported", n);
        cnt[r] = (int)(hi - lo);
        dsp[r] = (int)lo;
    }
    return PL_OK;
}

int pl_dist_reduce_scatter_f32(const float *in, size_t n, float *out, float *scratch, pl_err *err) {
    size_t lo = pl_dist_shard_lo(n, g_rank), len = pl_dist_shard_lo(n, g_rank + 1) - lo;
    if (g_size == 1) {
        memcpy(out, in, n * sizeof *in);
        return PL_OK;
    }
    int *c = malloc(4 * (size_t)g_size * sizeof *c);
    if (!c) return pl_err_set(err, PL_ENOMEM, "dist: out of memory");
    int *sc = c, *sd = c + g_size, *rcn = c + 2 * g_size, *rd = c + 3 * g_size;
    int rc = shard_counts(n, sc, sd, err);
    if (rc) { free(c); return rc; }
    for (int r = 0; r < g_size; r++) {
        rcn[r] = (int)len;
        rd[r] = (int)(len * (size_t)r);
    }
    if ((size_t)g_size * len > INT_MAX) { free(c); return pl_err_set(err, PL_ERANGE, "dist: %zu floats: too many for one exchange", n); }
    double t0 = op_begin("reduce-scatter");
    int mr = MPI_Alltoallv(in, sc, sd, MPI_FLOAT, scratch, rcn, rd, MPI_FLOAT, MPI_COMM_WORLD);
    op_end(t0);
    free(c);
    if (mr != MPI_SUCCESS) return mpi_fail(err, mr, "reduce-scatter");
    pl_dist_sum_slices(out, scratch, g_size, len);
    return PL_OK;
}

int pl_dist_allgather_f32(float *buf, size_t n, pl_err *err) {
    if (g_size == 1) return PL_OK;
    int *c = malloc(2 * (size_t)g_size * sizeof *c);
    if (!c) return pl_err_set(err, PL_ENOMEM, "dist: out of memory");
    int rc = shard_counts(n, c, c + g_size, err);
    if (rc) { free(c); return rc; }
    double t0 = op_begin("all-gather");
    int mr = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, c, c + g_size, MPI_FLOAT, MPI_COMM_WORLD);
    op_end(t0);
    free(c);
    return mr == MPI_SUCCESS ? PL_OK : mpi_fail(err, mr, "all-gather");
}

int pl_dist_gather_f32(const float *shard, float *full, size_t n, int root, pl_err *err) {
    if (g_size == 1) {
        if (full != shard) memmove(full, shard, n * sizeof *full);
        return PL_OK;
    }
    int *c = malloc(2 * (size_t)g_size * sizeof *c);
    if (!c) return pl_err_set(err, PL_ENOMEM, "dist: out of memory");
    int rc = shard_counts(n, c, c + g_size, err);
    if (rc) { free(c); return rc; }
    if (g_rank == root) memmove(full + c[g_size + root], shard, (size_t)c[root] * sizeof *full);
    double t0 = op_begin("gather");
    int mr = g_rank == root
                 ? MPI_Gatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, full, c, c + g_size, MPI_FLOAT, root, MPI_COMM_WORLD)
                 : MPI_Gatherv(shard, c[g_rank], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, root, MPI_COMM_WORLD);
    op_end(t0);
    free(c);
    return mr == MPI_SUCCESS ? PL_OK : mpi_fail(err, mr, "gather");
}

/* bytes in pieces of at most 1 GiB: MPI counts are int */
#define PIECE ((size_t)1 << 30)
static int send_bytes(const void *buf, size_t n, int to) {
    int rc = MPI_SUCCESS;
    for (size_t o = 0; o < n && rc == MPI_SUCCESS; o += PIECE)
        rc = MPI_Send((const char *)buf + o, (int)(n - o < PIECE ? n - o : PIECE), MPI_BYTE, to, 77, MPI_COMM_WORLD);
    return rc;
}
static int recv_bytes(void *buf, size_t n, int from) {
    int rc = MPI_SUCCESS;
    for (size_t o = 0; o < n && rc == MPI_SUCCESS; o += PIECE)
        rc = MPI_Recv((char *)buf + o, (int)(n - o < PIECE ? n - o : PIECE), MPI_BYTE, from, 77, MPI_COMM_WORLD,
                      MPI_STATUS_IGNORE);
    return rc;
}

int pl_dist_bcast_bytes(void **buf, size_t *n, int root, pl_err *err) {
    if (g_size == 1) return PL_OK;
    uint64_t len = g_rank == root ? (uint64_t)*n : 0;
    int rc = pl_dist_bcast(&len, sizeof len, root, err);
    if (rc) return rc;
    if (g_rank != root) {
        *n = (size_t)len;
        *buf = len ? malloc((size_t)len) : NULL;
        if (len && !*buf) return pl_err_set(err, PL_ENOMEM, "dist: out of memory for %llu bytes", (unsigned long long)len);
    }
    return pl_dist_bcast(*buf, (size_t)len, root, err);
}

int pl_dist_gather_bytes(const void *buf, size_t n, void **all, size_t *len, int root, pl_err *err) {
    if (g_size == 1) {
        *all = malloc(n ? n : 1);
        if (!*all) return pl_err_set(err, PL_ENOMEM, "dist: out of memory for %zu bytes", n);
        if (n) memcpy(*all, buf, n);
        len[0] = n;
        return PL_OK;
    }
    *all = NULL;
    uint64_t mine = n, *sizes = g_rank == root ? malloc((size_t)g_size * sizeof *sizes) : NULL;
    if (g_rank == root && !sizes) return pl_err_set(err, PL_ENOMEM, "dist: out of memory");
    double t0 = op_begin("gather");
    int mr = MPI_Gather(&mine, 1, MPI_UINT64_T, sizes, 1, MPI_UINT64_T, root, MPI_COMM_WORLD);
    if (mr == MPI_SUCCESS && g_rank != root) mr = send_bytes(buf, n, root);
    if (mr == MPI_SUCCESS && g_rank == root) {
        size_t tot = 0;
        for (int r = 0; r < g_size; r++) tot += (size_t)sizes[r];
        char *out = malloc(tot ? tot : 1);
        if (!out) {
            op_end(t0);
            free(sizes);
            /* the other ranks are blocked in their sends: end the job */
            fprintf(stderr, "potluck: rank %d of %d: out of memory for %zu gathered bytes\n", g_rank, g_size, tot);
            pl_dist_abort(1);
        }
        size_t o = 0;
        for (int r = 0; r < g_size && mr == MPI_SUCCESS; r++) {
            len[r] = (size_t)sizes[r];
            if (r == root) memcpy(out + o, buf, n);
            else mr = recv_bytes(out + o, len[r], r);
            o += len[r];
        }
        *all = out;
    }
    op_end(t0);
    free(sizes);
    return mr == MPI_SUCCESS ? PL_OK : mpi_fail(err, mr, "gather");
}

int pl_dist_allgather_bytes(const void *buf, size_t n, void **all, size_t *len, pl_err *err) {
    if (g_size == 1) return pl_dist_gather_bytes(buf, n, all, len, 0, err);
    uint64_t *l64 = malloc((size_t)g_size * sizeof *l64);
    if (!l64) return pl_err_set(err, PL_ENOMEM, "dist: out of memory");
    size_t tot = 0;
    int rc = pl_dist_gather_bytes(buf, n, all, len, 0, err);
    if (!rc && g_rank == 0)
        for (int r = 0; r < g_size; r++) { l64[r] = len[r]; tot += len[r]; }
    if (!rc) rc = pl_dist_bcast(l64, (size_t)g_size * sizeof *l64, 0, err);
    if (!rc) {
        for (int r = 0; r < g_size; r++) len[r] = (size_t)l64[r];
        rc = pl_dist_bcast_bytes(all, &tot, 0, err);
    }
    free(l64);
    return rc;
}

int pl_dist_wait(int timed, pl_err *err) {
    if (g_size == 1) return PL_OK;
    if (timed) {
        atomic_store(&g_op_ms, now_ms());
        atomic_store(&g_op, "the stage's closing wait");
    }
    MPI_Request rq;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &rq), done = 0;
    while (rc == MPI_SUCCESS && !done) {
        rc = MPI_Test(&rq, &done, MPI_STATUS_IGNORE);
        if (!done) nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    atomic_store(&g_op, (const char *)NULL);
    return rc == MPI_SUCCESS ? PL_OK : mpi_fail(err, rc, "wait");
}

#else /* no MPI: a world of one */

int pl_dist_have_mpi(void) { return 0; }

int pl_dist_init(pl_err *err) {
    if (g_init) return PL_OK;
    int want = pl_dist_env_size();
    if (want > 1)
        return pl_err_set(err, PL_EUNSUPPORTED,
                          "dist: the launcher started %d ranks, but this potluck was built without MPI (install "
                          "libopenmpi-dev and rebuild; POTLUCK_DIST=off runs each process on its own)",
                          want);
    g_init = 1;
    return PL_OK;
}
void pl_dist_finalize(void) {}
void pl_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    exit(code);
}
int pl_dist_barrier(pl_err *err) { (void)err; return PL_OK; }
int pl_dist_bcast(void *buf, size_t bytes, int root, pl_err *err) { (void)buf; (void)bytes; (void)root; (void)err; return PL_OK; }
int pl_dist_allreduce_f64(double *v, int n, pl_err *err) { (void)v; (void)n; (void)err; return PL_OK; }
int pl_dist_reduce_scatter_f32(const float *in, size_t n, float *out, float *scratch, pl_err *err) {
    (void)scratch;
    (void)err;
    memcpy(out, in, n * sizeof *in);
    return PL_OK;
}
int pl_dist_allgather_f32(float *buf, size_t n, pl_err *err) { (void)buf; (void)n; (void)err; return PL_OK; }
int pl_dist_gather_f32(const float *shard, float *full, size_t n, int root, pl_err *err) {
    if (full != shard) memmove(full, shard, n * sizeof *full);
    return PL_OK;
}

int pl_dist_bcast_bytes(void **buf, size_t *n, int root, pl_err *err) { (void)buf; (void)n; (void)root; (void)err; return PL_OK; }
int pl_dist_gather_bytes(const void *buf, size_t n, void **all, size_t *len, int root, pl_err *err) {
    (void)root;
    *all = malloc(n ? n : 1);
    if (!*all) return pl_err_set(err, PL_ENOMEM, "dist: out of memory for %zu bytes", n);
    if (n) memcpy(*all, buf, n);
    len[0] = n;
    return PL_OK;
}
int pl_dist_allgather_bytes(const void *buf, size_t n, void **all, size_t *len, pl_err *err) {
    return pl_dist_gather_bytes(buf, n, all, len, 0, err);
}
int pl_dist_wait(int timed, pl_err *err) { (void)timed; (void)err; return PL_OK; }

#endif

/* ---- the reduce-scatter in pieces (dist.h) ---- */
struct pl_dist_rs {
    const float *in;
    size_t n, lo, len;    /* this rank's shard [lo, lo + len) */
    size_t *bounds;       /* nb + 1 */
    int nb;
    unsigned char *sent;  /* nb */
    float *scratch;
#ifdef PL_HAVE_MPI
    MPI_Request *req;     /* receives, then sends: at most 2 x pieces x ranks */
    int nreq;
#endif
};

static void rs_free(pl_dist_rs *s) {
    if (!s) return;
    free(s->bounds);
    free(s->sent);
#ifdef PL_HAVE_MPI
    free(s->req);
#endif
    free(s);
}

int pl_dist_rs_begin(pl_dist_rs **out, const float *in, size_t n, const size_t *bounds, int nb, float *scratch,
                     pl_err *err) {
    *out = NULL;
    if (nb < 1 || bounds[0] != 0 || bounds[nb] != n)
        return pl_err_set(err, PL_EINVAL, "dist: %d pieces that do not cover the %zu floats", nb, n);
    for (int b = 0; b < nb; b++)
        if (bounds[b] > bounds[b + 1]) return pl_err_set(err, PL_EINVAL, "dist: piece %d ends before it begins", b);
    pl_dist_rs *s = calloc(1, sizeof *s);
    if (!s || !(s->bounds = malloc((size_t)(nb + 1) * sizeof *s->bounds)) || !(s->sent = calloc((size_t)nb, 1))) {
        rs_free(s);
        return pl_err_set(err, PL_ENOMEM, "dist: out of memory");
    }
    memcpy(s->bounds, bounds, (size_t)(nb + 1) * sizeof *bounds);
    s->in = in;
    s->n = n;
    s->nb = nb;
    s->scratch = scratch;
    s->lo = pl_dist_shard_lo(n, g_rank);
    s->len = pl_dist_shard_lo(n, g_rank + 1) - s->lo;
#ifdef PL_HAVE_MPI
    if (g_size > 1) {
        int tag_ub = 32767, *tp = NULL, flag = 0;
        MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tp, &flag);
        if (flag && tp) tag_ub = *tp;
        if (nb > tag_ub || s->len > INT_MAX || (size_t)g_size * s->len > INT_MAX || n / (size_t)g_size > INT_MAX) {
            rs_free(s);
            return pl_err_set(err, PL_ERANGE, "dist: %zu floats in %d pieces: too many for one exchange", n, nb);
        }
        if (!(s->req = malloc((size_t)2 * (size_t)nb * (size_t)g_size * sizeof *s->req))) {
            rs_free(s);
            return pl_err_set(err, PL_ENOMEM, "dist: out of memory");
        }
        double t0 = now_s();
        const size_t hi = s->lo + s->len;
        for (int b = 0; b < nb; b++) {
            size_t a = bounds[b] > s->lo ? bounds[b] : s->lo, e = bounds[b + 1] < hi ? bounds[b + 1] : hi;
            if (a >= e) continue;
            for (int p = 0; p < g_size; p++) {
                if (p == g_rank) continue;
                int rc = MPI_Irecv(scratch + (size_t)p * s->len + (a - s->lo), (int)(e - a), MPI_FLOAT, p, b,
                                   MPI_COMM_WORLD, &s->req[s->nreq]);
                if (rc != MPI_SUCCESS) {
                    pl_dist_rs_abandon(s);
                    return mpi_fail(err, rc, "reduce-scatter: post a receive");
                }
                s->nreq++;
            }
        }
        g_comm += now_s() - t0;
    }
#endif
    *out = s;
    return PL_OK;
}

int pl_dist_rs_send(pl_dist_rs *s, int b, pl_err *err) {
    if (b < 0 || b >= s->nb) return pl_err_set(err, PL_EINVAL, "dist: no piece %d of %d", b, s->nb);
    if (s->sent[b]) return pl_err_set(err, PL_EINVAL, "dist: piece %d sent twice", b);
    s->sent[b] = 1;
    if (g_size == 1) return PL_OK;
#ifdef PL_HAVE_MPI
    double t0 = now_s();
    for (int p = 0; p < g_size; p++) {
        size_t plo = pl_dist_shard_lo(s->n, p), phi = pl_dist_shard_lo(s->n, p + 1);
        size_t a = s->bounds[b] > plo ? s->bounds[b] : plo, e = s->bounds[b + 1] < phi ? s->bounds[b + 1] : phi;
        if (a >= e) continue;
        if (p == g_rank) {
            memcpy(s->scratch + (size_t)p * s->len + (a - s->lo), s->in + a, (e - a) * sizeof(float));
            continue;
        }
        int rc = MPI_Isend(s->in + a, (int)(e - a), MPI_FLOAT, p, b, MPI_COMM_WORLD, &s->req[s->nreq]);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "reduce-scatter: send a piece");
        s->nreq++;
    }
    int done = 0; /* progress for the messages in flight (MPI moves them inside its calls) */
    MPI_Testall(s->nreq, s->req, &done, MPI_STATUSES_IGNORE);
    g_comm += now_s() - t0;
#endif
    return PL_OK;
}

int pl_dist_rs_end(pl_dist_rs *s, float *out, pl_err *err) {
    int rc = PL_OK;
    for (int b = 0; b < s->nb && !rc; b++)
        if (!s->sent[b]) rc = pl_dist_rs_send(s, b, err);
    if (rc) {
        pl_dist_rs_abandon(s);
        return rc;
    }
    if (g_size == 1) {
        memcpy(out, s->in, s->n * sizeof(float));
        rs_free(s);
        return PL_OK;
    }
#ifdef PL_HAVE_MPI
    double t0 = op_begin("reduce-scatter");
    int mr = MPI_Waitall(s->nreq, s->req, MPI_STATUSES_IGNORE);
    op_end(t0);
    if (mr != MPI_SUCCESS) {
        rs_free(s);
        return mpi_fail(err, mr, "reduce-scatter");
    }
    pl_dist_sum_slices(out, s->scratch, g_size, s->len);
#endif
    rs_free(s);
    return PL_OK;
}

int pl_dist_rs_sent(const pl_dist_rs *s, int b) { return b >= 0 && b < s->nb && s->sent[b]; }

void pl_dist_rs_abandon(pl_dist_rs *s) {
    if (!s) return;
#ifdef PL_HAVE_MPI
    for (int i = 0; i < s->nreq; i++)
        if (s->req[i] != MPI_REQUEST_NULL) {
            MPI_Cancel(&s->req[i]);
            MPI_Request_free(&s->req[i]);
        }
#endif
    rs_free(s);
}

