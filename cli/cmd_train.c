/* cmd_train.c: `potluck train`: a (Q)LoRA or full fine-tuning run from flags
 * and/or a JSON config, with a progress line on a terminal, plain log lines
 * otherwise, and a checkpoint before exiting on SIGINT/SIGTERM. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/dist.h"
#include "../core/json.h"
#include "cli.h"
#include "cmd_train.h"
#include "../trainer/run.h"

static volatile sig_atomic_t train_stop;

/* The first SIGINT/SIGTERM asks for a checkpoint after the current step; a
 * second one ends the process at once. */
static void on_signal(int sig) {
    if (train_stop) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    train_stop = sig;
}

/* On a terminal the progress line (core/progress.h) shows the step, loss, lr
 * and tokens/s, and the eval losses get lines of their own; elsewhere every
 * step gets a log line (scripts read them), and the progress reporter adds
 * its final line with the time and the rate (none with POTLUCK_PROGRESS=off). */
static void on_step(void *user, const pl_run_step *s) {
    pl_progress *p = user;
    if (s->step == 0) {
        pl_progress_clear(p);
        fprintf(stderr, "train: step 0: eval loss %.4f (base model)\n", s->eval_loss);
        return;
    }
    pl_run_progress_step(p, s);
    char ev[64] = "";
    if (!isnan(s->eval_loss)) snprintf(ev, sizeof ev, " eval %.4f", s->eval_loss);
    if (p->mode == PL_PROGRESS_TTY) {
        if (isnan(s->eval_loss)) return;
        pl_progress_clear(p);
        fprintf(stderr, "train: step %d/%d loss %.4f lr %.2e gnorm %.3f %.0f tok/s%s%s\n", s->step, s->steps, s->loss,
                s->lr, s->grad_norm, s->tokens_per_s, ev, s->saved ? " (saved)" : "");
    } else {
        fprintf(stderr, "train: step %d/%d loss %.4f lr %.3e grad_norm %.4f tokens/s %.1f%s%s\n", s->step, s->steps,
                s->loss, s->lr, s->grad_norm, s->tokens_per_s, ev, s->saved ? " checkpoint" : "");
    }
    fflush(stderr);
}

static void on_msg(void *user, const char *m) {
    pl_progress_clear(user);
    fprintf(stderr, "train: %s\n", m);
}

static const char *train_help_head =
    "usage: potluck train --model PATH (--data DATASET_DIR | --text FILE) --out RUN_DIR [options]\n"
    "       potluck train --config FILE [options]     (flags override the file)\n"
    "       potluck train --out RUN_DIR --resume      (continue from the newest complete checkpoint)\n"
    "\n"
    "Fine-tunes LoRA adapters on a frozen (NF4) base, or every weight with --lora-r 0.\n"
    "RUN_DIR gets config.json (resolved), metrics.jsonl (one line per step),\n"
    "checkpoints/step-NNNNNN/ (atomic, sha256 manifest; keep-last-K), and at the end\n"
    "trainable.bin and, for LoRA, adapter/ (PEFT). SIGINT/SIGTERM write a checkpoint\n"
    "after the current step and exit 130/143. Started by mpirun or srun, the ranks\n"
    "train data-parallel: the same global batch (--batch x --grad-accum rows) split\n"
    "over the ranks, gradients summed in rank order, rank 0 writing the run\n"
    "directory (docs/distributed.md). Config file layout:\n"
    "  {\"model\": ..., \"text\": ..., \"out\": ..., \"lora\": {\"r\": 16, ...}, \"train\": {\"lr\": 2e-4, ...}}\n"
    "\n"
    "options:\n"
    "  --config FILE           JSON configuration (keys as in RUN_DIR/config.json)\n"
    "  --resume                resume from RUN_DIR's newest complete checkpoint\n";

int cmd_train(int argc, char **argv) {
    const char *config = NULL, *out = NULL;
    int resume = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(train_help_head, stdout);
            fputs(pl_run_cfg_flags_help(), stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) return cli_fail("train: --config: expected a file");
            config = argv[++i];
        } else if (!strcmp(argv[i], "--resume")) resume = 1;
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[i + 1];
    }
    pl_run_cfg c;
    pl_run_cfg_defaults(&c);
    pl_err err = {0};
    int status = 1;
    char rc_path[4096] = "";
    if (!config && resume && out) { /* the run's own resolved config */
        snprintf(rc_path, sizeof rc_path, "%s/config.json", out);
        struct stat st;
        if (!stat(rc_path, &st)) config = rc_path;
    }
    if (config && pl_run_cfg_apply_file(&c, config, &err)) { cli_fail_err(&err); goto done; }
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "--config")) { i += 2; continue; }
        if (!strcmp(argv[i], "--resume")) { i++; continue; }
        int used = 0;
        if (pl_run_cfg_apply_flag(&c, argc - i, argv + i, &used, &err)) { cli_fail("train: %s", err.msg); goto done; }
        if (!used) { cli_fail("train: unknown option '%s' (see potluck train --help)", argv[i]); goto done; }
        i += used;
    }
    c.resume = resume;
    if (pl_run_cfg_validate(&c, &err)) { cli_fail("train: %s", err.msg); goto done; }
    /* ranks from mpirun/srun: MPI joins here, and only then (core/dist.h) */
    if (pl_dist_init(&err)) {
        cli_fail("train: %s", err.msg);
        if (pl_dist_size() > 1) pl_dist_abort(1);
        goto done;
    }
    int lead = pl_dist_rank() == 0;
    cli_set_threads(c.threads);
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    train_stop = 0;
    pl_progress pg = {.every = -1}; /* plain: the step lines, then the final line */
    char hint[4200];
    snprintf(hint, sizeof hint, "continue with: potluck train --out %s --resume", c.out);
    pl_run_hooks h = {.on_step = on_step, .on_msg = on_msg, .user = &pg, .stop = &train_stop, .resume_hint = hint};
    pl_run_result res;
    int rc = pl_run_train(&c, &h, &res, &err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (!rc && !res.interrupted && lead) pl_progress_end(&pg);
    else pl_progress_clear(&pg);
    if (rc) {
        cli_fail_err(&err);
        /* one rank's failure ends the job, not a hang in the next collective */
        if (pl_dist_size() > 1) pl_dist_abort(1);
        goto done;
    }
    if (res.interrupted) {
        status = train_stop == SIGTERM ? 143 : 130;
        goto done;
    }
    status = 0;
    if (!lead) goto done;
    printf("train: done: %d steps in %s", res.steps_done, c.out);
    if (pl_dist_size() > 1) printf(" (%d ranks)", pl_dist_size());
    if (!isnan(res.final_loss)) printf(", last loss %.4f", res.final_loss);
    if (!isnan(res.base_eval_loss) && !isnan(res.final_eval_loss))
        printf(", eval loss %.4f (base) -> %.4f", res.base_eval_loss, res.final_eval_loss);
    else if (!isnan(res.final_eval_loss))
        printf(", eval loss %.4f", res.final_eval_loss);
    printf("\n");
    status = 0;
done:
    pl_run_cfg_free(&c);
    return status;
}
