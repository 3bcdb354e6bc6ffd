/* loader.c: seeded permutation, first-fit-decreasing packing, exact resume, prefetch thread. */
#include "loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"
#include "manifest.h"
#include "shard.h"

#define PERM_STREAM 0x5045524d00000000ull /* "PERM" */

typedef struct item {
    int64_t g;       /* global sample */
    int32_t start;   /* first token within the sample */
    int32_t len;
    int32_t order;   /* position in the window (tie-break) */
    int32_t bin;
} item;

/* The packer's position plus the packed window it is in. */
typedef struct cursor_t {
    pl_loader_state st;
    int have_window;     /* rows below describe window (st.epoch, st.cursor) */
    int64_t w_epoch, w_cursor, w_size;
    item *items;
    int n_items, cap_items;
    int *row_first, *row_items; /* row r: items row_items[row_first[r] .. row_first[r+1]) */
    int n_rows;
    int64_t *perm;       /* permutation of epoch perm_epoch */
    int64_t perm_epoch;
    int32_t *tok;        /* scratch (seq_len) */
    uint8_t *mask;
    int done;            /* epochs exhausted */
} cursor_t;

struct pl_loader {
    pl_loader_opts o;
    char *dir;
    pl_manifest *m;
    pl_shard **shards;
    int64_t *shard_first;  /* (n_shards + 1) global index of each shard's first sample */
    int64_t n;             /* samples */
    int32_t **pre_tok;     /* preloaded tokens per shard or NULL */
    uint8_t **pre_mask;
    pthread_mutex_t io;    /* HDF5 reads of one shard handle are not concurrent */
    cursor_t cur;
    pl_loader_state consumed;
    int64_t real_tokens, total_tokens;
    /* prefetch */
    int threaded;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pl_batch *ring;
    int ring_n, head, count, stop, prod_rc, prod_done;
    pl_err prod_err;
};

/* ---------------------------------------------------------------- samples */

static int sample_loc(const pl_loader *l, int64_t g, int *s, int64_t *local) {
    int lo = 0, hi = l->m->n_shards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (l->shard_first[mid] <= g) lo = mid;
        else hi = mid - 1;
    }
    *s = lo;
    *local = g - l->shard_first[lo];
    return 0;
}

int64_t pl_loader_samples(const pl_loader *l) { return l->n; }

int64_t pl_loader_sample_len(const pl_loader *l, int64_t g) {
    int s;
    int64_t k;
    sample_loc(l, g, &s, &k);
    const int64_t *off = pl_shard_offsets(l->shards[s]);
    return off[k + 1] - off[k];
}

/* Tokens [start, start+count) of sample g. */
static int read_span(pl_loader *l, int64_t g, int64_t start, int64_t count, int32_t *tok, uint8_t *mask, pl_err *err) {
    int s;
    int64_t k;
    sample_loc(l, g, &s, &k);
    int64_t off = pl_shard_offsets(l->shards[s])[k] + start;
    if (l->pre_tok) {
        memcpy(tok, l->pre_tok[s] + off, sizeof *tok * (size_t)count);
        memcpy(mask, l->pre_mask[s] + off, (size_t)count);
        return PL_OK;
    }
    pthread_mutex_lock(&l->io);
    int rc = pl_shard_read(l->shards[s], off, count, tok, mask, err);
    pthread_mutex_unlock(&l->io);
    return rc;
}

int pl_loader_sample(pl_loader *l, int64_t g, int32_t *tok, uint8_t *mask, pl_err *err) {
    if (g < 0 || g >= l->n) return pl_err_set(err, PL_ERANGE, "loader: sample %lld out of range", (long long)g);
    return read_span(l, g, 0, pl_loader_sample_len(l, g), tok, mask, err);
}

/* ---------------------------------------------------------------- packing */

