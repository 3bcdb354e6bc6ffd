/* emu_nccl.h: the NCCL API subset trainer/cuda/nccl_dist.cu calls, for the
 * emulated build (emu_nccl.cpp), so that its NCCL path runs in `make test`:
 * several ranks under mpirun, each with its own emulated device.
 *
 * Names, enum values and signatures are NCCL's (nccl.h, NCCL 2.x). The
 * communicator is a duplicate of MPI_COMM_WORLD, and the operations move the
 * same bytes NCCL would, over MPI:
 *   - ncclSend/ncclRecv: matched per peer in the order they were issued, as
 *     NCCL matches them; inside ncclGroupStart/End every receive and send of
 *     the group is posted before any is waited for (NCCL's group semantics:
 *     a group may hold a send and a receive with the same peer), outside a
 *     group each is a group of one;
 *   - ncclAllGather (equal counts, in place or not) and ncclBroadcast: MPI's
 *     all-gather and broadcast, collectives in the order issued.
 * The emulator runs a launch to its end before returning, so an operation
 * runs when it is issued, on the calling thread: the stream argument is
 * checked and otherwise ordered trivially, as the emulator's streams are.
 *
 * A build without MPI has one rank: ncclCommInitRank takes nranks 1 only. */
#ifndef PL_EMU_NCCL_H
#define PL_EMU_NCCL_H

#include <stddef.h>
#include "emu_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    ncclInProgress = 7
} ncclResult_t;

typedef enum {
    ncclInt8 = 0, ncclChar = 0,
    ncclUint8 = 1,
    ncclInt32 = 2, ncclInt = 2,
    ncclUint32 = 3,
    ncclInt64 = 4,
    ncclUint64 = 5,
    ncclFloat16 = 6, ncclHalf = 6,
    ncclFloat32 = 7, ncclFloat = 7,
    ncclFloat64 = 8, ncclDouble = 8,
    ncclBfloat16 = 9
} ncclDataType_t;

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct {
    char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;

typedef struct ncclComm *ncclComm_t;

ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);
const char *ncclGetErrorString(ncclResult_t result);
const char *ncclGetLastError(ncclComm_t comm);
ncclResult_t ncclGroupStart(void);
ncclResult_t ncclGroupEnd(void);
ncclResult_t ncclSend(const void *sendbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream);
ncclResult_t ncclRecv(void *recvbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream);
ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream);

/* Emulator-only: how many operations (send, receive, all-gather,
 * broadcast) this process issued, for tests that check which path ran. */
unsigned long pl_emu_nccl_ops(void);

#ifdef __cplusplus
}
#endif

#endif
