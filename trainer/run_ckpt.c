/* run_ckpt.c: a run's checkpoints (adapter, optimizer state, data
 * position) and resuming from the newest complete one. */
#include "run_int.h"
#include "export.h"

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
#include "../core/sha256.h"
#include "../datasets/loader.h"
#include "../datasets/tokenizer.h"
#include "model_lora.h"
#include "model_nf4.h"
#include "checkpoint.h"
#include "run.h"
#include "schedule.h"
#include "train.h"

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
 * the final files into the run directory. Several ranks: every rank calls
 * it; with ZeRO-1 the moments are gathered to rank 0 first, and rank 0
 * alone writes (the checkpoint does not depend on the world size). */
int run_save_state(run *r, int step, pl_err *err) {
    float *gm = NULL, *gv = NULL; /* ZeRO-1: the gathered moments (rank 0) */
    int rc = PL_OK;
    if (r->dist.size > 1 && r->dist.zero) {
        int lead = r->dist.rank == 0;
        if (lead) {
            /* host memory: MPI writes it and the checkpoint reads it (the CUDA backend's workspace is device memory) */
            gm = run_dist_host_alloc(r->t->be, r->n_floats * sizeof(float), PL_MEM_WORKSPACE);
            gv = run_dist_host_alloc(r->t->be, r->n_floats * sizeof(float), PL_MEM_WORKSPACE);
            if (!gm || !gv) rc = pl_err_set(err, PL_ENOMEM, "run: out of memory gathering the optimizer state");
        }
        if (!rc) rc = run_dist_gather_moments(r, gm, gv, err);
        if (rc || !lead) {
            run_dist_host_free(r->t->be, gm, r->n_floats * sizeof(float), PL_MEM_WORKSPACE);
            run_dist_host_free(r->t->be, gv, r->n_floats * sizeof(float), PL_MEM_WORKSPACE);
            return rc;
        }
    } else if (r->dist.rank != 0) {
        return PL_OK;
    }
    pl_ckpt ck;
    rc = pl_ckpt_begin(&ck, r->ckdir, step, err);
    if (rc) goto done;
    cJSON *st = state_json(r, step);
    char *s = st ? cJSON_Print(st) : NULL;
    cJSON_Delete(st);
    if (!s) { pl_ckpt_abort(&ck); rc = pl_err_set(err, PL_ENOMEM, "run: out of memory"); goto done; }
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
        for (int i = 0; i < nt && !rc && !gm; i++)
            if (!*r->ts[i].m || !*r->ts[i].v) {
                if (!zeros && !(zeros = calloc(mx, sizeof(float)))) rc = pl_err_set(err, PL_ENOMEM, "run: out of memory");
            }
        size_t o = 0;
        for (int i = 0; i < nt && !rc; i++) {
            if (gm) {
                bufs[2 * i] = gm + o;
                bufs[2 * i + 1] = gv + o;
            } else {
                bufs[2 * i] = *r->ts[i].m ? (const void *)*r->ts[i].m : zeros;
                bufs[2 * i + 1] = *r->ts[i].v ? (const void *)*r->ts[i].v : zeros;
            }
            lens[2 * i] = lens[2 * i + 1] = r->ts[i].n * sizeof(float);
            o += r->ts[i].n;
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
            char *name = pl_export_base_name(r->m, NULL);
            rc = name ? pl_lora_save_peft(r->lora, r->m, ad, name, err) : pl_err_set(err, PL_ENOMEM, "run: out of memory");
            free(name);
            free(ad);
        }
    }
    if (rc) pl_ckpt_abort(&ck);
    else rc = pl_ckpt_commit(&ck, err);
done:
    run_dist_host_free(r->t->be, gm, r->n_floats * sizeof(float), PL_MEM_WORKSPACE);
    run_dist_host_free(r->t->be, gv, r->n_floats * sizeof(float), PL_MEM_WORKSPACE);
    return rc;
}

static void on_skip(void *user, const char *dir, const char *why) {
    (void)dir; /* why starts with the directory */
    run_msg(user, "skipping checkpoint: %s", why);
}

static int json_i64(const cJSON *o, const char *k, const char *where, int64_t *v, pl_err *err) {
    return pl_json_int(o, k, where, v, err);
}

/* Restore the newest complete checkpoint; *step gets its step (0: none). */
int run_resume(run *r, int *step, pl_err *err) {
    *step = 0;
    char *dir = NULL;
    int64_t st = 0;
    int rc = pl_ckpt_latest(r->ckdir, &dir, &st, on_skip, r, err);
    if (rc == PL_ENOTFOUND) {
        run_msg(r, "resume: no complete checkpoint in %s; starting at step 0", r->ckdir);
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
        run_text_perm(&r->data);
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
    if (r->dist.size > 1 && r->dist.zero) { /* ZeRO-1: this rank's shard of the moments */
        run_dist_load_moments(r, (const float *)buf);
        goto restored;
    }
    o = 0;
    for (int i = 0; i < r->n_ts; i++) {
        float **mv[2] = {r->ts[i].m, r->ts[i].v};
        for (int k = 0; k < 2; k++) {
            if (!*mv[k] && !(*mv[k] = pl_train_optim_alloc(r->t, r->ts[i].n))) {
                rc = pl_err_set(err, PL_ENOMEM, "run: out of memory for the optimizer state");
                goto out;
            }
            memcpy(*mv[k], buf + o, r->ts[i].n * sizeof(float));
            o += r->ts[i].n * sizeof(float);
        }
    }
restored:
    r->t->step = (int)adam;
    r->tokens = tok;
    r->trained = trn;
    *step = (int)s;
    run_msg(r, "resume: from %s (step %d)", dir, *step);
out:
    free(buf);
    cJSON_Delete(j);
    free(dir);
    return rc;
}
