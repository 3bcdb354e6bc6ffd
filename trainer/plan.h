/* plan.h: the memory plan of a training run or a generation, computed from
 * the model's shape before anything is allocated (docs/planner.md).
 *
 * The plan is not a second formula beside the allocator: pl_train_init_opts
 * and pl_train_attach_lora take the size of every buffer they allocate from
 * pl_train_plan (the item's `each`), pl_kvcache_init takes the cache's size
 * from pl_kvcache_bytes, and AdamW's state and LoRA's tensors are the sums
 * the plan states. `potluck plan` prints the same numbers; tests/test_plan.c
 * trains on several small shapes and checks that the peak of every tagged
 * category (pl_mem_peak) equals the plan. */
#ifndef PL_PLAN_H
#define PL_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include "../core/dtype.h"
#include "../core/error.h"
#include "../core/mem.h"
#include "model.h"

/* What is trained and how the base is held. */
typedef struct pl_train_shape {
    int seq_len;          /* tokens per row */
    int micro_batch;      /* rows packed into one forward (T = seq_len * micro_batch); potluck train runs 1 */
    int frozen_base;      /* QLoRA: the base is frozen (no parameters); 0: every weight fp32 and trained */
    int lora_r;           /* adapter rank (frozen_base only); 0: no adapter attached */
    unsigned lora_targets;/* bit (1u << pl_lin) per adapted module (lora/lora.h) */
    int checkpoint;       /* activation checkpointing */
    int nf4_blocksize;    /* > 0: the layer weights are quantized to NF4 with this blocksize; 0: as stored */
    int nf4_double_quant;
    pl_dtype layer_dtype; /* layer weights as stored (F32, F16, BF16, Q4_1, ...) */
    pl_dtype embd_dtype;  /* token embedding as stored */
    pl_dtype head_dtype;  /* LM head as stored (ignored when tied) */
    int stored_mapped;    /* stored weights are read from a file map (GGUF, safetensors), not copied */
    int threads;          /* OpenMP threads (attention score rows); <= 0: 1 */
    int cuda;             /* the CUDA backend (trainer/cuda/cuda_backend.cu): bf16 activations, the LM head
                           * fused with the loss, the base's device copies and the backend's scratch, all
                           * tagged device memory; 0: the CPU backend */
    int offload;          /* CUDA, with checkpoint: the saved layer inputs live in pinned host memory, copied
                           * out on a second stream during the forward and back during the backward; the
                           * device keeps two of them (--offload-checkpoints) */
    int mlp_chunk;        /* with checkpoint: the MLP runs over chunks of this many tokens (a multiple of 8), its
                           * (T, hidden) buffers and the LoRA scratch of its modules then (chunk, ...); 0: all
                           * T at once (--mlp-chunk) */
    int paged_optim;      /* CUDA: AdamW moments of tensors of >= paged_min elements paged to the host */
    size_t paged_min;     /* 0: PL_PAGED_MIN */
} pl_train_shape;
/* bitsandbytes pages optimizer states of at least this many elements. */
#define PL_PAGED_MIN 100000

/* Every buffer the plan knows, in the order the report prints them. */
typedef enum pl_plan_buf {
    /* PL_MEM_ACTIVATIONS */
    PL_PB_TOKENS = 0, PL_PB_X_IN, PL_PB_XN1, PL_PB_Q, PL_PB_K, PL_PB_V, PL_PB_ATT, PL_PB_X_MID, PL_PB_XN2,
    PL_PB_GATE, PL_PB_UP, PL_PB_ACT, PL_PB_X_FINAL, PL_PB_XNF, PL_PB_LOGITS, PL_PB_LORA_XA, PL_PB_X_HOST,
    /* PL_MEM_GRADIENTS */
    PL_PB_D_RES, PL_PB_D_TMP, PL_PB_D_XN, PL_PB_D_Q, PL_PB_D_K, PL_PB_D_V, PL_PB_D_ATT, PL_PB_D_ACT, PL_PB_D_UP,
    PL_PB_LORA_DXA, PL_PB_PARAM_GRAD, PL_PB_LORA_GRAD,
    /* PL_MEM_WORKSPACE */
    PL_PB_WS_LIN, PL_PB_WS_Q, PL_PB_LORA_U, PL_PB_LORA_DU, PL_PB_LORA_Y,
    /* PL_MEM_WEIGHTS (tagged) */
    PL_PB_LORA_W,
    /* the CUDA backend's device memory (tagged): the frozen base's copies (weights), its scratch (workspace) */
    PL_PB_DEV_BASE, PL_PB_DEV_EMBD, PL_PB_DEV_HEAD, PL_PB_DEV_NORMS, PL_PB_DEV_GEMM_WS, PL_PB_DEV_SCRATCH,
    /* PL_MEM_OPTIMIZER */
    PL_PB_ADAMW,
    /* not allocated through the backend: model-owned, file-mapped, or per-call scratch */
    PL_PB_BASE, PL_PB_BASE_SOURCE, PL_PB_EMBD, PL_PB_HEAD, PL_PB_NORMS, PL_PB_ATTN_SCRATCH,
    PL_PB_N
} pl_plan_buf;

