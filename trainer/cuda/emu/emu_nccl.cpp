/* emu_nccl.cpp: the NCCL subset of emu_nccl.h over MPI, for the emulated
 * build (see there). */
#include "emu_nccl.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <atomic>
#include <string>
#include <vector>
#include "emu_int.h"

#ifdef PL_HAVE_MPI
#include <mpi.h>
#endif

struct ncclComm {
    int rank = 0, nranks = 1;
    bool aborted = false;
#ifdef PL_HAVE_MPI
    MPI_Comm mc = MPI_COMM_NULL;
#endif
};

namespace {

const char ID_MAGIC[] = "potluck-emulated-nccl";

enum op_kind { OP_SEND, OP_RECV, OP_ALLGATHER, OP_BCAST };
struct op {
    op_kind kind;
    const void *src;
    void *dst;
    size_t bytes; /* send/recv/bcast: the bytes moved; all-gather: each rank's part */
    int peer;     /* send/recv: the peer; bcast: the root */
    ncclComm_t comm;
};

thread_local int g_depth = 0;
thread_local std::vector<op> g_group;
thread_local std::string g_last;
std::atomic<unsigned long> g_ops{0};

ncclResult_t fail(ncclResult_t r, const char *fmt, const char *what) {
    char b[256];
    snprintf(b, sizeof b, fmt, what);
    g_last = b;
    return r;
}

size_t type_size(ncclDataType_t t) {
    switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    }
    return 0;
}

/* The checks NCCL makes when an operation is issued. */
ncclResult_t check(ncclComm_t comm, ncclDataType_t t, int peer, cudaStream_t s, const char *what) {
    if (!comm) return fail(ncclInvalidArgument, "%s: no communicator", what);
    if (comm->aborted) return fail(ncclInvalidUsage, "%s: the communicator was aborted", what);
    if (!type_size(t)) return fail(ncclInvalidArgument, "%s: unknown data type", what);
    if (peer < 0 || peer >= comm->nranks) return fail(ncclInvalidArgument, "%s: peer out of range", what);
    if (!pl_emu::stream_valid(s)) return fail(ncclInvalidArgument, "%s: invalid stream", what);
    return ncclSuccess;
}

/* A communicator of one rank: only an all-gather or broadcast of itself. */
ncclResult_t run_local(std::vector<op> &ops) {
    for (const op &o : ops) {
        if (o.kind == OP_SEND || o.kind == OP_RECV)
            return fail(ncclInvalidUsage, "%s: a send or receive with one rank", "group");
        if (o.src != o.dst) memmove(o.dst, o.src, o.bytes);
    }
    return ncclSuccess;
}

#ifdef PL_HAVE_MPI
/* MPI counts are ints: bytes go in pieces of at most 1 GiB, matched in
 * order (MPI does not let messages of one sender, tag and communicator
 * overtake each other). */
const size_t CHUNK = (size_t)1 << 30;

ncclResult_t run(std::vector<op> &ops) {
    if (!ops.empty() && ops[0].comm->nranks == 1) return run_local(ops);
    std::vector<MPI_Request> req;
    for (int pass = 0; pass < 2; pass++) /* receives first, then sends */
        for (const op &o : ops) {
            if (o.kind != (pass == 0 ? OP_RECV : OP_SEND)) continue;
            if (o.comm->rank == o.peer) /* NCCL allows it; nccl_dist.cu never does it */
                return fail(ncclInvalidUsage, "%s: a send or receive to this rank itself", "group");
            for (size_t at = 0; at < o.bytes; at += CHUNK) {
                int c = (int)(o.bytes - at < CHUNK ? o.bytes - at : CHUNK);
                req.emplace_back();
                int e = o.kind == OP_RECV
                            ? MPI_Irecv((char *)o.dst + at, c, MPI_BYTE, o.peer, 0, o.comm->mc, &req.back())
                            : MPI_Isend((const char *)o.src + at, c, MPI_BYTE, o.peer, 0, o.comm->mc, &req.back());
                if (e != MPI_SUCCESS) return fail(ncclSystemError, "%s: MPI could not post a message", "group");
            }
        }
    for (const op &o : ops) { /* the collectives, in the order issued */
        int e = MPI_SUCCESS;
        if (o.kind == OP_ALLGATHER) {
            if (o.bytes > (size_t)INT_MAX) return fail(ncclInvalidArgument, "%s: over 2 GiB per rank", "ncclAllGather");
            char *part = (char *)o.dst + (size_t)o.comm->rank * o.bytes;
            if (o.src != part) memmove(part, o.src, o.bytes);
            e = MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, o.dst, (int)o.bytes, MPI_BYTE, o.comm->mc);
        } else if (o.kind == OP_BCAST) {
            if (o.comm->rank == o.peer && o.src != o.dst) memmove(o.dst, o.src, o.bytes);
            for (size_t at = 0; at < o.bytes && e == MPI_SUCCESS; at += CHUNK)
                e = MPI_Bcast((char *)o.dst + at, (int)(o.bytes - at < CHUNK ? o.bytes - at : CHUNK), MPI_BYTE,
                              o.peer, o.comm->mc);
        }
        if (e != MPI_SUCCESS) return fail(ncclSystemError, "%s: MPI collective failed", "group");
    }
    if (!req.empty() && MPI_Waitall((int)req.size(), req.data(), MPI_STATUSES_IGNORE) != MPI_SUCCESS)
        return fail(ncclSystemError, "%s: MPI could not complete a message", "group");
    return ncclSuccess;
}
#else
ncclResult_t run(std::vector<op> &ops) { return run_local(ops); }
#endif

