/* test_run.c: the training run (trainer/run.h, schedule.h, checkpoint.h):
 * LR schedules against transformers' formulas, config parsing and its
 * messages, checkpoint write / verify / corrupt-skip / keep-last-K, and a
 * bit-identical resume in-process on stories260K (full fine-tuning through
 * the same loop the QLoRA run uses): N steps straight vs k steps, an
 * interrupt (the stop flag) and a fresh run resumed from the checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "../core/json.h"
#include "../core/mapfile.h"
#include "../trainer/checkpoint.h"
#include "../trainer/run.h"
#include "../trainer/schedule.h"

static void schedules(void) {
    /* transformers get_*_schedule_with_warmup(num_warmup_steps=10, num_training_steps=110) */
    struct { pl_sched_kind k; int s; double want; } cases[] = {
        {PL_SCHED_CONSTANT, 0, 0.0}, {PL_SCHED_CONSTANT, 5, 0.5}, {PL_SCHED_CONSTANT, 10, 1.0}, {PL_SCHED_CONSTANT, 109, 1.0},
        {PL_SCHED_LINEAR, 3, 0.3}, {PL_SCHED_LINEAR, 10, 1.0}, {PL_SCHED_LINEAR, 60, 0.5}, {PL_SCHED_LINEAR, 110, 0.0},
        {PL_SCHED_LINEAR, 120, 0.0},
        {PL_SCHED_COSINE, 7, 0.7}, {PL_SCHED_COSINE, 10, 1.0}, {PL_SCHED_COSINE, 35, 0.5 * (1 + cos(M_PI * 0.25))},
        {PL_SCHED_COSINE, 60, 0.5}, {PL_SCHED_COSINE, 85, 0.5 * (1 + cos(M_PI * 0.75))}, {PL_SCHED_COSINE, 110, 0.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double f = pl_sched_factor(cases[i].k, cases[i].s, 10, 110);
        CHECK(fabs(f - cases[i].want) < 1e-12, "schedule %s step %d: %.15g, expected %.15g", pl_sched_name(cases[i].k),
              cases[i].s, f, cases[i].want);
    }
    CHECK(pl_sched_factor(PL_SCHED_COSINE, 0, 0, 100) == 1.0, "cosine without warmup starts at 1");
    CHECK(pl_sched_warmup_from_ratio(0.1, 95) == 10, "warmup ratio 0.1 of 95 steps = ceil(9.5) = 10");
    CHECK(pl_sched_warmup_from_ratio(0.03, 100) == 3, "warmup ratio 0.03 of 100 = 3");
    CHECK(pl_sched_warmup_from_ratio(0, 100) == 0, "no warmup ratio");
    pl_sched_kind k;
    pl_err err = {0};
    CHECK(pl_sched_parse("cosine", &k, &err) == 0 && k == PL_SCHED_COSINE, "parse cosine");
    CHECK(pl_sched_parse("cosin", &k, &err) == PL_EINVAL && strstr(err.msg, "constant, linear or cosine"), "bad schedule: %s", err.msg);
}

