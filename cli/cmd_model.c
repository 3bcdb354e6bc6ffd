/* cmd_model.c: `potluck model info PATH` (model init: cmd_model_init.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_model_init.h"
#include "../trainer/plan.h"

static const char *model_help =
    "usage: potluck model info PATH|NAME [--tokenizer PATH] [--template]\n"
    "       potluck model init ...   (a random model of any shape: see potluck model init --help)\n"
    "\n"
    "Describes a model (Hugging Face directory, GGUF file or llama2.c .bin):\n"
    "architecture, source format, shapes, parameter count, weight dtypes,\n"
    "tokenizer kind and whether a chat template is present. A NAME (such as\n"
    "SmolLM2-135M-Instruct) is looked up in the model folders as recipes do\n"
    "($POTLUCK_MODELS, ':'-separated). random:SHAPE[@SEED] describes the random\n"
    "model potluck train --model random:... makes, from its shape alone.\n"
    "\n"
    "  --tokenizer PATH   llama2.c tokenizer .bin for a llama2.c model (which has none inside)\n"
    "  --template         print the model's chat template (Jinja) after the description\n";

static const char *source_name(pl_model_source s) {
    return s == PL_SRC_HF ? "Hugging Face directory" : s == PL_SRC_GGUF ? "GGUF" : "llama2.c checkpoint";
}

/* Count weight matrices per dtype. */
static void print_dtypes(const pl_model *m) {
    int count[128] = {0};
    const pl_qweight *ws[2] = {&m->tok_embd, &m->lm_head};
    for (int i = 0; i < (m->cfg.tied_embeddings ? 1 : 2); i++)
        if ((unsigned)ws[i]->dtype < 128) count[ws[i]->dtype]++;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const pl_layer *L = &m->layers[l];
        const pl_qweight *lw[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++)
            if ((unsigned)lw[i]->dtype < 128) count[lw[i]->dtype]++;
    }
    printf("weight dtypes:   ");
    int first = 1;
    for (int t = 0; t < 128; t++)
        if (count[t]) {
            printf("%s%s x%d", first ? "" : ", ", pl_dtype_name((pl_dtype)t), count[t]);
            first = 0;
        }
    printf(" (matrices; norms and biases are kept in F32)\n");
}

static void print_config(const pl_model_config *c, long long params) {
    printf("architecture:    %s\n", pl_arch_name(c->arch));
    printf("parameters:      %lld\n", params);
    printf("vocab:           %d\n", c->vocab);
    printf("hidden size:     %d\n", c->dim);
    printf("intermediate:    %d\n", c->hidden);
    printf("layers:          %d\n", c->n_layers);
    printf("heads:           %d query, %d key/value (GQA ratio %d), head size %d\n", c->n_heads, c->n_kv_heads,
           c->n_heads / c->n_kv_heads, c->head_dim);
    printf("context:         %d\n", c->max_seq);
    printf("rope theta:      %g%s\n", (double)c->rope_theta, c->rope_llama3 ? " (llama3 scaling)" : "");
    printf("rms norm eps:    %g\n", (double)c->norm_eps);
    printf("tied embeddings: %s\n", c->tied_embeddings ? "yes" : "no");
    printf("q/k/v bias:      %s\n", c->qkv_bias ? "yes" : "no");
}

/* random:SHAPE[@SEED] from its shape alone: making a 33B model to describe it would take minutes */
static int info_random(const char *spec) {
    pl_model_header h;
    pl_err err = {0};
    if (pl_model_read_header(spec, &h, &err)) return cli_fail_err(&err);
    const pl_model_config *c = &h.cfg;
    printf("model:           %s\n", spec);
    printf("format:          random (made in memory, no file: the weights of potluck model init --random --nf4)\n");
    print_config(c, (long long)pl_plan_params(c));
    printf("weight dtypes:   NF4 x%d, BF16 x%d (matrices; norms and biases are kept in F32)\n", 7 * c->n_layers,
           c->tied_embeddings ? 1 : 2);
    printf("tokenizer:       none (a random model has none: --tokenizer PATH, or a pre-tokenized dataset)\n");
    return 0;
}

int cmd_model(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(model_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "init")) return cmd_model_init(argc, argv);
    if (strcmp(argv[1], "info"))
        return cli_fail("model: unknown subcommand '%s' (model info PATH, model init --random ...)", argv[1]);
    const char *path = NULL, *tok_path = NULL;
    int show_template = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(model_help, stdout); return 0; }
        if (!strcmp(argv[i], "--tokenizer")) {
            if (i + 1 >= argc) return cli_fail("model info: --tokenizer: expected a value");
            tok_path = argv[++i];
        } else if (!strcmp(argv[i], "--template")) {
            show_template = 1;
        } else if (argv[i][0] == '-') {
            return cli_fail("model info: unknown option '%s' (see potluck model --help)", argv[i]);
        } else if (!path) {
            path = argv[i];
        } else {
            return cli_fail("model info: give one model path");
        }
    }
    if (!path) return cli_fail("model info: a model PATH is required");
    if (pl_model_is_random(path)) {
        if (show_template) return cli_fail("model info: %s has no chat template (a random model has no tokenizer)", path);
        return info_random(path);
    }
    pl_err err = {0};
    pl_model *m;
    char *resolved = NULL;
    if (cli_model_path(path, &resolved, &err)) return cli_fail_err(&err);
    if (pl_model_load(&m, resolved, NULL, &err)) { free(resolved); return cli_fail_err(&err); }
    const pl_model_config *c = &m->cfg;
    if (strcmp(resolved, path)) printf("model:           %s (%s)\n", path, resolved);
    else printf("model:           %s\n", path);
    free(resolved);
    printf("format:          %s\n", source_name(m->source));
    print_config(c, (long long)pl_model_n_params(m));
    print_dtypes(m);
    pl_tokenizer *tok = NULL;
    pl_err terr = {0};
    int has_tmpl = 0;
    if (pl_model_tokenizer(m, tok_path, &tok, &terr) == 0) {
        printf("tokenizer:       %s, %d tokens, bos %d, eos %d\n",
               pl_tokenizer_kind(tok) == PL_TOK_SPM ? "SentencePiece-style BPE" : "byte-level BPE",
               pl_tokenizer_vocab(tok), pl_tokenizer_bos(tok), pl_tokenizer_eos(tok));
        char fp[65];
        pl_err fe = {0};
        if (!pl_tokenizer_fingerprint(tok, fp, &fe)) printf("tokenizer id:    %s (the same for any file of this vocabulary)\n", fp);
        const char *tmpl = pl_tokenizer_chat_template(tok);
        has_tmpl = tmpl != NULL;
        printf("chat template:   %s\n", !tmpl ? "none" : show_template ? "present, below" : "present (--template prints it)");
        if (show_template && tmpl) {
            printf("\n%s", tmpl);
            if (*tmpl && tmpl[strlen(tmpl) - 1] != '\n') printf("\n");
        }
        pl_tokenizer_free(tok);
    } else {
        printf("tokenizer:       not loaded (%s)\n", terr.msg);
    }
    pl_model_free(m);
    if (show_template && !has_tmpl)
        return cli_fail("model info: %s has no chat template (data build and template take a built-in one: "
                        "--template chatml, llama3, ...)", path);
    return 0;
}
