/* run_plan.c: the memory plan of a potluck train configuration on a model
 * (trainer/plan.h), from the model's header only: what `potluck plan`
 * prints, what a recipe run records in stages/train.json and a bundle's
 * lock, and what `potluck reproduce` checks before it trains at a new size. */
#include <omp.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "../core/units.h"
#include "../lora/lora.h"
#include "plan.h"
#include "run.h"

int pl_run_cfg_shape(const pl_run_cfg *c, const pl_model_header *h, int micro_batch, pl_train_shape *s,
                     const char **base, pl_err *err) {
    memset(s, 0, sizeof *s);
    s->seq_len = c->seq_len;
    s->micro_batch = micro_batch > 0 ? micro_batch : 1;
    s->checkpoint = c->checkpointing;
    s->layer_dtype = h->layer_dtype;
    s->embd_dtype = h->embd_dtype;
    s->head_dtype = h->head_dtype;
    s->stored_mapped = h->source != PL_SRC_LLAMA2C && h->source != PL_SRC_RANDOM;
    s->threads = c->threads > 0 ? c->threads : omp_get_max_threads();
    s->cuda = c->backend && !strcmp(c->backend, "cuda");
    s->paged_optim = c->paged_optim;
    s->offload = s->cuda && c->checkpointing && c->offload_checkpoints;
    s->mlp_chunk = c->checkpointing ? c->mlp_chunk : 0;
    *base = "fp32";
    if (c->lora_r > 0) {
        if (!c->base || (strcmp(c->base, "nf4") && strcmp(c->base, "as-loaded")))
            return pl_err_set(err, PL_EINVAL, "--base: expected nf4 or as-loaded, got '%s'", c->base ? c->base : "");
        s->frozen_base = 1;
        s->lora_r = c->lora_r;
        pl_err e = {0};
        if (pl_lora_parse_targets(c->lora_targets ? c->lora_targets : "", &s->lora_targets, &e))
            return pl_err_set(err, PL_EINVAL, "--lora-targets: %s", e.msg);
        if (!strcmp(c->base, "nf4")) {
            s->nf4_blocksize = c->nf4_blocksize;
            s->nf4_double_quant = c->double_quant;
        }
        *base = c->base;
    }
    return PL_OK;
}

int pl_run_cfg_plan_json(const pl_run_cfg *c, const char *model, cJSON **out, pl_err *err) {
    *out = NULL;
    pl_model_header h;
    int rc = pl_model_read_header(model, &h, err);
    if (rc) return rc;
    pl_train_shape s;
    const char *base;
    if ((rc = pl_run_cfg_shape(c, &h, 1, &s, &base, err))) return rc;
    pl_mem_plan p;
    if ((rc = pl_train_plan(&h.cfg, &s, &p, err))) return rc;
    cJSON *j = cJSON_CreateObject();
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddNumberToObject(m, "params", (double)pl_plan_params(&h.cfg));
    cJSON_AddNumberToObject(m, "hidden_size", h.cfg.dim);
    cJSON_AddNumberToObject(m, "num_hidden_layers", h.cfg.n_layers);
    cJSON_AddNumberToObject(m, "vocab_size", h.cfg.vocab);
    cJSON_AddStringToObject(j, "backend", s.cuda ? "cuda" : "cpu");
    if (s.cuda) { /* the device's share: every tagged byte but paged and offloaded state (the host keeps the model's own
                   * copy); and with the CUDA runtime's reserve, what the device must hold */
        cJSON_AddNumberToObject(j, "device_total", (double)p.device);
        cJSON_AddNumberToObject(j, "runtime_reserve", (double)p.runtime);
        cJSON_AddNumberToObject(j, "device_need", (double)p.need);
    }
    cJSON_AddNumberToObject(j, "seq_len", s.seq_len);
    cJSON_AddNumberToObject(j, "lora_r", s.frozen_base ? s.lora_r : 0);
    cJSON_AddStringToObject(j, "base", base);
    cJSON_AddBoolToObject(j, "checkpointing", s.checkpoint);
    cJSON_AddNumberToObject(j, "threads", s.threads);
    cJSON_AddNumberToObject(j, "trained_params", (double)p.trained_params);
    cJSON *cats = cJSON_AddObjectToObject(j, "categories");
    for (int k = 0; k < PL_MEM_NCAT; k++) {
        size_t sum = 0;
        for (int b = 0; b < PL_PB_N; b++)
            if (p.item[b].cat == (pl_mem_cat)k) sum += p.item[b].bytes;
        cJSON_AddNumberToObject(cats, pl_mem_cat_name((pl_mem_cat)k), (double)sum);
    }
    if (s.cuda) {
        /* tagged: what the backend's counters will show (pl_mem_peak); device: what the GPU holds of each
         * category (paged AdamW state and offloaded layer inputs are host memory) */
        cJSON *tg = cJSON_AddObjectToObject(j, "tagged"), *dv = cJSON_AddObjectToObject(j, "device");
        for (int k = 0; k < PL_MEM_NCAT; k++) {
            size_t on_dev = p.cat[k] - (k == PL_MEM_OPTIMIZER ? p.paged : 0) -
                            (k == PL_MEM_ACTIVATIONS ? p.offloaded : 0);
            cJSON_AddNumberToObject(tg, pl_mem_cat_name((pl_mem_cat)k), (double)p.cat[k]);
            cJSON_AddNumberToObject(dv, pl_mem_cat_name((pl_mem_cat)k), (double)on_dev);
        }
    }
    cJSON_AddNumberToObject(j, "file_mapped", (double)p.mapped);
    cJSON_AddNumberToObject(j, "total", (double)p.total);
    *out = j;
    return PL_OK;
}

