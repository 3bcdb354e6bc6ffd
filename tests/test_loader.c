/* test_loader.c: the packing loader: every sample once per epoch, segments
 * and targets exact, truncate/split of long samples, exact resume (also
 * across epochs and with the prefetch thread), step-level loss
 * normalization, padding, and no attention across samples checked through
 * the stories260K model (packed row logits == each sample alone). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/json.h"
#include "../core/sha256.h"
#include "../datasets/loader.h"
#include "../datasets/manifest.h"
#include "../datasets/shard_writer.h"
#include "../datasets/tokenizer.h"
#include "../trainer/model.h"
#include "check.h"

/* REQUIRE for void helpers: count a failure and leave the function. */
#define REQUIRE_VOID_OK(cond, ...)                                              \
    do {                                                                        \
        if (!(cond)) {                                                          \
            CHECK(0, __VA_ARGS__);                                              \
            return;                                                             \
        }                                                                       \
    } while (0)

static char tmpdir[256];

static void rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[2048];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* sample k: length 1..150 (some longer than the 64-token rows used below) */
#define NS 403
static int64_t slen(int k) { return 1 + (k * 53 + 5) % 150; }
static int32_t stok(int k, int64_t i) { return (int32_t)((k * 31 + i * 17 + 3) % 509); }
static uint8_t smask(int k, int64_t i) { return (uint8_t)((i + k) % 5 != 0); }

static int build_synth(const char *dir) {
    pl_dsw_opts o = {3000, 0, 4, 0, "", "", 512, "synthetic", 0};
    pl_dsw *w;
    pl_err err = {0};
    if (pl_dsw_open(&w, dir, &o, &err)) return -1;
    int32_t ids[160];
    uint8_t mask[160];
    int rc = 0;
    for (int k = 0; k < NS && !rc; k++) {
        for (int64_t i = 0; i < slen(k); i++) {
            ids[i] = stok(k, i);
            mask[i] = smask(k, i);
        }
        pl_sample s = {ids, mask, slen(k), (uint64_t)k * 7919u, NULL, NULL};
        rc = pl_dsw_add(w, &s, k + 1, k + 1, &err);
    }
    if (!rc) rc = pl_dsw_finish(w, NULL, NULL, &err);
    if (rc) fprintf(stderr, "build: %s\n", err.msg);
    pl_dsw_free(w);
    return rc;
}

/* global sample index -> k (shards keep input order) */
static int sample_k(int64_t g) { return (int)g; }

/* Check one row's structure against the samples; counts[g] += pieces. */
static int check_row(const pl_batch *b, int r, int S, pl_long_mode mode, int *counts, int64_t *covered) {
    const int32_t *ids = b->ids + (size_t)r * S, *tg = b->targets + (size_t)r * S, *seg = b->seg + (size_t)r * S,
                  *pos = b->pos + (size_t)r * S, *sst = b->seg_start + (size_t)r * S;
    const int64_t *ss = b->seg_sample + (size_t)r * S;
    int p = 0, ok = 1;
    for (int k = 0; k < S && ss[k] >= 0; k++) {
        int kk = sample_k(ss[k]);
        int64_t L = slen(kk), st = sst[k];
        int64_t len = L - st < S ? L - st : S;
        if (mode == PL_LONG_TRUNCATE && st != 0) ok = 0;
        for (int64_t t = 0; t < len; t++, p++) {
            if (p >= S || ids[p] != stok(kk, st + t) || seg[p] != k + 1 || pos[p] != t) return 0;
            int32_t want = (t + 1 < len && smask(kk, st + t + 1)) ? stok(kk, st + t + 1) : -1;
            if (tg[p] != want) return 0;
        }
        counts[ss[k]]++;
        if (covered) covered[ss[k]] += len - (st ? 1 : 0);
    }
    for (; p < S; p++)
        if (seg[p] != 0 || tg[p] != -1) return 0;
    return ok;
}

