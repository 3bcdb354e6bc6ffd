/* cmd_model_init.c: `potluck model init --random`: a random model of any shape
 * (trainer/model_init.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../core/json.h"
#include "../core/progress.h"
#include "../trainer/export.h"
#include "cli.h"
#include "cmd_model_init.h"
#include "../trainer/model_init.h"
#include "../trainer/plan.h"

static const char *init_help =
    "usage: potluck model init --random (--preset NAME | --config PATH) --out DIR [options]\n"
    "       potluck model init --config-only (--preset NAME | --config PATH) --out DIR\n"
    "\n"
    "Writes a randomly initialized model (weights N(0, 0.02^2), norms 1)\n"
    "of a published shape as a Hugging Face directory potluck and transformers load,\n"
    "for planning checks and benchmarks at sizes no checkpoint here has. One tensor\n"
    "at a time: memory holds one shard, never the whole model.\n"
    "\n"
    "  --random           required (the only kind of init)\n"
    "  --preset NAME      a shape from `potluck plan --preset list` (llama2-7b, llama-33b, ...)\n"
    "  --config PATH      or the shape of a config.json, Hugging Face directory or GGUF\n"
    "  --out DIR          the new model's folder (must not hold a model)\n"
    "  --nf4              layer weights as bitsandbytes NF4 (blocksize 64, double-quantized),\n"
    "                     as save_pretrained writes a load_in_4bit model; default BF16\n"
    "  --layers N         keep only the first N layers (a cheaper model of the same width)\n"
    "  --seed N           random seed (default 0); the same seed gives the same bytes\n"
    "  --tokenizer PATH   tokenizer files for DIR: a folder's (copied), a tokenizer.json, or a\n"
    "                     GGUF's byte-level BPE vocabulary written as tokenizer.json (its\n"
    "                     tokens must fit the shape's vocab_size)\n"
    "  --shard-mb N       safetensors shards of at most N MB (default 2048)\n"
    "  --threads N        worker threads\n"
    "  --config-only      write DIR/config.json alone (the shape, for tools that read one);\n"
    "                     the model spec random:DIR/config.json makes this model in memory\n"
    "                     instead of reading it from disk (potluck train --help)\n";

/* the progress line (core/progress.h) in MiB written (KiB for a model under
 * 64 MiB), begun at the first call */
static void init_progress(void *user, int64_t done, int64_t total) {
    pl_progress *p = user;
    int shift = total < ((int64_t)64 << 20) ? 10 : 20;
    if (!p->active && p->mode != PL_PROGRESS_OFF) pl_progress_begin(p, "model init", total >> shift, shift == 10 ? "KiB" : "MiB");
    pl_progress_update(p, done >> shift);
}

int cmd_model_init(int argc, char **argv) {
    const char *preset = NULL, *config = NULL, *out = NULL, *tok = NULL;
    int random = 0, nf4 = 0, config_only = 0;
    long layers = 0, seed = 0, shard_mb = 2048, threads = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(init_help, stdout); return 0; }
        if (!strcmp(a, "--random")) { random = 1; continue; }
        if (!strcmp(a, "--nf4")) { nf4 = 1; continue; }
        if (!strcmp(a, "--config-only")) { config_only = 1; continue; }
        if (!strcmp(a, "--preset") || !strcmp(a, "--config") || !strcmp(a, "--out") || !strcmp(a, "--tokenizer") ||
            !strcmp(a, "--layers") || !strcmp(a, "--seed") || !strcmp(a, "--shard-mb") || !strcmp(a, "--threads")) {
            if (!v) return cli_fail("model init: %s: expected a value", a);
            i++;
            if (!strcmp(a, "--preset")) preset = v;
            else if (!strcmp(a, "--config")) config = v;
            else if (!strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--tokenizer")) tok = v;
            else if (!strcmp(a, "--layers")) { if (cli_int(a, v, 1, 1000, &layers)) return 1; }
            else if (!strcmp(a, "--seed")) { if (cli_int(a, v, 0, 2147483647L, &seed)) return 1; }
            else if (!strcmp(a, "--shard-mb")) { if (cli_int(a, v, 1, 1 << 20, &shard_mb)) return 1; }
            else if (cli_int(a, v, 1, 1024, &threads)) return 1;
            continue;
        }
        return cli_fail("model init: unknown option '%s' (see potluck model init --help)", a);
    }
    if (!random && !config_only)
        return cli_fail("model init: --random is required (the only kind of init: random weights), or --config-only");
    if (!!preset == !!config) return cli_fail("model init: give the shape with --preset NAME or --config PATH (one of them)");
    if (!out) return cli_fail("model init: --out DIR is required");
    pl_model_config c;
    pl_err err = {0};
    if (preset) {
        const pl_plan_preset *p = pl_plan_preset_find(preset);
        if (!p) {
            char names[1024];
            pl_plan_preset_names(names, sizeof names);
            return cli_fail("model init: --preset %s: not a preset (%s)", preset, names);
        }
        c = p->cfg;
    } else {
        pl_model_header h;
        if (pl_model_read_header(config, &h, &err)) return cli_fail_err(&err);
        c = h.cfg;
    }
    if (layers > 0 && layers < c.n_layers) c.n_layers = (int)layers;
    if (config_only) {
        char p[4200];
        snprintf(p, sizeof p, "%s/config.json", out);
        if (access(p, F_OK) == 0) return cli_fail("model init: %s already exists; choose a new --out", p);
        if (pl_mkdirs(out, &err)) return cli_fail_err(&err);
        cJSON *j = pl_export_hf_config(&c, PL_BF16);
        int rc = j ? pl_json_write(p, j, &err) : pl_err_set(&err, PL_ENOMEM, "out of memory");
        cJSON_Delete(j);
        if (rc) return cli_fail_err(&err);
        printf("model init: %s -> %s (the shape only: %d layers, dim %d; --model random:%s makes its weights)\n",
               preset ? preset : config, p, c.n_layers, c.dim, p);
        return 0;
    }
    cli_set_threads((int)threads);
    pl_progress pg = {0};
    pl_model_init_opts o = {.seed = (uint64_t)seed, .nf4 = nf4, .shard_bytes = (size_t)shard_mb << 20,
                            .tokenizer = tok, .progress = init_progress, .user = &pg};
    if (pl_model_init_random(&c, out, &o, &err)) {
        pl_progress_clear(&pg);
        return cli_fail_err(&err);
    }
    pl_progress_end(&pg);
    printf("model init: %s -> %s (%d layers, dim %d, %s layers, seed %ld)\n", preset ? preset : config, out,
           c.n_layers, c.dim, nf4 ? "NF4" : "BF16", seed);
    return 0;
}
