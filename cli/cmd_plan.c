/* cmd_plan.c: `potluck plan`: the memory a training run (or a generation)
 * needs, per category and per buffer, before anything is allocated, from
 * the trainer's own allocation plan (trainer/plan.h). Train settings are
 * read with potluck train's own flag parser, so the same command line
 * plans and trains. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/units.h"
#include "../core/json.h"
#include "../lora/lora.h"
#include "../trainer/plan.h"
#include "../trainer/run.h"
#include "cli.h"
#include "cmd_plan.h"

static const char *plan_help =
    "usage: potluck plan (--model PATH | --preset NAME) [train options] [plan options]\n"
    "       potluck plan RECIPE.lua --sizes 7b,13b,33b [--gpu 24GiB] (the recipe at each size: see its --help)\n"
    "       potluck plan (--model PATH | --preset NAME) --generate --ctx N [--batch B] [plan options]\n"
    "\n"
    "Prints the memory a run needs before a single step runs, per category\n"
    "(weights, activations, gradients, optimizer, workspace, kv cache; docs/memory.md)\n"
    "and per buffer, from the same plan the trainer allocates from (docs/planner.md).\n"
    "The model is read from its header only (config.json, GGUF metadata, llama2.c\n"
    "header); no weight is read.\n"
    "\n"
    "plan options:\n"
    "  --model PATH            HF directory, its config.json, a .gguf, or a llama2.c .bin; or\n"
    "                          random:SHAPE[@SEED] (potluck train --help): NF4 layers made in memory\n"
    "  --preset NAME           a published shape (--preset list shows them)\n"
    "  --backend cpu|cuda      the backend planned: cpu (fp32 activations, everything in RAM) or cuda\n"
    "                          (bf16 activations, the LM head fused with the loss, the base's device\n"
    "                          copies and the backend's scratch: every byte on the GPU; --mem is then\n"
    "                          the GPU's memory, as potluck train --gpu-mem, and must also hold the CUDA\n"
    "                          runtime's own memory: a stated 512 MiB reserve, POTLUCK_CUDA_RUNTIME_MIB=N\n"
    "                          to replace it)\n"
    "  --mem SIZE              memory to fit in: bytes or with a unit (24GiB, 24GB, 512MiB, 80G)\n"
    "  --fit seq|batch         the largest --seq-len (or --micro-batch) whose total fits in --mem\n"
    "  --micro-batch N         rows packed into one forward (T = seq-len x N); potluck train on the\n"
    "                          CPU backend runs one row per forward (1, the default), so --batch and\n"
    "                          --grad-accum do not change its memory\n"
    "  --generate              plan a generation instead: weights + KV cache + decode buffers (with\n"
    "                          --backend cuda: the device copies, bf16 KV cache and buffers, scratch)\n"
    "  --ctx N                 with --generate: tokens of context per sequence (default: the model's)\n"
    "  --json                  machine-readable output\n"
    "\n"
    "train options (as potluck train; the ones that change memory):\n"
    "  --seq-len N  --batch N  --lora-r R (0: full fp32 fine-tuning)  --lora-targets T\n"
    "  --base nf4|as-loaded  --nf4-blocksize N  --no-double-quant  --checkpointing / --no-checkpointing\n"
    "  --paged-optim  --offload-checkpoints (cuda: host memory, not the device's)  --mlp-chunk N\n"
    "  --threads N  --config FILE (a potluck train config; flags override it)\n"
    "Every other potluck train option is accepted and changes nothing here. With\n"
    "--generate, --batch is the number of sequences generated together.\n";

/* --mem: bytes (core/units.h); -1 with a message on error. */
static int parse_size(const char *s, double *out) {
    const char *why = pl_parse_bytes(s, out);
    return why ? cli_fail("plan: --mem: %s: got \"%s\"", why, s) : 0;
}

static void human(double b, char *buf, size_t n) { pl_fmt_bytes(b, buf, n); }

static const char *dtype_label(pl_dtype t) { return pl_dtype_name(t); }

typedef struct plan_in {
    const char *label;           /* model label for the report */
    pl_model_config cfg;
    pl_train_shape shape;
    const char *base;            /* nf4 | as-loaded | fp32 (full) */
} plan_in;