static int make_perm(pl_loader *l, cursor_t *c, int64_t epoch) {
    if (c->perm_epoch == epoch) return PL_OK;
    for (int64_t i = 0; i < l->n; i++) c->perm[i] = i;
    for (int64_t i = l->n - 1; i > 0; i--) {
        int64_t j = (int64_t)pl_rng_below(c->st.seed, PERM_STREAM + (uint64_t)epoch, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = c->perm[i];
        c->perm[i] = c->perm[j];
        c->perm[j] = t;
    }
    c->perm_epoch = epoch;
    return PL_OK;
}

static int cmp_items(const void *a, const void *b) {
    const item *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}
static int cmp_bin(const void *a, const void *b) {
    const item *x = a, *y = b;
    if (x->bin != y->bin) return x->bin < y->bin ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int push_item(cursor_t *c, int64_t g, int32_t start, int32_t len) {
    if (c->n_items == c->cap_items) {
        int nc = c->cap_items ? c->cap_items * 2 : 4096;
        item *q = realloc(c->items, sizeof *q * (size_t)nc);
        if (!q) return 0;
        c->items = q;
        c->cap_items = nc;
    }
    c->items[c->n_items] = (item){g, start, len, c->n_items, -1};
    c->n_items++;
    return 1;
}

/* Pack the window starting at permutation index c->st.cursor of epoch
 * c->st.epoch: items sorted by length (longest first), each into the first
 * row with room; rows keep creation order, segments keep insertion order. */
static int pack_window(pl_loader *l, cursor_t *c, pl_err *err) {
    int S = l->o.seq_len;
    make_perm(l, c, c->st.epoch);
    int64_t w = l->n - c->st.cursor;
    if (w > l->o.pack_window) w = l->o.pack_window;
    c->n_items = 0;
    for (int64_t k = 0; k < w; k++) {
        int64_t g = c->perm[c->st.cursor + k];
        int64_t L = pl_loader_sample_len(l, g);
        int ok = 1;
        if (L <= S) {
            ok = push_item(c, g, 0, (int32_t)L);
        } else if (l->o.long_mode == PL_LONG_TRUNCATE) {
            ok = push_item(c, g, 0, S);
        } else {
            for (int64_t st = 0; ok && st + 1 < L; st += S - 1) {
                if (st > INT32_MAX) return pl_err_set(err, PL_ERANGE, "loader: sample %lld is too long to split", (long long)g);
                ok = push_item(c, g, (int32_t)st, (int32_t)(L - st < S ? L - st : S));
            }
        }
        if (!ok) return pl_err_set(err, PL_ENOMEM, "loader: out of memory");
    }
    qsort(c->items, (size_t)c->n_items, sizeof *c->items, cmp_items);
    /* first fit: remaining room of each open row */
    int32_t *room = malloc(sizeof *room * (size_t)(c->n_items ? c->n_items : 1));
    if (!room) return pl_err_set(err, PL_ENOMEM, "loader: out of memory");
    int nb = 0;
    for (int i = 0; i < c->n_items; i++) {
        int b = 0;
        while (b < nb && room[b] < c->items[i].len) b++;
        if (b == nb) room[nb++] = S;
        room[b] -= c->items[i].len;
        c->items[i].bin = b;
    }
    free(room);
    qsort(c->items, (size_t)c->n_items, sizeof *c->items, cmp_bin);
    free(c->row_first);
    c->row_first = malloc(sizeof *c->row_first * (size_t)(nb + 1));
    if (!c->row_first) return pl_err_set(err, PL_ENOMEM, "loader: out of memory");
    int r = 0;
    for (int i = 0; i < c->n_items; i++)
        while (r <= c->items[i].bin) c->row_first[r++] = i;
    while (r <= nb) c->row_first[r++] = c->n_items;
    c->n_rows = nb;
    c->w_epoch = c->st.epoch;
    c->w_cursor = c->st.cursor;
    c->w_size = w;
    c->have_window = 1;
    return PL_OK;
}

/* Fill row `row` of batch b with the next packed row; returns 0 and sets
 * c->done at the end. */
static int next_row(pl_loader *l, cursor_t *c, pl_batch *b, int row, int *got, pl_err *err) {
    *got = 0;
    for (;;) {
        if (c->done) return PL_OK;
        if (!c->have_window || c->w_epoch != c->st.epoch || c->w_cursor != c->st.cursor) {
            int rc = pack_window(l, c, err);
            if (rc) return rc;
        }
        if (c->st.row < c->n_rows) break;
        /* next window, or next epoch */
        c->st.cursor += c->w_size;
        c->st.row = 0;
        if (c->st.cursor >= l->n) {
            c->st.epoch++;
            c->st.cursor = 0;
            if (l->o.epochs > 0 && c->st.epoch >= l->o.epochs) {
                c->done = 1;
                return PL_OK;
            }
        }
    }
    int S = l->o.seq_len;
    size_t base = (size_t)row * (size_t)S;
    int32_t *ids = b->ids + base, *tg = b->targets + base, *seg = b->seg + base, *pos = b->pos + base;
    int64_t *ss = b->seg_sample + base;
    int32_t *sst = b->seg_start + base;
    int p = 0, k = 0;
    for (int i = c->row_first[c->st.row]; i < c->row_first[c->st.row + 1]; i++, k++) {
        const item *it = &c->items[i];
        int rc = read_span(l, it->g, it->start, it->len, c->tok, c->mask, err);
        if (rc) return rc;
        for (int t = 0; t < it->len; t++) {
            ids[p + t] = c->tok[t];
            seg[p + t] = k + 1;
            pos[p + t] = t;
            tg[p + t] = (t + 1 < it->len && c->mask[t + 1]) ? c->tok[t + 1] : -1;
            if (tg[p + t] >= 0) b->n_trained++;
        }
        ss[k] = it->g;
        sst[k] = it->start;
        p += it->len;
    }
    b->n_real += p;
    for (; p < S; p++) {
        ids[p] = l->o.pad_id;
        seg[p] = 0;
        pos[p] = 0;
        tg[p] = -1;
    }
    for (; k < S; k++) {
        ss[k] = -1;
        sst[k] = 0;
    }
    c->st.row++;
    *got = 1;
    return PL_OK;
}

static int produce(pl_loader *l, pl_batch *b, pl_err *err) {
    b->rows = 0;
    b->n_trained = 0;
    b->n_real = 0;
    for (int r = 0; r < l->o.batch_rows; r++) {
        int got;
        int rc = next_row(l, &l->cur, b, r, &got, err);
        if (rc) return rc;
        if (!got) break;
        b->rows++;
    }
    b->state = l->cur.st;
    return PL_OK;
}

/* --------------------------------------------------------------- prefetch */

static void *prefetch_main(void *arg) {
    pl_loader *l = arg;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (!l->stop && l->count == l->ring_n) pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            return NULL;
        }
        int slot = (l->head + l->count) % l->ring_n;
        pthread_mutex_unlock(&l->mu);
        pl_err e = {0};
        int rc = produce(l, &l->ring[slot], &e);
        pthread_mutex_lock(&l->mu);
        if (rc) {
            l->prod_rc = rc;
            l->prod_err = e;
        } else {
            l->count++;
        }
        pthread_cond_broadcast(&l->cv);
        int end = rc || l->ring[slot].rows == 0;
        if (end) l->prod_done = 1;
        pthread_mutex_unlock(&l->mu);
        if (end) return NULL;
    }
}

