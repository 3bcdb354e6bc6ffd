/* cuda_backend.h: the CUDA backend (cuda_backend.cu), for the builds that
 * link it (make emu: build/emu/potluck on the CPU emulator; make gpu:
 * build/gpu/potluck). Other builds reach it through pl_backend_named
 * (trainer/backend.h), which says it is absent. */
#ifndef PL_CUDA_BACKEND_H
#define PL_CUDA_BACKEND_H

#include "../backend.h"

/* The backend on its device (device 0; with several ranks, its local rank
 * modulo the device count), opened once; NULL with err set when there is no
 * device or its cuBLASLt handle and workspace cannot be had. */
const pl_backend *pl_backend_cuda_open(pl_err *err);

/* --gpu-mem: the bytes this backend allows itself from now on (0: whatever
 * the device has); an allocation past it fails as out of memory. */
void pl_cuda_backend_set_cap(size_t bytes);

/* The device's name ("" before open). */
const char *pl_cuda_backend_device(void);
/* The device's memory in bytes (cudaMemGetInfo's total; 0 before open). */
size_t pl_cuda_backend_mem_total(void);

/* The backend's ops, for counting launches: each call of an op counts one
 * (whatever kernels it enqueues), so a test can show a training step ran
 * every op on the device and none fell back to the host. */
enum {
    PL_CUDA_OP_EMBEDDING_Q = 0, PL_CUDA_OP_RMSNORM, PL_CUDA_OP_ROPE, PL_CUDA_OP_ATTENTION, PL_CUDA_OP_SWIGLU,
    PL_CUDA_OP_LINEAR, PL_CUDA_OP_LINEAR_Q, PL_CUDA_OP_LORA_FWD, PL_CUDA_OP_ADD, PL_CUDA_OP_DROPOUT,
    PL_CUDA_OP_LM_HEAD_CE, PL_CUDA_OP_LM_HEAD_CE_BWD, PL_CUDA_OP_RMSNORM_BWD, PL_CUDA_OP_ROPE_BWD,
    PL_CUDA_OP_ATTENTION_BWD, PL_CUDA_OP_SWIGLU_BWD, PL_CUDA_OP_LINEAR_BWD, PL_CUDA_OP_LINEAR_Q_BWD_X,
    PL_CUDA_OP_LORA_BWD, PL_CUDA_OP_SUMSQ, PL_CUDA_OP_SCALE, PL_CUDA_OP_ADAMW, PL_CUDA_OP_OFFLOAD,
    PL_CUDA_OP_FETCH, PL_CUDA_OP_INIT_RANDOM,
    PL_CUDA_OP_QUANTIZE_NF4, PL_CUDA_OP_N
};
unsigned long pl_cuda_backend_launches(int op);
const char *pl_cuda_backend_op_name(int op);
/* cuBLASLt heuristic queries so far: one per GEMM shape, the algorithm then
 * pinned for the process (trainer/cuda/gemm.cu). */
unsigned long pl_cuda_backend_heuristic_calls(void);

#endif