static void config(void) {
    pl_run_cfg c;
    pl_run_cfg_defaults(&c);
    pl_err err = {0};
    CHECK(c.max_grad_norm == 0.3 && c.lora_r == 16 && c.lr == 2e-4, "QLoRA defaults");
    cJSON *j = cJSON_Parse("{\"model\": \"m.gguf\", \"text\": \"t.txt\", \"out\": \"o\", \"lora\": {\"r\": 8}, "
                           "\"train\": {\"lr\": 1e-3, \"steps\": 7, \"schedule\": \"linear\", \"checkpointing\": true}}");
    CHECK(pl_run_cfg_apply_json(&c, j, "cfg.json", &err) == 0, "apply json: %s", err.msg);
    cJSON_Delete(j);
    CHECK(c.lora_r == 8 && c.lr == 1e-3 && c.steps == 7 && !strcmp(c.schedule, "linear") && c.checkpointing,
          "json values applied");
    char *argv[] = {"--lr", "5e-4", "--no-checkpointing", "--lr", "2e-4x", "--steps", "1.5", "--bogus"};
    int used;
    CHECK(pl_run_cfg_apply_flag(&c, 2, argv, &used, &err) == 0 && used == 2 && c.lr == 5e-4, "flag overrides json");
    CHECK(pl_run_cfg_apply_flag(&c, 1, argv + 2, &used, &err) == 0 && used == 1 && !c.checkpointing, "--no-<bool>");
    CHECK(pl_run_cfg_apply_flag(&c, 2, argv + 3, &used, &err) == PL_EINVAL &&
              !strcmp(err.msg, "--lr: expected a number, got \"2e-4x\""), "bad flag value: %s", err.msg);
    CHECK(pl_run_cfg_apply_flag(&c, 2, argv + 5, &used, &err) == PL_EINVAL && strstr(err.msg, "expected an integer"),
          "non-integer steps: %s", err.msg);
    CHECK(pl_run_cfg_apply_flag(&c, 1, argv + 7, &used, &err) == 0 && used == 0, "unknown flag is not consumed");
    CHECK(pl_run_cfg_validate(&c, &err) == 0, "valid config: %s", err.msg);
    j = cJSON_Parse("{\"train\": {\"lr\": \"2e-4x\"}}");
    CHECK(pl_run_cfg_apply_json(&c, j, "", &err) == PL_EINVAL && !strcmp(err.msg, "train.lr: expected a number, got string \"2e-4x\""),
          "json type error: %s", err.msg);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"train\": {\"lrr\": 1}}");
    CHECK(pl_run_cfg_apply_json(&c, j, "x.json", &err) == PL_EINVAL && strstr(err.msg, "train.lrr: unknown key"), "unknown key: %s", err.msg);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"train\": {\"lr\": 50}}");
    CHECK(pl_run_cfg_apply_json(&c, j, "x.json", &err) == PL_EINVAL && strstr(err.msg, "out of range"), "range: %s", err.msg);
    cJSON_Delete(j);
    /* round trip through the resolved JSON */
    cJSON *o = pl_run_cfg_to_json(&c);
    pl_run_cfg d;
    pl_run_cfg_defaults(&d);
    CHECK(o && pl_run_cfg_apply_json(&d, o, "resolved", &err) == 0, "resolved config reads back: %s", err.msg);
    CHECK(d.lr == c.lr && d.steps == c.steps && d.lora_r == c.lora_r && !strcmp(d.schedule, c.schedule), "round trip");
    cJSON_Delete(o);
    free(c.text);
    c.text = NULL;
    CHECK(pl_run_cfg_validate(&c, &err) == PL_EINVAL && strstr(err.msg, "--data"), "no data: %s", err.msg);
    pl_run_cfg_free(&d);
    pl_run_cfg_free(&c);
}

static int n_skips;
static char last_skip[2048];
static void on_skip(void *u, const char *dir, const char *why) {
    (void)u;
    n_skips++;
    snprintf(last_skip, sizeof last_skip, "%s: %s", dir, why);
}