static void test_epochs(const char *dir, pl_long_mode mode, int prefetch) {
    int S = 64;
    pl_loader_opts o = {S, 3, 42, mode, 100, prefetch, 0, 2, 0, 0};
    pl_loader *l;
    pl_err err = {0};
    if (pl_loader_open(&l, dir, &o, NULL, &err)) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    CHECK(pl_loader_samples(l) == NS, "samples %lld", (long long)pl_loader_samples(l));
    pl_batch b;
    pl_batch_alloc(l, &b, &err);
    static int counts[2][NS];
    static int64_t covered[2][NS];
    memset(counts, 0, sizeof counts);
    memset(covered, 0, sizeof covered);
    int rows_ok = 1, nb = 0, epoch = 0;
    int64_t first_order[2] = {-1, -1};
    pl_loader_state prev = pl_loader_state_get(l);
    for (;;) {
        if (pl_loader_next(l, &b, &err)) {
            CHECK(0, "next: %s", err.msg);
            break;
        }
        if (b.rows == 0) break;
        nb++;
        for (int r = 0; r < b.rows; r++) {
            /* which epoch: the row belongs to the epoch current before it was taken;
             * rows never straddle epochs, and an epoch ends exactly at a window end */
            if (!check_row(&b, r, S, mode, counts[epoch > 1 ? 1 : epoch], covered[epoch > 1 ? 1 : epoch])) rows_ok = 0;
            if (first_order[epoch > 1 ? 1 : epoch] < 0) first_order[epoch > 1 ? 1 : epoch] = b.seg_sample[(size_t)r * S];
            int done = 1;
            for (int g = 0; g < NS; g++)
                if (!counts[0][g]) done = 0;
            if (done && epoch == 0) epoch = 1;
        }
        prev = b.state;
    }
    (void)prev;
    CHECK(rows_ok, "rows hold exact segments, positions, targets and padding (mode %d, prefetch %d)", mode, prefetch);
    int once = 1, once2 = 1, cover = 1;
    for (int g = 0; g < NS; g++) {
        int pieces = 1;
        if (mode == PL_LONG_SPLIT && slen(g) > S) pieces = (int)((slen(g) - 2) / (S - 1) + 1);
        if (counts[0][g] != pieces) once = 0;
        if (counts[1][g] != pieces) once2 = 0;
        int64_t want = mode == PL_LONG_SPLIT ? slen(g) : (slen(g) < S ? slen(g) : S);
        if (covered[0][g] != want) cover = 0;
    }
    CHECK(once, "every sample exactly once in epoch 1 (mode %d)", mode);
    CHECK(once2, "every sample exactly once in epoch 2 (mode %d)", mode);
    CHECK(cover, "%s", mode == PL_LONG_SPLIT ? "split pieces cover each long sample exactly (1-token overlap)"
                                            : "truncation keeps the first seq_len tokens");
    CHECK(first_order[0] != first_order[1], "epochs are shuffled differently");
    double pad = pl_loader_padding(l);
    CHECK(pad > 0 && pad < 0.10, "padding fraction %.4f", pad);
    printf("note: mode %s, prefetch %d: %d batches for 2 epochs, padding %.2f%%\n",
           mode == PL_LONG_SPLIT ? "split" : "truncate", prefetch, nb, 100 * pad);
    pl_batch_free(&b);
    pl_loader_close(l);
}

static uint64_t batch_hash(const pl_batch *b) {
    uint8_t d[32];
    pl_sha256 *h = pl_sha256_new();
    size_t n = (size_t)b->rows * (size_t)b->seq_len;
    pl_sha256_update(h, b->ids, 4 * n);
    pl_sha256_update(h, b->targets, 4 * n);
    pl_sha256_update(h, b->seg, 4 * n);
    pl_sha256_update(h, b->pos, 4 * n);
    pl_sha256_update(h, &b->rows, sizeof b->rows);
    pl_sha256_final(h, d);
    uint64_t v;
    memcpy(&v, d, 8);
    return v;
}

static int run_batches(const char *dir, int prefetch, const pl_loader_state *from, int n, uint64_t *out,
                       pl_loader_state *state_after, int64_t *epoch_seen) {
    pl_loader_opts o = {48, 5, 7, PL_LONG_SPLIT, 64, prefetch, 1, 0, prefetch == 3 ? -1 : 0, 0};
    pl_loader *l;
    pl_err err = {0};
    if (pl_loader_open(&l, dir, &o, from, &err)) {
        fprintf(stderr, "open: %s\n", err.msg);
        return -1;
    }
    pl_batch b;
    pl_batch_alloc(l, &b, &err);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if ((rc = pl_loader_next(l, &b, &err))) break;
        out[i] = batch_hash(&b);
        if (epoch_seen) *epoch_seen = b.state.epoch;
    }
    if (state_after) *state_after = pl_loader_state_get(l);
    pl_batch_free(&b);
    pl_loader_close(l);
    return rc;
}