double pl_machine_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page : 0;
}

int pl_run_plan_check(const cJSON *pj, double mem, const char *size, const char *model, pl_err *err) {
    double total = cJSON_GetNumberValue(cJSON_GetObjectItem(pj, "total"));
    if (!(mem > 0) || total <= mem) return PL_OK;
    const cJSON *cats = cJSON_GetObjectItem(pj, "categories");
    double w = cJSON_GetNumberValue(cJSON_GetObjectItem(cats, "weights"));
    double a = cJSON_GetNumberValue(cJSON_GetObjectItem(cats, "activations"));
    char bt[32], bm[32], bw[32], ba[32], hint[96] = "";
    pl_fmt_bytes(total, bt, sizeof bt);
    pl_fmt_bytes(mem, bm, sizeof bm);
    pl_fmt_bytes(w, bw, sizeof bw);
    pl_fmt_bytes(a, ba, sizeof ba);
    if (size) snprintf(hint, sizeof hint, " in the recipe's scale[\"%.40s\"]", size);
    if (w > mem)
        return pl_err_set(err, PL_ERANGE, "the training%s%s needs %s, more than this machine's %s, and the base model's "
                          "weights alone take %s: use a smaller model or a machine with more memory",
                          size ? " at size " : "", size ? size : "", bt, bm, bw);
    return pl_err_set(err, PL_ERANGE, "the training%s%s needs %s (weights %s, activations %s), more than this machine's "
                      "%s: lower train.seq_len or lora.r%s (potluck plan --model %s --fit seq --mem %.1fGiB shows the "
                      "longest sequence that fits)",
                      size ? " at size " : "", size ? size : "", bt, bw, ba, bm, hint, model, mem / 1073741824.0);
}

/* The CUDA plan's device bytes for c with settings changed (seq_len,
 * checkpointing, offloaded checkpoints, MLP chunk: -1 keeps c's), the CUDA
 * runtime's reserve included, or -1. */
static double device_need(const pl_run_cfg *c, const pl_model_header *h, int seq_len, int ckpt, int offload,
                          int chunk, const char **cat_name, double *cat_bytes) {
    pl_run_cfg v = *c;
    v.seq_len = seq_len;
    v.checkpointing = ckpt;
    v.offload_checkpoints = offload;
    if (chunk >= 0) v.mlp_chunk = chunk;
    if (!ckpt) v.mlp_chunk = 0;
    pl_train_shape s;
    const char *base;
    pl_mem_plan p;
    pl_err e = {0};
    if (pl_run_cfg_shape(&v, h, 1, &s, &base, &e) || pl_train_plan(&h->cfg, &s, &p, &e)) return -1;
    if (cat_name) {
        size_t on_dev[PL_MEM_NCAT]; /* what the device holds of each category: paged and offloaded state is host memory */
        for (int k = 0; k < PL_MEM_NCAT; k++) on_dev[k] = p.cat[k];
        on_dev[PL_MEM_OPTIMIZER] -= p.paged;
        on_dev[PL_MEM_ACTIVATIONS] -= p.offloaded;
        int big = 0;
        for (int k = 1; k < PL_MEM_NCAT; k++)
            if (on_dev[k] > on_dev[big]) big = k;
        *cat_name = pl_mem_cat_name((pl_mem_cat)big);
        *cat_bytes = (double)on_dev[big];
    }
    return (double)p.need;
}

