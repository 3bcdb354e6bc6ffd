/* run_cfg.c: a run's configuration: defaults, JSON sections and --flags,
 * validation, its JSON form and the hash that keys checkpoints. */
#include "run_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../core/json.h"
#include "../core/mapfile.h"
#include "../core/rng.h"
#include "../core/sha256.h"
#include "../core/units.h"
#include "../datasets/loader.h"
#include "../datasets/tokenizer.h"
#include "model_lora.h"
#include "model_nf4.h"
#include "checkpoint.h"
#include "run.h"
#include "schedule.h"
#include "train.h"

/* ------------------------------------------------------------ configuration */

typedef enum { F_STR, F_INT, F_I64, F_NUM, F_BOOL } ftype;

typedef struct cfg_field {
    const char *sec, *key, *flag;
    ftype ty;
    size_t off;
    double lo, hi;
} cfg_field;

#define OFF(x) offsetof(pl_run_cfg, x)
static const cfg_field fields[] = {
    {NULL, "model", "--model", F_STR, OFF(model), 0, 0},
    {NULL, "tokenizer", "--tokenizer", F_STR, OFF(tokenizer), 0, 0},
    {NULL, "data", "--data", F_STR, OFF(data), 0, 0},
    {NULL, "eval_data", "--eval-data", F_STR, OFF(eval_data), 0, 0},
    {NULL, "text", "--text", F_STR, OFF(text), 0, 0},
    {NULL, "out", "--out", F_STR, OFF(out), 0, 0},
    {"lora", "r", "--lora-r", F_INT, OFF(lora_r), 0, 65536},
    {"lora", "alpha", "--lora-alpha", F_NUM, OFF(lora_alpha), 0, 1e9},
    {"lora", "dropout", "--lora-dropout", F_NUM, OFF(lora_dropout), 0, 0.99},
    {"lora", "targets", "--lora-targets", F_STR, OFF(lora_targets), 0, 0},
    {"lora", "rslora", "--rslora", F_BOOL, OFF(rslora), 0, 1},
    {"lora", "base", "--base", F_STR, OFF(base), 0, 0},
    {"lora", "nf4_blocksize", "--nf4-blocksize", F_INT, OFF(nf4_blocksize), 16, 4096},
    {"lora", "double_quant", "--double-quant", F_BOOL, OFF(double_quant), 0, 1},
    {"lora", "init_adapter", "--init-adapter", F_STR, OFF(init_adapter), 0, 0},
    {"train", "steps", "--steps", F_INT, OFF(steps), 1, 1e9},
    {"train", "seq_len", "--seq-len", F_INT, OFF(seq_len), 2, 1 << 20},
    {"train", "batch", "--batch", F_INT, OFF(batch), 1, 65536},
    {"train", "grad_accum", "--grad-accum", F_INT, OFF(grad_accum), 1, 65536},
    {"train", "lr", "--lr", F_NUM, OFF(lr), 0, 10},
    {"train", "schedule", "--schedule", F_STR, OFF(schedule), 0, 0},
    {"train", "warmup_steps", "--warmup-steps", F_INT, OFF(warmup_steps), 0, 1e9},
    {"train", "warmup_ratio", "--warmup-ratio", F_NUM, OFF(warmup_ratio), 0, 1},
    {"train", "beta1", "--beta1", F_NUM, OFF(beta1), 0, 0.999999},
    {"train", "beta2", "--beta2", F_NUM, OFF(beta2), 0, 0.999999999},
    {"train", "eps", "--eps", F_NUM, OFF(eps), 0, 1},
    {"train", "weight_decay", "--weight-decay", F_NUM, OFF(weight_decay), 0, 10},
    {"train", "max_grad_norm", "--max-grad-norm", F_NUM, OFF(max_grad_norm), 0, 1e9},
    {"train", "seed", "--seed", F_I64, OFF(seed), 0, 9007199254740991.0},
    {"train", "checkpointing", "--checkpointing", F_BOOL, OFF(checkpointing), 0, 1},
    {"train", "eval_every", "--eval-every", F_INT, OFF(eval_every), 0, 1e9},
    {"train", "eval_rows", "--eval-rows", F_INT, OFF(eval_rows), 0, 1e9},
    {"train", "eval_frac", "--eval-frac", F_NUM, OFF(eval_frac), 0, 0.9},
    {"train", "save_every", "--save-every", F_INT, OFF(save_every), 0, 1e9},
    {"train", "keep_last", "--keep-last", F_INT, OFF(keep_last), 0, 1e6},
    {"train", "threads", "--threads", F_INT, OFF(threads), 0, 1024},
    {"train", "zero", "--zero", F_INT, OFF(zero), 0, 1},
    {"train", "backend", "--backend", F_STR, OFF(backend), 0, 0},
    {"train", "gpu_mem", "--gpu-mem", F_STR, OFF(gpu_mem), 0, 0},
    {"train", "paged_optim", "--paged-optim", F_BOOL, OFF(paged_optim), 0, 1},
    {"train", "offload_checkpoints", "--offload-checkpoints", F_BOOL, OFF(offload_checkpoints), 0, 1},
    {"train", "mlp_chunk", "--mlp-chunk", F_INT, OFF(mlp_chunk), 0, 1 << 20},
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

/* Fields that do not change the trained bits (left out of the config hash). */
static int field_is_runtime(const cfg_field *f) {
    static const char *const rt[] = {"out", "threads", "eval_every", "eval_rows", "save_every", "keep_last",
                                     "eval_data", "checkpointing", "zero",
                                     "backend" /* changes the bits (bf16), but a run may resume on the other backend */,
                                     "gpu_mem", "paged_optim", "offload_checkpoints" /* where the state lives,
                                                                                         not its bits */};
    for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++)
        if (!strcmp(f->key, rt[i])) return 1;
    return 0;
}