ncclResult_t issue(const op &o) {
    g_ops++;
    g_group.push_back(o);
    if (g_depth > 0) return ncclSuccess;
    std::vector<op> ops;
    ops.swap(g_group);
    return run(ops);
}

} // namespace

extern "C" {

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    if (!id) return fail(ncclInvalidArgument, "%s: NULL id", "ncclGetUniqueId");
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "%s %ld", ID_MAGIC, (long)getpid());
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    if (!comm) return fail(ncclInvalidArgument, "%s: NULL communicator", "ncclCommInitRank");
    *comm = nullptr;
    if (strncmp(id.internal, ID_MAGIC, sizeof ID_MAGIC - 1))
        return fail(ncclInvalidArgument, "%s: not an id from ncclGetUniqueId", "ncclCommInitRank");
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return fail(ncclInvalidArgument, "%s: rank or nranks out of range", "ncclCommInitRank");
    ncclComm *c = new ncclComm;
    c->rank = rank;
    c->nranks = nranks;
#ifdef PL_HAVE_MPI
    int up = 0, size = 1, me = 0;
    MPI_Initialized(&up);
    if (!up && nranks == 1) {
        *comm = c;
        return ncclSuccess;
    }
    if (!up) {
        delete c;
        return fail(ncclInvalidUsage, "%s: MPI is not initialized", "ncclCommInitRank");
    }
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (size != nranks || me != rank) {
        delete c;
        return fail(ncclInvalidUsage, "%s: rank and nranks are not MPI_COMM_WORLD's", "ncclCommInitRank");
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &c->mc);
    /* every rank must have been given the same id */
    std::vector<ncclUniqueId> all((size_t)nranks);
    MPI_Allgather(&id, (int)sizeof id, MPI_BYTE, all.data(), (int)sizeof id, MPI_BYTE, c->mc);
    for (const ncclUniqueId &o : all)
        if (memcmp(&o, &id, sizeof id)) {
            MPI_Comm_free(&c->mc);
            delete c;
            return fail(ncclInvalidUsage, "%s: the ranks were given different ids", "ncclCommInitRank");
        }
#else
    if (nranks != 1) {
        delete c;
        return fail(ncclInvalidUsage, "%s: this build has no MPI, so one rank only", "ncclCommInitRank");
    }
#endif
    *comm = c;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    if (g_depth) return fail(ncclInvalidUsage, "%s: inside a group", "ncclCommDestroy");
#ifdef PL_HAVE_MPI
    if (comm->mc != MPI_COMM_NULL) MPI_Comm_free(&comm->mc);
#endif
    delete comm;
    return ncclSuccess;
}

/* A failed run's peers may never answer: nothing collective here (the MPI
 * communicator is left to MPI_Finalize or the job's end). */
ncclResult_t ncclCommAbort(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    g_group.clear();
    g_depth = 0;
    delete comm;
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    }
    return "unknown result code";
}

const char *ncclGetLastError(ncclComm_t comm) { return g_last.c_str(); }

ncclResult_t ncclGroupStart(void) {
    g_depth++;
    return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void) {
    if (g_depth == 0) return fail(ncclInvalidUsage, "%s: no group started", "ncclGroupEnd");
    if (--g_depth > 0) return ncclSuccess;
    std::vector<op> ops;
    ops.swap(g_group);
    return run(ops);
}

ncclResult_t ncclSend(const void *sendbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
    ncclResult_t r = check(comm, datatype, peer, stream, "ncclSend");
    if (r != ncclSuccess) return r;
    return issue(op{OP_SEND, sendbuff, nullptr, count * type_size(datatype), peer, comm});
}

ncclResult_t ncclRecv(void *recvbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
    ncclResult_t r = check(comm, datatype, peer, stream, "ncclRecv");
    if (r != ncclSuccess) return r;
    return issue(op{OP_RECV, nullptr, recvbuff, count * type_size(datatype), peer, comm});
}

ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t stream) {
    ncclResult_t r = check(comm, datatype, 0, stream, "ncclAllGather");
    if (r != ncclSuccess) return r;
    return issue(op{OP_ALLGATHER, sendbuff, recvbuff, sendcount * type_size(datatype), 0, comm});
}

ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream) {
    ncclResult_t r = check(comm, datatype, root, stream, "ncclBroadcast");
    if (r != ncclSuccess) return r;
    return issue(op{OP_BCAST, sendbuff, recvbuff, count * type_size(datatype), root, comm});
}

unsigned long pl_emu_nccl_ops(void) { return g_ops.load(); }

} /* extern "C" */
