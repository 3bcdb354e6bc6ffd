/* emu_runtime.cpp: the CUDA runtime API subset of the emulator: device memory
 * (host memory, tracked, with a configurable capacity), copies, streams,
 * events, device properties and the error state. Everything is synchronous:
 * an async call has finished when it returns. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include "emu_int.h"

namespace {

std::mutex g_mu; /* guards everything below */
std::map<uintptr_t, size_t> g_dev;  /* device and managed allocations: start -> bytes */
std::set<void *> g_host;            /* cudaMallocHost */
size_t g_used = 0, g_capacity = 0;
bool g_capacity_set = false;
std::set<cudaStream_t> g_streams;
std::set<cudaEvent_t> g_events;
std::map<const void *, size_t> g_dyn_limit;
cudaError_t g_last = cudaSuccess, g_pending = cudaSuccess;
std::string g_message;
bool g_quiet = false;

struct ev_t { double ms; bool recorded; };

size_t parse_bytes(const char *s, size_t dflt) {
    if (!s || !*s) return dflt;
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0) return dflt;
    std::string u(end);
    double m = 1;
    if (u == "K" || u == "KiB" || u == "k") m = 1024.0;
    else if (u == "M" || u == "MiB") m = 1024.0 * 1024;
    else if (u == "G" || u == "GiB") m = 1024.0 * 1024 * 1024;
    else if (!u.empty()) return dflt;
    return (size_t)(v * m);
}

size_t capacity_locked() {
    if (!g_capacity_set) {
        g_capacity = parse_bytes(getenv("PL_EMU_MEM"), (size_t)24 << 30);
        g_capacity_set = true;
    }
    return g_capacity;
}

cudaError_t ret(cudaError_t e) { /* synchronous API errors are also "last" errors, as CUDA does */
    if (e != cudaSuccess) g_last = e;
    return e;
}

/* The allocation holding [p, p + n), or end(). */
std::map<uintptr_t, size_t>::iterator find_dev(const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    auto it = g_dev.upper_bound(a);
    if (it == g_dev.begin()) return g_dev.end();
    --it;
    if (a >= it->first && n <= it->second && a - it->first <= it->second - n) return it;
    return g_dev.end();
}

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

cudaError_t dev_alloc(void **p, size_t bytes) {
    if (!p) return ret(cudaErrorInvalidValue);
    *p = nullptr;
    std::lock_guard<std::mutex> lk(g_mu);
    size_t cap = capacity_locked();
    if (bytes > cap || g_used > cap - bytes) return ret(cudaErrorMemoryAllocation);
    void *q = nullptr;
    if (posix_memalign(&q, 256, bytes ? bytes : 1)) return ret(cudaErrorMemoryAllocation);
    g_dev[(uintptr_t)q] = bytes;
    g_used += bytes;
    *p = q;
    return cudaSuccess;
}

bool is_dev_kind_ok(const void *dst, const void *src, size_t n, cudaMemcpyKind k) {
    if (n == 0) return true;
    switch (k) {
    case cudaMemcpyHostToDevice: return find_dev(dst, n) != g_dev.end();
    case cudaMemcpyDeviceToHost: return find_dev(src, n) != g_dev.end();
    case cudaMemcpyDeviceToDevice: return find_dev(dst, n) != g_dev.end() && find_dev(src, n) != g_dev.end();
    case cudaMemcpyHostToHost:
    case cudaMemcpyDefault: return true;
    }
    return false;
}

} /* namespace */

namespace pl_emu {

void set_error(cudaError_t e, const char *msg) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_last = e;
    g_pending = e;
    g_message = msg;
    if (!g_quiet) fprintf(stderr, "pl-emu: %s\n", msg);
}

size_t max_dynamic_shared(const void *func) {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_dyn_limit.find(func);
    return it == g_dyn_limit.end() ? (size_t)48 << 10 : it->second;
}

int stream_valid(cudaStream_t s) {
    std::lock_guard<std::mutex> lk(g_mu);
    return s == nullptr || g_streams.count(s) != 0;
}

unsigned short f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7fffu;                        /* NaN: CUDA's canonical one */
    if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u); /* inf, or rounds to it */
    if (ax < 0x38800000u) {                                      /* fp16 subnormal or zero */
        if (ax <= 0x33000000u) return (unsigned short)sign;      /* at most half the smallest: to zero (even) */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u, sh = 126 - e;
        uint32_t v = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (v & 1))) v++;
        return (unsigned short)(sign | v);
    }
    uint32_t v = (ax >> 13) - ((127u - 15u) << 10), rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (v & 1))) v++;
    return (unsigned short)(sign | v);
}

