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

struct pl_answers {
    pl_import im;
    prompt *p;
    char **txt[2]; /* [0] the base's answers, [1] the fine-tune's */
    int np, max_tokens;
};

int pl_answers_open(pl_answers **out, const char *jsonl, int n, int max_tokens, pl_err *err) {
    *out = NULL;
    if (n < 1 || max_tokens < 1) return pl_err_set(err, PL_EINVAL, "answers: n %d, max_tokens %d", n, max_tokens);
    pl_answers *a = calloc(1, sizeof *a);
    if (a) {
        a->p = calloc((size_t)n, sizeof *a->p);
        a->txt[0] = calloc((size_t)n, sizeof *a->txt[0]);
        a->txt[1] = calloc((size_t)n, sizeof *a->txt[1]);
    }
    if (!a || !a->p || !a->txt[0] || !a->txt[1]) {
        pl_answers_free(a);
        return pl_err_set(err, PL_ENOMEM, "answers: out of memory");
    }
    a->max_tokens = max_tokens;
    pl_import_opts io = {0};
    int rc = pl_import_file(jsonl, &io, &a->im, err);
    if (!rc) rc = collect(&a->im, n, a->p, &a->np, err);
    if (rc) { pl_answers_free(a); return rc; }
    *out = a;
    return PL_OK;
}

int pl_answers_run(pl_answers *a, int tuned, pl_model *m, const pl_tokenizer *tok, pl_err *err) {
    int np = a->np, rc = PL_OK;
    int32_t **ids = calloc((size_t)(np ? np : 1), sizeof *ids), **out = calloc((size_t)(np ? np : 1), sizeof *out);
    int *n_ids = calloc((size_t)(np ? np : 1), sizeof *n_ids), *n_out = calloc((size_t)(np ? np : 1), sizeof *n_out);
    if (!ids || !out || !n_ids || !n_out) rc = pl_err_set(err, PL_ENOMEM, "answers: out of memory");
    for (int i = 0; i < np && !rc; i++) rc = pl_chat_encode_prompt(tok, &a->p[i].chat, &ids[i], &n_ids[i], err);
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
        pl_gen_opts o = {.sampler = {.temperature = 0, .top_p = 1}, .max_tokens = a->max_tokens, .stop = stop, .n_stop = n_stop};
        for (int i = 0; i < np && !rc; i++) {
            const int32_t *pi = ids[i];
            rc = pl_generate(m, 1, &pi, &n_ids[i], &o, &out[i], &n_out[i], NULL, err);
            free(a->txt[tuned != 0][i]);
            if (!rc && !(a->txt[tuned != 0][i] = decode(tok, out[i], n_out[i])))
                rc = pl_err_set(err, PL_ENOMEM, "answers: out of memory");
        }
    }
    for (int i = 0; i < np; i++) {
        if (ids) free(ids[i]);
        if (out) free(out[i]);
    }
    free(ids); free(out); free(n_ids); free(n_out);
    return rc ? pl_err_prefix(err, "answers of the %s", tuned ? "fine-tune" : "base") : PL_OK;
}

cJSON *pl_answers_json(const pl_answers *a) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < a->np; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "prompt", a->p[i].user);
        cJSON_AddStringToObject(o, "reference", a->p[i].reference);
        cJSON_AddStringToObject(o, "base", a->txt[0][i] ? a->txt[0][i] : "");
        cJSON_AddStringToObject(o, "fine_tuned", a->txt[1][i] ? a->txt[1][i] : "");
    }
    return arr;
}

void pl_answers_free(pl_answers *a) {
    if (!a) return;
    for (int i = 0; i < a->np; i++) {
        pl_chat_clear(&a->p[i].chat);
        if (a->txt[0]) free(a->txt[0][i]);
        if (a->txt[1]) free(a->txt[1][i]);
    }
    free(a->p);
    free(a->txt[0]);
    free(a->txt[1]);
    pl_import_free(&a->im);
    free(a);
}