int pl_run_gpu_fit(const pl_run_cfg *c, double cap, const char *cap_what, int recipe, const char *size,
                   pl_err *err) {
    pl_model_header h;
    int rc = pl_model_read_header(c->model, &h, err);
    if (rc) return rc;
    const char *cat = "?";
    const int off = c->offload_checkpoints;
    double cb = 0, need = device_need(c, &h, c->seq_len, c->checkpointing, off, -1, &cat, &cb);
    if (need < 0) return pl_err_set(err, PL_EINVAL, "%s: the run has no CUDA plan (see potluck plan --backend cuda)",
                                    cap_what);
    if (need <= cap) return PL_OK;
    char bn[80], bk[32], b2[32], bcap[32], fix[320] = "", where[96] = "";
    pl_fmt_bytes(need, bn, sizeof bn);
    if (!strcmp(bn, pl_fmt_bytes(cap, bcap, sizeof bcap))) /* equal when rounded: say by how much */
        snprintf(bn + strlen(bn), sizeof bn - strlen(bn), " (%.0f bytes, %.0f over)", need, need - cap);
    pl_fmt_bytes(cb, bk, sizeof bk);
    /* the settings by their names: potluck train's flags, or the recipe's keys */
    if (recipe && size) snprintf(where, sizeof where, " in the recipe's scale[\"%.40s\"]", size);
    const char *ck_set = recipe ? "train.checkpointing = true" : "--checkpointing";
    const char *of_set = recipe ? "train.offload_checkpoints = true" : "--offload-checkpoints";
    const char *mc_set = recipe ? "train.mlp_chunk = 1024" : "--mlp-chunk 1024";
    const char *ck_with = recipe ? "train.checkpointing" : "--checkpointing";
    const char *of_with = recipe ? "train.offload_checkpoints" : "--offload-checkpoints";
    const char *sl_set = recipe ? "train.seq_len = " : "--seq-len ";
    const char *sep = recipe ? ", " : " ";
    size_t o = 0;
    if (!c->checkpointing) {
        double n2 = device_need(c, &h, c->seq_len, 1, 0, -1, NULL, NULL);
        if (n2 >= 0 && n2 <= cap)
            o += (size_t)snprintf(fix, sizeof fix, "%s%s fits (%s)", ck_set, where, pl_fmt_bytes(n2, b2, sizeof b2));
    }
    if (!o && !off) {
        double n2 = device_need(c, &h, c->seq_len, 1, 1, -1, NULL, NULL);
        if (n2 >= 0 && n2 <= cap)
            o += (size_t)snprintf(fix, sizeof fix, "%s%s%s%s fits (%s)", c->checkpointing ? "" : ck_set,
                                  c->checkpointing ? "" : sep, of_set, where, pl_fmt_bytes(n2, b2, sizeof b2));
    }
    /* long sequences: the MLP in chunks as well (1024 tokens) */
    if (!o && !c->mlp_chunk && c->seq_len > 1024) {
        double n2 = device_need(c, &h, c->seq_len, 1, 1, 1024, NULL, NULL);
        if (n2 >= 0 && n2 <= cap)
            o += (size_t)snprintf(fix, sizeof fix, "%s%s%s%s%s%s fits (%s)", c->checkpointing ? "" : ck_set,
                                  c->checkpointing ? "" : sep, off ? "" : of_set, off ? "" : sep, mc_set, where,
                                  pl_fmt_bytes(n2, b2, sizeof b2));
    }
    /* a shorter sequence: as set, then with checkpointing, then with offloaded checkpoints */
    for (int k = 0; k < 3 && o < sizeof fix - 128; k++) {
        int ck = k ? 1 : c->checkpointing, of = k == 2 ? 1 : off;
        if ((k == 1 && c->checkpointing) || (k == 2 && off)) continue;
        int best = 0;
        for (int sl = c->seq_len / 2; sl >= 16; sl /= 2) {
            double n2 = device_need(c, &h, sl, ck, of, -1, NULL, NULL);
            if (n2 >= 0 && n2 <= cap) { best = sl; break; }
        }
        if (best) {
            const int add_ck = ck && !c->checkpointing, add_of = of && !off;
            o += (size_t)snprintf(fix + o, sizeof fix - o, "%s%s%d%s%s%s%s%s fits", o ? "; " : "", sl_set, best,
                                  add_ck || add_of ? " with " : "", add_ck ? ck_with : "",
                                  add_ck && add_of ? (recipe ? " and " : " ") : "", add_of ? of_with : "", where);
            break;
        }
    }
    return pl_err_set(err, PL_ERANGE,
                      "%s: the run's CUDA plan needs %s of device memory, %s of it %s; %s (potluck plan "
                      "--backend cuda --model %s shows every buffer)",
                      cap_what, bn, bk, cat,
                      o ? fix : "no shorter sequence or checkpointing fits: use a smaller model or a larger GPU",
                      c->model);
}

int pl_run_gpu_check(const pl_run_cfg *c, double cap, pl_err *err) {
    char bc[32], what[48];
    pl_fmt_bytes(cap, bc, sizeof bc);
    snprintf(what, sizeof what, "--gpu-mem %s", bc);
    return pl_run_gpu_fit(c, cap, what, 0, NULL, err);
}
