/* cmd_plan_recipe.c: `potluck plan RECIPE.lua --sizes 7b,13b,33b [--gpu SIZE]
 * [--backend cpu|cuda] [--mem SIZE] [--json]`: a recipe's fine-tune at each
 * size, before anything runs.
 *
 * Per size: the recipe at that size (its scale rules, as `potluck run --size`
 * resolves them: the base, lr, dropout, ...), the base's shape (a local model
 * by that name, read from its header only, else the preset named by the base
 * id's last part, "huggyllama/llama-30b" -> llama-30b), the training plan
 * (trainer/plan.h: what the trainer allocates), whether it fits, and if not,
 * the first settings that do: checkpointing, then (cuda) paged AdamW state
 * and offloaded checkpoints, then MLP chunks, then a shorter sequence. The
 * settings are named as recipe keys (train.checkpointing = true, ...). */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "../core/units.h"
#include "../plugins/pipeline.h"
#include "../plugins/sandbox.h"
#include "../trainer/plan.h"
#include "../trainer/run.h"
#include "cli.h"
#include "cmd_plan.h"

static const char *help =
    "usage: potluck plan RECIPE.lua --sizes S1,S2,... [--gpu SIZE] [--backend cpu|cuda] [--mem SIZE] [--json]\n"
    "\n"
    "The recipe's fine-tune at each size, before anything runs: the recipe resolved at the\n"
    "size (its scale rules, as potluck run --size applies them: base, lr, dropout, ...), the\n"
    "memory it needs per category, whether it fits, and if not the first settings that do\n"
    "(train.checkpointing, then on cuda train.paged_optim and train.offload_checkpoints, then\n"
    "train.mlp_chunk, then a shorter train.seq_len), named as recipe keys.\n"
    "\n"
    "  --sizes LIST     scale entries, comma-separated (7b,13b,33b)\n"
    "  --gpu SIZE       the GPU's memory (24GiB): plans the cuda backend against it\n"
    "  --backend B      cpu or cuda (default: cuda with --gpu, else cpu)\n"
    "  --mem SIZE       cpu: the memory to fit in (default: this machine's)\n"
    "  --json           one JSON object: a row per size\n"
    "\n"
    "The base of each size is a local model of that name ($POTLUCK_MODELS, read from its\n"
    "header only) or else the preset named like the base id's last part\n"
    "(huggyllama/llama-30b: preset llama-30b; potluck plan --preset list).\n";

typedef struct fit_try {
    int ckpt, paged, offload, chunk, seq;
} fit_try;

/* The plan of c on header h with t's settings; *need = p->need (cuda: device + the runtime's reserve; cpu: total). */
static int plan_with(const pl_run_cfg *c0, const pl_model_header *h, const fit_try *t, pl_mem_plan *p, double *need,
                     pl_err *err) {
    pl_run_cfg c = *c0;
    c.checkpointing = t->ckpt;
    c.paged_optim = t->paged;
    c.offload_checkpoints = t->offload;
    c.mlp_chunk = t->chunk;
    c.seq_len = t->seq;
    pl_train_shape s;
    const char *base;
    int rc = pl_run_cfg_shape(&c, h, 1, &s, &base, err);
    if (!rc) rc = pl_train_plan(&h->cfg, &s, p, err);
    if (!rc) *need = (double)p->need; /* on CUDA the device's share + the runtime's reserve */
    return rc;
}

/* The settings of t that differ from c's, as recipe keys. */
static void describe(const pl_run_cfg *c, const fit_try *t, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = 0;
#define ADD(...) do { if (o < cap) o += (size_t)snprintf(buf + o, cap - o, __VA_ARGS__); } while (0)
    if (t->ckpt && !c->checkpointing) ADD("%strain.checkpointing = true", o ? ", " : "");
    if (t->paged && !c->paged_optim) ADD("%strain.paged_optim = true", o ? ", " : "");
    if (t->offload && !c->offload_checkpoints) ADD("%strain.offload_checkpoints = true", o ? ", " : "");
    if (t->chunk && t->chunk != c->mlp_chunk) ADD("%strain.mlp_chunk = %d", o ? ", " : "", t->chunk);
    if (t->seq != c->seq_len) ADD("%strain.seq_len = %d", o ? ", " : "", t->seq);
#undef ADD
}

