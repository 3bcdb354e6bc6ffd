/* cmd_import.c: `potluck import --peft DIR`: check an existing PEFT adapter
 * against a base model and, with --out, start a run directory from it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomic.h"
#include "../core/json.h"
#include "../trainer/model_lora.h"
#include "cli.h"
#include "cmd_export.h"

static const char *import_help =
    "usage: potluck import --peft DIR --model PATH [--out RUN_DIR]\n"
    "\n"
    "Loads a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors)\n"
    "against the base model and checks it: the config (r, lora_alpha, dropout,\n"
    "target_modules, use_rslora), that every target module of every layer has its\n"
    "base_model.model.model.layers.N.<module>.lora_A.weight [r, in] and lora_B.weight\n"
    "[out, r] with the model's in/out sizes, that no other tensor is present, and\n"
    "that every value is finite. Prints what it found.\n"
    "\n"
    "  --out RUN_DIR   start a run directory: RUN_DIR/config.json (model, lora\n"
    "                  settings) and RUN_DIR/adapter/ (the adapter, rewritten), which\n"
    "                  `potluck export RUN_DIR` and `potluck generate --adapter` take;\n"
    "                  `potluck train --init-adapter RUN_DIR/adapter ...` continues training it\n";

int cmd_import(int argc, char **argv) {
    const char *peft = NULL, *model_path = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(import_help, stdout); return 0; }
        if (!strcmp(a, "--peft") || !strcmp(a, "--model") || !strcmp(a, "--out")) {
            if (!v) return cli_fail("import: %s: expected a value", a);
            i++;
            if (!strcmp(a, "--peft")) peft = v;
            else if (!strcmp(a, "--model")) model_path = v;
            else out = v;
            continue;
        }
        return cli_fail("import: unknown option '%s' (see potluck import --help)", a);
    }
    if (!peft) return cli_fail("import: --peft DIR is required (see potluck import --help)");
    if (!model_path) return cli_fail("import: --model PATH is required (the adapter's base model)");
    pl_err err = {0};
    pl_model *m = NULL;
    pl_lora *l = NULL;
    cJSON *cfg = NULL;
    int status = 1;
    if (pl_model_load(&m, model_path, NULL, &err) || pl_lora_load_peft(&l, m, peft, &err)) {
        status = cli_fail_err(&err);
        goto done;
    }
    int64_t params = 0, nonzero_b = 0;
    int layers_seen = 0, last_layer = -1;
    for (int i = 0; i < l->n; i++) {
        const pl_lora_module *md = &l->mods[i];
        size_t na = (size_t)md->r * md->in, nb = (size_t)md->out * md->r;
        int nz = 0;
        for (size_t k = 0; k < na; k++)
            if (!isfinite(md->A[k])) { status = cli_fail("%s: layers.%d.%s lora_A holds a non-finite value", peft, md->layer, pl_lin_name(md->which)); goto done; }
        for (size_t k = 0; k < nb; k++) {
            if (!isfinite(md->B[k])) { status = cli_fail("%s: layers.%d.%s lora_B holds a non-finite value", peft, md->layer, pl_lin_name(md->which)); goto done; }
            nz |= md->B[k] != 0;
        }
        nonzero_b += nz;
        params += (int64_t)(na + nb);
        if (md->layer != last_layer) { layers_seen++; last_layer = md->layer; }
    }
    char targets[128] = "";
    for (int w = 0; w < PL_LIN_HEAD; w++)
        if (l->cfg.targets & (1u << w)) {
            size_t k = strlen(targets);
            snprintf(targets + k, sizeof targets - k, "%s%s", k ? "," : "", pl_lin_name((pl_lin)w));
        }
    printf("import: %s fits %s (%s, %d layers)\n", peft, model_path, pl_arch_name(m->cfg.arch), m->cfg.n_layers);
    printf("  r %d, lora_alpha %g, scale %g%s, dropout %g\n", l->cfg.r, (double)l->cfg.alpha,
           l->n ? (double)l->mods[0].scale : 0.0, l->cfg.rslora ? " (rsLoRA)" : "", (double)l->cfg.dropout);
    printf("  target modules: %s\n", targets);
    printf("  %d modules in %d layers, every lora_A [r, in] and lora_B [out, r] matches the model's shapes\n", l->n,
           layers_seen);
    printf("  %lld parameters, all finite; %lld of %d modules have a nonzero lora_B%s\n", (long long)params,
           (long long)nonzero_b, l->n, nonzero_b ? "" : " (an untrained adapter: it changes nothing)");
    if (out) {
        char p[4200];
        snprintf(p, sizeof p, "%s/adapter", out);
        if (pl_mkdirs(out, &err) || pl_lora_save_peft(l, m, p, model_path, &err)) { status = cli_fail_err(&err); goto done; }
        cfg = cJSON_CreateObject();
        cJSON_AddStringToObject(cfg, "model", model_path);
        cJSON *lj = cJSON_AddObjectToObject(cfg, "lora");
        cJSON_AddNumberToObject(lj, "r", l->cfg.r);
        cJSON_AddNumberToObject(lj, "alpha", l->cfg.alpha);
        cJSON_AddNumberToObject(lj, "dropout", l->cfg.dropout);
        cJSON_AddStringToObject(lj, "targets", targets);
        cJSON_AddBoolToObject(lj, "rslora", l->cfg.rslora);
        cJSON_AddStringToObject(cfg, "imported_from", peft);
        snprintf(p, sizeof p, "%s/config.json", out);
        if (pl_json_write(p, cfg, &err)) { status = cli_fail_err(&err); goto done; }
        printf("import: run directory %s (config.json, adapter/)\n", out);
    }
    status = 0;
done:
    cJSON_Delete(cfg);
    pl_lora_free(l);
    pl_model_free(m);
    return status;
}