static int targets_str(unsigned mask, char *buf, size_t n) {
    buf[0] = 0;
    for (int j = 0; j < 7; j++)
        if ((mask >> j) & 1) {
            size_t l = strlen(buf);
            snprintf(buf + l, n - l, "%s%s", l ? "," : "", pl_lin_name((pl_lin)j));
        }
    return 0;
}

static void print_policy(const plan_in *in) {
    const pl_train_shape *s = &in->shape;
    if (!s->frozen_base) {
        printf("precision:  every weight trained in fp32 (owned fp32 copies), fp32 gradients and AdamW m, v;\n"
               "            activations fp32 (CPU backend)\n");
        return;
    }
    if (s->nf4_blocksize > 0)
        printf("precision:  base layers NF4 (blocksize %d, %s); embedding %s and LM head %s as stored, frozen;\n",
               s->nf4_blocksize, s->nf4_double_quant ? "double-quantized absmax" : "fp32 absmax",
               dtype_label(s->embd_dtype), in->cfg.tied_embeddings ? "(tied)" : dtype_label(s->head_dtype));
    else
        printf("precision:  base layers as stored (%s); embedding %s and LM head %s as stored, frozen;\n",
               dtype_label(s->layer_dtype), dtype_label(s->embd_dtype),
               in->cfg.tied_embeddings ? "(tied)" : dtype_label(s->head_dtype));
    if (s->cuda) {
        printf("            norms fp32; LoRA masters, gradients, AdamW m and v fp32 (managed memory), %s;\n",
               s->paged_optim ? "m and v of tensors of >= 1e5 elements paged to the host" : "not paged");
        printf("            activations and their gradients bf16 on the device, LM head fused with the loss (CUDA\n"
               "            backend); the device holds copies of the base, the model keeps its own on the host\n");
        if (s->offload)
            printf("            checkpointed layer inputs offloaded to pinned host memory (x_host), two on the device\n");
    } else
        printf("            norms fp32; LoRA masters, gradients, AdamW m and v fp32, not paged;\n"
               "            activations and their gradients fp32 (CPU backend)\n");
}

static const char *cat_names[PL_MEM_NCAT] = {"weights", "activations", "gradients", "optimizer", "workspace",
                                             "kv cache"};

/* bench/gpu.sh's measurements: $POTLUCK_GPU_MEASURED, else $POTLUCK_CACHE/gpu, else ~/.cache/potluck/gpu. */
static const char *measure_dir(char *buf, size_t n) {
    const char *d = getenv("POTLUCK_GPU_MEASURED"), *cache = getenv("POTLUCK_CACHE"), *home = getenv("HOME");
    if (d && *d) snprintf(buf, n, "%s", d);
    else if (cache && *cache) snprintf(buf, n, "%s/gpu", cache);
    else snprintf(buf, n, "%s/.cache/potluck/gpu", home && *home ? home : ".");
    return buf;
}

/* The CUDA plan's step time on each GPU of the table (text). */
static void print_step_times(const plan_in *in, const pl_mem_plan *p) {
    int n;
    const pl_gpu_spec *g = pl_gpu_specs(&n);
    char md[4096];
    measure_dir(md, sizeof md);
    pl_step_est e0;
    pl_err err = {0};
    if (pl_plan_step_time(&in->cfg, p, &g[0], NULL, &e0, &err)) return;
    printf("\nstep time, one forward + backward of %d tokens: %.3g TFLOP, %.3g GB of device traffic; estimated at\n"
           "the spec sheet's bf16 peak x %.1f and bandwidth x %.1f (assumed, not measured), or at what bench/gpu.sh\n"
           "measured on the device (%s):\n",
           p->T, e0.flops * 1e-12, e0.bytes * 1e-9, PL_EFF_GEMM, PL_EFF_MEM, md);
    for (int i = 0; i < n; i++) {
        pl_step_est e;
        if (pl_plan_step_time(&in->cfg, p, &g[i], md, &e, &err)) continue;
        printf("  %-10s %3.0f GiB  %-8s %9.3f s  %9.0f tokens/s%s\n", g[i].name, g[i].mem_gib,
               e.fits ? "fits" : "too big", e.seconds, e.tokens_per_s, e.measured ? "  (measured figures)" : "");
    }
}