static void test_resume(const char *dir) {
    enum { N = 300 };
    uint64_t ref[N], got[N], pf[N], nopre[N];
    int64_t last_epoch = 0;
    REQUIRE_VOID_OK(run_batches(dir, 0, NULL, N, ref, NULL, &last_epoch) == 0, "reference run");
    CHECK(last_epoch >= 2, "the reference run crosses epoch boundaries (reached epoch %lld)", (long long)last_epoch);
    CHECK(run_batches(dir, 2, NULL, N, pf, NULL, NULL) == 0 && !memcmp(pf, ref, sizeof ref),
          "the prefetch thread yields the same batches");
    CHECK(run_batches(dir, 3, NULL, N, nopre, NULL, NULL) == 0 && !memcmp(nopre, ref, sizeof ref),
          "per-sample HDF5 reads (no preload) yield the same batches");
    int cuts[] = {1, 13, 77, 129, 130, 131, 200, 263, 299};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        int k = cuts[c];
        pl_loader_state st;
        int prefetch = (int)(c % 2) * 2;
        CHECK(run_batches(dir, prefetch, NULL, k, got, &st, NULL) == 0, "first part");
        CHECK(!memcmp(got, ref, sizeof *got * (size_t)k), "first %d batches", k);
        /* a new loader from the saved state: exactly the batches that follow */
        CHECK(run_batches(dir, 2 - prefetch, &st, N - k, got + k, NULL, NULL) == 0, "resumed part");
        CHECK(!memcmp(got, ref, sizeof ref), "resume after %d batches (state epoch %lld, cursor %lld, row %lld) "
              "gives exactly the uninterrupted batches", k, (long long)st.epoch, (long long)st.cursor, (long long)st.row);
    }
}

static void test_step_normalization(const char *dir) {
    pl_loader_opts o = {64, 2, 3, PL_LONG_TRUNCATE, 0, 0, 1, 0, 0, 0};
    pl_loader *l;
    pl_err err = {0};
    REQUIRE_VOID_OK(pl_loader_open(&l, dir, &o, NULL, &err) == 0, "open: %s", err.msg);
    pl_batch mb[3];
    for (int i = 0; i < 3; i++) pl_batch_alloc(l, &mb[i], &err);
    int64_t step_trained = 0;
    CHECK(pl_loader_step(l, mb, 3, &step_trained, &err) == 0, "step: %s", err.msg);
    /* a fake per-token loss; the step loss is sum over micro-batches of
     * (micro-batch token-loss sum / step_trained) */
    double scaled = 0, all = 0, permicro = 0;
    int64_t cnt = 0, diff = 0;
    for (int i = 0; i < 3; i++) {
        double s = 0;
        int64_t n = 0;
        for (size_t t = 0; t < (size_t)mb[i].rows * 64; t++)
            if (mb[i].targets[t] >= 0) {
                double lt = 1.0 + (mb[i].targets[t] % 7);
                s += lt;
                n++;
            }
        CHECK(n == mb[i].n_trained, "micro-batch %d counts its trained tokens (%lld vs %lld)", i, (long long)n,
              (long long)mb[i].n_trained);
        scaled += s / (double)step_trained;
        all += s;
        cnt += n;
        permicro += s / (double)n / 3.0;
        diff += n != mb[0].n_trained;
    }
    CHECK(cnt == step_trained, "step_trained %lld = sum of micro-batches %lld", (long long)step_trained, (long long)cnt);
    CHECK(fabs(scaled - all / (double)cnt) < 1e-12, "scaled micro-batch losses sum to the step's token mean");
    printf("note: step of 3 micro-batches: token mean %.6f, mean of per-micro-batch means %.6f (differ when counts differ: %lld)\n",
           all / (double)cnt, permicro, (long long)diff);
    for (int i = 0; i < 3; i++) pl_batch_free(&mb[i]);
    pl_loader_close(l);
}

/* The dataset's shards are checked: a damaged shard stops the loader. */
static void test_damaged(const char *dir) {
    pl_manifest *m;
    pl_err err = {0};
    REQUIRE_VOID_OK(pl_manifest_load(&m, dir, &err) == 0, "manifest");
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, m->shards[0].file);
    FILE *f = fopen(p, "r+b");
    fseek(f, 200, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(c ^ 1, f);
    fclose(f);
    pl_loader_opts o = {64, 2, 3, PL_LONG_TRUNCATE, 0, 0, 0, 0, 0, 0};
    pl_loader *l = NULL;
    CHECK(pl_loader_open(&l, dir, &o, NULL, &err) == PL_EFORMAT && strstr(err.msg, "shard-00000.h5") &&
          strstr(err.msg, "sha256"), "damaged shard refused: %s", err.msg);
    pl_loader_close(l);
    f = fopen(p, "r+b");
    fseek(f, 200, SEEK_SET);
    fputc(c, f);
    fclose(f);
    pl_manifest_free(m);
}

/* ------------------------------------------------ through the model */

