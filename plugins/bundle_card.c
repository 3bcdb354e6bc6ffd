/* bundle_card.c: a bundle's README.md: a model card and a dataset card in
 * one, with Hugging Face's YAML front matter (license, base_model, datasets,
 * tags, model-index with the eval results) so the Hub and its tools read it,
 * and a body a person reads before trusting the bundle: data sources with
 * licenses and counts, every filter with what it removed, the generator
 * models, hyperparameters, hardware and time, and license warnings. Built
 * from the run's records only (no clock, no paths of this machine). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_int.h"

static const char *str(const cJSON *o, const char *k) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(o, k));
    return s ? s : "";
}

/* YAML: a double-quoted scalar (JSON string escaping is valid YAML) */
static void yq(FILE *f, const char *s) {
    cJSON *j = cJSON_CreateString(s ? s : "");
    char *t = cJSON_PrintUnformatted(j);
    fputs(t ? t : "\"\"", f);
    free(t);
    cJSON_Delete(j);
}

/* The Hub's license ids for the free text a recipe gives. */
static const char *license_id(const char *text) {
    static const struct { const char *needle, *id; } map[] = {
        {"apache-2.0", "apache-2.0"}, {"apache 2.0", "apache-2.0"}, {"mit", "mit"},
        {"cc-by-nc-4.0", "cc-by-nc-4.0"}, {"cc-by-sa-4.0", "cc-by-sa-4.0"}, {"cc-by-4.0", "cc-by-4.0"},
        {"llama 3.1", "llama3.1"}, {"llama3.1", "llama3.1"}, {"llama 3.2", "llama3.2"}, {"llama3.2", "llama3.2"},
        {"llama 3", "llama3"}, {"llama3", "llama3"}, {"llama 2", "llama2"}, {"llama2", "llama2"},
        {"gemma", "gemma"}, {"bsd-3-clause", "bsd-3-clause"}, {"gpl-3.0", "gpl-3.0"}, {"openrail", "openrail"},
    };
    char low[256];
    size_t i = 0;
    for (; text[i] && i < sizeof low - 1; i++) low[i] = (char)tolower((unsigned char)text[i]);
    low[i] = 0;
    for (size_t k = 0; k < sizeof map / sizeof map[0]; k++) {
        const char *p = strstr(low, map[k].needle);
        /* whole words only ("mit" in "submit" is not MIT) */
        if (p && (p == low || !isalnum((unsigned char)p[-1])) && !isalnum((unsigned char)p[strlen(map[k].needle)]))
            return map[k].id;
    }
    return text[0] ? "other" : "unknown";
}

static void num(FILE *f, double v) {
    if (v == (double)(long long)v && v < 1e15 && v > -1e15) fprintf(f, "%lld", (long long)v);
    else fprintf(f, "%.6g", v);
}