static void add_step_times(cJSON *j, const plan_in *in, const pl_mem_plan *p) {
    int n;
    const pl_gpu_spec *g = pl_gpu_specs(&n);
    char md[4096];
    measure_dir(md, sizeof md);
    cJSON *a = cJSON_AddArrayToObject(j, "step_time");
    for (int i = 0; i < n; i++) {
        pl_step_est e;
        pl_err err = {0};
        if (pl_plan_step_time(&in->cfg, p, &g[i], md, &e, &err)) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "gpu", g[i].name);
        cJSON_AddNumberToObject(o, "mem_gib", g[i].mem_gib);
        cJSON_AddBoolToObject(o, "fits", e.fits);
        cJSON_AddNumberToObject(o, "flops", e.flops);
        cJSON_AddNumberToObject(o, "bytes", e.bytes);
        cJSON_AddNumberToObject(o, "tflops", e.tflops_used);
        cJSON_AddNumberToObject(o, "gbs", e.gbs_used);
        cJSON_AddBoolToObject(o, "measured", e.measured);
        cJSON_AddNumberToObject(o, "seconds", e.seconds);
        cJSON_AddNumberToObject(o, "tokens_per_s", e.tokens_per_s);
        cJSON_AddItemToArray(a, o);
    }
}

/* What must fit in --mem: on CUDA the device's share plus the runtime's
 * reserve (pl_plan_cuda_runtime), on the CPU everything. */
static double plan_need(const pl_mem_plan *p) { return (double)p->need; }

/* The CUDA runtime's reserve and what the device must hold, after the tagged lines. */
static void print_runtime(size_t runtime, size_t need) {
    char b1[32], b2[32];
    human((double)runtime, b1, sizeof b1);
    human((double)need, b2, sizeof b2);
    printf("  + the CUDA runtime's own memory (context, kernel images, cuBLAS handles): %zu (%s), a stated reserve\n"
           "    (POTLUCK_CUDA_RUNTIME_MIB replaces it); the device must hold %zu (%s)\n", runtime, b1, need, b2);
}

