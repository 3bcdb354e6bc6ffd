/* cmd_generate.c: `potluck generate`: text in, text out, printed as
 * llama2.c's run does (the prompt, then the continuation as it is made). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/chat.h"
#include "../trainer/model_lora.h"
#include "../core/progress.h"
#include "cli.h"
#include "../trainer/export.h"
#include "../trainer/generate.h"
#include "../trainer/plan.h"
#include "../core/units.h"

static const char *gen_help =
    "usage: potluck generate --model PATH [options]\n"
    "\n"
    "Prints the prompt followed by the continuation. With several --prompt\n"
    "options the prompts are generated together in one batch and each result\n"
    "is printed when all are done, under a line \"--- prompt N\".\n"
    "\n"
    "  --model PATH         Hugging Face directory, GGUF file or llama2.c .bin (required);\n"
    "                       or a model name found in $POTLUCK_MODELS, as recipes name models;\n"
    "                       or random:SHAPE[@SEED] (a random model made in memory: see potluck\n"
    "                       train --help; it has no tokenizer, so give --tokenizer)\n"
    "  --tokenizer PATH     llama2.c tokenizer .bin or a GGUF file whose vocabulary to use\n"
    "                       (default: the GGUF's own; tokenizer.bin beside a llama2.c model)\n"
    "  --prompt TEXT        prompt text (repeatable; default: empty, i.e. just BOS)\n"
    "  --adapter DIR        a PEFT LoRA adapter (or a run directory: its newest adapter),\n"
    "                       merged into an fp32 copy of the model's linear layers\n"
    "  --chat               render each prompt as one user turn with the model's chat\n"
    "                       template (tokenizer.chat_template; ChatML when the model has\n"
    "                       none but has <|im_start|>) and stop at the end-of-turn token;\n"
    "                       the prompt is echoed with its special tokens (<|im_start|>...)\n"
    "  --system TEXT        system turn for --chat\n"
    "  --temperature T      0 = greedy (default 0.8)\n"
    "  --top-k K            keep the K most likely tokens (default 0 = off)\n"
    "  --top-p P            nucleus sampling mass (default 0.95; 1 = off)\n"
    "  --seed S             sampling seed (default 42)\n"
    "  --max-tokens N       new tokens per prompt (default 256)\n"
    "  --stop ID            stop at token id ID (repeatable; default: the model's EOS,\n"
    "                       and BOS for llama2.c models as run.c does)\n"
    "  --threads N          worker threads (default: all cores)\n"
    "  --backend cpu|cuda   where the model runs (cpu; cuda: build/gpu/potluck, or build/emu/potluck emulated)\n"
    "  --stats              print prompt and generation speed on stderr\n";

typedef struct stream_ctx {
    const pl_tokenizer *tok;
    int32_t prev;
    int streaming;
    int64_t generated;
    pl_progress *prog;      /* several prompts (nothing streams): tokens so far */
} stream_ctx;

static int on_token(void *p, int seq, int32_t t) {
    stream_ctx *s = p;
    if (!s->streaming) {
        if (s->prog) pl_progress_update(s->prog, ++s->generated);
        return 0;
    }
    char buf[256];
    int n = pl_tokenizer_decode(s->tok, s->prev, t, 0, buf, sizeof buf);
    if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
    fflush(stdout);
    s->prev = t;
    return 0;
}

/* render_special: special tokens as their text (<|im_start|>), as --chat
 * echoes its prompt so the reader sees where the answer starts. */
static void print_tokens(const pl_tokenizer *tok, const int32_t *ids, int n, int32_t prev, int render_special) {
    char buf[256];
    for (int i = 0; i < n; i++) {
        int k = pl_tokenizer_decode(tok, prev, ids[i], render_special, buf, sizeof buf);
        if (k > 0) fwrite(buf, 1, (size_t)k, stdout);
        prev = ids[i];
    }
}

