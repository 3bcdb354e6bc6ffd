/* emu_runtime.h: the CUDA runtime API subset the emulator serves on the CPU.
 *
 * C-compatible (a C test can allocate, copy and synchronize through it, as it
 * would through the real cuda_runtime_api.h), so names, enum values and
 * signatures are CUDA's own (CUDA 13 by default; CUDA 12's
 * cudaMemPrefetchAsync is also there as an overload for C++ callers).
 * Device memory is host memory; "device" pointers can be read by the host,
 * which real CUDA does not allow, so tests must still copy results back.
 *
 * Emulator-only extras (prefix pl_emu_) set the fiber schedule seed, report
 * the last launch failure's text and count launches. */
#ifndef PL_EMU_RUNTIME_H
#define PL_EMU_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#define PL_CUDA_EMU 1
#ifndef CUDART_VERSION
#define CUDART_VERSION 13000 /* the API generation emulated (cudaMemPrefetchAsync with cudaMemLocation) */
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorUnknown = 999
} cudaError_t;

typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
} cudaMemcpyKind;

typedef enum cudaMemLocationType {
    cudaMemLocationTypeInvalid = 0,
    cudaMemLocationTypeDevice = 1,
    cudaMemLocationTypeHost = 2
} cudaMemLocationType;

typedef struct cudaMemLocation {
    cudaMemLocationType type;
    int id;
} cudaMemLocation;

typedef enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8
} cudaFuncAttribute;

#define cudaMemAttachGlobal 0x01
#define cudaMemAttachHost 0x02
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
#define cudaCpuDeviceId (-1)

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;

/* The fields of cudaDeviceProp a backend reads (names as CUDA's; no clockRate,
 * which CUDA 13 removed). */
typedef struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    size_t sharedMemPerMultiprocessor;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int maxThreadsPerMultiProcessor;
    int multiProcessorCount;
    int major, minor;
    int l2CacheSize;
    int memoryBusWidth;
    int managedMemory;
    int concurrentManagedAccess;
    int unifiedAddressing;
} cudaDeviceProp;

const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDevice(int *dev);
/* Each process has its own emulated device: its bus id names the process
 * ("emu-PID"), unless PL_EMU_PCI_BUS_ID gives one (two processes given the
 * same id emulate two ranks on one device). */
cudaError_t cudaDeviceGetPCIBusId(char *pciBusId, int len, int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int dev);
cudaError_t cudaDeviceGetAttribute(int *value, int attr, int dev);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);

cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaMallocManaged(void **p, size_t bytes, unsigned flags);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemset(void *p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s);
/* CUDA 13's form; the CUDA 12 form (int dstDevice) is a C++ overload in emu.h. */
cudaError_t cudaMemPrefetchAsync(const void *p, size_t bytes, cudaMemLocation loc, unsigned flags, cudaStream_t s);

cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value);

/* ---- emulator-only ---- */
/* Seed of the fiber schedule (default: $PL_EMU_SEED, else 1). */
void pl_emu_set_seed(uint64_t seed);
uint64_t pl_emu_seed(void);
/* Text of the last failed launch ("" when none failed since the last call of
 * pl_emu_clear_message). */
const char *pl_emu_last_message(void);
void pl_emu_clear_message(void);
/* Failure messages are also printed on stderr unless quiet is set (tests that
 * provoke failures on purpose). */
void pl_emu_set_quiet(int quiet);
/* Capacity cudaMemGetInfo reports and cudaMalloc enforces (default
 * $PL_EMU_MEM, e.g. "24GiB", else 24 GiB); bytes in use. */
void pl_emu_set_capacity(size_t bytes);
size_t pl_emu_mem_used(void);
/* Launches and fiber context switches so far. */
uint64_t pl_emu_launches(void);
uint64_t pl_emu_switches(void);

#ifdef __cplusplus
}
#endif

#endif