static int dupset(char **dst, const char *s, pl_err *err) {
    char *d = s ? strdup(s) : NULL;
    if (s && !d) return pl_err_set(err, PL_ENOMEM, "config: out of memory");
    free(*dst);
    *dst = d;
    return PL_OK;
}

void pl_run_cfg_defaults(pl_run_cfg *c) {
    memset(c, 0, sizeof *c);
    c->lora_r = 16;
    c->lora_alpha = 32;
    c->lora_dropout = 0.05;
    c->lora_targets = strdup("all-linear");
    c->base = strdup("nf4");
    c->nf4_blocksize = 64;
    c->double_quant = 1;
    c->steps = 100;
    c->seq_len = 256;
    c->batch = 1;
    c->grad_accum = 1;
    c->lr = 2e-4;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0;
    c->max_grad_norm = 0.3;
    c->schedule = strdup("constant");
    c->seed = 42;
    c->eval_every = 0;
    c->eval_rows = 64;
    c->eval_frac = 0.1;
    c->save_every = 50;
    c->keep_last = 3;
    c->zero = 1;
}

void pl_run_cfg_free(pl_run_cfg *c) {
    for (int i = 0; i < N_FIELDS; i++)
        if (fields[i].ty == F_STR) {
            char **p = (char **)((char *)c + fields[i].off);
            free(*p);
            *p = NULL;
        }
}

static void field_name(const cfg_field *f, char *buf, size_t n) {
    if (f->sec) snprintf(buf, n, "%s.%s", f->sec, f->key);
    else snprintf(buf, n, "%s", f->key);
}

/* Store a number into field f, checking integrality and range; name for messages. */
static int set_num(pl_run_cfg *c, const cfg_field *f, double v, const char *name, const char *shown, pl_err *err) {
    char *p = (char *)c + f->off;
    if (!isfinite(v)) return pl_err_set(err, PL_EINVAL, "%s: expected a finite number, got %s", name, shown);
    if ((f->ty == F_INT || f->ty == F_I64) && v != floor(v))
        return pl_err_set(err, PL_EINVAL, "%s: expected an integer, got %s", name, shown);
    if (v < f->lo || v > f->hi)
        return pl_err_set(err, PL_EINVAL, "%s: %s is out of range [%g, %g]", name, shown, f->lo, f->hi);
    if (f->ty == F_INT) *(int *)p = (int)v;
    else if (f->ty == F_I64) *(int64_t *)p = (int64_t)v;
    else if (f->ty == F_BOOL) *(int *)p = v != 0;
    else *(double *)p = v;
    return PL_OK;
}

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "string";
    if (cJSON_IsNumber(v)) return "number";
    if (cJSON_IsBool(v)) return "boolean";
    if (cJSON_IsArray(v)) return "array";
    if (cJSON_IsObject(v)) return "object";
    if (cJSON_IsNull(v)) return "null";
    return "value";
}