int bnd_card_build(const char *run_dir, const cJSON *plan, const cJSON *info, char **card, pl_err *err) {
    (void)run_dir;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return pl_err_set(err, PL_ENOMEM, "pack: out of memory writing the card");
    const char *name = str(plan, "name"), *lic = str(plan, "license");
    const cJSON *base = cJSON_GetObjectItem(info, "base");
    const char *bname = str(base, "name");
    const cJSON *results = cJSON_GetObjectItem(info, "results");
    const cJSON *stages = cJSON_GetObjectItem(info, "stages"), *s;

    /* front matter */
    fputs("---\nlicense: ", f);
    fputs(license_id(lic), f);
    fputs("\nbase_model: ", f);
    yq(f, bname);
    fputs("\nlibrary_name: peft\ndatasets:\n", f);
    int nds = 0;
    cJSON_ArrayForEach(s, stages) {
        if (strcmp(str(s, "kind"), "source")) continue;
        const char *pth = str(cJSON_GetObjectItem(s, "params"), "path");
        fputs("- ", f);
        yq(f, pth[0] ? pth : str(s, "label"));
        fputc('\n', f);
        nds++;
    }
    if (!nds) fputs("- ", f), yq(f, name), fputc('\n', f);
    fputs("tags:\n- potluck\n- peft\n- lora\n- qlora\n", f);
    cJSON_ArrayForEach(s, stages)
        if (!strcmp(str(s, "kind"), "generate")) { fputs("- synthetic-data\n", f); break; }
    fputs("model-index:\n- name: ", f);
    yq(f, name);
    fputs("\n  results:\n  - task:\n      type: text-generation\n      name: Text Generation\n    dataset:\n      name: ", f);
    char dn[300];
    snprintf(dn, sizeof dn, "%s held-out eval split", name);
    yq(f, dn);
    fputs("\n      type: ", f);
    yq(f, name);
    fputs("\n    metrics:\n", f);
    int nm = 0;
    const char *losses[] = {"eval_loss", "base_eval_loss", "final_train_loss"};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItem(results, losses[i]);
        if (!cJSON_IsNumber(v)) continue;
        fprintf(f, "    - type: loss\n      name: %s\n      value: ", losses[i]);
        num(f, v->valuedouble);
        fputc('\n', f);
        nm++;
    }
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(results, "metrics")) {
        if (!cJSON_IsNumber(s)) continue;
        fputs("    - type: ", f);
        yq(f, s->string);
        fputs("\n      name: ", f);
        yq(f, s->string);
        fputs("\n      value: ", f);
        num(f, s->valuedouble);
        fputc('\n', f);
        nm++;
    }
    if (!nm) fputs("    - type: loss\n      name: eval_loss\n      value: null\n", f);
    fputs("---\n\n", f);

    /* body */
    fprintf(f, "# %s\n\n", name);
    if (str(plan, "description")[0]) fprintf(f, "%s\n\n", str(plan, "description"));
    fprintf(f, "A LoRA adapter for **%s**, trained by potluck from the recipe in `recipe/`. "
               "`potluck verify` checks every file of this bundle against `potluck.lock.json`.\n\n", bname);

    /* license warnings */
    fputs("## License\n\n", f);
    fprintf(f, "- recipe's license statement: %s\n", lic[0] ? lic : "(none given: ask the author before reusing)");
    char low[256];
    size_t i = 0;
    for (; bname[i] && i < sizeof low - 1; i++) low[i] = (char)tolower((unsigned char)bname[i]);
    low[i] = 0;
    if (strstr(low, "llama"))
        fputs("- **warning**: the base is a Llama model. The Llama licenses require a derivative model's name to "
              "include \"Llama\" (Llama 3: at the beginning of the name), the license to be passed on, and "
              "\"Built with Llama\" to be shown.\n", f);
    if (strstr(low, "gemma"))
        fputs("- **warning**: the base is a Gemma model: the Gemma terms and prohibited-use policy pass on to derivatives.\n", f);
    {
        const char *id = license_id(lic);
        if (strstr(id, "-nc")) fputs("- **warning**: a non-commercial license: derivatives may not be used commercially.\n", f);
        if (strstr(id, "-sa")) fputs("- **warning**: a share-alike license: derivatives must carry the same license.\n", f);
        if (!strcmp(id, "other") || !strcmp(id, "unknown"))
            fputs("- **warning**: the license is not one of the Hub's ids: read the statement above before reuse.\n", f);
    }

    /* data */
    fputs("\n## Data\n\n### Sources\n\n| step | source | samples | license |\n|---|---|---|---|\n", f);
    cJSON_ArrayForEach(s, stages) {
        const char *k = str(s, "kind");
        if (strcmp(k, "source") && strcmp(k, "generate")) continue;
        const cJSON *pr = cJSON_GetObjectItem(s, "params");
        const char *src = str(pr, "path")[0] ? str(pr, "path") : str(s, "name");
        const char *sl = str(pr, "license");
        fprintf(f, "| %s | `%s` | ", str(s, "label"), src);
        num(f, cJSON_GetNumberValue(cJSON_GetObjectItem(s, "output")) - (strcmp(k, "generate") ? 0 : cJSON_GetNumberValue(cJSON_GetObjectItem(s, "input"))));
        fprintf(f, " | %s |\n", sl[0] ? sl : strcmp(k, "generate") ? (lic[0] ? "the recipe's (above)" : "not stated") : "generated: the generator model's terms");
    }
    fputs("\n### Steps and what each removed\n\n| step | in | out | removed | reasons |\n|---|---|---|---|---|\n", f);
    cJSON_ArrayForEach(s, stages) {
        fprintf(f, "| %s | ", str(s, "label"));
        num(f, cJSON_GetNumberValue(cJSON_GetObjectItem(s, "input")));
        fputs(" | ", f);
        num(f, cJSON_GetNumberValue(cJSON_GetObjectItem(s, "output")));
        fputs(" | ", f);
        num(f, cJSON_GetNumberValue(cJSON_GetObjectItem(s, "removed")));
        fputs(" | ", f);
        const cJSON *r;
        int nr = 0;
        cJSON_ArrayForEach(r, cJSON_GetObjectItem(s, "reasons")) {
            fprintf(f, "%s", nr++ ? "; " : "");
            for (const char *c = r->string; c && *c; c++) fputs(*c == '|' ? "\\|" : (char[2]){*c, 0}, f);
            fputs(": ", f);
            num(f, cJSON_GetNumberValue(r));
        }
        fputs(" |\n", f);
    }
    fputs("\n### Generator and teacher models\n\n", f);
    int ng = 0;
    cJSON_ArrayForEach(s, stages) {
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(s, "models")) {
            fprintf(f, "- %s: %s (%s, identity %.16s...)\n", str(s, "label"), m->string,
                     !strcmp(m->string, "base") ? bname : str(plan, "teacher"), cJSON_GetStringValue(m) ? cJSON_GetStringValue(m) : "?");
            ng++;
        }
    }
    if (!ng) fputs("- none: no step sampled a model\n", f);
    fputs("\n### Datasets\n\n", f);
    const cJSON *ds;
    cJSON_ArrayForEach(ds, cJSON_GetObjectItem(info, "datasets")) {
        const cJSON *t = cJSON_GetObjectItem(ds, "totals");
        fprintf(f, "- data/%s: ", ds->string);
        num(f, cJSON_GetNumberValue(cJSON_GetObjectItem(t, "samples")));
        fputs(" samples, ", f);
        num(f, cJSON_GetNumberValue(cJSON_GetObjectItem(t, "tokens")));
        fputs(" tokens (", f);
        num(f, cJSON_GetNumberValue(cJSON_GetObjectItem(t, "trained_tokens")));
        fprintf(f, " trained), template %s\n", str(ds, "template"));
    }
    fprintf(f, "- in this bundle: %s\n", !strcmp(str(info, "data_mode"), "full") ? "manifests and shards"
                                          : !strcmp(str(info, "data_mode"), "manifest") ? "manifests only (shards pinned by sha256 in the lock)"
                                                                                       : "no data files (manifests and shards pinned by sha256 in the lock)");

    /* training */
    fputs("\n## Training\n\n", f);
    const char *secs[] = {"lora", "train"};
    for (int k = 0; k < 2; k++) {
        fprintf(f, "- %s:", secs[k]);
        const cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(info, secs[k])) {
            if (cJSON_IsNull(v) || cJSON_IsObject(v) || cJSON_IsArray(v)) continue;
            fprintf(f, " %s=", v->string);
            if (cJSON_IsNumber(v)) num(f, v->valuedouble);
            else if (cJSON_IsBool(v)) fputs(cJSON_IsTrue(v) ? "true" : "false", f);
            else fputs(str(cJSON_GetObjectItem(info, secs[k]), v->string), f);
        }
        fputc('\n', f);
    }
    fprintf(f, "- seed: ");
    num(f, cJSON_GetNumberValue(cJSON_GetObjectItem(plan, "seed")));
    fputc('\n', f);
    const cJSON *h = cJSON_GetObjectItem(info, "host");
    if (cJSON_IsObject(h)) {
        fprintf(f, "- hardware: %s, %s backend, ", str(h, "cpu")[0] ? str(h, "cpu") : "CPU not recorded", str(h, "backend"));
        num(f, cJSON_GetNumberValue(cJSON_GetObjectItem(h, "threads")));
        fputs(" threads of ", f);
        num(f, cJSON_GetNumberValue(cJSON_GetObjectItem(h, "cpus")));
        fprintf(f, " CPUs, %s\n", str(h, "os"));
    } else {
        fputs("- hardware: not recorded by this run\n", f);
    }
    fprintf(f, "- wall time (all stages): %.1f s\n", cJSON_GetNumberValue(cJSON_GetObjectItem(info, "wall_seconds")));

    /* results */
    fputs("\n## Results\n\n", f);
    if (cJSON_IsObject(results)) {
        const char *rk[] = {"steps", "tokens", "final_train_loss", "base_eval_loss", "eval_loss"};
        for (int k = 0; k < 5; k++) {
            const cJSON *v = cJSON_GetObjectItem(results, rk[k]);
            if (!cJSON_IsNumber(v)) continue;
            fprintf(f, "- %s: ", rk[k]);
            num(f, v->valuedouble);
            fputc('\n', f);
        }
        cJSON_ArrayForEach(s, cJSON_GetObjectItem(results, "metrics")) {
            if (!cJSON_IsNumber(s)) continue;
            fprintf(f, "- %s (%s): ", s->string, str(results, "metrics_on"));
            num(f, s->valuedouble);
            fputc('\n', f);
        }
    } else {
        fputs("- no results.json in the run\n", f);
    }
    fputs("\n## Base model\n\n", f);
    fprintf(f, "- name: %s\n", bname);
    const cJSON *bf;
    int nb = 0;
    cJSON_ArrayForEach(bf, cJSON_GetObjectItem(base, "files")) {
        fprintf(f, "- `%s`: sha256 %s\n", str(bf, "name"), str(cJSON_GetObjectItem(bf, "digest"), "sha256"));
        nb++;
    }
    if (!nb) fputs("- weights not pinned: the base model was not found when packing\n", f);
    fputs("\nCheck before use: `potluck verify THIS.potluck [--key SIGNER.pub]`; open with `potluck unpack THIS.potluck DIR`.\n", f);
    if (fclose(f) || !buf) {
        free(buf);
        return pl_err_set(err, PL_ENOMEM, "pack: out of memory writing the card");
    }
    *card = buf;
    return PL_OK;
}
