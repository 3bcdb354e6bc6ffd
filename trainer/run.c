/* run.c: the training run: configuration, data, loop, eval, metrics, checkpoints, resume (see run.h). */
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
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

/* Fields that do not change the trained bits (left out of the config hash). */
static int field_is_runtime(const cfg_field *f) {
    static const char *const rt[] = {"out", "threads", "eval_every", "eval_rows", "save_every", "keep_last",
                                     "eval_data", "checkpointing"};
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

/* " (did you mean 'x'?)" for the closest key of section sec (NULL: top level). */
static const char *key_hint(const char *sec, const char *key, char *buf, size_t n) {
    const char *best = NULL;
    int bd = 99;
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
    return "  --model PATH            base model: HF directory, GGUF file or llama2.c .bin (model)\n"
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
           "  --nf4-blocksize N       (lora.nf4_blocksize, 64)   --no-double-quant (lora.double_quant)\n"
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
           "  --threads N             OpenMP threads (train.threads)\n";
}

/* sha256 hex of the config fields that determine the trained bits. */
static void cfg_hash(const pl_run_cfg *c, char hex[65]) {
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

/* ------------------------------------------------------------ data */

typedef struct row {
    const int32_t *ids, *targets, *pos, *seg;
    int T;
} row;

typedef struct src {
    int text;                 /* 1: packed text; 0: dataset loader */
    int S;                    /* seq_len */
    int n_mb;                 /* micro-batch rows per step (upper bound) */
    /* loader */
    pl_loader *ld;
    pl_batch *bt;             /* (grad_accum) */
    int accum;
    /* text */
    int32_t *tok;
    int64_t n_tok, n_train_tok, n_rows;
    int64_t *perm;            /* (n_rows) order of the current epoch */
    int64_t epoch, pos;
    uint64_t seed;
    /* eval rows (owned copies) */
    int n_eval;
    int32_t *ev_buf;          /* (n_eval, 4, S): ids, targets, pos, seg */
    int *ev_T, *ev_hasseg;
} src;

#define STREAM_TEXT_PERM 0x54455854ull /* "TEXT" */

static void text_perm(src *s) {
    for (int64_t i = 0; i < s->n_rows; i++) s->perm[i] = i;
    for (int64_t i = s->n_rows - 1; i > 0; i--) {
        int64_t j = (int64_t)pl_rng_below(s->seed, (STREAM_TEXT_PERM << 20) ^ (uint64_t)s->epoch, (uint64_t)i,
                                          (uint64_t)i + 1);
        int64_t tmp = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = tmp;
    }
}

static void src_free(src *s) {
    if (s->bt)
        for (int i = 0; i < s->accum; i++) pl_batch_free(&s->bt[i]);
    free(s->bt);
    pl_loader_close(s->ld);
    free(s->tok);
    free(s->perm);
    free(s->ev_buf);
    free(s->ev_T);
    free(s->ev_hasseg);
    memset(s, 0, sizeof *s);
}

/* Append an eval row (copied); seg/pos may be NULL. */
static int eval_add(src *s, int cap, const int32_t *ids, const int32_t *tg, const int32_t *pos, const int32_t *seg, int T) {
    if (s->n_eval >= cap) return 0;
    int S = s->S;
    int32_t *b = s->ev_buf + (size_t)s->n_eval * 4 * S;
    memcpy(b, ids, (size_t)T * 4);
    memcpy(b + S, tg, (size_t)T * 4);
    if (pos) memcpy(b + 2 * S, pos, (size_t)T * 4);
    if (seg) memcpy(b + 3 * S, seg, (size_t)T * 4);
    s->ev_T[s->n_eval] = T;
    s->ev_hasseg[s->n_eval] = seg != NULL;
    s->n_eval++;
    return 1;
}

/* Tokens of a row up to and including the last non-padding one. */
static int row_len(const int32_t *seg, int S) {
    int T = S;
    while (T > 0 && seg[T - 1] == 0) T--;
    return T;
}

static int src_open(src *s, const pl_run_cfg *c, const pl_model *m, pl_err *err) {
    memset(s, 0, sizeof *s);
    s->S = c->seq_len;
    s->seed = (uint64_t)c->seed;
    s->accum = c->grad_accum;
    s->n_mb = c->batch * c->grad_accum;
    int cap = c->eval_rows > 0 ? c->eval_rows : 1 << 20;
    int rc;
    if (c->text) {
        s->text = 1;
        pl_tokenizer *tk = NULL;
        char *txt = NULL;
        size_t len = 0;
        int n = 0;
        rc = pl_model_tokenizer(m, c->tokenizer, &tk, err);
        if (!rc) rc = pl_read_file(c->text, (size_t)1 << 31, &txt, &len, err);
        if (!rc) rc = pl_tokenizer_encode(tk, txt, len, pl_tokenizer_add_bos(tk), 0, &s->tok, &n, err);
        pl_tokenizer_free(tk);
        free(txt);
        if (rc) return rc;
        s->n_tok = n;
        int64_t n_eval_tok = (int64_t)floor((double)n * c->eval_frac);
        s->n_train_tok = n - n_eval_tok;
        s->n_rows = (s->n_train_tok - 1) / s->S;
        if (s->n_rows < 1)
            return pl_err_set(err, PL_EINVAL, "%s: %" PRId64 " training tokens (of %d) do not fill one row of %d + 1",
                              c->text, s->n_train_tok, n, s->S);
        if (!(s->perm = malloc((size_t)s->n_rows * sizeof *s->perm))) return pl_err_set(err, PL_ENOMEM, "run: out of memory");
        text_perm(s);
        /* held-out tail: rows of up to S tokens */
        int64_t n_ev_rows = n_eval_tok > 1 ? (n_eval_tok - 1 + s->S - 1) / s->S : 0;
        if (n_ev_rows > cap) n_ev_rows = cap;
        if (n_ev_rows > 0) {
            s->ev_buf = malloc((size_t)n_ev_rows * 4 * s->S * sizeof(int32_t));
            s->ev_T = malloc((size_t)n_ev_rows * sizeof(int));
            s->ev_hasseg = malloc((size_t)n_ev_rows * sizeof(int));
            if (!s->ev_buf || !s->ev_T || !s->ev_hasseg) return pl_err_set(err, PL_ENOMEM, "run: out of memory");
            for (int64_t r = 0; r < n_ev_rows; r++) {
                int64_t o = s->n_train_tok + r * s->S;
                int64_t T = n - 1 - o < s->S ? n - 1 - o : s->S;
                if (T < 1) break;
                eval_add(s, cap, s->tok + o, s->tok + o + 1, NULL, NULL, (int)T);
            }
        }
        return PL_OK;
    }
    pl_loader_opts lo = {.seq_len = s->S, .batch_rows = c->batch, .seed = (uint64_t)c->seed};
    if ((rc = pl_loader_open(&s->ld, c->data, &lo, NULL, err))) return rc;
    if (!(s->bt = calloc((size_t)s->accum, sizeof *s->bt))) return pl_err_set(err, PL_ENOMEM, "run: out of memory");
    for (int i = 0; i < s->accum; i++)
        if ((rc = pl_batch_alloc(s->ld, &s->bt[i], err))) return rc;
    if (c->eval_data) {
        pl_loader *el = NULL;
        pl_batch b = {0};
        pl_loader_opts eo = {.seq_len = s->S, .batch_rows = 1, .seed = (uint64_t)c->seed, .epochs = 1};
        if ((rc = pl_loader_open(&el, c->eval_data, &eo, NULL, err))) return pl_err_prefix(err, "eval_data");
        if (!(rc = pl_batch_alloc(el, &b, err))) {
            int64_t ns = pl_loader_samples(el);
            int mx = ns < cap ? (int)ns : cap;
            s->ev_buf = malloc((size_t)(mx > 0 ? mx : 1) * 4 * s->S * sizeof(int32_t));
            s->ev_T = malloc((size_t)(mx > 0 ? mx : 1) * sizeof(int));
            s->ev_hasseg = malloc((size_t)(mx > 0 ? mx : 1) * sizeof(int));
            if (!s->ev_buf || !s->ev_T || !s->ev_hasseg) rc = pl_err_set(err, PL_ENOMEM, "run: out of memory");
            while (!rc && s->n_eval < mx) {
                if ((rc = pl_loader_next(el, &b, err)) || b.rows == 0) break;
                int T = row_len(b.seg, s->S);
                if (T > 0) eval_add(s, mx, b.ids, b.targets, b.pos, b.seg, T);
            }
        }
        pl_batch_free(&b);
        pl_loader_close(el);
        if (rc) return rc;
    }
    return PL_OK;
}

/* The rows of the next step into r (n_mb entries); *n rows, *tokens and *trained counts. */
static int src_step(src *s, row *r, int *n, int64_t *tokens, int64_t *trained, pl_err *err) {
    *n = 0;
    *tokens = *trained = 0;
    if (s->text) {
        for (int i = 0; i < s->n_mb; i++) {
            if (s->pos >= s->n_rows) {
                s->epoch++;
                s->pos = 0;
                text_perm(s);
            }
            int64_t o = s->perm[s->pos++] * s->S;
            r[*n] = (row){.ids = s->tok + o, .targets = s->tok + o + 1, .T = s->S};
            (*n)++;
            *tokens += s->S;
            *trained += s->S;
        }
        return PL_OK;
    }
    int64_t st = 0;
    int rc = pl_loader_step(s->ld, s->bt, s->accum, &st, err);
    if (rc) return rc;
    for (int a = 0; a < s->accum; a++) {
        pl_batch *b = &s->bt[a];
        for (int k = 0; k < b->rows; k++) {
            size_t o = (size_t)k * s->S;
            int T = row_len(b->seg + o, s->S);
            if (T == 0) continue;
            r[*n] = (row){.ids = b->ids + o, .targets = b->targets + o, .pos = b->pos + o, .seg = b->seg + o, .T = T};
            (*n)++;
            *tokens += T;
        }
    }
    *trained = st;
    if (*n == 0) return pl_err_set(err, PL_EINVAL, "data: the dataset yields no rows");
    return PL_OK;
}

/* ------------------------------------------------------------ trained tensors */

typedef struct tens {
    float *w;
    float **m, **v;
    size_t n;
} tens;

typedef struct run {
    const pl_run_cfg *c;
    const pl_run_hooks *h;
    pl_model *m;
    pl_train *t;
    pl_lora *lora;
    src data;
    tens *ts;
    int n_ts;
    size_t n_floats;
    char cfg_hex[65];
    char *ckdir, *metrics;
    int64_t tokens, trained;  /* cumulative */
} run;

static void msg(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void msg(run *r, const char *fmt, ...) {
    if (!r->h || !r->h->on_msg) return;
    char b[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    r->h->on_msg(r->h->user, b);
}

static int collect_tensors(run *r, pl_err *err) {
    pl_train *t = r->t;
    int cap = t->n_params + (r->lora ? 2 * r->lora->n : 0);
    if (!(r->ts = calloc((size_t)(cap > 0 ? cap : 1), sizeof *r->ts))) return pl_err_set(err, PL_ENOMEM, "run: out of memory");
    for (int i = 0; i < t->n_params; i++) {
        pl_param *p = &t->params[i];
        if (p->frozen) continue;
        r->ts[r->n_ts++] = (tens){p->w, &p->m, &p->v, p->n};
    }
    for (int i = 0; r->lora && i < r->lora->n; i++) {
        pl_lora_module *md = &r->lora->mods[i];
        r->ts[r->n_ts++] = (tens){md->A, &md->mA, &md->vA, (size_t)md->r * md->in};
        r->ts[r->n_ts++] = (tens){md->B, &md->mB, &md->vB, (size_t)md->out * md->r};
    }
    r->n_floats = 0;
    for (int i = 0; i < r->n_ts; i++) r->n_floats += r->ts[i].n;
    if (r->n_floats == 0) return pl_err_set(err, PL_EINVAL, "run: nothing to train (no trainable tensor)");
    return PL_OK;
}

/* ------------------------------------------------------------ checkpoints */

static cJSON *state_json(run *r, int step) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddNumberToObject(j, "step", step);
    cJSON_AddNumberToObject(j, "adam_step", r->t->step);
    cJSON_AddNumberToObject(j, "seed", (double)r->c->seed);
    cJSON_AddNumberToObject(j, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(j, "trained_tokens", (double)r->trained);
    cJSON_AddNumberToObject(j, "n_floats", (double)r->n_floats);
    cJSON_AddStringToObject(j, "config_sha256", r->cfg_hex);
    cJSON *d = cJSON_AddObjectToObject(j, r->data.text ? "text" : "loader");
    if (r->data.text) {
        cJSON_AddNumberToObject(d, "epoch", (double)r->data.epoch);
        cJSON_AddNumberToObject(d, "pos", (double)r->data.pos);
    } else {
        pl_loader_state ls = pl_loader_state_get(r->data.ld);
        cJSON_AddNumberToObject(d, "seed", (double)ls.seed);
        cJSON_AddNumberToObject(d, "epoch", (double)ls.epoch);
        cJSON_AddNumberToObject(d, "cursor", (double)ls.cursor);
        cJSON_AddNumberToObject(d, "row", (double)ls.row);
    }
    return j;
}

/* Write the trained state: a checkpoint step-N under root (final == NULL) or
 * the final files into the run directory. */
static int save_state(run *r, int step, pl_err *err) {
    pl_ckpt ck;
    int rc = pl_ckpt_begin(&ck, r->ckdir, step, err);
    if (rc) return rc;
    cJSON *st = state_json(r, step);
    char *s = st ? cJSON_Print(st) : NULL;
    cJSON_Delete(st);
    if (!s) { pl_ckpt_abort(&ck); return pl_err_set(err, PL_ENOMEM, "run: out of memory"); }
    size_t sl = strlen(s);
    s[sl] = 0;
    rc = pl_ckpt_put(&ck, "state.json", s, sl, err);
    free(s);
    int nt = r->n_ts;
    const void **bufs = calloc((size_t)nt * 2, sizeof *bufs);
    size_t *lens = calloc((size_t)nt * 2, sizeof *lens);
    float *zeros = NULL;
    if (!bufs || !lens) rc = rc ? rc : pl_err_set(err, PL_ENOMEM, "run: out of memory");
    if (!rc) {
        for (int i = 0; i < nt; i++) { bufs[i] = r->ts[i].w; lens[i] = r->ts[i].n * sizeof(float); }
        rc = pl_ckpt_putv(&ck, "trainable.bin", bufs, lens, nt, err);
    }
    if (!rc) {
        size_t mx = 0;
        for (int i = 0; i < nt; i++) if (r->ts[i].n > mx) mx = r->ts[i].n;
        for (int i = 0; i < nt && !rc; i++)
            if (!*r->ts[i].m || !*r->ts[i].v) {
                if (!zeros && !(zeros = calloc(mx, sizeof(float)))) rc = pl_err_set(err, PL_ENOMEM, "run: out of memory");
            }
        for (int i = 0; i < nt && !rc; i++) {
            bufs[2 * i] = *r->ts[i].m ? (const void *)*r->ts[i].m : zeros;
            bufs[2 * i + 1] = *r->ts[i].v ? (const void *)*r->ts[i].v : zeros;
            lens[2 * i] = lens[2 * i + 1] = r->ts[i].n * sizeof(float);
        }
        if (!rc) rc = pl_ckpt_putv(&ck, "optimizer.bin", bufs, lens, 2 * nt, err);
    }
    free(bufs);
    free(lens);
    free(zeros);
    if (!rc && r->lora) {
        size_t n = strlen(ck.tmp) + 16;
        char *ad = malloc(n);
        if (!ad) rc = pl_err_set(err, PL_ENOMEM, "run: out of memory");
        else {
            snprintf(ad, n, "%s/adapter", ck.tmp);
            rc = pl_lora_save_peft(r->lora, r->m, ad, r->c->model, err);
            free(ad);
        }
    }
    if (rc) { pl_ckpt_abort(&ck); return rc; }
    return pl_ckpt_commit(&ck, err);
}

static void on_skip(void *user, const char *dir, const char *why) {
    (void)dir; /* why starts with the directory */
    msg(user, "skipping checkpoint: %s", why);
}

static int json_i64(const cJSON *o, const char *k, const char *where, int64_t *v, pl_err *err) {
    return pl_json_int(o, k, where, v, err);
}

/* Restore the newest complete checkpoint; *step gets its step (0: none). */
static int resume(run *r, int *step, pl_err *err) {
    *step = 0;
    char *dir = NULL;
    int64_t st = 0;
    int rc = pl_ckpt_latest(r->ckdir, &dir, &st, on_skip, r, err);
    if (rc == PL_ENOTFOUND) {
        msg(r, "resume: no complete checkpoint in %s; starting at step 0", r->ckdir);
        pl_err_clear(err);
        return PL_OK;
    }
    if (rc) return rc;
    char *buf = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    char where[4200];
    snprintf(where, sizeof where, "%s/state.json", dir);
    if ((rc = pl_ckpt_read(dir, "state.json", 1 << 20, &buf, &len, err))) goto out;
    if (!(j = cJSON_ParseWithLength(buf, len))) { rc = pl_err_set(err, PL_EFORMAT, "%s: not valid JSON", where); goto out; }
    free(buf);
    buf = NULL;
    int64_t s, adam, nf, tok, trn;
    const char *hex = NULL;
    if ((rc = json_i64(j, "step", where, &s, err)) || (rc = json_i64(j, "adam_step", where, &adam, err)) ||
        (rc = json_i64(j, "n_floats", where, &nf, err)) || (rc = json_i64(j, "tokens", where, &tok, err)) ||
        (rc = json_i64(j, "trained_tokens", where, &trn, err)) ||
        (rc = pl_json_str(j, "config_sha256", where, &hex, err)))
        goto out;
    if (strcmp(hex, r->cfg_hex)) {
        rc = pl_err_set(err, PL_EINVAL,
                        "%s: written with a different configuration (config sha256 %.12s..., now %.12s...); resume "
                        "with the run's own settings (%s/config.json)",
                        dir, hex, r->cfg_hex, r->c->out);
        goto out;
    }
    if (nf != (int64_t)r->n_floats || s < 1 || s > r->c->steps || adam < 0 || adam > INT32_MAX) {
        rc = pl_err_set(err, PL_EFORMAT, "%s: step %" PRId64 ", %" PRId64 " trained floats; this run has %d steps and %zu floats",
                        where, s, nf, r->c->steps, r->n_floats);
        goto out;
    }
    if (r->data.text) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "text");
        int64_t ep, pos;
        if (!d) { rc = pl_err_set(err, PL_EFORMAT, "%s: text: missing (was the run started with --data?)", where); goto out; }
        if ((rc = json_i64(d, "epoch", where, &ep, err)) || (rc = json_i64(d, "pos", where, &pos, err))) goto out;
        if (ep < 0 || pos < 0 || pos > r->data.n_rows) { rc = pl_err_set(err, PL_EFORMAT, "%s: text position out of range", where); goto out; }
        r->data.epoch = ep;
        r->data.pos = pos;
        text_perm(&r->data);
    } else {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "loader");
        int64_t sd, ep, cur, rw;
        if (!d) { rc = pl_err_set(err, PL_EFORMAT, "%s: loader: missing (was the run started with --text?)", where); goto out; }
        if ((rc = json_i64(d, "seed", where, &sd, err)) || (rc = json_i64(d, "epoch", where, &ep, err)) ||
            (rc = json_i64(d, "cursor", where, &cur, err)) || (rc = json_i64(d, "row", where, &rw, err)))
            goto out;
        pl_loader_state ls = {.seed = (uint64_t)sd, .epoch = ep, .cursor = cur, .row = rw};
        pl_loader_opts lo = {.seq_len = r->data.S, .batch_rows = r->c->batch, .seed = (uint64_t)r->c->seed};
        pl_loader *nl = NULL;
        if ((rc = pl_loader_open(&nl, r->c->data, &lo, &ls, err))) goto out;
        for (int i = 0; i < r->data.accum; i++) pl_batch_free(&r->data.bt[i]);
        pl_loader_close(r->data.ld);
        r->data.ld = nl;
        for (int i = 0; i < r->data.accum; i++)
            if ((rc = pl_batch_alloc(nl, &r->data.bt[i], err))) goto out;
    }
    /* weights, then moments (allocated here when the context has none yet) */
    if ((rc = pl_ckpt_read(dir, "trainable.bin", r->n_floats * sizeof(float), &buf, &len, err))) goto out;
    if (len != r->n_floats * sizeof(float)) { rc = pl_err_set(err, PL_EFORMAT, "%s/trainable.bin: %zu bytes, expected %zu", dir, len, r->n_floats * sizeof(float)); goto out; }
    size_t o = 0;
    for (int i = 0; i < r->n_ts; i++) { memcpy(r->ts[i].w, buf + o, r->ts[i].n * sizeof(float)); o += r->ts[i].n * sizeof(float); }
    free(buf);
    buf = NULL;
    if ((rc = pl_ckpt_read(dir, "optimizer.bin", 2 * r->n_floats * sizeof(float), &buf, &len, err))) goto out;
    if (len != 2 * r->n_floats * sizeof(float)) { rc = pl_err_set(err, PL_EFORMAT, "%s/optimizer.bin: %zu bytes, expected %zu", dir, len, 2 * r->n_floats * sizeof(float)); goto out; }
    o = 0;
    for (int i = 0; i < r->n_ts; i++) {
        float **mv[2] = {r->ts[i].m, r->ts[i].v};
        for (int k = 0; k < 2; k++) {
            if (!*mv[k] && !(*mv[k] = r->t->be->alloc(r->ts[i].n * sizeof(float), PL_MEM_OPTIMIZER))) {
                rc = pl_err_set(err, PL_ENOMEM, "run: out of memory for the optimizer state");
                goto out;
            }
            memcpy(*mv[k], buf + o, r->ts[i].n * sizeof(float));
            o += r->ts[i].n * sizeof(float);
        }
    }
    r->t->step = (int)adam;
    r->tokens = tok;
    r->trained = trn;
    *step = (int)s;
    msg(r, "resume: from %s (step %d)", dir, *step);
out:
    free(buf);
    cJSON_Delete(j);
    free(dir);
    return rc;
}

/* ------------------------------------------------------------ metrics */

/* Keep the metrics lines of steps <= step (drops what a killed run wrote after its last checkpoint). */
static int metrics_truncate(run *r, int step, pl_err *err) {
    char *buf = NULL;
    size_t len = 0;
    pl_err e2 = {0};
    if (pl_read_file(r->metrics, (size_t)1 << 30, &buf, &len, &e2)) return PL_OK; /* none yet */
    char *out = malloc(len + 1);
    if (!out) { free(buf); return pl_err_set(err, PL_ENOMEM, "run: out of memory"); }
    size_t ol = 0;
    char *p = buf, *end = buf + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break; /* a torn last line */
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
        if (cJSON_IsNumber(s) && s->valuedouble <= step) {
            memcpy(out + ol, p, (size_t)(nl - p) + 1);
            ol += (size_t)(nl - p) + 1;
        }
        cJSON_Delete(j);
        p = nl + 1;
    }
    int rc = pl_write_file_atomic(r->metrics, out, ol, err);
    free(out);
    free(buf);
    return rc;
}