static int apply_json_value(pl_run_cfg *c, const cfg_field *f, const cJSON *v, const char *where, pl_err *err) {
    char name[128], shown[160];
    field_name(f, name, sizeof name);
    if (cJSON_IsString(v)) snprintf(shown, sizeof shown, "string \"%.100s\"", v->valuestring);
    else if (cJSON_IsNumber(v)) snprintf(shown, sizeof shown, "%.17g", v->valuedouble);
    else snprintf(shown, sizeof shown, "%s", json_type_name(v));
    int rc = PL_OK;
    switch (f->ty) {
    case F_STR:
        if (!cJSON_IsString(v)) rc = pl_err_set(err, PL_EINVAL, "%s: expected a string, got %s", name, shown);
        else rc = dupset((char **)((char *)c + f->off), v->valuestring, err);
        break;
    case F_BOOL:
        if (cJSON_IsBool(v)) *(int *)((char *)c + f->off) = cJSON_IsTrue(v);
        else rc = pl_err_set(err, PL_EINVAL, "%s: expected true or false, got %s", name, shown);
        break;
    default:
        if (!cJSON_IsNumber(v))
            rc = pl_err_set(err, PL_EINVAL, "%s: expected %s, got %s", name, f->ty == F_NUM ? "a number" : "an integer",
                            shown);
        else rc = set_num(c, f, v->valuedouble, name, shown, err);
    }
    if (rc && where && *where) pl_err_prefix(err, "%s", where);
    return rc;
}

/* Edit distance, capped (short config keys only). */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int d = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < d) d = prev[j] + 1;
            if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
            cur[j] = d;
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

/* Names other trainers (PEFT, transformers, axolotl) give the keys potluck
 * spells differently: hinted even when not close ("rank" -> "r"). */
static const char *const key_synonyms[][2] = {
    {"rank", "r"}, {"lora_r", "r"}, {"lora_rank", "r"}, {"lora_alpha", "alpha"}, {"lora_dropout", "dropout"},
    {"target_modules", "targets"}, {"learning_rate", "lr"}, {"max_steps", "steps"}, {"num_steps", "steps"},
    {"batch_size", "batch"}, {"micro_batch_size", "batch"}, {"per_device_train_batch_size", "batch"},
    {"gradient_accumulation_steps", "grad_accum"}, {"max_seq_len", "seq_len"}, {"max_length", "seq_len"},
    {"sequence_len", "seq_len"}, {"lr_scheduler_type", "schedule"}, {"lr_scheduler", "schedule"},
    {"warmup", "warmup_steps"}, {"gradient_checkpointing", "checkpointing"},
};

/* " (did you mean 'x'?)" for the closest key of section sec (NULL: top level). */
static const char *key_hint(const char *sec, const char *key, char *buf, size_t n) {
    const char *best = NULL;
    int bd = 99;
    for (size_t s = 0; s < sizeof key_synonyms / sizeof key_synonyms[0]; s++) {
        if (strcmp(key, key_synonyms[s][0])) continue;
        for (int i = 0; i < N_FIELDS; i++)
            if (fields[i].sec && sec && !strcmp(sec, fields[i].sec) && !strcmp(fields[i].key, key_synonyms[s][1])) {
                snprintf(buf, n, " (did you mean '%s'?)", fields[i].key);
                return buf;
            }
    }
    for (int i = 0; i < N_FIELDS; i++) {
        if ((sec == NULL) != (fields[i].sec == NULL) || (sec && strcmp(sec, fields[i].sec))) continue;
        int d = edit_distance(key, fields[i].key);
        if (d < bd) { bd = d; best = fields[i].key; }
    }
    int lim = (int)strlen(key) / 3;
    if (lim < 2) lim = 2;
    if (best && bd <= lim) snprintf(buf, n, " (did you mean '%s'?)", best);
    else buf[0] = 0;
    return buf;
}

int pl_run_cfg_apply_file(pl_run_cfg *c, const char *path, pl_err *err) {
    cJSON *j = NULL;
    int rc = pl_json_load(path, 1 << 20, &j, err);
    if (!rc) rc = pl_run_cfg_apply_json(c, j, path, err);
    cJSON_Delete(j);
    return rc;
}

