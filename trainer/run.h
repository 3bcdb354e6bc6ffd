/* run.h: a training run: the resolved configuration, the loop (micro-batches
 * from a dataset or a packed text file, gradient accumulation, clipping, LR
 * schedule, AdamW), eval loss on held-out data, metrics.jsonl, atomic
 * checkpoints and exact resume.
 *
 * Run directory:
 *   config.json          the resolved configuration (every field)
 *   metrics.jsonl        one JSON object per line, each written with one
 *                        write() and fsync'd: {"step", "loss", "lr",
 *                        "grad_norm", "tokens", "trained_tokens",
 *                        "tokens_per_s", "step_s", "mem_peak": {category:
 *                        bytes}, "rss_peak", "device_peak" (a device
 *                        backend: most device bytes held at once, paged
 *                        state out), "eval_loss" when computed};
 *                        step 0 carries the base model's eval loss
 *   checkpoints/step-NNNNNN/   (trainer/checkpoint.h) state.json (steps,
 *                        loader position, seed, config sha256),
 *                        trainable.bin (the trained floats in order),
 *                        optimizer.bin (AdamW m then v per tensor), and for
 *                        LoRA adapter/ (PEFT: adapter_config.json +
 *                        adapter_model.safetensors)
 *   trainable.bin, adapter/   the result after the last step (a checkpoint
 *                        of the last step is written too)
 * A fresh run refuses a directory that already holds checkpoints; with
 * c->resume it continues from the newest one that verifies (corrupt or
 * partial ones are reported through on_msg and skipped).
 *
 * Determinism: every random choice (LoRA init, dropout, data order) derives
 * from the seed and the step, and the loop itself draws nothing, so a run
 * resumed from a checkpoint produces the bits of an uninterrupted one at the
 * same thread count. */
#ifndef PL_RUN_H
#define PL_RUN_H

#include <signal.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "../core/error.h"
#include "../core/progress.h"

typedef struct pl_run_cfg {
    /* inputs and output */
    char *model, *tokenizer, *data, *eval_data, *text, *out;
    /* LoRA: r = 0 trains every weight of an fp32 model instead */
    int lora_r;
    double lora_alpha, lora_dropout;
    char *lora_targets;      /* "all-linear" or a list of q,k,v,o,gate,up,down */
    int rslora;
    char *base;              /* "nf4": quantize the frozen base to NF4; "as-loaded": keep the stored dtype */
    int nf4_blocksize, double_quant;
    char *init_adapter;      /* a PEFT adapter directory to start the LoRA weights from (NULL: PEFT's init) */
    char *backend;           /* "cpu" (NULL) or "cuda": where the step runs (train.backend) */
    char *gpu_mem;           /* with cuda: the device memory the run may use ("24GiB"; train.gpu_mem) or NULL */
    int paged_optim;         /* AdamW moments of tensors of >= 1e5 elements paged to the host (train.paged_optim) */
    int offload_checkpoints; /* with checkpointing on cuda: saved layer inputs in pinned host memory
                              * (train.offload_checkpoints) */
    int mlp_chunk;           /* with checkpointing: MLP rows per chunk, 0: all (train.mlp_chunk) */
    /* optimization */
    int steps, seq_len, batch, grad_accum;
    double lr, beta1, beta2, eps, weight_decay, max_grad_norm;
    char *schedule;          /* constant | linear | cosine */
    int warmup_steps;
    double warmup_ratio;     /* used when warmup_steps is 0 */
    int64_t seed;
    int checkpointing;       /* activation checkpointing */
    /* evaluation, checkpoints, logging */
    int eval_every, eval_rows;
    double eval_frac;        /* --text: held-out tail fraction */
    int save_every, keep_last;
    int threads;             /* 0: OpenMP's default */
    int zero;                /* at several ranks: 1 = ZeRO-1 (AdamW state sharded), 0 = plain all-reduce */
    int resume;
} pl_run_cfg;

/* Defaults: QLoRA's (r 16, alpha 32, dropout 0.05, all-linear, NF4 base,
 * blocksize 64 with double quantization, lr 2e-4, constant schedule, AdamW
 * betas (0.9, 0.999), eps 1e-8, weight decay 0, max grad norm 0.3), seq 256,
 * batch 1, grad accum 1, 100 steps, seed 42, save every 50, keep 3. */
void pl_run_cfg_defaults(pl_run_cfg *c);
void pl_run_cfg_free(pl_run_cfg *c);

/* Apply a JSON config object: {"model": ..., "lora": {"r": ...}, "train":
 * {"lr": ...}, ...}. Unknown keys and wrong types are errors naming the key
 * ("train.lr: expected a number, got string \"2e-4x\""). where prefixes the
 * message (usually the file name). */
