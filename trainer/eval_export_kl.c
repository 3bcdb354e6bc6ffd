/* eval_export_kl.c: how far an exported model (a quantized GGUF) drifts
 * from the model it was made from, per token (eval_side.h). */
#include <math.h>
#include <stdlib.h>

#include "../datasets/tokenizer.h"
#include "eval.h"
#include "eval_results.h"
#include "eval_side.h"

int pl_eval_export_kl(const char *ref, const char *ref_adapter, const char *model, const char *name, const char *task, const char *text,
                      size_t len, cJSON *rows, pl_err *err) {
    pl_model *r = NULL, *m = NULL;
    pl_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int n = 0;
    int rc = pl_model_load(&r, ref, NULL, err);
    if (!rc) rc = pl_model_tokenizer(r, NULL, &tok, err);
    if (!rc && ref_adapter) rc = pl_eval_apply_adapter(r, ref_adapter, err);
    if (!rc) rc = pl_model_load(&m, model, NULL, err);
    if (!rc) rc = pl_tokenizer_encode(tok, text, len, pl_tokenizer_add_bos(tok), 0, &ids, &n, err);
    free(ids);
    int ctx = 512;
    while (!rc && ctx > 16 && (ctx > r->cfg.max_seq || ctx > m->cfg.max_seq || n < 2 * ctx)) ctx /= 2;
    if (!rc && (n < ctx || ctx > r->cfg.max_seq || ctx > m->cfg.max_seq))
        rc = pl_err_set(err, PL_EUNSUPPORTED, "%d tokens of text, fewer than one chunk of %d", n, ctx);
    if (!rc) {
        pl_text_result tr;
        rc = pl_eval_text(m, tok, r, text, len, ctx, NULL, &tr, err);
        if (!rc) {
            cJSON_AddItemToArray(rows, pl_eval_row(name, model, NULL, task, NULL, tr.tokens, "ppl", tr.ppl, tr.ppl_se));
            cJSON_AddItemToArray(rows, pl_eval_row(name, model, NULL, task, NULL, tr.tokens, "ppl_base", tr.ppl_ref, tr.ppl_ref_se));
            cJSON_AddItemToArray(rows, pl_eval_row(name, model, NULL, task, NULL, tr.tokens, "kl_mean", tr.kl_mean, tr.kl_se));
            cJSON_AddItemToArray(rows, pl_eval_row(name, model, NULL, task, NULL, tr.tokens, "kl_p99", tr.kl_p99, NAN));
            cJSON_AddItemToArray(rows, pl_eval_row(name, model, NULL, task, NULL, tr.tokens, "kl_max", tr.kl_max, NAN));
            cJSON_AddItemToArray(rows, pl_eval_row(name, model, NULL, task, NULL, tr.tokens, "same_top", tr.same_top, tr.same_top_se));
        }
    }
    pl_tokenizer_free(tok);
    pl_model_free(m);
    pl_model_free(r);
    return rc ? pl_err_prefix(err, "KL of %s from %s%s", model, ref, ref_adapter ? " + adapter" : "") : PL_OK;
}