/* ------------------------------------------------------------------- API */

int pl_batch_alloc(const pl_loader *l, pl_batch *b, pl_err *err) {
    memset(b, 0, sizeof *b);
    size_t n;
    if (!pl_mul_ok((size_t)l->o.batch_rows, (size_t)l->o.seq_len, &n))
        return pl_err_set(err, PL_ERANGE, "loader: batch too large");
    b->seq_len = l->o.seq_len;
    b->ids = malloc(sizeof *b->ids * n);
    b->targets = malloc(sizeof *b->targets * n);
    b->seg = malloc(sizeof *b->seg * n);
    b->pos = malloc(sizeof *b->pos * n);
    b->seg_sample = malloc(sizeof *b->seg_sample * n);
    b->seg_start = malloc(sizeof *b->seg_start * n);
    if (!b->ids || !b->targets || !b->seg || !b->pos || !b->seg_sample || !b->seg_start) {
        pl_batch_free(b);
        return pl_err_set(err, PL_ENOMEM, "loader: out of memory for a batch of %zu tokens", n);
    }
    return PL_OK;
}

void pl_batch_free(pl_batch *b) {
    free(b->ids);
    free(b->targets);
    free(b->seg);
    free(b->pos);
    free(b->seg_sample);
    free(b->seg_start);
    memset(b, 0, sizeof *b);
}