static void print_train(const plan_in *in, const pl_mem_plan *p, const pl_mem_plan *other, double mem) {
    const pl_model_config *c = &in->cfg;
    const pl_train_shape *s = &in->shape;
    char b1[32], b2[32], tg[64];
    printf("model:      %s: hidden %d, intermediate %d, %d layers, %d/%d heads (head %d), vocab %d, %s embeddings%s\n",
           in->label, c->dim, c->hidden, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab,
           c->tied_embeddings ? "tied" : "untied", c->qkv_bias ? ", q/k/v biases" : "");
    targets_str(s->lora_targets, tg, sizeof tg);
    if (s->frozen_base)
        printf("train:      QLoRA r %d on %s (%lld modules, %lld LoRA parameters); seq %d x %d row%s per forward "
               "= %d tokens; checkpointing %s; backend %s\n",
               s->lora_r, tg, (long long)p->n_lora_modules, (long long)p->lora_params, s->seq_len, s->micro_batch,
               s->micro_batch > 1 ? "s" : "", p->T, s->checkpoint ? "on" : "off", s->cuda ? "cuda" : "cpu");
    else
        printf("train:      full fine-tuning (%lld parameters); seq %d x %d row%s per forward = %d tokens; "
               "checkpointing %s; backend cpu\n",
               (long long)p->trained_params, s->seq_len, s->micro_batch, s->micro_batch > 1 ? "s" : "", p->T,
               s->checkpoint ? "on" : "off");
    print_policy(in);
    printf("\n");
    for (int k = 0; k < PL_MEM_NCAT; k++) {
        size_t sum = 0;
        for (int b = 0; b < PL_PB_N; b++)
            if (p->item[b].cat == (pl_mem_cat)k) sum += p->item[b].bytes;
        human((double)sum, b1, sizeof b1);
        printf("%-12s %16zu  %12s\n", cat_names[k], sum, b1);
        for (int b = 0; b < PL_PB_N; b++) {
            const pl_plan_item *it = &p->item[b];
            if (it->cat != (pl_mem_cat)k || !it->bytes) continue;
            human((double)it->bytes, b1, sizeof b1);
            char cnt[32] = "";
            if (it->each && it->count > 1) snprintf(cnt, sizeof cnt, " x%zu", it->count);
            printf("  %-14s %14zu  %12s  %s%s%s\n", it->name, it->bytes, b1, it->what, cnt,
                   it->tracked ? "" : it->mapped ? " [file map]" : " [model-owned / malloc]");
        }
    }
    printf("\n");
    human((double)p->total, b1, sizeof b1);
    printf("total        %16zu  %12s\n", p->total, b1);
    human((double)p->tracked, b1, sizeof b1);
    if (s->cuda && (p->paged || p->offloaded)) {
        char b3[32], b4[32], b5[32];
        human((double)p->paged, b3, sizeof b3);
        human((double)p->device, b4, sizeof b4);
        human((double)p->offloaded, b5, sizeof b5);
        printf("  tagged by the CUDA backend (pl_mem_peak): %zu (%s), of which in host memory: paged AdamW state\n"
               "  %zu (%s) between updates, offloaded layer inputs %zu (%s); on the device at the peak %zu (%s)\n",
               p->tracked, b1, p->paged, b3, p->offloaded, b5, p->device, b4);
    } else if (s->cuda)
        printf("  on the device (tagged by the CUDA backend, pl_mem_peak): %zu (%s)\n", p->tracked, b1);
    else
        printf("  tagged by the backend (pl_mem_peak): %zu (%s)\n", p->tracked, b1);
    if (s->cuda) print_runtime(p->runtime, p->need);
    human((double)p->owned, b1, sizeof b1);
    printf("  model-owned weights and per-call scratch: %zu (%s)\n", p->owned, b1);
    human((double)p->mapped, b1, sizeof b1);
    printf("  read from the model file's map (page cache): %zu (%s)\n", p->mapped, b1);
    human((double)p->cat[PL_MEM_ACTIVATIONS], b1, sizeof b1);
    human((double)other->cat[PL_MEM_ACTIVATIONS], b2, sizeof b2);
    printf("saved activations: %s with checkpointing %s, %s with it %s\n", b1, s->checkpoint ? "on" : "off", b2,
           s->checkpoint ? "off" : "on");
    if (mem > 0) {
        human(mem, b1, sizeof b1);
        double left = mem - plan_need(p);
        human(fabs(left), b2, sizeof b2);
        printf("fits in %s%s: %s (%s %s)\n", b1, s->cuda ? " of device memory" : "", left >= 0 ? "yes" : "no", b2,
               left >= 0 ? "to spare" : "over");
    }
    if (s->cuda) print_step_times(in, p);
}

