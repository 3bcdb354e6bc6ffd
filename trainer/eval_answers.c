/* eval_answers.c: the base's and the fine-tune's answers to the same
 * held-out prompts, greedy, for `potluck run`'s results and report
 * (eval_side.h). */
#include <stdlib.h>
#include <string.h>

#include "../datasets/chat.h"
#include "../datasets/import.h"
#include "../datasets/tokenizer.h"
#include "eval.h"
#include "eval_side.h"
#include "generate.h"

static const char *const EOT[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", NULL};

typedef struct prompt {
    pl_chat chat;          /* the messages before the last assistant turn */
    const char *user;      /* the last user message (in chat) */
    const char *reference; /* the example's own answer (in the import) */
} prompt;

/* The chat examples' prompts: up to n of them. */
static int collect(const pl_import *im, int n, prompt *p, int *np, pl_err *err) {
    *np = 0;
    for (size_t i = 0; i < im->n && *np < n; i++) {
        const pl_example *e = &im->ex[i];
        if (e->fmt != PL_FMT_OPENAI && e->fmt != PL_FMT_SHAREGPT && e->fmt != PL_FMT_ALPACA) continue;
        int last = -1;
        for (int k = 0; k < e->chat.n; k++)
            if (!strcmp(e->chat.msg[k].role, "assistant")) last = k;
        if (last <= 0) continue;
        prompt *q = &p[*np];
        memset(q, 0, sizeof *q);
        for (int k = 0; k < last; k++) {
            int rc = pl_chat_add(&q->chat, e->chat.msg[k].role, e->chat.msg[k].content, err);
            if (rc) { pl_chat_clear(&q->chat); return rc; }
            if (!strcmp(e->chat.msg[k].role, "user")) q->user = q->chat.msg[k].content;
        }
        if (!q->user) { pl_chat_clear(&q->chat); continue; }
        q->reference = e->chat.msg[last].content;
        (*np)++;
    }
    return PL_OK;
}

static char *decode(const pl_tokenizer *tok, const int32_t *ids, int n) {
    int cap = pl_tokenizer_max_piece_bytes(tok) + 1;
    char *s = malloc((size_t)n * (size_t)cap + 1), *piece = malloc((size_t)cap);
    size_t len = 0;
    if (!s || !piece) { free(s); free(piece); return NULL; }
    int prev = -1;
    for (int i = 0; i < n; i++) {
        int k = pl_tokenizer_decode(tok, prev, ids[i], 0, piece, (size_t)cap);
        memcpy(s + len, piece, (size_t)k);
        len += (size_t)k;
        prev = ids[i];
    }
    s[len] = 0;
    free(piece);
    return s;
}

/* Answers of one variant (adapter NULL: the base) to every prompt. */
static int answer(const char *base, const char *adapter, const prompt *p, int np, int max_tokens, char **txt,
                  pl_err *err) {
    pl_model *m = NULL;
    pl_tokenizer *tok = NULL;
    int32_t **ids = calloc((size_t)np, sizeof *ids), **out = calloc((size_t)np, sizeof *out);
    int *n_ids = calloc((size_t)np, sizeof *n_ids), *n_out = calloc((size_t)np, sizeof *n_out);
    int rc = !ids || !out || !n_ids || !n_out ? pl_err_set(err, PL_ENOMEM, "answers: out of memory") : PL_OK;
    if (!rc) rc = pl_model_load(&m, base, NULL, err);
    if (!rc) rc = pl_model_tokenizer(m, NULL, &tok, err);
    if (!rc && adapter) rc = pl_eval_apply_adapter(m, adapter, err);
    for (int i = 0; i < np && !rc; i++) rc = pl_chat_encode_prompt(tok, &p[i].chat, &ids[i], &n_ids[i], err);
    if (!rc) {
        int32_t stop[8];
        int n_stop = 0, eos = m->cfg.eos_id >= 0 ? m->cfg.eos_id : pl_tokenizer_eos(tok);
        for (int k = 0; EOT[k] && n_stop < 6; k++) {
            int id = pl_tokenizer_find(tok, EOT[k]);
            if (id >= 0 && id != eos) stop[n_stop++] = id;
        }
        if (eos >= 0) stop[n_stop++] = eos;
        /* one prompt at a time: batching pads, and a padded row's logits may
         * differ in the last bits, so an answer would depend on its batch */
        pl_gen_opts o = {.sampler = {.temperature = 0, .top_p = 1}, .max_tokens = max_tokens, .stop = stop, .n_stop = n_stop};
        for (int i = 0; i < np && !rc; i++) {
            const int32_t *pi = ids[i];
            rc = pl_generate(m, 1, &pi, &n_ids[i], &o, &out[i], &n_out[i], NULL, err);
            if (!rc && !(txt[i] = decode(tok, out[i], n_out[i]))) rc = pl_err_set(err, PL_ENOMEM, "answers: out of memory");
        }
    }
    for (int i = 0; i < np; i++) {
        if (ids) free(ids[i]);
        if (out) free(out[i]);
    }
    free(ids); free(out); free(n_ids); free(n_out);
    pl_tokenizer_free(tok);
    pl_model_free(m);
    return rc ? pl_err_prefix(err, "answers of the %s", adapter ? "fine-tune" : "base") : PL_OK;
}

int pl_eval_answers(const char *base, const char *adapter, const char *jsonl, int n, int max_tokens, cJSON **out,
                    pl_err *err) {
    *out = NULL;
    if (n < 0 || max_tokens < 1) return pl_err_set(err, PL_EINVAL, "answers: n %d, max_tokens %d", n, max_tokens);
    pl_import im = {0};
    pl_import_opts io = {0};
    prompt *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    char **tb = calloc((size_t)(n > 0 ? n : 1), sizeof *tb), **tt = calloc((size_t)(n > 0 ? n : 1), sizeof *tt);
    int np = 0;
    int rc = !p || !tb || !tt ? pl_err_set(err, PL_ENOMEM, "answers: out of memory") : pl_import_file(jsonl, &io, &im, err);
    if (!rc) rc = collect(&im, n, p, &np, err);
    if (!rc && np > 0) rc = answer(base, NULL, p, np, max_tokens, tb, err);
    if (!rc && np > 0) rc = answer(base, adapter, p, np, max_tokens, tt, err);
    cJSON *a = rc ? NULL : cJSON_CreateArray();
    for (int i = 0; a && i < np; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(a, o);
        cJSON_AddStringToObject(o, "prompt", p[i].user);
        cJSON_AddStringToObject(o, "reference", p[i].reference);
        cJSON_AddStringToObject(o, "base", tb[i]);
        cJSON_AddStringToObject(o, "fine_tuned", tt[i]);
    }
    for (int i = 0; i < np; i++) {
        pl_chat_clear(&p[i].chat);
        free(tb[i]);
        free(tt[i]);
    }
    free(p); free(tb); free(tt);
    pl_import_free(&im);
    *out = a;
    return rc;
}