void pl_loader_close(pl_loader *l) {
    if (!l) return;
    if (l->threaded) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->th, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
    }
    if (l->ring)
        for (int i = 0; i < l->ring_n; i++) pl_batch_free(&l->ring[i]);
    free(l->ring);
    if (l->shards)
        for (int i = 0; i < l->m->n_shards; i++) pl_shard_close(l->shards[i]);
    if (l->pre_tok)
        for (int i = 0; i < l->m->n_shards; i++) {
            free(l->pre_tok[i]);
            free(l->pre_mask[i]);
        }
    free(l->pre_tok);
    free(l->pre_mask);
    free(l->shards);
    free(l->shard_first);
    free(l->cur.items);
    free(l->cur.row_first);
    free(l->cur.perm);
    free(l->cur.tok);
    free(l->cur.mask);
    pthread_mutex_destroy(&l->io);
    pl_manifest_free(l->m);
    free(l->dir);
    free(l);
}

int pl_loader_open(pl_loader **out, const char *dir, const pl_loader_opts *o, const pl_loader_state *resume,
                   pl_err *err) {
    *out = NULL;
    if (o->seq_len < 2 || o->batch_rows < 1)
        return pl_err_set(err, PL_EINVAL, "loader: seq_len must be >= 2 and batch_rows >= 1 (got %d, %d)", o->seq_len,
                          o->batch_rows);
    pl_loader *l = calloc(1, sizeof *l);
    if (!l) return pl_err_set(err, PL_ENOMEM, "loader: out of memory");
    pthread_mutex_init(&l->io, NULL);
    l->o = *o;
    if (l->o.pack_window <= 0) l->o.pack_window = 1024;
    if (l->o.preload_bytes == 0) l->o.preload_bytes = (int64_t)1 << 30;
    l->dir = strdup(dir);
    int rc = l->dir ? pl_manifest_load(&l->m, dir, err) : pl_err_set(err, PL_ENOMEM, "out of memory");
    if (rc) goto fail;
    if (l->m->n_shards == 0 || l->m->samples == 0) {
        rc = pl_err_set(err, PL_EINVAL, "%s: the dataset has no samples", dir);
        goto fail;
    }
    l->shards = calloc((size_t)l->m->n_shards, sizeof *l->shards);
    l->shard_first = calloc((size_t)l->m->n_shards + 1, sizeof *l->shard_first);
    if (!l->shards || !l->shard_first) {
        rc = pl_err_set(err, PL_ENOMEM, "loader: out of memory");
        goto fail;
    }
    for (int i = 0; i < l->m->n_shards; i++) {
        if ((rc = pl_manifest_open_shard(l->m, dir, i, o->trust, &l->shards[i], err))) goto fail;
        l->shard_first[i + 1] = l->shard_first[i] + pl_shard_samples(l->shards[i]);
    }
    l->n = l->shard_first[l->m->n_shards];
    if (l->o.preload_bytes > 0 && l->m->tokens * 5 <= l->o.preload_bytes) {
        l->pre_tok = calloc((size_t)l->m->n_shards, sizeof *l->pre_tok);
        l->pre_mask = calloc((size_t)l->m->n_shards, sizeof *l->pre_mask);
        if (!l->pre_tok || !l->pre_mask) {
            rc = pl_err_set(err, PL_ENOMEM, "loader: out of memory");
            goto fail;
        }
        for (int i = 0; i < l->m->n_shards; i++) {
            int64_t T = pl_shard_tokens(l->shards[i]);
            l->pre_tok[i] = malloc(sizeof(int32_t) * (size_t)(T ? T : 1));
            l->pre_mask[i] = malloc((size_t)(T ? T : 1));
            if (!l->pre_tok[i] || !l->pre_mask[i]) {
                rc = pl_err_set(err, PL_ENOMEM, "loader: out of memory preloading %lld tokens", (long long)T);
                goto fail;
            }
            if ((rc = pl_shard_read_all(l->shards[i], l->pre_tok[i], l->pre_mask[i], err))) goto fail;
        }
    }
    cursor_t *c = &l->cur;
    c->perm = malloc(sizeof *c->perm * (size_t)l->n);
    c->tok = malloc(sizeof *c->tok * (size_t)l->o.seq_len);
    c->mask = malloc((size_t)l->o.seq_len);
    if (!c->perm || !c->tok || !c->mask) {
        rc = pl_err_set(err, PL_ENOMEM, "loader: out of memory");
        goto fail;
    }
    c->perm_epoch = -1;
    c->st.seed = o->seed;
    if (resume) {
        if (resume->epoch < 0 || resume->cursor < 0 || resume->cursor > l->n || resume->row < 0) {
            rc = pl_err_set(err, PL_EINVAL, "loader: resume state (epoch %lld, cursor %lld, row %lld) does not fit "
                            "this dataset of %lld samples", (long long)resume->epoch, (long long)resume->cursor,
                            (long long)resume->row, (long long)l->n);
            goto fail;
        }
        c->st = *resume;
        if (l->o.epochs > 0 && c->st.epoch >= l->o.epochs) c->done = 1;
    }
    l->consumed = c->st;
    if (o->prefetch > 0) {
        l->ring_n = o->prefetch;
        l->ring = calloc((size_t)l->ring_n, sizeof *l->ring);
        if (!l->ring) {
            rc = pl_err_set(err, PL_ENOMEM, "loader: out of memory");
            goto fail;
        }
        for (int i = 0; i < l->ring_n; i++)
            if ((rc = pl_batch_alloc(l, &l->ring[i], err))) goto fail;
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        if (pthread_create(&l->th, NULL, prefetch_main, l) != 0) {
            pthread_mutex_destroy(&l->mu);
            pthread_cond_destroy(&l->cv);
            rc = pl_err_set(err, PL_EIO, "loader: cannot start the prefetch thread");
            goto fail;
        }
        l->threaded = 1;
    }
    *out = l;
    return PL_OK;
fail:
    pl_loader_close(l);
    return rc;
}