int pl_run_cfg_apply_json(pl_run_cfg *c, const cJSON *j, const char *where, pl_err *err) {
    if (!cJSON_IsObject(j)) return pl_err_set(err, PL_EINVAL, "%s: expected a JSON object", where);
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        int is_sec = !strcmp(it->string, "lora") || !strcmp(it->string, "train");
        if (is_sec) {
            if (!cJSON_IsObject(it))
                return pl_err_set(err, PL_EINVAL, "%s: %s: expected an object, got %s", where, it->string,
                                  json_type_name(it));
            const cJSON *kv;
            cJSON_ArrayForEach(kv, it) {
                const cfg_field *f = NULL;
                for (int i = 0; i < N_FIELDS && !f; i++)
                    if (fields[i].sec && !strcmp(fields[i].sec, it->string) && !strcmp(fields[i].key, kv->string))
                        f = &fields[i];
                char hint[96];
                if (!f)
                    return pl_err_set(err, PL_EINVAL, "%s: %s.%s: unknown key%s", where, it->string, kv->string,
                                      key_hint(it->string, kv->string, hint, sizeof hint));
                if (cJSON_IsNull(kv)) continue;
                int rc = apply_json_value(c, f, kv, where, err);
                if (rc) return rc;
            }
            continue;
        }
        const cfg_field *f = NULL;
        for (int i = 0; i < N_FIELDS && !f; i++)
            if (!fields[i].sec && !strcmp(fields[i].key, it->string)) f = &fields[i];
        char hint[96];
        if (!f) return pl_err_set(err, PL_EINVAL, "%s: %s: unknown key%s", where, it->string,
                                  key_hint(NULL, it->string, hint, sizeof hint));
        if (cJSON_IsNull(it)) continue;
        int rc = apply_json_value(c, f, it, where, err);
        if (rc) return rc;
    }
    return PL_OK;
}

int pl_run_cfg_apply_flag(pl_run_cfg *c, int argc, char **argv, int *used, pl_err *err) {
    *used = 0;
    const char *a = argv[0];
    for (int i = 0; i < N_FIELDS; i++) {
        const cfg_field *f = &fields[i];
        if (f->ty == F_BOOL) {
            if (!strcmp(a, f->flag)) { *(int *)((char *)c + f->off) = 1; *used = 1; return PL_OK; }
            if (!strncmp(a, "--no-", 5) && !strcmp(a + 5, f->flag + 2)) {
                *(int *)((char *)c + f->off) = 0;
                *used = 1;
                return PL_OK;
            }
            continue;
        }
        if (strcmp(a, f->flag)) continue;
        if (argc < 2 || !argv[1]) return pl_err_set(err, PL_EINVAL, "%s: expected a value", a);
        const char *v = argv[1];
        *used = 2;
        if (f->ty == F_STR) return dupset((char **)((char *)c + f->off), v, err);
        char *end = NULL, shown[160];
        snprintf(shown, sizeof shown, "\"%.100s\"", v);
        errno = 0;
        double d = strtod(v, &end);
        if (!*v || *end || errno == ERANGE)
            return pl_err_set(err, PL_EINVAL, "%s: expected %s, got %s", a, f->ty == F_NUM ? "a number" : "an integer",
                              shown);
        return set_num(c, f, d, a, shown, err);
    }
    return PL_OK;
}

int pl_run_cfg_validate(const pl_run_cfg *c, pl_err *err) {
    if (!c->model || !*c->model) return pl_err_set(err, PL_EINVAL, "model: a model path is required (--model PATH)");
    if (!c->out || !*c->out) return pl_err_set(err, PL_EINVAL, "out: a run directory is required (--out RUN_DIR)");
    if (!!(c->data && *c->data) == !!(c->text && *c->text))
        return pl_err_set(err, PL_EINVAL, "data: give exactly one of --data DATASET_DIR and --text FILE");
    if (c->eval_data && c->text) return pl_err_set(err, PL_EINVAL, "eval_data: only with --data (--text holds out its tail, --eval-frac)");
    pl_sched_kind k;
    pl_err e2 = {0};
    if (pl_sched_parse(c->schedule, &k, &e2)) return pl_err_set(err, PL_EINVAL, "train.%s", e2.msg);
    if (c->lora_r > 0) {
        unsigned mask;
        if (pl_lora_parse_targets(c->lora_targets, &mask, &e2)) return pl_err_set(err, PL_EINVAL, "lora.targets: %s", e2.msg);
        if (!c->base || (strcmp(c->base, "nf4") && strcmp(c->base, "as-loaded")))
            return pl_err_set(err, PL_EINVAL, "lora.base: expected \"nf4\" or \"as-loaded\", got \"%s\"", c->base ? c->base : "");
    }
    if (c->backend && strcmp(c->backend, "cpu") && strcmp(c->backend, "cuda"))
        return pl_err_set(err, PL_EINVAL, "train.backend: expected cpu or cuda, got \"%s\"", c->backend);
    if (c->gpu_mem) {
        double b;
        const char *why = pl_parse_bytes(c->gpu_mem, &b);
        if (why) return pl_err_set(err, PL_EINVAL, "train.gpu_mem: %s: got \"%s\"", why, c->gpu_mem);
        if (!c->backend || strcmp(c->backend, "cuda"))
            return pl_err_set(err, PL_EINVAL, "train.gpu_mem (--gpu-mem) caps the CUDA backend's memory: it needs --backend cuda");
    }
    if (c->offload_checkpoints && (!c->backend || strcmp(c->backend, "cuda") || !c->checkpointing))
        return pl_err_set(err, PL_EINVAL, "train.offload_checkpoints (--offload-checkpoints) moves the checkpointed "
                          "layer inputs off the GPU: it needs --backend cuda and --checkpointing");
    if (c->mlp_chunk && (c->mlp_chunk % 8 || !c->checkpointing))
        return pl_err_set(err, PL_EINVAL, "train.mlp_chunk (--mlp-chunk): %d: %s", c->mlp_chunk,
                          c->mlp_chunk % 8 ? "expected a multiple of 8 tokens"
                                           : "MLP chunks need --checkpointing (the backward recomputes them)");
    if (c->text && c->eval_every > 0 && !(c->eval_frac > 0))
        return pl_err_set(err, PL_EINVAL, "train.eval_every: evaluation on --text needs eval_frac > 0");
    return PL_OK;
}