typedef struct pl_plan_item {
    const char *name;     /* short name: "q", "lora_xa", "base_layers" */
    const char *what;     /* one line for the report */
    pl_mem_cat cat;
    int tracked;          /* allocated with be->alloc(cat): counted by pl_mem_current / pl_mem_peak */
    int mapped;           /* read in place from the model file (page cache), not allocated */
    size_t each;          /* bytes of one buffer (0 for sums of unequal buffers) */
    size_t count;         /* buffers (per layer, per module, ...) */
    size_t bytes;         /* all of them */
} pl_plan_item;

typedef struct pl_mem_plan {
    pl_train_shape shape;
    int T;                       /* tokens per forward */
    pl_plan_item item[PL_PB_N];
    size_t cat[PL_MEM_NCAT];     /* tagged bytes per category, all live after the first optimizer step (the peak) */
    size_t tracked;              /* sum of cat[] */
    size_t owned;                /* model-owned memory (NF4 base, fp32 copies, norms) and per-call scratch */
    size_t mapped;               /* weights read from the file map */
    size_t total;                /* tracked + owned + mapped */
    size_t paged;                /* of tracked: paged AdamW state, host memory between updates */
    size_t offloaded;            /* of tracked: offloaded layer inputs (x_host), pinned host memory */
    size_t device;               /* CUDA: what the GPU holds at the peak: tracked - paged - offloaded + the
                                  * largest paged tensor's m and v, on the device during its update; CPU:
                                  * tracked */
    size_t runtime;              /* CUDA: the runtime's own device memory (context, kernel images, cuBLAS and
                                  * cuBLASLt handles), which no allocation of potluck's makes: a stated
                                  * reserve, pl_plan_cuda_runtime(); CPU: 0 */
    size_t need;                 /* what must fit: CUDA device + runtime; CPU total */
    int64_t n_lora_modules, lora_params, trained_params;
    int max_in, max_out;         /* widest adapted input / output (LoRA scratch) */
} pl_mem_plan;

/* The CUDA runtime's own device memory the plans reserve beside potluck's
 * allocations: the context, the kernel images it loads and cuBLAS/cuBLASLt's
 * handles and their workspaces. Not measured here (no GPU): a stated
 * reserve of PL_PLAN_CUDA_RUNTIME_MIB, at the top of what others report for
 * a primary context (PyTorch maintainers: about 300 MB since CUDA 11.7 loads
 * kernels lazily, pytorch/pytorch#107667; llama.cpp: 120 to 550 MB depending
 * on the GPU, ggml-org/llama.cpp#20595), cuBLAS's handle included;
 * POTLUCK_CUDA_RUNTIME_MIB (a number of MiB) replaces it, for a device whose
 * context was measured (nvidia-smi's used memory of a process that has
 * opened the backend and allocated nothing). */
#define PL_PLAN_CUDA_RUNTIME_MIB 512
size_t pl_plan_cuda_runtime(void);

/* Parameters of a model of config c: embedding (and an untied head), each
 * layer's attention, MLP and norms, the final norm. */
int64_t pl_plan_params(const pl_model_config *c);

/* The plan of training config c with shape s. Fails (PL_EINVAL / PL_ERANGE)
 * on shapes out of range or sizes that overflow. */
int pl_train_plan(const pl_model_config *c, const pl_train_shape *s, pl_mem_plan *out, pl_err *err);

/* One adapted module's saved xa (T, r) with activations of act_bytes (4 on
 * the CPU, 2 on CUDA): the trainer allocates exactly this. */
size_t pl_plan_lora_xa_bytes(int T, int r, int act_bytes);

/* Bytes of one NF4 tensor of n elements as a model holds it (the pl_nf4
 * header and its arrays in one block, trainer/model_nf4.c); 0 when out of
 * range. */
size_t pl_plan_nf4_tensor_bytes(int64_t n, int blocksize, int double_quant);

/* Generation: weights plus the KV cache for n_seq sequences of n_ctx
 * tokens and the decode buffers of the largest decode call, the prefill of
 * T tokens (pl_generate prefills every prompt in one call; a decode step
 * after it runs one token per sequence). With s->cuda, the CUDA backend's
 * generation: the base's device copies (the training plan's PL_PB_DEV_*
 * items), the KV cache and the decode buffers in bf16, the (n_seq, V) bf16
 * logits the head writes on the device, cuBLASLt's workspace and the
 * scratch the prefill's GEMMs use (cuda_sizes.h); every byte of it tagged
 * device memory. */