/* End-of-turn tokens chat templates close a turn with. */
static const char *const eot_texts[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", NULL};

/* Token ids of one prompt: BOS if the vocabulary wants it, then the text;
 * with --chat, the conversation (system?, user) rendered through the
 * model's chat template with the generation prompt, as transformers'
 * apply_chat_template does (datasets/chat.h). */
/* The generation's device memory plan (pl_generate_check_device), in
 * generate's words: prompts, and what to change. */
static int check_gen_plan(const pl_model *m, int n, const int *n_ids, int n_ctx, pl_err *err) {
    int prefill = 0;
    for (int i = 0; i < n; i++) prefill += n_ids[i];
    pl_err e = {0};
    if (!pl_generate_check_device(m, n, prefill, n_ctx, &e)) return PL_OK;
    return pl_err_set(err, e.code,
                      "generate: %d prompt%s of up to %d tokens on the cuda backend %s: fewer prompts at once, a "
                      "shorter --max-tokens, or --backend cpu (potluck plan --generate --backend cuda shows every "
                      "buffer)", n, n > 1 ? "s" : "", n_ctx, e.msg);
}

static int encode_prompt(const pl_tokenizer *tok, const char *text, int chat, const char *system,
                         int32_t **ids, int *n, pl_err *err) {
    if (!chat)
        return pl_tokenizer_encode(tok, text, strlen(text), pl_tokenizer_add_bos(tok), 0, ids, n, err);
    pl_chat c = {0};
    int rc = 0;
    if (system) rc = pl_chat_add(&c, "system", system, err);
    if (!rc) rc = pl_chat_add(&c, "user", text, err);
    if (!rc) rc = pl_chat_encode_prompt(tok, &c, ids, n, err);
    if (rc) pl_err_prefix(err, "--chat");
    pl_chat_clear(&c);
    return rc;
}

/* Merge a PEFT adapter (or a run directory's newest one) into m. */
static int apply_adapter(pl_model *m, const char *dir, pl_err *err) {
    char p[4200];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    FILE *f = fopen(p, "rb");
    char *ad = NULL, *mp = NULL;
    if (f) fclose(f);
    else if (pl_run_adapter(dir, &ad, &mp, err) == 0) dir = ad;
    pl_lora *l = NULL;
    int rc = pl_lora_load_peft(&l, m, dir, err);
    if (!rc) rc = pl_export_writable(m, err);
    if (!rc) rc = pl_lora_merge(m, l, err);
    pl_lora_free(l);
    free(ad);
    free(mp);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *system = NULL, *adapter = NULL;
    const char **prompts = calloc((size_t)argc + 1, sizeof *prompts);
    int32_t *stops = calloc((size_t)argc + 8, sizeof *stops);
    int n_prompts = 0, n_stop = 0, chat = 0, stats_flag = 0, status = 1;
    pl_sampler sp = {.temperature = 0.8f, .top_k = 0, .top_p = 0.95f, .seed = 42};
    long max_tokens = 256, threads = 0;
    pl_model *m = NULL;
    pl_tokenizer *tok = NULL;
    int32_t **ids = NULL, **out = NULL;
    int *n_ids = NULL, *n_out = NULL;
    if (!prompts || !stops) { status = cli_fail("out of memory"); goto done; }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long lv;
        double dv;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(gen_help, stdout); status = 0; goto done; }
        else if (!strcmp(a, "--model")) { if (!v) goto missing; model_path = v; i++; }
        else if (!strcmp(a, "--tokenizer")) { if (!v) goto missing; tok_path = v; i++; }
        else if (!strcmp(a, "--adapter")) { if (!v) goto missing; adapter = v; i++; }
        else if (!strcmp(a, "--prompt")) { if (!v) goto missing; prompts[n_prompts++] = v; i++; }
        else if (!strcmp(a, "--system")) { if (!v) goto missing; system = v; i++; }
        else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--stats")) stats_flag = 1;
        else if (!strcmp(a, "--temperature")) { if (cli_float(a, v, 0, 100, &dv)) goto done; sp.temperature = (float)dv; i++; }
        else if (!strcmp(a, "--top-p")) { if (cli_float(a, v, 0, 1, &dv)) goto done; sp.top_p = (float)dv; i++; }
        else if (!strcmp(a, "--top-k")) { if (cli_int(a, v, 0, 1 << 24, &lv)) goto done; sp.top_k = (int)lv; i++; }
        else if (!strcmp(a, "--seed")) { if (cli_int(a, v, 0, __LONG_MAX__, &lv)) goto done; sp.seed = (uint64_t)lv; i++; }
        else if (!strcmp(a, "--max-tokens")) { if (cli_int(a, v, 0, 1 << 20, &max_tokens)) goto done; i++; }
        else if (!strcmp(a, "--threads")) { if (cli_int(a, v, 1, 1024, &threads)) goto done; i++; }
        else if (!strcmp(a, "--backend")) {
            if (!v) goto missing;
            pl_err be_err = {0};
            if (pl_backend_set_default(v, &be_err)) { status = cli_fail_err(&be_err); goto done; }
            i++;
        }
        else if (!strcmp(a, "--stop")) { if (cli_int(a, v, 0, 1 << 24, &lv)) goto done; stops[n_stop++] = (int32_t)lv; i++; }
        else { status = cli_fail("generate: unknown option '%s' (see potluck generate --help)", a); goto done; }
        continue;
    missing:
        status = cli_fail("generate: %s: expected a value", a);
        goto done;
    }
    if (!model_path) { status = cli_fail("generate: --model PATH is required (see potluck generate --help)"); goto done; }
    if (n_prompts == 0) prompts[n_prompts++] = "";
    cli_set_threads((int)threads);
    pl_err err = {0};
    char *resolved = NULL;
    if (cli_model_path(model_path, &resolved, &err)) { status = cli_fail_err(&err); goto done; }
    int lrc = pl_model_load(&m, resolved, NULL, &err);
    free(resolved);
    if (lrc || pl_model_tokenizer(m, tok_path, &tok, &err) ||
        (adapter && apply_adapter(m, adapter, &err))) {
        status = cli_fail_err(&err);
        goto done;
    }
    if (pl_tokenizer_vocab(tok) > m->cfg.vocab) {
        status = cli_fail("%s: the tokenizer has %d tokens but the model only %d", model_path, pl_tokenizer_vocab(tok), m->cfg.vocab);
        goto done;
    }
    if (n_stop == 0) {
        int eos = m->cfg.eos_id >= 0 ? m->cfg.eos_id : pl_tokenizer_eos(tok);
        if (chat)
            for (int k = 0; eot_texts[k]; k++) {
                int id = pl_tokenizer_find(tok, eot_texts[k]);
                if (id >= 0 && id != eos) stops[n_stop++] = id;
            }
        if (eos >= 0) stops[n_stop++] = eos;
        if (m->source == PL_SRC_LLAMA2C && pl_tokenizer_bos(tok) >= 0) stops[n_stop++] = pl_tokenizer_bos(tok);
    }
    ids = calloc((size_t)n_prompts, sizeof *ids);
    out = calloc((size_t)n_prompts, sizeof *out);
    n_ids = calloc((size_t)n_prompts, sizeof *n_ids);
    n_out = calloc((size_t)n_prompts, sizeof *n_out);
    if (!ids || !out || !n_ids || !n_out) { status = cli_fail("out of memory"); goto done; }
    for (int i = 0; i < n_prompts; i++) {
        if (encode_prompt(tok, prompts[i], chat, system, &ids[i], &n_ids[i], &err)) { status = cli_fail_err(&err); goto done; }
        if (n_ids[i] == 0) {
            status = cli_fail("generate: prompt %d is empty and the vocabulary adds no BOS; give some text", i + 1);
            goto done;
        }
    }
    pl_progress pg = {0};
    stream_ctx sc = {.tok = tok, .prev = n_ids[0] ? ids[0][n_ids[0] - 1] : -1, .streaming = n_prompts == 1,
                     .prog = n_prompts > 1 ? &pg : NULL};
    pl_gen_opts o = {.sampler = sp, .max_tokens = (int)max_tokens, .stop = stops, .n_stop = n_stop,
                     .n_ctx = 0, .cb = on_token, .cb_ctx = &sc};
    int maxp = 0;
    for (int i = 0; i < n_prompts; i++) maxp = n_ids[i] > maxp ? n_ids[i] : maxp;
    if (maxp + max_tokens > m->cfg.max_seq) {
        o.n_ctx = m->cfg.max_seq;
        if (maxp >= m->cfg.max_seq) {
            status = cli_fail("generate: the prompt has %d tokens, the model's context is %d", maxp, m->cfg.max_seq);
            goto done;
        }
    }
    if (check_gen_plan(m, n_prompts, n_ids, o.n_ctx > 0 ? o.n_ctx : maxp + (int)max_tokens, &err)) {
        status = cli_fail_err(&err);
        goto done;
    }
    if (n_prompts == 1) {
        print_tokens(tok, ids[0], n_ids[0], -1, chat);
        fflush(stdout);
    }
    pl_gen_stats st;
    if (sc.prog) pl_progress_begin(sc.prog, "generate", 0, "tokens");
    if (pl_generate(m, n_prompts, (const int32_t *const *)ids, n_ids, &o, out, n_out, &st, &err)) {
        if (sc.prog) pl_progress_clear(sc.prog);
        status = cli_fail_err(&err);
        goto done;
    }
    if (sc.prog) pl_progress_end(sc.prog);
    if (n_prompts > 1) {
        for (int i = 0; i < n_prompts; i++) {
            printf("--- prompt %d\n", i + 1);
            print_tokens(tok, ids[i], n_ids[i], -1, chat);
            print_tokens(tok, out[i], n_out[i], ids[i][n_ids[i] - 1], 0);
            printf("\n");
        }
    } else {
        printf("\n");
    }
    fflush(stdout);
    if (stats_flag)
        fprintf(stderr, "prompt: %lld tokens, %.1f tokens/s; generation: %lld tokens, %.1f tokens/s\n",
                (long long)st.prompt_tokens, st.prompt_seconds > 0 ? st.prompt_tokens / st.prompt_seconds : 0.0,
                (long long)st.gen_tokens, st.gen_seconds > 0 ? st.gen_tokens / st.gen_seconds : 0.0);
    status = 0;
done:
    if (ids) for (int i = 0; i < n_prompts; i++) free(ids[i]);
    if (out) for (int i = 0; i < n_prompts; i++) free(out[i]);
    free(ids); free(out); free(n_ids); free(n_out); free(prompts); free(stops);
    pl_tokenizer_free(tok);
    pl_model_free(m);
    return status;
}