static void checkpoints(const char *tmp) {
    char root[4096], p[8192];
    snprintf(root, sizeof root, "%s/ck", tmp);
    pl_err err = {0};
    for (int s = 1; s <= 3; s++) {
        pl_ckpt ck;
        char data[64];
        snprintf(data, sizeof data, "state of step %d", s);
        int rc = pl_ckpt_begin(&ck, root, s, &err);
        if (!rc) rc = pl_ckpt_put(&ck, "state.json", data, strlen(data), &err);
        if (!rc) rc = pl_ckpt_put(&ck, "adapter/w.bin", data, 5, &err);
        if (!rc) rc = pl_ckpt_commit(&ck, &err);
        else pl_ckpt_abort(&ck);
        CHECK(rc == 0, "checkpoint %d: %s", s, err.msg);
    }
    snprintf(p, sizeof p, "%s/step-000002", root);
    int64_t st = 0;
    CHECK(pl_ckpt_verify(p, &st, &err) == 0 && st == 2, "verify step 2: %s", err.msg);
    /* a partial temporary dir (crash mid-write) is not a checkpoint */
    pl_ckpt ck;
    CHECK(pl_ckpt_begin(&ck, root, 4, &err) == 0, "begin 4");
    pl_ckpt_put(&ck, "state.json", "x", 1, &err);
    free(ck.root); free(ck.tmp); free(ck.final); /* "crash": leave the tmp dir */
    char *lp = NULL;
    CHECK(pl_ckpt_latest(root, &lp, &st, on_skip, NULL, &err) == 0 && st == 3 && n_skips == 0, "newest is step 3");
    free(lp);
    /* truncate a file of step 3: skipped for step 2 with a message */
    snprintf(p, sizeof p, "%s/step-000003/adapter/w.bin", root);
    CHECK(truncate(p, 2) == 0, "truncate");
    CHECK(pl_ckpt_latest(root, &lp, &st, on_skip, NULL, &err) == 0 && st == 2 && n_skips == 1, "corrupt step 3 skipped");
    CHECK(strstr(last_skip, "step-000003") && strstr(last_skip, "adapter/w.bin has 2 bytes"), "skip message: %s", last_skip);
    free(lp);
    /* a flipped byte (same size) too */
    snprintf(p, sizeof p, "%s/step-000002/state.json", root);
    FILE *f = fopen(p, "r+b");
    if (f) { fputc('X', f); fclose(f); }
    n_skips = 0;
    CHECK(pl_ckpt_latest(root, &lp, &st, on_skip, NULL, &err) == 0 && st == 1 && n_skips == 2, "bad sha256 skipped");
    CHECK(strstr(last_skip, "sha256"), "sha message: %s", last_skip);
    free(lp);
    /* a missing manifest */
    snprintf(p, sizeof p, "%s/step-000001/manifest.json", root);
    unlink(p);
    CHECK(pl_ckpt_latest(root, &lp, &st, NULL, NULL, &err) == PL_ENOTFOUND && !lp, "no complete checkpoint: %s", err.msg);
    CHECK(pl_ckpt_prune(root, 1, &err) == 0, "prune: %s", err.msg);
    struct stat sb;
    snprintf(p, sizeof p, "%s/step-000003", root);
    CHECK(stat(p, &sb) == 0, "newest kept");
    snprintf(p, sizeof p, "%s/step-000002", root);
    CHECK(stat(p, &sb) != 0, "older removed");
    snprintf(p, sizeof p, "%s/.tmp-step-000004", root);
    CHECK(stat(p, &sb) != 0, "stale tmp removed");
}

/* ---------------------------------------------------------- resume */

static int stop_at;
static volatile sig_atomic_t stop_flag;
static void on_step(void *u, const pl_run_step *s) {
    (void)u;
    if (stop_at && s->step == stop_at) stop_flag = 1;
}

static char run_err[1024];
static int run_once(const char *shared, const char *out, int steps, int resume, int stop, pl_run_result *res) {
    pl_run_cfg c;
    pl_run_cfg_defaults(&c);
    char mp[4096], tp[4096], xp[4096];
    snprintf(mp, sizeof mp, "%s/fixtures/stories260K/stories260K.bin", shared);
    snprintf(tp, sizeof tp, "%s/fixtures/stories260K/tok512.bin", shared);
    snprintf(xp, sizeof xp, "%s/fixtures/text/tinystories_sample.txt", shared);
    c.model = strdup(mp);
    c.tokenizer = strdup(tp);
    c.text = strdup(xp);
    c.out = strdup(out);
    c.lora_r = 0;
    c.steps = steps;
    c.seq_len = 32;
    c.grad_accum = 2;
    c.lr = 1e-3;
    c.schedule[0] = 0;
    free(c.schedule);
    c.schedule = strdup("cosine");
    c.warmup_steps = 2;
    c.weight_decay = 0.01;
    c.eval_every = 3;
    c.eval_frac = 0.2;
    c.save_every = 4;
    c.keep_last = 2;
    c.resume = resume;
    stop_at = stop > 0 ? stop : 0;
    stop_flag = 0;
    pl_run_hooks h = {.on_step = on_step, .stop = &stop_flag};
    pl_err err = {0};
    int rc = pl_run_train(&c, &h, res, &err);
    snprintf(run_err, sizeof run_err, "%s", err.msg);
    CHECK(rc == 0 || stop < 0, "run %s: %s", out, err.msg);
    pl_run_cfg_free(&c);
    return rc;
}

static int same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    pl_err err = {0};
    int ok = !pl_read_file(a, 1 << 26, &x, &nx, &err) && !pl_read_file(b, 1 << 26, &y, &ny, &err) && nx == ny &&
             nx > 0 && !memcmp(x, y, nx);
    free(x);
    free(y);
    return ok;
}