int pl_loader_next(pl_loader *l, pl_batch *b, pl_err *err) {
    int rc = PL_OK;
    if (!l->threaded) {
        rc = produce(l, b, err);
    } else {
        pthread_mutex_lock(&l->mu);
        while (l->count == 0 && !l->prod_rc && !l->prod_done) pthread_cond_wait(&l->cv, &l->mu);
        if (l->count == 0) {
            rc = l->prod_rc;
            if (rc && err) *err = l->prod_err;
            b->rows = 0;
            b->n_trained = b->n_real = 0;
            b->state = l->consumed;
        } else {
            pl_batch t = *b;
            *b = l->ring[l->head];
            l->ring[l->head] = t;
            l->head = (l->head + 1) % l->ring_n;
            l->count--;
            pthread_cond_broadcast(&l->cv);
        }
        pthread_mutex_unlock(&l->mu);
    }
    if (rc) return rc;
    l->consumed = b->state;
    l->real_tokens += b->n_real;
    l->total_tokens += (int64_t)b->rows * l->o.seq_len;
    return PL_OK;
}

int pl_loader_step(pl_loader *l, pl_batch *mb, int accum, int64_t *step_trained, pl_err *err) {
    int64_t s = 0;
    for (int i = 0; i < accum; i++) {
        int rc = pl_loader_next(l, &mb[i], err);
        if (rc) return rc;
        s += mb[i].n_trained;
    }
    *step_trained = s;
    return PL_OK;
}

pl_loader_state pl_loader_state_get(const pl_loader *l) { return l->consumed; }

double pl_loader_padding(const pl_loader *l) {
    return l->total_tokens ? 1.0 - (double)l->real_tokens / (double)l->total_tokens : 0.0;
}