static void test_model_segments(void) {
    const char *shared = check_env("POTLUCK_SHARED");
    char mp[1024], tp[1024], txt[1024];
    snprintf(mp, sizeof mp, "%s/fixtures/stories260K/stories260K.bin", shared);
    snprintf(tp, sizeof tp, "%s/fixtures/stories260K/tok512.bin", shared);
    snprintf(txt, sizeof txt, "%s/fixtures/text/tinystories_sample.txt", shared);
    pl_err err = {0};
    /* one JSONL record per line of the text */
    char *buf;
    size_t len;
    REQUIRE_VOID_OK(pl_read_file(txt, 1 << 20, &buf, &len, &err) == 0, "text: %s", err.msg);
    char in[512], dir[512];
    snprintf(in, sizeof in, "%s/stories.jsonl", tmpdir);
    snprintf(dir, sizeof dir, "%s/stories", tmpdir);
    FILE *f = fopen(in, "w");
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", line);
        char *s = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    }
    fclose(f);
    free(buf);
    pl_tokenizer *tok;
    REQUIRE_VOID_OK(pl_tokenizer_load(&tok, tp, &err) == 0, "tokenizer: %s", err.msg);
    pl_build_opts bo = {in, dir, tok, "", "", 0, 0, -1, 0, 0, NULL, NULL, NULL};
    pl_build_stats st;
    int rc = pl_dataset_build(&bo, &st, &err);
    pl_tokenizer_free(tok);
    REQUIRE_VOID_OK(rc == 0, "build: %s", err.msg);
    pl_model *m;
    REQUIRE_VOID_OK(pl_model_load(&m, mp, NULL, &err) == 0, "model: %s", err.msg);
    int S = 128, V = m->cfg.vocab;
    pl_loader_opts o = {S, 2, 5, PL_LONG_TRUNCATE, 0, 0, 0, 1, 0, 0};
    pl_loader *l;
    if (pl_loader_open(&l, dir, &o, NULL, &err)) {
        CHECK(0, "loader: %s", err.msg);
        pl_model_free(m);
        return;
    }
    pl_batch b;
    pl_batch_alloc(l, &b, &err);
    float *lg = malloc(sizeof *lg * (size_t)S * V), *lg1 = malloc(sizeof *lg1 * (size_t)S * V);
    int32_t *pos1 = malloc(sizeof *pos1 * (size_t)S);
    int rows_checked = 0, segs_checked = 0;
    double worst = 0;
    while (rows_checked < 4 && !pl_loader_next(l, &b, &err) && b.rows > 0) {
        for (int r = 0; r < b.rows && rows_checked < 4; r++) {
            const int32_t *ids = b.ids + (size_t)r * S, *seg = b.seg + (size_t)r * S, *pos = b.pos + (size_t)r * S;
            if (seg[0] == 0 || b.seg_sample[(size_t)r * S + 1] < 0) continue; /* want 2+ segments */
            if (pl_model_forward(m, ids, pos, seg, S, lg, &err)) {
                CHECK(0, "forward: %s", err.msg);
                break;
            }
            rows_checked++;
            int p = 0;
            while (p < S && seg[p] != 0) {
                int q = p;
                while (q < S && seg[q] == seg[p]) q++;
                for (int t = 0; t < q - p; t++) pos1[t] = t;
                if (pl_model_forward(m, ids + p, pos1, NULL, q - p, lg1, &err)) {
                    CHECK(0, "forward alone: %s", err.msg);
                    break;
                }
                double d = check_max_abs(lg + (size_t)p * V, lg1, (size_t)(q - p) * V);
                if (d > worst) worst = d;
                segs_checked++;
                p = q;
            }
        }
    }
    CHECK(rows_checked >= 2 && segs_checked >= 5, "packed rows checked: %d rows, %d segments", rows_checked, segs_checked);
    CHECK(worst <= 1e-4, "packed-row logits equal each sample alone: max abs diff %.3g", worst);
    printf("note: stories260K: %d packed rows, %d segments, max |logit diff| %.3g\n", rows_checked, segs_checked, worst);
    free(lg);
    free(lg1);
    free(pos1);
    pl_batch_free(&b);
    pl_loader_close(l);
    pl_model_free(m);
    rm_rf(dir);
    unlink(in);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_loader.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/synth", tmpdir);
    if (build_synth(dir) == 0) {
        test_epochs(dir, PL_LONG_TRUNCATE, 0);
        test_epochs(dir, PL_LONG_SPLIT, 2);
        test_resume(dir);
        test_step_normalization(dir);
        test_damaged(dir);
    } else {
        CHECK(0, "synthetic dataset build failed");
    }
    test_model_segments();
    rm_rf(dir);
    rm_rf(tmpdir);
    return check_summary("test_loader");
}
