/* run.c: the training run (see run.h): the model and adapters it trains,
 * the loop (steps, schedule, held-out eval, hooks) and the final adapter.
 * Its parts: run_cfg.c (configuration), run_data.c (the rows it trains
 * on), run_ckpt.c (checkpoints and resume), run_metrics.c (metrics.jsonl);
 * run_int.h holds what they share. */
#include "run_int.h"
#include "plan.h"

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
#include "../core/dist.h"
#include "../core/json.h"
#include "../core/mapfile.h"
#include "../core/rng.h"
#include "../core/units.h"
#include "../core/sha256.h"
#include "../datasets/loader.h"
#include "../datasets/tokenizer.h"
#include "model_lora.h"
#include "model_nf4.h"
#include "checkpoint.h"
#include "export.h"
#include "run.h"
#include "schedule.h"
#include "train.h"

/* ------------------------------------------------------------ trained tensors */

void run_msg(run *r, const char *fmt, ...) {
    if (!r->h || !r->h->on_msg || pl_dist_rank() != 0) return;
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
        int layer = -1; /* embedding, final norm, head: written before or after the layers' backward */
        for (int l = 0; l < t->m->cfg.n_layers && layer < 0; l++)
            for (int j = 0; j < 12; j++)
                if (t->p_layer[l][j] == i) layer = l;
        r->ts[r->n_ts++] = (tens){p->w, p->g, &p->m, &p->v, p->n, layer};
    }
    for (int i = 0; r->lora && i < r->lora->n; i++) {
        pl_lora_module *md = &r->lora->mods[i];
        r->ts[r->n_ts++] = (tens){md->A, md->gA, &md->mA, &md->vA, (size_t)md->r * md->in, md->layer};
        r->ts[r->n_ts++] = (tens){md->B, md->gB, &md->mB, &md->vB, (size_t)md->out * md->r, md->layer};
    }
    r->n_floats = 0;
    for (int i = 0; i < r->n_ts; i++) r->n_floats += r->ts[i].n;
    if (r->n_floats == 0) return pl_err_set(err, PL_EINVAL, "run: nothing to train (no trainable tensor)");
    return PL_OK;
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
    int P = pl_dist_size();
    for (int i = pl_dist_rank(); i < s->n_eval && !rc; i += P) { /* each rank its rows; summed in rank order */
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
    if (!rc && P > 1) {
        double v[2] = {sum, (double)nv};
        rc = pl_dist_allreduce_f64(v, 2, err);
        sum = v[0];
        nv = (int64_t)v[1];
    }
    if (!rc && nv > 0) *out = sum / (double)nv;
    return rc;
}

/* Forward and backward of rows first, first + stride, ... of rw[0..n),
 * gradients accumulated with weight 1/trained (the step's trained tokens);
 * *sum += their summed losses. t->micro is the row's global index, so a row's
 * dropout is the same whichever process runs it. */
int run_accum_rows(pl_train *t, const row *rw, int n, int first, int stride, int64_t trained, double *sum, pl_err *err) {
    int rc = PL_OK;
    for (int i = first; i < n && trained > 0; i += stride) {
        double ls = 0;
        t->micro = i;
        if ((rc = pl_train_forward(t, rw[i].ids, rw[i].targets, rw[i].pos, rw[i].seg, rw[i].T, &ls, NULL, err)) ||
            (rc = pl_train_backward(t, (float)(1.0 / (double)trained), err)))
            break;
        *sum += ls;
    }
    t->micro = 0;
    return rc;
}

/* One optimizer step over rows rw[0..n): mean loss over the step's trained
 * tokens, clipping as torch.nn.utils.clip_grad_norm_, AdamW at lr. */