static void resume_test(const char *shared, const char *tmp) {
    char a[4096], b[4096], fa[8192], fb[8192];
    snprintf(a, sizeof a, "%s/straight", tmp);
    snprintf(b, sizeof b, "%s/resumed", tmp);
    pl_run_result ra, rb;
    if (run_once(shared, a, 11, 0, 0, &ra)) return;
    CHECK(ra.steps_done == 11 && !ra.interrupted && ra.resumed_from == -1, "straight run: 11 steps");
    CHECK(isfinite(ra.base_eval_loss) && isfinite(ra.final_eval_loss), "eval losses %g -> %g", ra.base_eval_loss, ra.final_eval_loss);
    /* the stop flag raised during step 5 (as a signal would be) ends the run
     * after step 6: checkpoints at 4 (save_every) and 6 (the stop) */
    if (run_once(shared, b, 11, 0, 5, &rb)) return;
    CHECK(rb.interrupted && rb.steps_done == 6, "interrupted at step 6 (done %d)", rb.steps_done);
    snprintf(fb, sizeof fb, "%s/trainable.bin", b);
    struct stat sb;
    CHECK(stat(fb, &sb) != 0, "no final weights after an interrupt");
    /* corrupt the newest checkpoint: resume falls back to step 4 */
    snprintf(fb, sizeof fb, "%s/checkpoints/step-000006/optimizer.bin", b);
    CHECK(truncate(fb, 100) == 0, "truncate step 6");
    if (run_once(shared, b, 11, 1, 0, &rb)) return;
    CHECK(rb.resumed_from == 4 && rb.steps_done == 11 && !rb.interrupted, "resumed from %d, done %d", rb.resumed_from, rb.steps_done);
    snprintf(fa, sizeof fa, "%s/trainable.bin", a);
    snprintf(fb, sizeof fb, "%s/trainable.bin", b);
    CHECK(same_file(fa, fb), "resumed run's final weights are bit-identical to the straight run's");
    CHECK(rb.final_loss == ra.final_loss && rb.final_eval_loss == ra.final_eval_loss, "same last loss %.17g %.17g",
          rb.final_loss, ra.final_loss);
    /* metrics.jsonl: one line per step 0..11, identical losses */
    snprintf(fa, sizeof fa, "%s/metrics.jsonl", a);
    snprintf(fb, sizeof fb, "%s/metrics.jsonl", b);
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    pl_err err = {0};
    if (!pl_read_file(fa, 1 << 20, &x, &nx, &err) && !pl_read_file(fb, 1 << 20, &y, &ny, &err)) {
        int la = 0, lb = 0;
        for (size_t i = 0; i < nx; i++) la += x[i] == '\n';
        for (size_t i = 0; i < ny; i++) lb += y[i] == '\n';
        CHECK(la == 12 && lb == 12, "metrics lines: %d straight, %d resumed (expected 12)", la, lb);
        CHECK(strstr(x, "\"grad_norm\"") && strstr(x, "\"tokens_per_s\"") && strstr(x, "\"mem_peak\"") &&
                  strstr(x, "\"eval_loss\"") && strstr(x, "\"optimizer\""), "metrics fields");
    } else CHECK(0, "metrics: %s", err.msg);
    free(x);
    free(y);
    /* a fresh run into a directory holding checkpoints is refused */
    CHECK(run_once(shared, b, 11, 0, -1, &rb) == PL_EINVAL && strstr(run_err, "pass --resume"), "existing run: %s", run_err);
    /* keep-last-2 */
    int n = 0;
    for (int s = 1; s <= 11; s++) {
        snprintf(fb, sizeof fb, "%s/checkpoints/step-%06d", b, s);
        n += stat(fb, &sb) == 0;
    }
    CHECK(n == 2, "keep-last 2: %d checkpoints left", n);
    snprintf(fb, sizeof fb, "%s/checkpoints/step-000011/manifest.json", b);
    CHECK(stat(fb, &sb) == 0, "final checkpoint present");
}

int main(void) {
    const char *shared = check_env("POTLUCK_SHARED");
    char tmp[] = "/tmp/test_run_XXXXXX";
    if (!mkdtemp(tmp)) { CHECK(0, "mkdtemp"); return check_summary("test_run"); }
    schedules();
    config();
    checkpoints(tmp);
    resume_test(shared, tmp);
    pl_rmtree(tmp, NULL);
    return check_summary("test_run");
}