typedef struct pl_gen_plan {
    int n_seq, n_ctx, T;
    int cuda;             /* planned for the CUDA backend */
    size_t kv;            /* PL_MEM_KVCACHE: pl_kvcache_bytes */
    size_t activations;   /* PL_MEM_ACTIVATIONS of pl_model_decode for T tokens (on CUDA + its device logits) */
    size_t workspace;     /* PL_MEM_WORKSPACE of the same (on CUDA + cuBLASLt's workspace and the scratch) */
    size_t dev_weights;   /* CUDA: PL_MEM_WEIGHTS, the base's device copies (dev_base + dev_embedding +
                           * dev_lm_head + dev_norms of pl_train_plan); 0 on the CPU */
    size_t dev_gemm_ws;   /* CUDA: of workspace, cuBLASLt's (allocated when the backend opens) */
    size_t dev_scratch;   /* CUDA: of workspace, the backend's scratch (an NF4 weight dequantized to bf16 for
                           * a prefill's GEMM) */
    size_t logits;        /* (n_seq, V) fp32 held by the caller (host memory) */
    size_t weights_owned, weights_mapped; /* the model's own weights (host memory) */
    size_t cat[PL_MEM_NCAT]; /* tagged bytes per category at the peak (what pl_mem_peak shows) */
    size_t tracked;       /* sum of cat[] */
    size_t device;        /* CUDA: what potluck allocates on the GPU at the peak (= tracked); CPU: 0 */
    size_t runtime;       /* CUDA: the runtime's reserve, as in pl_mem_plan; CPU: 0 */
    size_t need;          /* what must fit: CUDA device + runtime; CPU total */
    size_t total;         /* tracked + logits + the model's own weights */
} pl_gen_plan;
/* K and V for n_seq sequences of n_ctx tokens of act_bytes each (the
 * backend's activation element: 4 on the CPU, 2 on CUDA; pl_act_bytes):
 * 2 * L * n_seq * n_ctx * kvd * act_bytes, what pl_kvcache_init allocates;
 * 0 when it overflows or act_bytes is not 2 or 4. */
size_t pl_kvcache_bytes(const pl_model_config *c, int n_seq, int n_ctx, int act_bytes);
/* s gives the weights' dtypes and the backend (s->cuda; NF4 when
 * s->nf4_blocksize > 0; its training fields are ignored). prefill: tokens
 * of the largest decode call (<= 0: n_seq * n_ctx, every sequence's whole
 * context at once, the worst case). */
int pl_gen_plan_make(const pl_model_config *c, const pl_train_shape *s, int n_seq, int n_ctx, int prefill,
                     pl_gen_plan *out, pl_err *err);

/* A model's header only (config.json, a GGUF's metadata and tensor table,
 * a llama2.c header; no weight is read): its config and stored dtypes. path
 * is a Hugging Face directory, its config.json, a .gguf or a llama2.c .bin. */
typedef struct pl_model_header {
    pl_model_config cfg;
    pl_model_source source;
    pl_dtype layer_dtype, embd_dtype, head_dtype;
} pl_model_header;
int pl_model_read_header(const char *path, pl_model_header *h, pl_err *err);

/* Published shapes (config.json values of the released checkpoints). */
/* ---- step time (plan_time.c) --------------------------------------------------------------
 * A training step's time on a GPU, from the CUDA plan (shape.cuda): its
 * FLOPs (base GEMMs forward(s) and dx, LoRA, the fused head's three passes,
 * causal attention with its lse recompute; checkpointing adds a forward) at
 * the device's bf16 tensor-core peak x PL_EFF_GEMM, plus its device memory
 * traffic (NF4 read and its bf16 scratch written and read per pass, the head's
 * rows, activations written once and read twice) at the peak bandwidth x
 * PL_EFF_MEM, without overlap. When bench/gpu.sh measured the device
 * (measure_dir/<name>.json: "gemm_tflops", "gbs"), those achieved figures
 * replace peak x efficiency and `measured` says so. An estimate for choosing a
 * card, not a benchmark: the factors are assumptions, not fits to runs. */
#define PL_EFF_GEMM 0.5
#define PL_EFF_MEM 0.7
typedef struct pl_gpu_spec {
    const char *name;   /* "RTX 4090" */
    double mem_gib;     /* device memory */
    double tflops;      /* bf16 tensor cores, dense, fp32 accumulate (spec sheet) */
    double gbs;         /* memory bandwidth, GB/s (spec sheet) */
} pl_gpu_spec;
const pl_gpu_spec *pl_gpu_specs(int *n);
typedef struct pl_step_est {
    double flops, bytes;       /* one forward + backward of T tokens */
    double tflops_used, gbs_used;
    int measured;              /* from bench/gpu.sh's file, not peak x efficiency */
    double seconds, tokens_per_s;
    int fits;                  /* the plan's device total fits in mem_gib */
} pl_step_est;
int pl_plan_step_time(const pl_model_config *c, const pl_mem_plan *p, const pl_gpu_spec *g, const char *measure_dir,
                      pl_step_est *out, pl_err *err);

typedef struct pl_plan_preset {
    const char *name;     /* "llama2-7b" */
    const char *label;    /* "Llama-2 7B" */
    pl_model_config cfg;
} pl_plan_preset;
const pl_plan_preset *pl_plan_preset_find(const char *name);
const pl_plan_preset *pl_plan_presets(int *n);
/* buf (n bytes) = the presets' names, ", "-separated (for messages). */
void pl_plan_preset_names(char *buf, size_t n);

#endif