static cJSON *plan_json(const plan_in *in, const pl_mem_plan *p, const pl_mem_plan *other, double mem) {
    cJSON *j = cJSON_CreateObject();
    const pl_model_config *c = &in->cfg;
    const pl_train_shape *s = &in->shape;
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(m, "name", in->label);
    cJSON_AddNumberToObject(m, "hidden_size", c->dim);
    cJSON_AddNumberToObject(m, "intermediate_size", c->hidden);
    cJSON_AddNumberToObject(m, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(m, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(m, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(m, "vocab_size", c->vocab);
    cJSON_AddBoolToObject(m, "tie_word_embeddings", c->tied_embeddings);
    cJSON *t = cJSON_AddObjectToObject(j, "train");
    cJSON_AddNumberToObject(t, "seq_len", s->seq_len);
    cJSON_AddNumberToObject(t, "micro_batch", s->micro_batch);
    cJSON_AddNumberToObject(t, "tokens_per_forward", p->T);
    cJSON_AddNumberToObject(t, "lora_r", s->frozen_base ? s->lora_r : 0);
    char tg[64];
    targets_str(s->lora_targets, tg, sizeof tg);
    cJSON_AddStringToObject(t, "lora_targets", s->frozen_base ? tg : "");
    cJSON_AddStringToObject(t, "base", in->base);
    cJSON_AddNumberToObject(t, "nf4_blocksize", s->nf4_blocksize);
    cJSON_AddBoolToObject(t, "double_quant", s->nf4_double_quant);
    cJSON_AddBoolToObject(t, "checkpointing", s->checkpoint);
    cJSON_AddStringToObject(t, "backend", s->cuda ? "cuda" : "cpu");
    cJSON_AddNumberToObject(t, "lora_modules", (double)p->n_lora_modules);
    cJSON_AddNumberToObject(t, "trained_params", (double)p->trained_params);
    cJSON *cats = cJSON_AddObjectToObject(j, "categories");
    cJSON *tagged = cJSON_AddObjectToObject(j, "tagged");
    for (int k = 0; k < PL_MEM_NCAT; k++) {
        size_t sum = 0;
        for (int b = 0; b < PL_PB_N; b++)
            if (p->item[b].cat == (pl_mem_cat)k) sum += p->item[b].bytes;
        cJSON_AddNumberToObject(cats, pl_mem_cat_name((pl_mem_cat)k), (double)sum);
        cJSON_AddNumberToObject(tagged, pl_mem_cat_name((pl_mem_cat)k), (double)p->cat[k]);
    }
    cJSON *items = cJSON_AddArrayToObject(j, "buffers");
    for (int b = 0; b < PL_PB_N; b++) {
        const pl_plan_item *it = &p->item[b];
        if (!it->bytes) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", it->name);
        cJSON_AddStringToObject(o, "category", pl_mem_cat_name(it->cat));
        cJSON_AddNumberToObject(o, "bytes", (double)it->bytes);
        cJSON_AddNumberToObject(o, "each", (double)it->each);
        cJSON_AddNumberToObject(o, "count", (double)it->count);
        cJSON_AddStringToObject(o, "held", it->tracked ? "backend" : it->mapped ? "file_map" : "model");
        cJSON_AddStringToObject(o, "what", it->what);
        cJSON_AddItemToArray(items, o);
    }
    cJSON_AddNumberToObject(j, "total", (double)p->total);
    cJSON_AddNumberToObject(j, "tagged_total", (double)p->tracked);
    cJSON_AddNumberToObject(j, "model_owned", (double)p->owned);
    cJSON_AddNumberToObject(j, "file_mapped", (double)p->mapped);
    cJSON_AddNumberToObject(j, s->checkpoint ? "activations_without_checkpointing" : "activations_with_checkpointing",
                            (double)other->cat[PL_MEM_ACTIVATIONS]);
    if (s->cuda) {
        cJSON_AddNumberToObject(j, "device_total", (double)p->device);
        cJSON_AddNumberToObject(j, "runtime_reserve", (double)p->runtime);
        cJSON_AddNumberToObject(j, "device_need", (double)p->need);
        cJSON_AddNumberToObject(j, "paged", (double)p->paged);
        cJSON_AddNumberToObject(j, "offloaded", (double)p->offloaded);
        add_step_times(j, in, p);
    }
    if (mem > 0) {
        cJSON_AddNumberToObject(j, "mem", mem);
        cJSON_AddBoolToObject(j, "fits", plan_need(p) <= mem);
    }
    return j;
}

static int print_json(cJSON *j) {
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt) return cli_fail("plan: out of memory");
    printf("%s\n", txt);
    free(txt);
    return 0;
}

/* Largest value of *field in [1, hi] whose plan fits in mem (0 if none). */
static int fit_search(const plan_in *in, int *field, int hi, double mem, pl_mem_plan *best) {
    plan_in w = *in;
    int *f = (int *)((char *)&w + ((char *)field - (char *)in));
    int lo = 0;
    pl_err e;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        *f = mid;
        pl_mem_plan p;
        if (!pl_train_plan(&w.cfg, &w.shape, &p, &e) && plan_need(&p) <= mem) {
            lo = mid;
            *best = p;
        } else hi = mid - 1;
    }
    return lo;
}

static int list_presets(FILE *f) {
    int n;
    const pl_plan_preset *ps = pl_plan_presets(&n);
    for (int i = 0; i < n; i++)
        fprintf(f, "%-14s %s (hidden %d, %d layers, %d/%d heads, vocab %d)\n", ps[i].name, ps[i].label,
                ps[i].cfg.dim, ps[i].cfg.n_layers, ps[i].cfg.n_heads, ps[i].cfg.n_kv_heads, ps[i].cfg.vocab);
    return 0;
}

int cmd_plan(int argc, char **argv) {
    if (argc > 1 && strlen(argv[1]) > 4 && !strcmp(argv[1] + strlen(argv[1]) - 4, ".lua"))
        return cmd_plan_recipe(argc, argv);
    const char *preset = NULL, *backend = "cpu", *fit = NULL, *config = NULL;
    double mem = 0;
    long micro = 1, ctx = 0;
    int json = 0, generate = 0, status = 1;
    char pathbuf[4200], label[4300];
    pl_run_cfg c;
    pl_run_cfg_defaults(&c);
    pl_err err = {0};
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(plan_help, stdout);
            pl_run_cfg_free(&c);
            return 0;
        } else if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) { cli_fail("plan: --config: expected a file"); goto done; }
            config = argv[++i];
        }
    if (config && pl_run_cfg_apply_file(&c, config, &err)) { cli_fail_err(&err); goto done; }
    for (int i = 1; i < argc;) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--config")) { i += 2; continue; }
        if (!strcmp(a, "--json")) { json = 1; i++; continue; }
        if (!strcmp(a, "--generate")) { generate = 1; i++; continue; }
        if (!strcmp(a, "--preset") || !strcmp(a, "--backend") || !strcmp(a, "--mem") || !strcmp(a, "--fit") ||
            !strcmp(a, "--micro-batch") || !strcmp(a, "--ctx")) {
            if (!v) { cli_fail("plan: %s: expected a value", a); goto done; }
            if (!strcmp(a, "--preset")) preset = v;
            else if (!strcmp(a, "--backend")) backend = v;
            else if (!strcmp(a, "--fit")) fit = v;
            else if (!strcmp(a, "--mem")) { if (parse_size(v, &mem)) goto done; }
            else if (!strcmp(a, "--micro-batch")) { if (cli_int("plan: --micro-batch", v, 1, 1 << 20, &micro)) goto done; }
            else if (cli_int("plan: --ctx", v, 1, 1 << 24, &ctx)) goto done;
            i += 2;
            continue;
        }
        int used = 0;
        if (pl_run_cfg_apply_flag(&c, argc - i, argv + i, &used, &err)) { cli_fail("plan: %s", err.msg); goto done; }
        if (!used) { cli_fail("plan: unknown option '%s' (see potluck plan --help)", a); goto done; }
        i += used;
    }
    if (preset && !strcmp(preset, "list")) { list_presets(stdout); status = 0; goto done; }
    if (strcmp(backend, "cpu") && strcmp(backend, "cuda")) {
        cli_fail("plan: --backend %s: expected cpu or cuda", backend);
        goto done;
    }
    free(c.backend);
    c.backend = strdup(backend);
    if (c.mlp_chunk && (c.mlp_chunk % 8 || !c.checkpointing)) {
        cli_fail("plan: --mlp-chunk %d: expected a multiple of 8 tokens, with --checkpointing", c.mlp_chunk);
        goto done;
    }
    if (c.offload_checkpoints && (strcmp(backend, "cuda") || !c.checkpointing)) {
        cli_fail("plan: --offload-checkpoints moves checkpointed layer inputs off the GPU: it needs --backend cuda and "
                 "--checkpointing");
        goto done;
    }
    if (fit && strcmp(fit, "seq") && strcmp(fit, "batch")) { cli_fail("plan: --fit: expected seq or batch, got '%s'", fit); goto done; }
    if (fit && mem <= 0) { cli_fail("plan: --fit %s needs --mem SIZE", fit); goto done; }
    if (fit && generate) { cli_fail("plan: --fit is for training plans, not --generate"); goto done; }
    if (!!preset == !!(c.model && *c.model)) { cli_fail("plan: give one of --model PATH or --preset NAME"); goto done; }
    plan_in in = {0};
    pl_model_header h = {0};
    if (preset) {
        const pl_plan_preset *p = pl_plan_preset_find(preset);
        if (!p) {
            char names[1024];
            pl_plan_preset_names(names, sizeof names);
            cli_fail("plan: unknown preset '%s' (known: %s)", preset, names);
            goto done;
        }
        h.cfg = p->cfg;
        h.source = PL_SRC_HF;
        h.layer_dtype = h.embd_dtype = h.head_dtype = PL_BF16; /* the releases' safetensors */
        snprintf(label, sizeof label, "%s (preset %s, BF16 safetensors)", p->label, p->name);
    } else {
        if (pl_model_read_header(c.model, &h, &err)) { cli_fail_err(&err); goto done; }
        snprintf(pathbuf, sizeof pathbuf, "%s", c.model);
        snprintf(label, sizeof label, "%s", pathbuf);
    }
    in.label = label;
    in.cfg = h.cfg;
    pl_train_shape *s = &in.shape;
    if (pl_run_cfg_shape(&c, &h, (int)micro, s, &in.base, &err)) { cli_fail("plan: %s", err.msg); goto done; }
    if ((!pl_dtype_row_bytes(s->layer_dtype, in.cfg.dim) && s->layer_dtype != PL_NF4) ||
        !pl_dtype_row_bytes(s->embd_dtype, in.cfg.dim)) {
        cli_fail("plan: %s: weights of dtype %s cannot be sized from the header", label, pl_dtype_name(s->layer_dtype));
        goto done;
    }
    if (generate) {
        int nseq = c.batch, nctx = ctx > 0 ? (int)ctx : in.cfg.max_seq;
        if (nctx <= 0) { cli_fail("plan: --generate: give --ctx N (the model states no context length)"); goto done; }
        pl_gen_plan g;
        s->frozen_base = 1;
        s->nf4_blocksize = 0; /* potluck generate runs on the weights as stored (NF4 ones as NF4: the plan) */
        if (pl_gen_plan_make(&in.cfg, s, nseq, nctx, 0, &g, &err)) { cli_fail_err(&err); goto done; }
        const double gneed = (double)g.need; /* what --mem must hold: on CUDA the device's share + the runtime's */
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "model", label);
            cJSON_AddStringToObject(j, "backend", g.cuda ? "cuda" : "cpu");
            cJSON_AddNumberToObject(j, "sequences", g.n_seq);
            cJSON_AddNumberToObject(j, "ctx", g.n_ctx);
            cJSON_AddNumberToObject(j, "prefill_tokens", g.T);
            cJSON *cats = cJSON_AddObjectToObject(j, "categories");
            cJSON_AddNumberToObject(cats, "weights", (double)(g.weights_owned + g.weights_mapped + g.dev_weights));
            cJSON_AddNumberToObject(cats, "activations", (double)g.activations);
            cJSON_AddNumberToObject(cats, "gradients", 0);
            cJSON_AddNumberToObject(cats, "optimizer", 0);
            cJSON_AddNumberToObject(cats, "workspace", (double)g.workspace);
            cJSON_AddNumberToObject(cats, "kvcache", (double)g.kv);
            cJSON *tagged = cJSON_AddObjectToObject(j, "tagged");
            for (int k = 0; k < PL_MEM_NCAT; k++)
                cJSON_AddNumberToObject(tagged, pl_mem_cat_name((pl_mem_cat)k), (double)g.cat[k]);
            cJSON_AddNumberToObject(j, "tagged_total", (double)g.tracked);
            cJSON_AddNumberToObject(j, "logits", (double)g.logits);
            cJSON_AddNumberToObject(j, "weights_model_owned", (double)g.weights_owned);
            cJSON_AddNumberToObject(j, "weights_file_mapped", (double)g.weights_mapped);
            if (g.cuda) {
                cJSON_AddNumberToObject(j, "device_total", (double)g.device);
                cJSON_AddNumberToObject(j, "runtime_reserve", (double)g.runtime);
                cJSON_AddNumberToObject(j, "device_need", (double)g.need);
                cJSON_AddNumberToObject(j, "device_weights", (double)g.dev_weights);
                cJSON_AddNumberToObject(j, "gemm_workspace", (double)g.dev_gemm_ws);
                cJSON_AddNumberToObject(j, "scratch", (double)g.dev_scratch);
            }
            cJSON_AddNumberToObject(j, "total", (double)g.total);
            if (mem > 0) {
                cJSON_AddNumberToObject(j, "mem", mem);
                cJSON_AddBoolToObject(j, "fits", gneed <= mem);
            }
            status = print_json(j) ? 1 : 0;
            goto done;
        }
        char b1[32];
        printf("model:      %s\n", label);
        printf("generate:   %d sequence%s of up to %d tokens; the prefill of all of them at once (%d tokens) is "
               "the peak; backend %s\n",
               g.n_seq, g.n_seq > 1 ? "s" : "", g.n_ctx, g.T,
               g.cuda ? "cuda (bf16 activations and KV cache, every buffer on the device)"
                      : "cpu (fp32 activations and KV cache)");
        struct { const char *n; size_t b; const char *w; } rows[] = {
            {"weights", g.weights_owned + g.weights_mapped,
             g.cuda ? "the model's own copy as stored, host memory (potluck generate does not quantize)"
                    : "as stored (potluck generate does not quantize)"},
            {"dev weights", g.dev_weights, s->layer_dtype == PL_NF4
                                               ? "device copies: layer matrices in NF4 as stored, embedding and LM "
                                                 "head in bf16, norms fp32"
                                               : "device copies: layer matrices, embedding and LM head in bf16, norms fp32"},
            {"kv cache", g.kv, g.cuda ? "K and V bf16: 2 x layers x sequences x ctx x kv dim x 2"
                                      : "K and V fp32: 2 x layers x sequences x ctx x kv dim x 4"},
            {"activations", g.activations, g.cuda ? "decode buffers of the prefill (bf16) + the head's (sequences, "
                                                    "vocab) bf16 output" : "decode buffers of the prefill"},
            {"workspace", g.workspace, g.cuda ? "linear_q workspace + cuBLASLt's workspace + the backend's scratch"
                                              : "linear_q dequantized rows"},
            {"logits", g.logits, "last-token logits per sequence (fp32, host memory)"}};
        for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
            if (!g.cuda && k == 1) continue;
            human((double)rows[k].b, b1, sizeof b1);
            printf("%-12s %16zu  %12s  %s\n", rows[k].n, rows[k].b, b1, rows[k].w);
        }
        human((double)g.total, b1, sizeof b1);
        printf("total        %16zu  %12s\n", g.total, b1);
        if (g.cuda) {
            human((double)g.device, b1, sizeof b1);
            printf("  on the device (tagged by the CUDA backend, pl_mem_peak): %zu (%s)\n", g.device, b1);
            print_runtime(g.runtime, g.need);
        }
        if (mem > 0) {
            char b2[32];
            human(mem, b1, sizeof b1);
            human(fabs(mem - gneed), b2, sizeof b2);
            printf("fits in %s%s: %s (%s %s)\n", b1, g.cuda ? " of device memory" : "", gneed <= mem ? "yes" : "no", b2,
                   gneed <= mem ? "to spare" : "over");
        }
        status = 0;
        goto done;
    }
    pl_mem_plan p, other;
    if (fit) {
        int *field = !strcmp(fit, "seq") ? &in.shape.seq_len : &in.shape.micro_batch;
        int hi = !strcmp(fit, "seq") ? (1 << 20) / in.shape.micro_batch : (1 << 20) / in.shape.seq_len;
        pl_mem_plan best;
        int v = fit_search(&in, field, hi, mem, &best);
        char b1[32];
        human(mem, b1, sizeof b1);
        if (v == 0) {
            if (json) {
                cJSON *j = cJSON_CreateObject();
                cJSON_AddStringToObject(j, "fit", fit);
                cJSON_AddNumberToObject(j, "mem", mem);
                cJSON_AddNumberToObject(j, "largest", 0);
                print_json(j);
            } else
                printf("fit %s: nothing fits in %s (the weights alone take more, or one token does)\n", fit, b1);
            status = 0;
            goto done;
        }
        *field = v;
        if (!json)
            printf("fit %s: the largest %s that fits in %s is %d%s\n\n", fit,
                   !strcmp(fit, "seq") ? "--seq-len" : "--micro-batch", b1, v,
                   v == hi ? " (the trainer's limit of 1048576 tokens per forward)" : "");
    }
    if (pl_train_plan(&in.cfg, &in.shape, &p, &err)) { cli_fail_err(&err); goto done; }
    pl_train_shape os = in.shape;
    os.checkpoint = !os.checkpoint;
    if (!os.checkpoint) os.offload = os.mlp_chunk = 0;
    if (pl_train_plan(&in.cfg, &os, &other, &err)) { cli_fail_err(&err); goto done; }
    if (json) {
        cJSON *j = plan_json(&in, &p, &other, mem);
        if (fit) {
            cJSON_AddStringToObject(j, "fit", fit);
            cJSON_AddNumberToObject(j, "largest", !strcmp(fit, "seq") ? in.shape.seq_len : in.shape.micro_batch);
        }
        status = print_json(j) ? 1 : 0;
        goto done;
    }
    print_train(&in, &p, &other, mem);
    status = 0;
done:
    pl_run_cfg_free(&c);
    return status;
}
