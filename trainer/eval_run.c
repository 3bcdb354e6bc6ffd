/* eval_run.c: a fine-tune beside its base on multiple-choice tasks and
 * held-out prompts, for `potluck run`'s eval stage (eval_results.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/tokenizer.h"
#include "eval.h"
#include "eval_results.h"
#include "eval_side.h"

static void on_items(void *user, int64_t done, int64_t total) {
    pl_progress *p = user;
    p->total = total;
    pl_progress_update(p, done);
}

int pl_eval_base_and_tuned(const char *base, const char *adapter, const char *const *tasks, int n_tasks, int64_t limit,
                           uint64_t seed, cJSON *rows, pl_progress *progress, struct pl_answers *answers,
                           pl_err *answers_skipped, pl_err *err) {
    int rc = PL_OK;
    for (int v = 0; v < 2 && !rc; v++) {
        const char *name = v ? "fine-tuned" : "base";
        pl_model *m = NULL;
        pl_tokenizer *tok = NULL;
        rc = pl_model_load(&m, base, NULL, err);
        if (!rc) rc = pl_model_tokenizer(m, NULL, &tok, err);
        if (!rc && v) rc = pl_eval_apply_adapter(m, adapter, err);
        for (int t = 0; t < n_tasks && !rc; t++) {
            pl_mc_task tk;
            pl_mc_scores s;
            char hash[65];
            if ((rc = pl_mc_task_load(&tk, tasks[t], err))) break;
            if (!(rc = pl_mc_task_limit(&tk, limit, seed, err))) {
                pl_mc_task_hash(&tk, hash);
                pl_eval_opts eo = {.progress = progress ? on_items : NULL, .user = progress};
                if (progress) {
                    char label[300];
                    snprintf(label, sizeof label, "eval %s on %s", name, tk.name);
                    pl_progress_begin(progress, label, tk.n_items, "items");
                }
                if (!(rc = pl_mc_score(m, tok, &tk, &eo, &s, err))) {
                    if (progress) pl_progress_end(progress);
                    const char *ad = v ? adapter : NULL;
                    cJSON_AddItemToArray(rows, pl_eval_row(name, base, ad, tk.name, hash, tk.n_items, "acc", s.acc, s.acc_se));
                    cJSON_AddItemToArray(rows, pl_eval_row(name, base, ad, tk.name, hash, tk.n_items, "acc_norm", s.acc_norm, s.acc_norm_se));
                    cJSON_AddItemToArray(rows, pl_eval_row(name, base, ad, tk.name, hash, tk.n_items, "acc_llamacpp", s.acc_lc, s.acc_lc_se));
                    pl_mc_scores_free(&s);
                }
            }
            pl_mc_task_free(&tk);
        }
        if (!rc && answers) {
            pl_err aerr = {0};
            int arc = pl_answers_run(answers, v, m, tok, &aerr);
            if (arc == PL_EUNSUPPORTED) { /* no chat template: nothing to answer with */
                if (answers_skipped) *answers_skipped = aerr;
                answers = NULL;
            } else if (arc) {
                *err = aerr;
                rc = arc;
            }
        }
        pl_tokenizer_free(tok);
        pl_model_free(m);
    }
    return rc;
}
