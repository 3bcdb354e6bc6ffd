/* eval.h: evaluating a model: multiple-choice tasks scored by
 * log-likelihood, held-out loss and perplexity, and the results table
 * (docs/eval.md).
 *
 * Multiple choice, two scorings of the same forward passes:
 *  - lm-evaluation-harness (acc, acc_norm): the context is tokenized alone
 *    (ctx), the context plus " " plus the choice as a whole (whole); the
 *    choice's tokens are whole[len(ctx):] fed after ctx (trailing spaces of
 *    the context move to the continuation first). ll = the summed
 *    log-probability of those tokens; acc = [argmax ll == gold]; acc_norm =
 *    [argmax ll / len(choice) == gold], len in characters (code points, as
 *    Python counts them). Both encodings add BOS when the vocabulary
 *    does (the tokenizer's default, as lm-eval's Hugging Face model
 *    encodes); an empty context without BOS becomes the EOS token.
 *  - llama.cpp's HellaSwag (acc_llamacpp): BOS (when the vocabulary adds
 *    one) + tokens of context + " " + choice; the choices' longest common
 *    token prefix is skipped and the score is the mean log-probability of
 *    the remaining tokens.
 * Each item's shared token prefix is run once and its KV cache copied to
 * every choice; several items go through the model together. */
#ifndef PL_EVAL_H
#define PL_EVAL_H

#include <stdint.h>
#include "../core/error.h"
#include "model.h"

struct pl_tokenizer;

/* ------------------------------------------------------------ tasks */
typedef struct pl_mc_item {
    char *context;
    char **choices;
    int n_choices;
    int gold;           /* index into choices */
    int64_t index;      /* position in the task file, from 0 (a JSONL line's "index" when it has one) */
} pl_mc_item;

typedef struct pl_mc_task {
    char *name;         /* file name without folder and extension */
    char *format;       /* "lm-eval-jsonl" or "llamacpp-hellaswag" */
    pl_mc_item *items;
    int64_t n_items, n_file;  /* after / before pl_mc_task_limit */
} pl_mc_task;

/* Read a task file. Its format is told by content: lines of JSON objects
 * ({"context"|"query"|"ctx": str, "choices"|"endings": [str...],
 * "gold"|"label": int, optional "index": int}) are lm-eval's shape; otherwise llama.cpp's
 * HellaSwag text (per task 6 lines: context, gold index 0..3, 4 endings).
 * Every item needs a non-empty choice list, no empty choice, and a gold
 * index within it; errors name the file and line. */
int pl_mc_task_load(pl_mc_task *t, const char *path, pl_err *err);
/* Parse a task from memory (what = the name used in messages). */
int pl_mc_task_parse(pl_mc_task *t, const char *what, const char *buf, size_t len, pl_err *err);
void pl_mc_task_free(pl_mc_task *t);
/* Keep `limit` items (all when limit <= 0 or >= n_items): the first
 * `limit` of a permutation drawn from seed, in file order. The same
 * (file, seed, limit) gives the same items every time, and a smaller
 * limit takes a subset of a larger one's items. */
int pl_mc_task_limit(pl_mc_task *t, int64_t limit, uint64_t seed, pl_err *err);
/* The subset behind pl_mc_task_limit, for any task of n items: *out =
 * the (malloc'd) 0-based positions of the `limit` items kept, ascending
 * (all n when limit <= 0 or >= n), *k their count. Generative tasks
 * (plugins/gen_task.h) take theirs with it too. */
int pl_eval_subset(int64_t n, int64_t limit, uint64_t seed, int64_t **out, int64_t *k, pl_err *err);
/* sha256 (hex, 65 bytes) of the items as evaluated: who compares results
 * checks they scored the same items. */
void pl_mc_task_hash(const pl_mc_task *t, char hex[65]);
/* Write the items as lm-eval JSONL ({"index","context","choices","gold"}),
 * atomically. */
int pl_mc_task_write_jsonl(const pl_mc_task *t, const char *path, pl_err *err);

/* ------------------------------------------------------------ scoring */
typedef struct pl_mc_scores {
    /* per item i, choice c at [off[i] + c] */
    int64_t n_items;
    int64_t *off;
    double *ll;          /* lm-eval: summed log-likelihood of the continuation */
    int *n_tok;          /* its token count */
    double *lc_mean;     /* llama.cpp: mean log-prob after the common prefix */
    int *pred, *pred_norm, *pred_lc;  /* per item: argmax of each scoring */
    /* metrics */
    double acc, acc_se, acc_norm, acc_norm_se, acc_lc, acc_lc_se;
    int64_t tokens;      /* tokens through the model */
    double seconds;
} pl_mc_scores;

typedef struct pl_eval_opts {
    int batch_tokens;    /* tokens per forward batch (0: 1024) */
    void (*progress)(void *user, int64_t done, int64_t total);
    void *user;
} pl_eval_opts;

int pl_mc_score(pl_model *m, const struct pl_tokenizer *tok, const pl_mc_task *t, const pl_eval_opts *o,
                pl_mc_scores *out, pl_err *err);
void pl_mc_scores_free(pl_mc_scores *s);

/* Sample mean and its standard error (sample standard deviation / sqrt n),
 * as lm-eval reports a metric's stderr. */
void pl_eval_mean_se(const double *x, int64_t n, double *mean, double *se);

/* ------------------------------------------------------------ loss */
typedef struct pl_loss_result {
    double loss, loss_se;  /* mean negative log-likelihood per scored token */
    double ppl, ppl_se;    /* exp(loss); se by the delta method */
    int64_t tokens, samples;
    double seconds;
} pl_loss_result;

/* Held-out loss on a sharded dataset (manifest + shards): each sample is run
 * on its own (at most the model's context; longer samples are cut), the
 * tokens whose loss_mask is 1 are scored. limit > 0: that many samples,
 * chosen as pl_mc_task_limit does. */
int pl_eval_loss_data(pl_model *m, const char *dir, int64_t limit, uint64_t seed, const pl_eval_opts *o,
                      pl_loss_result *out, pl_err *err);

/* ------------------------------------------------------------ text, KL */
typedef struct pl_text_result {
    int64_t tokens, chunks;      /* scored tokens; chunks of n_ctx */
    double ppl, ppl_se;          /* the model's perplexity */
    double ppl_ref, ppl_ref_se;  /* the reference's (with ref) */
    /* KL(reference || model) per scored token, in nats (with ref) */
    double kl_mean, kl_se, kl_p50, kl_p90, kl_p95, kl_p99, kl_max;
    double same_top, same_top_se; /* fraction of tokens where both argmaxes agree */
    double seconds;
} pl_text_result;

/* Perplexity of m on text, as llama-perplexity computes it: the text is
 * tokenized once (BOS when the vocabulary adds one), cut into chunks of
 * n_ctx tokens (the rest dropped), each chunk's first token set to BOS (when
 * added), and the second half of each chunk scored (tokens n_ctx/2 + 1 ..
 * n_ctx - 1). With ref (same vocabulary), also the reference's perplexity
 * and the per-token KL divergence of m's distribution from ref's (as
 * llama-perplexity --kl-divergence): mean ± stderr, percentiles, and how
 * often the most likely tokens agree. */
int pl_eval_text(pl_model *m, const struct pl_tokenizer *tok, pl_model *ref, const char *text, size_t len, int n_ctx,
                 const pl_eval_opts *o, pl_text_result *out, pl_err *err);

/* Merge a PEFT adapter (or a run directory's newest adapter) into m. */
int pl_eval_apply_adapter(pl_model *m, const char *dir, pl_err *err);

#endif