float f16_to_f32(unsigned short h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0) {
        if (m == 0) x = sign;
        else {
            int k = -1;
            do { k++; m <<= 1; } while (!(m & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - k) << 23) | ((m & 0x3ffu) << 13);
        }
    } else if (e == 31) x = sign | 0x7f800000u | (m << 13);
    else x = sign | ((e + 127 - 15) << 23) | (m << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

} /* namespace pl_emu */

extern "C" {

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorUnknown: return "cudaErrorUnknown";
    }
    return "unrecognized error code";
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorUnknown: return "unknown error";
    }
    return "unrecognized error code";
}

cudaError_t cudaGetLastError(void) {
    std::lock_guard<std::mutex> lk(g_mu);
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) {
    std::lock_guard<std::mutex> lk(g_mu);
    return g_last;
}

cudaError_t cudaDeviceSynchronize(void) {
    std::lock_guard<std::mutex> lk(g_mu);
    cudaError_t e = g_pending;
    g_pending = cudaSuccess;
    return e;
}

cudaError_t cudaDeviceReset(void) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_last = g_pending = cudaSuccess;
    return cudaSuccess;
}

/* PL_EMU_DEVICES=0 emulates a machine without a GPU (a driver that finds none). */
cudaError_t cudaGetDeviceCount(int *count) {
    if (!count) return cudaErrorInvalidValue;
    const char *d = getenv("PL_EMU_DEVICES");
    if (d && !strcmp(d, "0")) {
        *count = 0;
        return cudaErrorNoDevice;
    }
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : cudaErrorInvalidDevice; }

cudaError_t cudaGetDevice(int *dev) {
    if (!dev) return cudaErrorInvalidValue;
    *dev = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetPCIBusId(char *id, int len, int dev) {
    if (!id || len < 1) return cudaErrorInvalidValue;
    if (dev != 0) return cudaErrorInvalidDevice;
    const char *e = getenv("PL_EMU_PCI_BUS_ID");
    if (e && *e) snprintf(id, (size_t)len, "%s", e);
    else snprintf(id, (size_t)len, "emu-%ld", (long)getpid());
    return cudaSuccess;
}

/* An sm_86-class device (RTX 3090 / A5000, the project's 24 GB target). */
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev) {
    if (!p) return cudaErrorInvalidValue;
    if (dev != 0) return cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "potluck CPU emulator (sm_86-like)");
    {
        std::lock_guard<std::mutex> lk(g_mu);
        p->totalGlobalMem = capacity_locked();
    }
    p->sharedMemPerBlock = 48 << 10;
    p->sharedMemPerBlockOptin = 99 << 10;
    p->sharedMemPerMultiprocessor = 100 << 10;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
    p->maxThreadsPerMultiProcessor = 1536;
    p->multiProcessorCount = 82;
    p->major = 8, p->minor = 6;
    p->l2CacheSize = 6 << 20;
    p->memoryBusWidth = 384;
    p->managedMemory = 1;
    p->concurrentManagedAccess = 1;
    p->unifiedAddressing = 1;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, int attr, int dev) {
    if (!value || dev != 0) return cudaErrorInvalidValue;
    switch (attr) {
    case 1: *value = 1024; return cudaSuccess;  /* cudaDevAttrMaxThreadsPerBlock */
    case 10: *value = 32; return cudaSuccess;   /* cudaDevAttrWarpSize */
    case 16: *value = 82; return cudaSuccess;   /* cudaDevAttrMultiProcessorCount */
    case 75: *value = 8; return cudaSuccess;    /* cudaDevAttrComputeCapabilityMajor */
    case 76: *value = 6; return cudaSuccess;    /* cudaDevAttrComputeCapabilityMinor */
    case 97: *value = 99 << 10; return cudaSuccess; /* cudaDevAttrMaxSharedMemoryPerBlockOptin */
    }
    return cudaErrorInvalidValue;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    std::lock_guard<std::mutex> lk(g_mu);
    size_t cap = capacity_locked();
    if (free_bytes) *free_bytes = cap > g_used ? cap - g_used : 0;
    if (total_bytes) *total_bytes = cap;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) { return dev_alloc(p, bytes); }

