/* eval_side.h: what `potluck run` shows side by side after training: the
 * base's and the fine-tune's answers to the same held-out prompts
 * (eval_answers.c), and how far an exported GGUF drifts from the merged
 * model it was made from (eval_export_kl.c). */
#ifndef PL_EVAL_SIDE_H
#define PL_EVAL_SIDE_H

#include <cjson/cJSON.h>
#include "../core/error.h"

/* The prompts of the first n chat examples of a JSONL file (any importer
 * format; examples that are not chats are skipped): every message before
 * the last assistant turn, rendered with the model's chat template and its
 * generation prompt. Each is answered greedily (at most max_tokens, stopped
 * at the end of the turn) by the base and by base + adapter. *out is an
 * array of {"prompt": the last user message, "reference": the example's own
 * answer, "base": ..., "fine_tuned": ...}; an empty array when the file holds
 * no chat example; PL_EUNSUPPORTED when the model has no chat template. The
 * same inputs give the same answers. */
int pl_eval_answers(const char *base, const char *adapter, const char *jsonl, int n, int max_tokens, cJSON **out,
                    pl_err *err);

/* KL divergence of an exported model from its reference (the merged model,
 * or ref with ref_adapter merged in memory when ref_adapter is not NULL), as
 * `potluck eval --text FILE --kl-base REF` computes it, on text: the
 * chunk size is the largest of 512, 256, ..., 16 that gives two chunks (or
 * 16; PL_EUNSUPPORTED when the text has fewer tokens than that). Appends rows (variant `name`, task `task`, model `model`): ppl,
 * ppl_base, kl_mean, kl_p99, kl_max, same_top. */
int pl_eval_export_kl(const char *ref, const char *ref_adapter, const char *model, const char *name, const char *task, const char *text,
                      size_t len, cJSON *rows, pl_err *err);

#endif