/* The first settings, in the order the help states, whose plan fits in mem. 0: found. */
static int find_fit(const pl_run_cfg *c, const pl_model_header *h, int cuda, double mem, fit_try *out, double *need) {
    fit_try t = {c->checkpointing, c->paged_optim, c->offload_checkpoints, c->mlp_chunk, c->seq_len};
    pl_mem_plan p;
    pl_err e = {0};
    fit_try steps[4];
    int n = 0;
    t.ckpt = 1;
    steps[n++] = t;
    if (cuda) {
        t.paged = 1;
        steps[n++] = t;
        t.offload = 1;
        steps[n++] = t;
    }
    if (!t.chunk && t.seq > 1024) {
        t.chunk = 1024;
        steps[n++] = t;
    }
    for (int i = 0; i < n; i++)
        if (!plan_with(c, h, &steps[i], &p, need, &e) && *need <= mem) { *out = steps[i]; return 0; }
    for (int sl = t.seq / 2; sl >= 16; sl /= 2) {
        fit_try u = t;
        u.seq = sl;
        if (u.chunk >= sl) u.chunk = 0;
        if (!plan_with(c, h, &u, &p, need, &e) && *need <= mem) { *out = u; return 0; }
    }
    return -1;
}

/* The base's header: a local model by that name, else the preset named like its last part. */
static int base_header(const char *bname, pl_model_header *h, char *label, size_t cap, pl_err *err) {
    char *path = NULL;
    pl_err e = {0};
    if (bname && *bname && !pl_model_resolve(bname, 0, &path, &e)) {
        int rc = pl_model_read_header(path, h, err);
        snprintf(label, cap, "%s", path);
        free(path);
        return rc;
    }
    const char *last = bname ? strrchr(bname, '/') : NULL;
    last = last ? last + 1 : bname ? bname : "";
    char name[128];
    size_t k = 0;
    for (; last[k] && k + 1 < sizeof name; k++) name[k] = (char)tolower((unsigned char)last[k]);
    name[k] = 0;
    const pl_plan_preset *ps = pl_plan_preset_find(name);
    if (!ps)
        return pl_err_set(err, PL_ENOTFOUND,
                          "base \"%s\": no local model of that name and no preset \"%s\" (potluck plan --preset list)",
                          bname ? bname : "", name);
    memset(h, 0, sizeof *h);
    h->cfg = ps->cfg;
    h->source = PL_SRC_HF;
    h->layer_dtype = h->embd_dtype = h->head_dtype = PL_BF16; /* the releases' safetensors */
    snprintf(label, cap, "preset %s", ps->name);
    return 0;
}

static double num_or(const cJSON *o, const char *k, double d) {
    const cJSON *x = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(x) ? x->valuedouble : d;
}