cJSON *pl_run_cfg_to_json(const pl_run_cfg *c) {
    cJSON *j = cJSON_CreateObject(), *lora = cJSON_CreateObject(), *train = cJSON_CreateObject();
    if (!j || !lora || !train) { cJSON_Delete(j); cJSON_Delete(lora); cJSON_Delete(train); return NULL; }
    for (int i = 0; i < N_FIELDS; i++) {
        const cfg_field *f = &fields[i];
        cJSON *o = !f->sec ? j : !strcmp(f->sec, "lora") ? lora : train;
        const char *p = (const char *)c + f->off;
        switch (f->ty) {
        case F_STR: {
            const char *s = *(char *const *)p;
            if (s) cJSON_AddStringToObject(o, f->key, s);
            else cJSON_AddNullToObject(o, f->key);
            break;
        }
        case F_INT: cJSON_AddNumberToObject(o, f->key, *(const int *)p); break;
        case F_I64: cJSON_AddNumberToObject(o, f->key, (double)*(const int64_t *)p); break;
        case F_BOOL: cJSON_AddBoolToObject(o, f->key, *(const int *)p); break;
        case F_NUM: cJSON_AddNumberToObject(o, f->key, *(const double *)p); break;
        }
    }
    cJSON_AddItemToObject(j, "lora", lora);
    cJSON_AddItemToObject(j, "train", train);
    return j;
}