/* Append one line with a single write, then fsync. */
static int metrics_append(run *r, cJSON *j, pl_err *err) {
    char *s = cJSON_PrintUnformatted(j);
    if (!s) return pl_err_set(err, PL_ENOMEM, "run: out of memory");
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (!line) { free(s); return pl_err_set(err, PL_ENOMEM, "run: out of memory"); }
    line[n] = '\n';
    line[n + 1] = 0;
    int fd = open(r->metrics, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int rc = PL_OK;
    if (fd < 0) rc = pl_err_set(err, PL_EIO, "%s: %s", r->metrics, strerror(errno));
    else {
        ssize_t w = write(fd, line, n + 1);
        if (w != (ssize_t)(n + 1)) rc = pl_err_set(err, PL_EIO, "%s: write: %s", r->metrics, strerror(errno));
        else if (fsync(fd)) rc = pl_err_set(err, PL_EIO, "%s: fsync: %s", r->metrics, strerror(errno));
        close(fd);
    }
    free(line);
    return rc;
}

static void add_mem(cJSON *j) {
    cJSON *m = cJSON_AddObjectToObject(j, "mem_peak");
    for (int k = 0; m && k < PL_MEM_NCAT; k++) cJSON_AddNumberToObject(m, pl_mem_cat_name((pl_mem_cat)k), (double)pl_mem_peak((pl_mem_cat)k));
    struct rusage ru;
    if (!getrusage(RUSAGE_SELF, &ru)) cJSON_AddNumberToObject(j, "rss_peak", (double)ru.ru_maxrss * 1024.0);
}

/* ------------------------------------------------------------ the loop */

static int eval_loss(run *r, double *out, pl_err *err) {
    *out = NAN;
    src *s = &r->data;
    if (s->n_eval == 0) return PL_OK;
    float keep = r->lora ? r->lora->cfg.dropout : 0;
    if (r->lora) r->lora->cfg.dropout = 0; /* eval without dropout (model.eval()) */
    double sum = 0;
    int64_t nv = 0;
    int rc = PL_OK;
    for (int i = 0; i < s->n_eval && !rc; i++) {
        const int32_t *b = s->ev_buf + (size_t)i * 4 * s->S;
        double ls = 0;
        int64_t n = 0;
        rc = pl_train_forward(r->t, b, b + s->S, s->ev_hasseg[i] ? b + 2 * s->S : NULL,
                              s->ev_hasseg[i] ? b + 3 * s->S : NULL, s->ev_T[i], &ls, &n, err);
        sum += ls;
        nv += n;
    }
    if (r->lora) r->lora->cfg.dropout = keep;
    r->t->T = 0; /* no backward pending */
    if (!rc && nv > 0) *out = sum / (double)nv;
    return rc;
}

/* One optimizer step over rows rw[0..n): mean loss over the step's trained
 * tokens, clipping as torch.nn.utils.clip_grad_norm_, AdamW at lr. */
static int train_step(run *r, const row *rw, int n, int64_t trained, double lr, double *loss, double *gnorm,
                      pl_err *err) {
    pl_train *t = r->t;
    pl_train_zero_grad(t);
    double sum = 0;
    int rc = PL_OK;
    for (int i = 0; i < n && trained > 0; i++) {
        double ls = 0;
        t->micro = i;
        if ((rc = pl_train_forward(t, rw[i].ids, rw[i].targets, rw[i].pos, rw[i].seg, rw[i].T, &ls, NULL, err)) ||
            (rc = pl_train_backward(t, (float)(1.0 / (double)trained), err)))
            break;
        sum += ls;
    }
    t->micro = 0;
    if (rc) return rc;
    *loss = trained > 0 ? sum / (double)trained : NAN;
    double g = pl_train_grad_norm(t);
    *gnorm = g;
    const pl_run_cfg *c = r->c;
    if (c->max_grad_norm > 0) {
        double coef = c->max_grad_norm / (g + 1e-6);
        if (coef < 1.0) pl_train_scale_grads(t, (float)coef);
    }
    pl_adamw_opts o = {.lr = (float)lr, .beta1 = (float)c->beta1, .beta2 = (float)c->beta2, .eps = (float)c->eps,
                       .weight_decay = (float)c->weight_decay};
    return pl_train_adamw(t, &o, err);
}

static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int write_final(run *r, pl_err *err) {
    size_t nb = r->n_floats * sizeof(float);
    char *buf = malloc(nb ? nb : 1), *p = path_join(r->c->out, "trainable.bin");
    int rc = PL_OK;
    if (!buf || !p) rc = pl_err_set(err, PL_ENOMEM, "run: out of memory");
    else {
        size_t o = 0;
        for (int i = 0; i < r->n_ts; i++) { memcpy(buf + o, r->ts[i].w, r->ts[i].n * sizeof(float)); o += r->ts[i].n * sizeof(float); }
        rc = pl_write_file_atomic(p, buf, nb, err);
    }
    free(buf);
    free(p);
    if (!rc && r->lora) {
        char *ad = path_join(r->c->out, "adapter");
        if (!ad) return pl_err_set(err, PL_ENOMEM, "run: out of memory");
        rc = pl_lora_save_peft(r->lora, r->m, ad, r->c->model, err);
        free(ad);
    }
    return rc;
}

/* The NF4 base: from the quantized-base cache next to the run directory
 * (RUN_DIR/../.potluck-nf4/, one file per model path and NF4 settings; the
 * file's header carries the sha256 of the weights it was made from, checked
 * on load) or quantized now and cached for the next run. A stale or damaged
 * cache file is said and replaced; failing to write one is said, not fatal. */
static int nf4_base(run *r, pl_err *err) {
    const pl_run_cfg *c = r->c;
    char parent[4096], name[160], path[4400];
    snprintf(parent, sizeof parent, "%s", c->out);
    for (size_t k = strlen(parent); k > 1 && parent[k - 1] == '/'; k--) parent[k - 1] = '\0';
    char *slash = strrchr(parent, '/');
    if (slash) *slash = '\0';
    else snprintf(parent, sizeof parent, ".");
    char real[4096], id[4200];
    const char *mp = realpath(c->model, real) ? real : c->model;
    snprintf(id, sizeof id, "%s|%d|%d", mp, c->nf4_blocksize, c->double_quant);
    uint8_t d[32];
    char hex[65];
    pl_sha256_buf(id, strlen(id), d);
    pl_sha256_hex(d, hex);
    snprintf(name, sizeof name, "%.16s-b%d%s.nf4", hex, c->nf4_blocksize, c->double_quant ? "-dq" : "");
    snprintf(path, sizeof path, "%s/.potluck-nf4/%s", parent, name);
    pl_err e2 = {0};
    if (access(path, R_OK) == 0) {
        if (pl_model_nf4_cache_load(r->m, path, &e2) == 0) {
            msg(r, "NF4 base loaded from the cache %s", path);
            return 0;
        }
        msg(r, "NF4 cache not used (%s); quantizing the base again", e2.msg);
    }
    int rc = pl_model_nf4_quantize(r->m, c->nf4_blocksize, c->double_quant, err);
    if (rc) return rc;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/.potluck-nf4", parent);
    if (pl_mkdirs(dir, &e2) || pl_model_nf4_cache_save(r->m, path, &e2))
        msg(r, "NF4 cache not written (%s)", e2.msg);
    else
        msg(r, "NF4 base cached in %s", path);
    return 0;
}

/* Start the LoRA weights from an existing PEFT adapter (`potluck import`,
 * or another run's adapter/): it must have this run's rank and exactly its
 * modules; A and B are copied over PEFT's initialization. */
static int init_from_adapter(run *r, pl_err *err) {
    pl_lora *from = NULL;
    int rc = pl_lora_load_peft(&from, r->m, r->c->init_adapter, err);
    if (rc) return pl_err_prefix(err, "lora.init_adapter");
    if (from->n != r->lora->n || from->cfg.r != r->lora->cfg.r) {
        rc = pl_err_set(err, PL_EINVAL,
                        "lora.init_adapter: %s: r %d on %d modules, but this run has r %d on %d modules (set --lora-r and "
                        "--lora-targets as the adapter has them)",
                        r->c->init_adapter, from->cfg.r, from->n, r->lora->cfg.r, r->lora->n);
        pl_lora_free(from);
        return rc;
    }
    for (int i = 0; i < from->n; i++) {
        pl_lora_module *a = &from->mods[i], *b = pl_lora_find(r->lora, a->layer, a->which);
        if (!b || b->in != a->in || b->out != a->out) {
            rc = pl_err_set(err, PL_EINVAL, "lora.init_adapter: %s: layer %d %s is not a module of this run",
                            r->c->init_adapter, a->layer, pl_lin_name(a->which));
            pl_lora_free(from);
            return rc;
        }
        memcpy(b->A, a->A, (size_t)a->r * a->in * sizeof(float));
        memcpy(b->B, a->B, (size_t)a->out * a->r * sizeof(float));
    }
    msg(r, "LoRA weights start from %s", r->c->init_adapter);
    pl_lora_free(from);
    return 0;
}

static int load_model(run *r, pl_err *err) {
    const pl_run_cfg *c = r->c;
    int rc;
    if (c->lora_r == 0) {
        pl_model_opts mo = {.fp32 = 1};
        if ((rc = pl_model_load(&r->m, c->model, &mo, err))) return rc;
        pl_train_opts to = {.checkpoint = c->checkpointing};
        return pl_train_init_opts(&r->t, r->m, c->seq_len, &to, err);
    }
    if ((rc = pl_model_load(&r->m, c->model, NULL, err))) return rc;
    if (!strcmp(c->base, "nf4") && (rc = nf4_base(r, err))) return rc;
    pl_train_opts to = {.frozen_base = 1, .checkpoint = c->checkpointing};
    if ((rc = pl_train_init_opts(&r->t, r->m, c->seq_len, &to, err))) return rc;
    pl_lora_cfg lc = {.r = c->lora_r, .alpha = (float)c->lora_alpha, .dropout = (float)c->lora_dropout,
                      .rslora = c->rslora, .seed = (uint64_t)c->seed};
    if ((rc = pl_lora_parse_targets(c->lora_targets, &lc.targets, err))) return rc;
    if ((rc = pl_lora_init(&r->lora, r->m, &lc, err))) return rc;
    if (c->init_adapter && *c->init_adapter && (rc = init_from_adapter(r, err))) return rc;
    return pl_train_attach_lora(r->t, r->lora, err);
}

int pl_run_train(const pl_run_cfg *c, const pl_run_hooks *h, pl_run_result *res, pl_err *err) {
    pl_run_result rs = {.resumed_from = -1, .base_eval_loss = NAN, .final_eval_loss = NAN, .final_loss = NAN};
    run R = {.c = c, .h = h};
    run *r = &R;
    row *rows = NULL;
    int rc = pl_run_cfg_validate(c, err);
    if (rc) goto out;
    if ((rc = pl_mkdirs(c->out, err))) goto out;
    r->ckdir = path_join(c->out, "checkpoints");
    r->metrics = path_join(c->out, "metrics.jsonl");
    if (!r->ckdir || !r->metrics) { rc = pl_err_set(err, PL_ENOMEM, "run: out of memory"); goto out; }
    cfg_hash(c, r->cfg_hex);
    {
        cJSON *cj = pl_run_cfg_to_json(c);
        char *cp = path_join(c->out, "config.json");
        rc = cj && cp ? pl_json_write(cp, cj, err) : pl_err_set(err, PL_ENOMEM, "run: out of memory");
        cJSON_Delete(cj);
        free(cp);
        if (rc) goto out;
    }
    if ((rc = load_model(r, err))) goto out;
    if ((rc = src_open(&r->data, c, r->m, err))) goto out;
    if ((rc = collect_tensors(r, err))) goto out;
    if (!(rows = calloc((size_t)r->data.n_mb, sizeof *rows))) {
        rc = pl_err_set(err, PL_ENOMEM, "run: out of memory");
        goto out;
    }
    pl_sched_kind sk;
    pl_sched_parse(c->schedule, &sk, NULL);
    int warm = c->warmup_steps > 0 ? c->warmup_steps : pl_sched_warmup_from_ratio(c->warmup_ratio, c->steps);
    int step = 0;
    if (c->resume) {
        if ((rc = resume(r, &step, err))) goto out;
        if (step > 0) rs.resumed_from = step;
    } else {
        char *lp = NULL;
        if (!pl_ckpt_latest(r->ckdir, &lp, NULL, NULL, NULL, NULL)) {
            rc = pl_err_set(err, PL_EINVAL, "%s: the run directory already holds checkpoints (%s); pass --resume to "
                            "continue it, or choose another --out", c->out, lp);
            free(lp);
            goto out;
        }
    }
    /* a fresh run starts an empty metrics.jsonl; a resumed one drops the lines after its checkpoint */
    if ((rc = metrics_truncate(r, step > 0 ? step : -1, err))) goto out;
    int do_eval = c->eval_every > 0 && r->data.n_eval > 0;
    if (c->eval_every > 0 && r->data.n_eval == 0) msg(r, "eval: no held-out rows (give --eval-data or --eval-frac); no eval loss");
    if (do_eval && step == 0) {
        double el;
        if ((rc = eval_loss(r, &el, err))) goto out;
        rs.base_eval_loss = el;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "step", 0);
        cJSON_AddNumberToObject(j, "eval_loss", el);
        cJSON_AddNumberToObject(j, "eval_rows", r->data.n_eval);
        rc = metrics_append(r, j, err);
        cJSON_Delete(j);
        if (rc) goto out;
        if (h && h->on_step) {
            pl_run_step ps = {.step = 0, .steps = c->steps, .loss = NAN, .lr = NAN, .grad_norm = NAN, .eval_loss = el};
            h->on_step(h->user, &ps);
        }
    }
    while (step < c->steps) {
        int n = 0;
        int64_t tokens = 0, trained = 0;
        double t0 = omp_get_wtime();
        if ((rc = src_step(&r->data, rows, &n, &tokens, &trained, err))) goto out;
        double lr = c->lr * pl_sched_factor(sk, step, warm, c->steps);
        double loss = NAN, gn = NAN;
        if ((rc = train_step(r, rows, n, trained, lr, &loss, &gn, err))) goto out;
        double dt = omp_get_wtime() - t0;
        step++;
        r->tokens += tokens;
        r->trained += trained;
        rs.final_loss = loss;
        pl_run_step ps = {.step = step, .steps = c->steps, .loss = loss, .lr = lr, .grad_norm = gn, .eval_loss = NAN,
                          .tokens_per_s = (double)tokens / dt, .step_s = dt, .tokens = r->tokens,
                          .trained_tokens = r->trained};
        if (do_eval && (step % c->eval_every == 0 || step == c->steps)) {
            if ((rc = eval_loss(r, &ps.eval_loss, err))) goto out;
            rs.final_eval_loss = ps.eval_loss;
        }
        int stop = h && h->stop && *h->stop;
        int save = (c->save_every > 0 && step % c->save_every == 0) || stop || step == c->steps;
        if (save) {
            if ((rc = save_state(r, step, err))) goto out;
            if ((rc = pl_ckpt_prune(r->ckdir, c->keep_last, err))) goto out;
            ps.saved = 1;
        }
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "step", step);
        cJSON_AddNumberToObject(j, "loss", loss);
        cJSON_AddNumberToObject(j, "lr", lr);
        cJSON_AddNumberToObject(j, "grad_norm", gn);
        cJSON_AddNumberToObject(j, "tokens", (double)tokens);
        cJSON_AddNumberToObject(j, "trained_tokens", (double)r->trained);
        cJSON_AddNumberToObject(j, "tokens_per_s", ps.tokens_per_s);
        cJSON_AddNumberToObject(j, "step_s", dt);
        if (!isnan(ps.eval_loss)) cJSON_AddNumberToObject(j, "eval_loss", ps.eval_loss);
        add_mem(j);
        rc = metrics_append(r, j, err);
        cJSON_Delete(j);
        if (rc) goto out;
        if (h && h->on_step) h->on_step(h->user, &ps);
        rs.steps_done = step;
        if (stop && step < c->steps) {
            rs.interrupted = 1;
            msg(r, "interrupted: checkpoint written at step %d; continue with --resume", step);
            break;
        }
    }
    if (!rs.interrupted && (rc = write_final(r, err))) goto out;
out:
    free(rows);
    src_free(&r->data);
    free(r->ts);
    pl_train_free(r->t);
    pl_lora_free(r->lora);
    pl_model_free(r->m);
    free(r->ckdir);
    free(r->metrics);
    if (res) *res = rs;
    return rc;
}