cudaError_t cudaMallocManaged(void **p, size_t bytes, unsigned flags) {
    if (flags != cudaMemAttachGlobal && flags != cudaMemAttachHost) {
        std::lock_guard<std::mutex> lk(g_mu);
        return ret(cudaErrorInvalidValue);
    }
    return dev_alloc(p, bytes);
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!p) return ret(cudaErrorInvalidValue);
    void *q = nullptr;
    if (posix_memalign(&q, 256, bytes ? bytes : 1)) return ret(cudaErrorMemoryAllocation);
    g_host.insert(q);
    *p = q;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_dev.find((uintptr_t)p);
    if (it == g_dev.end()) return ret(cudaErrorInvalidValue);
    g_used -= it->second;
    g_dev.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *p) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_host.erase(p)) return ret(cudaErrorInvalidValue);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    std::lock_guard<std::mutex> lk(g_mu);
    if ((unsigned)kind > cudaMemcpyDefault) return ret(cudaErrorInvalidMemcpyDirection);
    if (n && (!dst || !src)) return ret(cudaErrorInvalidValue);
    if (!is_dev_kind_ok(dst, src, n, kind)) return ret(cudaErrorInvalidValue);
    if (n) memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
    if (!pl_emu::stream_valid(s)) return cudaErrorInvalidResourceHandle;
    return cudaMemcpy(dst, src, n, kind);
}

cudaError_t cudaMemset(void *p, int value, size_t n) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (n == 0) return cudaSuccess;
    if (find_dev(p, n) == g_dev.end()) return ret(cudaErrorInvalidValue);
    memset(p, value, n);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t s) {
    if (!pl_emu::stream_valid(s)) return cudaErrorInvalidResourceHandle;
    return cudaMemset(p, value, n);
}

cudaError_t cudaMemPrefetchAsync(const void *p, size_t n, cudaMemLocation loc, unsigned flags, cudaStream_t s) {
    if (!pl_emu::stream_valid(s)) return cudaErrorInvalidResourceHandle;
    std::lock_guard<std::mutex> lk(g_mu);
    if (flags != 0 || (loc.type != cudaMemLocationTypeDevice && loc.type != cudaMemLocationTypeHost) ||
        (loc.type == cudaMemLocationTypeDevice && loc.id != 0))
        return ret(cudaErrorInvalidValue);
    if (n && find_dev(p, n) == g_dev.end()) return ret(cudaErrorInvalidValue);
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    if (!s) return cudaErrorInvalidValue;
    std::lock_guard<std::mutex> lk(g_mu);
    cudaStream_t h = reinterpret_cast<cudaStream_t>(new int(1));
    (void)flags;
    g_streams.insert(h);
    *s = h;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_streams.erase(s)) return ret(cudaErrorInvalidResourceHandle);
    delete reinterpret_cast<int *>(s);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (!pl_emu::stream_valid(s)) return cudaErrorInvalidResourceHandle;
    return cudaDeviceSynchronize();
}

cudaError_t cudaStreamQuery(cudaStream_t s) {
    return pl_emu::stream_valid(s) ? cudaSuccess : cudaErrorInvalidResourceHandle;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    std::lock_guard<std::mutex> lk(g_mu);
    if ((s && !g_streams.count(s)) || !g_events.count(e) || flags) return ret(cudaErrorInvalidResourceHandle);
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    if (!e) return cudaErrorInvalidValue;
    std::lock_guard<std::mutex> lk(g_mu);
    (void)flags;
    cudaEvent_t h = reinterpret_cast<cudaEvent_t>(new ev_t{0, false});
    g_events.insert(h);
    *e = h;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t e) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_events.erase(e)) return ret(cudaErrorInvalidResourceHandle);
    delete reinterpret_cast<ev_t *>(e);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_events.count(e) || (s && !g_streams.count(s))) return ret(cudaErrorInvalidResourceHandle);
    ev_t *ev = reinterpret_cast<ev_t *>(e);
    ev->ms = now_ms();
    ev->recorded = true;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    std::lock_guard<std::mutex> lk(g_mu);
    return g_events.count(e) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!ms) return ret(cudaErrorInvalidValue);
    if (!g_events.count(a) || !g_events.count(b)) return ret(cudaErrorInvalidResourceHandle);
    ev_t *ea = reinterpret_cast<ev_t *>(a), *eb = reinterpret_cast<ev_t *>(b);
    if (!ea->recorded || !eb->recorded) return ret(cudaErrorInvalidResourceHandle);
    *ms = (float)(eb->ms - ea->ms);
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!func || attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > (99 << 10))
        return ret(cudaErrorInvalidValue);
    g_dyn_limit[func] = (size_t)value;
    return cudaSuccess;
}

const char *pl_emu_last_message(void) {
    std::lock_guard<std::mutex> lk(g_mu);
    static thread_local std::string copy;
    copy = g_message;
    return copy.c_str();
}

void pl_emu_clear_message(void) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_message.clear();
}

void pl_emu_set_quiet(int quiet) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_quiet = quiet != 0;
}

void pl_emu_set_capacity(size_t bytes) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_capacity = bytes;
    g_capacity_set = true;
}

size_t pl_emu_mem_used(void) {
    std::lock_guard<std::mutex> lk(g_mu);
    return g_used;
}

} /* extern "C" */