int pl_run_cfg_apply_json(pl_run_cfg *c, const cJSON *j, const char *where, pl_err *err);
/* The same from a JSON file (--config PATH). */
int pl_run_cfg_apply_file(pl_run_cfg *c, const char *path, pl_err *err);
/* Apply one command-line flag: *used gets the number of argv entries taken
 * (0 when argv[0] is not a config flag). */
int pl_run_cfg_apply_flag(pl_run_cfg *c, int argc, char **argv, int *used, pl_err *err);
/* Check ranges and combinations. */
int pl_run_cfg_validate(const pl_run_cfg *c, pl_err *err);
/* The resolved configuration in the JSON layout apply_json reads. */
cJSON *pl_run_cfg_to_json(const pl_run_cfg *c);
/* The training shape of config c on a model with header h (trainer/plan.h;
 * run_plan.c); *base gets "nf4", "as-loaded" or "fp32" (full fine-tuning). */
struct pl_model_header;
struct pl_train_shape;
int pl_run_cfg_shape(const pl_run_cfg *c, const struct pl_model_header *h, int micro_batch,
                     struct pl_train_shape *s, const char **base, pl_err *err);
/* The memory plan of training c on model (a path potluck plan takes), as a
 * summary: model params and shape, seq_len, lora_r, base, threads,
 * categories (bytes each), file_mapped and total; with the cuda backend also
 * device_total, tagged (each category's bytes the backend allocates) and
 * device (the device's share of each: tagged less paged and offloaded
 * state). Header only; no weight read. */
int pl_run_cfg_plan_json(const pl_run_cfg *c, const char *model, cJSON **out, pl_err *err);
/* This machine's physical memory in bytes (0 when unknown). */
double pl_machine_memory(void);
/* --gpu-mem: PL_ERANGE, naming the largest category of the run's CUDA plan
 * and the settings that fit (checkpointing, a shorter sequence), when the
 * plan needs more than cap bytes of device memory. */
int pl_run_gpu_check(const pl_run_cfg *c, double cap, pl_err *err);
/* The same check, for potluck run: cap_what names the limit in the message
 * ("--gpu-mem 24 GiB", "the device's 80 GiB"); recipe: name the recipe's
 * settings (train.checkpointing, train.seq_len, in scale["size"] when size
 * is given) instead of potluck train's flags. */
int pl_run_gpu_fit(const pl_run_cfg *c, double cap, const char *cap_what, int recipe, const char *size,
                   pl_err *err);
/* PL_ERANGE when plan summary pj (pl_run_cfg_plan_json) needs more than mem
 * bytes, with a message naming what to change: a smaller model when the
 * weights alone do not fit, else train.seq_len or lora.r (in the recipe's
 * scale[size] when size is given). */
int pl_run_plan_check(const cJSON *pj, double mem, const char *size, const char *model, pl_err *err);
/* One help line per flag, for the CLI's --help. */
const char *pl_run_cfg_flags_help(void);

/* What the loop reports after each step (and each eval). */
typedef struct pl_run_step {
    int step, steps;             /* 1-based step just done, total */
    double loss, lr, grad_norm;
    double eval_loss;            /* NAN when not computed this step */
    double tokens_per_s, step_s;
    int64_t tokens, trained_tokens; /* cumulative */
    int saved;                   /* a checkpoint was written after this step */
} pl_run_step;

typedef struct pl_run_hooks {
    void (*on_step)(void *user, const pl_run_step *s);
    void (*on_msg)(void *user, const char *msg);   /* one line: resume, skipped checkpoints, eval */
    void *user;
    volatile sig_atomic_t *stop;   /* nonzero: checkpoint after the current step and return */
    const char *resume_hint;       /* how the caller resumes, said after an interrupt;
                                    * NULL: "continue with --resume" */
} pl_run_hooks;

typedef struct pl_run_result {
    int steps_done;          /* last completed step */
    int interrupted;         /* stopped through hooks->stop */
    int resumed_from;        /* checkpoint step resumed from, or -1 */
    double base_eval_loss, final_eval_loss, final_loss;  /* NAN when not computed */
} pl_run_result;

/* Run the training described by c (validated here) into c->out. */
int pl_run_train(const pl_run_cfg *c, const pl_run_hooks *h, pl_run_result *res, pl_err *err);

/* For an on_step hook (s->step >= 1): the training's progress line on p
 * (core/progress.h), "train" in steps, begun at the first step seen (a
 * resumed run counts from there), with loss, lr and tokens/s as its note.
 * The caller ends it when pl_run_train returns. */
void pl_run_progress_step(pl_progress *p, const pl_run_step *s);

#endif