const char *pl_run_cfg_flags_help(void) {
    return "  --model PATH            base model: HF directory, GGUF file or llama2.c .bin (model);\n"
           "                          or random:SHAPE[@SEED], a rehearsal model made in memory (on the\n"
           "                          GPU with --backend cuda): SHAPE a preset (potluck plan --preset list)\n"
           "                          or a config.json; the model `potluck model init --random --nf4` writes,\n"
           "                          with no file and no tokenizer (train on a pre-tokenized dataset)\n"
           "  --tokenizer PATH        tokenizer for --text when the model has none (tokenizer)\n"
           "  --data DIR              sharded dataset (potluck data build) (data)\n"
           "  --eval-data DIR         held-out dataset for the eval loss (eval_data)\n"
           "  --text FILE             plain text, tokenized and cut into rows; its tail is held out (text)\n"
           "  --out RUN_DIR           run directory (out)\n"
           "  --lora-r R              LoRA rank; 0 trains every weight in fp32 instead (lora.r, 16)\n"
           "  --lora-alpha A          (lora.alpha, 32)   --lora-dropout P (lora.dropout, 0.05)\n"
           "  --lora-targets T        all-linear or q,k,v,o,gate,up,down (lora.targets)\n"
           "  --rslora                scale alpha/sqrt(r) (lora.rslora)\n"
           "  --base nf4|as-loaded    frozen base quantized to NF4, or kept as stored (lora.base, nf4)\n"
           "  --init-adapter DIR      start the LoRA weights from a PEFT adapter (lora.init_adapter; e.g. from potluck import)\n"
           "  --nf4-blocksize N       (lora.nf4_blocksize, 64)\n"
           "  --double-quant, --no-double-quant   quantize the NF4 constants too (lora.double_quant, on)\n"
           "  --steps N               optimizer steps (train.steps, 100)\n"
           "  --seq-len N             tokens per row (train.seq_len, 256)\n"
           "  --batch N               rows per micro-batch (train.batch, 1)\n"
           "  --grad-accum N          micro-batches per step (train.grad_accum, 1)\n"
           "  --lr X                  peak learning rate (train.lr, 2e-4)\n"
           "  --schedule S            constant | linear | cosine (train.schedule)\n"
           "  --warmup-steps N        (train.warmup_steps)   --warmup-ratio R (train.warmup_ratio)\n"
           "  --beta1 --beta2 --eps --weight-decay X   AdamW (0.9, 0.999, 1e-8, 0)\n"
           "  --max-grad-norm X       clip the global gradient norm; 0 = off (train.max_grad_norm, 0.3)\n"
           "  --seed N                (train.seed, 42)\n"
           "  --checkpointing         activation checkpointing (train.checkpointing)\n"
           "  --eval-every N          eval loss every N steps, at step 0 and at the end (train.eval_every)\n"
           "  --eval-rows N           rows of held-out data per eval (train.eval_rows, 64)\n"
           "  --eval-frac F           --text: fraction of tokens held out (train.eval_frac, 0.1)\n"
           "  --save-every N          checkpoint every N steps (train.save_every, 50)\n"
           "  --keep-last K           keep the K newest checkpoints; 0 = all (train.keep_last, 3)\n"
           "  --threads N             OpenMP threads (train.threads)\n"
           "  --zero 0|1              under mpirun/srun: 1 shards the AdamW state over the ranks (ZeRO-1), 0 keeps\n"
           "                          it whole on every rank; same bits either way (train.zero, 1)\n"
           "  --backend cpu|cuda      where the steps run: cpu (fp32, the reference) or cuda (bf16 activations, a\n"
           "                          frozen base only; the GPU build, make gpu, or the emulated one, make emu)\n"
           "                          (train.backend, cpu); a run may resume on the other backend\n"
           "  --gpu-mem SIZE          with --backend cuda: the card's memory the run may use (24GiB, 16GB, ...); a\n"
           "                          run whose plan (with the CUDA runtime's 512 MiB reserve) needs more stops\n"
           "                          before loading the model, naming the category and the settings that fit;\n"
           "                          allocations past SIZE less the reserve fail (train.gpu_mem)\n"
           "  --paged-optim           with --backend cuda: AdamW moments of tensors of >= 1e5 elements live in host\n"
           "                          memory and come to the GPU for their update only, as bitsandbytes' paged\n"
           "                          optimizers; the same bits (train.paged_optim)\n"
           "  --offload-checkpoints   with --backend cuda and --checkpointing: each layer's saved input goes to\n"
           "                          pinned host memory on a second stream while the next layer computes, and\n"
           "                          comes back during the backward; the device keeps two; the same bits\n"
           "                          (train.offload_checkpoints)\n"
           "  --mlp-chunk N           with --checkpointing: each layer's MLP runs over chunks of N tokens (a multiple\n"
           "                          of 8), forward and backward, so its (seq, intermediate) buffers become (N,\n"
           "                          intermediate): for long sequences; the MLP adapters' gradients are summed per\n"
           "                          chunk (rounding differs from 0, all at once) (train.mlp_chunk, 0)\n";
}

/* sha256 hex of the config fields that determine the trained bits. */
void run_cfg_hash(const pl_run_cfg *c, char hex[65]) {
    cJSON *j = pl_run_cfg_to_json(c);
    for (int i = 0; j && i < N_FIELDS; i++) {
        if (!field_is_runtime(&fields[i])) continue;
        cJSON *o = fields[i].sec ? cJSON_GetObjectItemCaseSensitive(j, fields[i].sec) : j;
        cJSON_DeleteItemFromObjectCaseSensitive(o, fields[i].key);
    }
    /* a constant schedule whose warmup does not come from a ratio does not
     * depend on the step count: such a run may be extended on resume */
    if (j && c->schedule && !strcmp(c->schedule, "constant") && (c->warmup_steps > 0 || !(c->warmup_ratio > 0)))
        cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "train"), "steps");
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    uint8_t d[32];
    pl_sha256_buf(s ? s : "", s ? strlen(s) : 0, d);
    pl_sha256_hex(d, hex);
    free(s);
    cJSON_Delete(j);
}