static int train_step(run *r, const row *rw, int n, int64_t trained, double lr, double *loss, double *gnorm,
                      pl_err *err) {
    pl_train *t = r->t;
    pl_train_zero_grad(t);
    double sum = 0;
    int rc = run_accum_rows(t, rw, n, 0, 1, trained, &sum, err);
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
    /* tensor by tensor into the temporary file: no copy of the trained state
     * (at 7B, r 64 it is 0.6 GB, which the memory plan does not hold) */
    char *p = path_join(r->c->out, "trainable.bin");
    if (!p) return pl_err_set(err, PL_ENOMEM, "run: out of memory");
    pl_afile f = {0};
    int rc = pl_afile_open(&f, p, err);
    for (int i = 0; !rc && i < r->n_ts; i++) {
        size_t nb = r->ts[i].n * sizeof(float);
        if (nb && fwrite(r->ts[i].w, 1, nb, f.fp) != nb) {
            rc = pl_err_set(err, PL_EIO, "%s: write failed: %s", p, strerror(errno));
            pl_afile_abort(&f);
        }
    }
    if (!rc) rc = pl_afile_commit(&f, err);
    free(p);
    if (!rc && r->lora) {
        char *ad = path_join(r->c->out, "adapter");
        if (!ad) return pl_err_set(err, PL_ENOMEM, "run: out of memory");
        char *name = pl_export_base_name(r->m, NULL);
        rc = name ? pl_lora_save_peft(r->lora, r->m, ad, name, err) : pl_err_set(err, PL_ENOMEM, "run: out of memory");
        if (!rc) rc = pl_export_base_record(r->m, name, ad, err);
        free(name);
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
    if (r->m->cfg.n_layers > 0 && r->m->layers[0].wq.dtype == PL_NF4) {
        /* a bitsandbytes 4-bit checkpoint: the base is NF4 as loaded, nothing to quantize or cache */
        int rc = pl_model_nf4_quantize(r->m, c->nf4_blocksize, c->double_quant, err);
        if (!rc) run_msg(r, r->m->source == PL_SRC_RANDOM ? "NF4 base made from %s (a random model)"
                                                            : "NF4 base as stored in %s (bitsandbytes 4-bit)", c->model);
        return rc;
    }
    if (access(path, R_OK) == 0) {
        if (pl_model_nf4_cache_load(r->m, path, &e2) == 0) {
            run_msg(r, "NF4 base loaded from the cache %s", path);
            return 0;
        }
        run_msg(r, "NF4 cache not used (%s); quantizing the base again", e2.msg);
    }
    int on_dev = 0;
    int rc = pl_model_nf4_quantize_on(r->m, c->nf4_blocksize, c->double_quant, &on_dev, err);
    if (rc) return rc;
    if (on_dev) run_msg(r, "NF4 base: %d of %d layer weights quantized on the device", on_dev, 7 * r->m->cfg.n_layers);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/.potluck-nf4", parent);
    if (pl_mkdirs(dir, &e2) || pl_model_nf4_cache_save(r->m, path, &e2))
        run_msg(r, "NF4 cache not written (%s)", e2.msg);
    else
        run_msg(r, "NF4 base cached in %s", path);
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
    run_msg(r, "LoRA weights start from %s", r->c->init_adapter);
    pl_lora_free(from);
    return 0;
}

static int load_model(run *r, pl_err *err) {
    const pl_run_cfg *c = r->c;
    int rc;
    if ((rc = pl_backend_set_default(c->backend, err))) return rc;
    if (c->lora_r == 0) {
        pl_model_opts mo = {.fp32 = 1};
        if ((rc = pl_model_load(&r->m, c->model, &mo, err))) return rc;
        pl_train_opts to = {.checkpoint = c->checkpointing};
        return pl_train_init_opts(&r->t, r->m, c->seq_len, &to, err);
    }
    if ((rc = pl_model_load(&r->m, c->model, NULL, err))) return rc;
    if (c->gpu_mem && r->m->be->set_mem_cap) { /* validated (run_cfg.c) and checked against the plan */
        /* the cap is the card's memory: the CUDA runtime's reserve (the plan's) is not potluck's to allocate */
        double cap = 0, rt = (double)pl_plan_cuda_runtime();
        pl_parse_bytes(c->gpu_mem, &cap);
        r->m->be->set_mem_cap(cap > rt ? (size_t)(cap - rt) : 1);
    }
    if (!strcmp(c->base, "nf4")) {
        /* rank 0 quantizes and writes the cache; the others then load it */
        if (pl_dist_rank() > 0 && (rc = pl_dist_barrier(err))) return rc;
        if ((rc = nf4_base(r, err))) return rc;
        if (pl_dist_rank() == 0 && (rc = pl_dist_barrier(err))) return rc;
    }
    pl_train_opts to = {.frozen_base = 1, .checkpoint = c->checkpointing, .paged_optim = c->paged_optim,
                        .offload = c->offload_checkpoints, .mlp_chunk = c->mlp_chunk};
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
    /* several ranks (run_dist.c): rank 0 alone writes the run directory and
     * reports; the others keep only the stop flag of the hooks */
    int lead = pl_dist_rank() == 0;
    pl_run_hooks quiet = {.stop = h ? h->stop : NULL};
    if (!lead) h = &quiet;
    run R = {.c = c, .h = h};
    run *r = &R;
    row *rows = NULL;
    int rc = pl_run_cfg_validate(c, err);
    if (rc) goto out;
    if (lead && (rc = pl_mkdirs(c->out, err))) goto out;
    r->ckdir = path_join(c->out, "checkpoints");
    r->metrics = path_join(c->out, "metrics.jsonl");
    if (!r->ckdir || !r->metrics) { rc = pl_err_set(err, PL_ENOMEM, "run: out of memory"); goto out; }
    run_cfg_hash(c, r->cfg_hex);
    if (lead) {
        cJSON *cj = pl_run_cfg_to_json(c);
        char *cp = path_join(c->out, "config.json");
        rc = cj && cp ? pl_json_write(cp, cj, err) : pl_err_set(err, PL_ENOMEM, "run: out of memory");
        cJSON_Delete(cj);
        free(cp);
        if (rc) goto out;
    }
    if (c->gpu_mem && c->lora_r > 0) { /* --gpu-mem: the plan before anything is loaded */
        double cap = 0;
        pl_parse_bytes(c->gpu_mem, &cap);
        if ((rc = pl_run_gpu_check(c, cap, err))) goto out;
    }
    if ((rc = load_model(r, err))) goto out;
    if ((rc = run_src_open(&r->data, c, r->m, err))) goto out;
    if ((rc = collect_tensors(r, err))) goto out;
    if ((rc = run_dist_open(r, err))) goto out;
    if (!(rows = calloc((size_t)r->data.n_mb, sizeof *rows))) {
        rc = pl_err_set(err, PL_ENOMEM, "run: out of memory");
        goto out;
    }
    pl_sched_kind sk;
    pl_sched_parse(c->schedule, &sk, NULL);
    int warm = c->warmup_steps > 0 ? c->warmup_steps : pl_sched_warmup_from_ratio(c->warmup_ratio, c->steps);
    int step = 0;
    if (c->resume) {
        if ((rc = run_resume(r, &step, err))) goto out;
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
    if (lead && (rc = run_metrics_truncate(r, step > 0 ? step : -1, err))) goto out;
    /* --eval-data alone evaluates at step 0 and at the last step; eval_every
     * adds the steps in between (and turns eval on for --text's tail) */
    int want_eval = c->eval_every > 0 || (c->eval_data && *c->eval_data);
    int do_eval = want_eval && r->data.n_eval > 0;
    if (want_eval && r->data.n_eval == 0) run_msg(r, "eval: no held-out rows (give --eval-data or --eval-frac); no eval loss");
    if (do_eval && step == 0) {
        double el;
        if ((rc = eval_loss(r, &el, err))) goto out;
        rs.base_eval_loss = el;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "step", 0);
        cJSON_AddNumberToObject(j, "eval_loss", el);
        cJSON_AddNumberToObject(j, "eval_rows", r->data.n_eval);
        rc = lead ? run_metrics_append(r, j, err) : PL_OK;
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
        if ((rc = run_src_step(&r->data, rows, &n, &tokens, &trained, err))) goto out;
        double lr = c->lr * pl_sched_factor(sk, step, warm, c->steps);
        double loss = NAN, gn = NAN;
        int stop = 0;
        if (r->dist.size > 1) {
            /* the ranks agree on a stop (a signal reaches each at its own time) */
            stop = h && h->stop && *h->stop;
            if ((rc = run_dist_step(r, rows, n, trained, lr, &loss, &gn, &stop, err))) goto out;
        } else {
            if ((rc = train_step(r, rows, n, trained, lr, &loss, &gn, err))) goto out;
            stop = h && h->stop && *h->stop;
        }
        double dt = omp_get_wtime() - t0;
        step++;
        r->tokens += tokens;
        r->trained += trained;
        rs.final_loss = loss;
        pl_run_step ps = {.step = step, .steps = c->steps, .loss = loss, .lr = lr, .grad_norm = gn, .eval_loss = NAN,
                          .tokens_per_s = (double)tokens / dt, .step_s = dt, .tokens = r->tokens,
                          .trained_tokens = r->trained};
        if (do_eval && ((c->eval_every > 0 && step % c->eval_every == 0) || step == c->steps)) {
            if ((rc = eval_loss(r, &ps.eval_loss, err))) goto out;
            rs.final_eval_loss = ps.eval_loss;
        }
        int save = (c->save_every > 0 && step % c->save_every == 0) || stop || step == c->steps;
        if (save) {
            if ((rc = run_save_state(r, step, err))) goto out;
            if (lead && (rc = pl_ckpt_prune(r->ckdir, c->keep_last, err))) goto out;
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
        if (r->dist.size > 1) {
            cJSON_AddNumberToObject(j, "ranks", r->dist.size);
            cJSON_AddNumberToObject(j, "comm_s", r->dist.comm_s);
            cJSON_AddStringToObject(j, "comm", r->dist.nccl ? "nccl" : "mpi");
            if (r->dist.overlap) { /* the gradient's pieces, and how many left during the backward */
                cJSON_AddNumberToObject(j, "comm_pieces", r->dist.nb);
                cJSON_AddNumberToObject(j, "comm_pieces_early", r->dist.early);
            }
        }
        run_add_mem(j, r->m->be);
        rc = lead ? run_metrics_append(r, j, err) : PL_OK;
        cJSON_Delete(j);
        if (rc) goto out;
        if (h && h->on_step) h->on_step(h->user, &ps);
        rs.steps_done = step;
        if (stop && step < c->steps) {
            rs.interrupted = 1;
            run_msg(r, "interrupted: checkpoint written at step %d; %s", step,
                    h && h->resume_hint ? h->resume_hint : "continue with --resume");
            break;
        }
    }
    if (lead && !rs.interrupted && (rc = write_final(r, err))) goto out;
out:
    if (rc && pl_dist_size() > 1) pl_err_prefix(err, "rank %d of %d", pl_dist_rank(), pl_dist_size());
    free(rows);
    run_dist_free(r, rc != 0);
    run_src_free(&r->data);
    free(r->ts);
    pl_train_free(r->t);
    pl_lora_free(r->lora);
    pl_model_free(r->m);
    free(r->ckdir);
    free(r->metrics);
    if (res) *res = rs;
    return rc;
}

void pl_run_progress_step(pl_progress *p, const pl_run_step *s) {
    if (!p->active) {
        pl_progress_begin(p, "train", s->steps, "steps");
        pl_progress_start_at(p, s->step - 1);
        if (s->step_s > 0) p->t0 -= s->step_s; /* the step just done counts, with its time */
    }
    pl_progress_note(p, "loss %.4f lr %.2e %.0f tok/s%s", s->loss, s->lr, s->tokens_per_s, s->saved ? " (checkpoint)" : "");
    pl_progress_update(p, s->step);
}
