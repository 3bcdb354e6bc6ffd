/* eval_side.h: what `potluck run` shows side by side after training: the
 * base's and the fine-tune's answers to the same held-out prompts
 * (eval_answers.c), and how far an exported GGUF drifts from the merged
 * model it was made from (eval_export_kl.c). */
#ifndef PL_EVAL_SIDE_H
#define PL_EVAL_SIDE_H

#include <cjson/cJSON.h>
#include "../core/error.h"

/* The base's and the fine-tune's answers to the same held-out prompts, made
 * with the models the eval stage already loaded (pl_eval_base_and_tuned):
 * the prompts of the first n chat examples of a JSONL file (any importer
 * format; examples that are not chats are skipped), every message before
 * the last assistant turn, rendered with the model's chat template and its
 * generation prompt; each answered greedily, at most max_tokens, stopped at
 * the end of the turn. The same inputs give the same answers. */
typedef struct pl_answers pl_answers;
struct pl_model;
struct pl_tokenizer;
int pl_answers_open(pl_answers **out, const char *jsonl, int n, int max_tokens, pl_err *err);
/* One variant's answers (tuned 0: the base); PL_EUNSUPPORTED when the model
 * has no chat template. */
int pl_answers_run(pl_answers *a, int tuned, struct pl_model *m, const struct pl_tokenizer *tok, pl_err *err);
/* [{"prompt": the last user message, "reference": the example's own answer,
 * "base": ..., "fine_tuned": ...}] ([] when the file holds no chat example) */
cJSON *pl_answers_json(const pl_answers *a);
void pl_answers_free(pl_answers *a);

/* KL divergence of an exported model from its reference (the merged model,
 * or ref with ref_adapter merged in memory when ref_adapter is not NULL), as
 * `potluck eval --text FILE --kl-base REF` computes it, on text: the
 * chunk size is the largest of 512, 256, ..., 16 that gives two chunks (or
 * 16; PL_EUNSUPPORTED when the text has fewer tokens than that). Appends rows (variant `name`, task `task`, model `model`): ppl,
 * ppl_base, kl_mean, kl_p99, kl_max, same_top. */
int pl_eval_export_kl(const char *ref, const char *ref_adapter, const char *model, const char *name, const char *task, const char *text,
                      size_t len, cJSON *rows, pl_err *err);

#endif