int cmd_plan_recipe(int argc, char **argv) {
    const char *recipe = NULL, *sizes = NULL, *backend = NULL, *gpu = NULL, *memarg = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(help, stdout); return 0; }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (!strcmp(a, "--sizes") || !strcmp(a, "--gpu") || !strcmp(a, "--backend") || !strcmp(a, "--mem")) {
            if (!v) return cli_fail("plan: %s: expected a value", a);
            if (!strcmp(a, "--sizes")) sizes = v;
            else if (!strcmp(a, "--gpu")) gpu = v;
            else if (!strcmp(a, "--backend")) backend = v;
            else memarg = v;
            i++;
            continue;
        }
        if (a[0] == '-' || recipe) return cli_fail("plan: unknown option '%s' (see potluck plan RECIPE.lua --help)", a);
        recipe = a;
    }
    if (!recipe) return cli_fail("plan: expected a recipe (potluck plan RECIPE.lua --sizes 7b,13b)");
    if (!sizes || !*sizes) return cli_fail("plan: %s: --sizes LIST is required (7b,13b,33b)", recipe);
    if (!backend) backend = gpu ? "cuda" : "cpu";
    if (strcmp(backend, "cpu") && strcmp(backend, "cuda"))
        return cli_fail("plan: --backend %s: expected cpu or cuda", backend);
    const int cuda = !strcmp(backend, "cuda");
    if (gpu && !cuda) return cli_fail("plan: --gpu is the cuda backend's memory: drop --backend cpu");
    if (memarg && cuda) return cli_fail("plan: --mem is the cpu's memory: give --gpu SIZE for cuda");
    double mem = 0;
    const char *why = gpu ? pl_parse_bytes(gpu, &mem) : memarg ? pl_parse_bytes(memarg, &mem) : NULL;
    if (why) return cli_fail("plan: %s: %s: got \"%s\"", gpu ? "--gpu" : "--mem", why, gpu ? gpu : memarg);
    if (!gpu && !memarg) mem = cuda ? 0 : pl_machine_memory();
    char mb[32];
    pl_fmt_bytes(mem, mb, sizeof mb);
    cJSON *out = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(out, "sizes");
    cJSON_AddStringToObject(out, "recipe", recipe);
    cJSON_AddStringToObject(out, "backend", backend);
    cJSON_AddNumberToObject(out, "mem", mem);
    if (!json)
        printf("plan: %s at %s on the %s backend%s%s%s\n\n", recipe, sizes, backend, mem > 0 ? ", fitting " : "",
               mem > 0 ? mb : "", mem > 0 ? (cuda ? " of device memory" : " of memory") : " (no memory given: --gpu SIZE)");
    int status = 0;
    char *list = strdup(sizes);
    for (char *save = NULL, *size = strtok_r(list, ",", &save); size; size = strtok_r(NULL, ",", &save)) {
        pl_err err = {0};
        pl_pipe_opts o = {0};
        pl_lua_limits_default(&o.limits);
        o.recipe = recipe;
        o.size = size;
        o.quiet = 1;
        cJSON *rp = NULL, *row = cJSON_CreateObject();
        cJSON_AddItemToArray(rows, row);
        cJSON_AddStringToObject(row, "size", size);
        pl_run_cfg c;
        pl_run_cfg_defaults(&c);
        pl_model_header h;
        char label[4200] = "";
        int rc = pl_pipeline_plan(&o, &rp, &err);
        const char *bname = rc ? NULL : cJSON_GetStringValue(cJSON_GetObjectItem(rp, "base"));
        if (!rc) rc = base_header(bname, &h, label, sizeof label, &err);
        if (!rc) {
            cJSON *cfg = cJSON_CreateObject();
            cJSON_AddItemToObject(cfg, "lora", cJSON_Duplicate(cJSON_GetObjectItem(rp, "lora"), 1));
            cJSON_AddItemToObject(cfg, "train", cJSON_Duplicate(cJSON_GetObjectItem(rp, "train"), 1));
            rc = pl_run_cfg_apply_json(&c, cfg, recipe, &err);
            cJSON_Delete(cfg);
        }
        free(c.backend);
        c.backend = strdup(backend);
        c.threads = 1;
        pl_mem_plan p;
        double need = 0;
        fit_try as = {c.checkpointing, c.paged_optim, c.offload_checkpoints, c.mlp_chunk, c.seq_len};
        if (!rc) rc = plan_with(&c, &h, &as, &p, &need, &err);
        if (rc) {
            cJSON_AddStringToObject(row, "error", err.msg);
            if (!json) printf("%-5s %s\n\n", size, err.msg);
            status = 1;
            pl_run_cfg_free(&c);
            cJSON_Delete(rp);
            continue;
        }
        const cJSON *tr = cJSON_GetObjectItem(rp, "train"), *lo = cJSON_GetObjectItem(rp, "lora");
        const char *notes = cJSON_GetStringValue(cJSON_GetObjectItem(rp, "size_notes"));
        const int fits = mem <= 0 || need <= mem;
        fit_try fix;
        double need_fix = 0;
        int found = !fits && !find_fit(&c, &h, cuda, mem, &fix, &need_fix);
        char fixs[512] = "";
        if (found) describe(&c, &fix, fixs, sizeof fixs);
        cJSON_AddStringToObject(row, "base", bname ? bname : "");
        cJSON_AddStringToObject(row, "shape", label);
        cJSON_AddNumberToObject(row, "lr", num_or(tr, "lr", c.lr));
        cJSON_AddNumberToObject(row, "lora_dropout", num_or(lo, "dropout", c.lora_dropout));
        cJSON_AddNumberToObject(row, "lora_r", c.lora_r);
        cJSON_AddNumberToObject(row, "seq_len", c.seq_len);
        cJSON_AddNumberToObject(row, "global_batch", (double)c.batch * c.grad_accum);
        if (notes) cJSON_AddStringToObject(row, "notes", notes);
        cJSON_AddNumberToObject(row, cuda ? "device_need" : "total", need);
        if (cuda) {
            cJSON_AddNumberToObject(row, "device_total", (double)p.device);
            cJSON_AddNumberToObject(row, "runtime_reserve", (double)p.runtime);
        }
        cJSON *cats = cJSON_AddObjectToObject(row, "categories");
        for (int k = 0; k < PL_MEM_NCAT; k++) {
            double b = (double)p.cat[k];
            if (k == PL_MEM_OPTIMIZER) b -= (double)p.paged;
            if (k == PL_MEM_ACTIVATIONS) b -= (double)p.offloaded;
            cJSON_AddNumberToObject(cats, pl_mem_cat_name((pl_mem_cat)k), b);
        }
        if (!cuda) cJSON_AddNumberToObject(cats, "model_owned_and_mapped", (double)(p.owned + p.mapped));
        cJSON_AddBoolToObject(row, "fits", fits);
        if (found) {
            cJSON_AddStringToObject(row, "fits_with", fixs);
            cJSON_AddNumberToObject(row, cuda ? "device_need_with" : "total_with", need_fix);
        }
        if (!json) {
            char nb[32], fb[32], cb[PL_MEM_NCAT][32];
            pl_fmt_bytes(need, nb, sizeof nb);
            for (int k = 0; k < PL_MEM_NCAT; k++)
                pl_fmt_bytes(cJSON_GetObjectItem(cats, pl_mem_cat_name((pl_mem_cat)k))->valuedouble, cb[k], sizeof cb[k]);
            const double params = (double)pl_plan_params(&h.cfg);
            printf("%-5s %s (%s): %.3g B parameters; lr %g, lora r %d dropout %g, seq %d, global batch %d%s%s\n", size,
                   bname ? bname : "?", label, params / 1e9, num_or(tr, "lr", c.lr), c.lora_r,
                   num_or(lo, "dropout", c.lora_dropout), c.seq_len, c.batch * c.grad_accum, notes ? "; " : "",
                   notes ? notes : "");
            printf("      %s %s: weights %s, activations %s, gradients %s, optimizer %s, workspace %s%s\n",
                   cuda ? "device" : "total", nb, cb[PL_MEM_WEIGHTS], cb[PL_MEM_ACTIVATIONS], cb[PL_MEM_GRADIENTS],
                   cb[PL_MEM_OPTIMIZER], cb[PL_MEM_WORKSPACE], cuda ? "" : " (plus the model's own and mapped weights)");
            if (mem > 0 && fits) printf("      fits in %s\n", mb);
            else if (found) {
                pl_fmt_bytes(need_fix, fb, sizeof fb);
                printf("      does not fit in %s; fits with %s (%s)\n", mb, fixs, fb);
            } else if (mem > 0)
                printf("      does not fit in %s, with any of the settings tried: a smaller base, or more memory\n", mb);
            printf("\n");
        }
        pl_run_cfg_free(&c);
        cJSON_Delete(rp);
    }
    free(list);
    if (json) {
        char *s = cJSON_Print(out);
        if (s) puts(s);
        free(s);
    }
    cJSON_Delete(out);
    return status;
}
