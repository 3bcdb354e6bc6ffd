/* run_data.c: the rows a run trains and evaluates on: a sharded dataset
 * through the loader, or packed plain text; the held-out rows. */
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
#include "../datasets/loader.h"
#include "../datasets/tokenizer.h"
#include "model_lora.h"
#include "model_nf4.h"
#include "checkpoint.h"
#include "run.h"
#include "schedule.h"
#include "train.h"

/* ------------------------------------------------------------ data */

#define STREAM_TEXT_PERM 0x54455854ull /* "TEXT" */

void run_text_perm(src *s) {
    for (int64_t i = 0; i < s->n_rows; i++) s->perm[i] = i;
    for (int64_t i = s->n_rows - 1; i > 0; i--) {
        int64_t j = (int64_t)pl_rng_below(s->seed, (STREAM_TEXT_PERM << 20) ^ (uint64_t)s->epoch, (uint64_t)i,
                                          (uint64_t)i + 1);
        int64_t tmp = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = tmp;
    }
}

void run_src_free(src *s) {
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

int run_src_open(src *s, const pl_run_cfg *c, const pl_model *m, pl_err *err) {
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
        run_text_perm(s);
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
int run_src_step(src *s, row *r, int *n, int64_t *tokens, int64_t *trained, pl_err *err) {
    *n = 0;
    *tokens = *trained = 0;
    if (s->text) {
        for (int i = 0; i < s->n_mb; i++) {
            if (s->pos >= s->n_rows) {
                s->epoch++;
                s->pos = 0;
                run_text_perm(s);
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
