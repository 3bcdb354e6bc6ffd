/* export_run.c: exporting a fine-tune: the adapter and base model of a run
 * directory, and one export job (load the base, load the adapter, merge,
 * write), shared by `potluck export` and a recipe's export stage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/atomic.h"
#include "../core/json.h"
#include "../core/sha256.h"
#include "model_lora.h"
#include "checkpoint.h"
#include "export.h"

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int pl_run_adapter(const char *run_dir, char **adapter, char **model, pl_err *err) {
    *adapter = *model = NULL;
    size_t n = strlen(run_dir) + 64;
    char *p = malloc(n);
    if (!p) return pl_err_set(err, PL_ENOMEM, "out of memory");
    char *ck = NULL;
    int64_t step;
    snprintf(p, n, "%s/final", run_dir);
    if (is_dir(p)) {
        /* a damaged final/ is an error, never a silent fallback to an older checkpoint */
        pl_err why = {0};
        if (pl_ckpt_verify(p, NULL, &why) != 0) {
            char *good = NULL;
            int64_t gs = 0;
            snprintf(p, n, "%s/checkpoints", run_dir);
            int have = is_dir(p) && pl_ckpt_latest(p, &good, &gs, NULL, NULL, NULL) == 0;
            int rc = pl_err_set(err, PL_EFORMAT,
                                "%s/final fails its manifest (%s); not exporting it%s%s%s", run_dir, why.msg,
                                have ? ". The newest complete checkpoint is " : "; no complete checkpoint either",
                                have ? good : "", have ? "/adapter (pass it as --adapter to export that one)" : "");
            free(good);
            free(p);
            return rc;
        }
        ck = strdup(p);
    }
    if (!ck) {
        snprintf(p, n, "%s/checkpoints", run_dir);
        if (is_dir(p)) pl_ckpt_latest(p, &ck, &step, NULL, NULL, NULL);
    }
    if (ck) {
        size_t m = strlen(ck) + 16;
        *adapter = malloc(m);
        if (*adapter) snprintf(*adapter, m, "%s/adapter", ck);
        free(ck);
    } else {
        snprintf(p, n, "%s/adapter", run_dir);
        *adapter = strdup(p);
    }
    if (!*adapter) { free(p); return pl_err_set(err, PL_ENOMEM, "out of memory"); }
    if (!is_dir(*adapter)) {
        int rc = pl_err_set(err, PL_ENOTFOUND, "%s: no complete checkpoint with an adapter/ (looked in final/, "
                            "checkpoints/step-*/ and adapter/)", run_dir);
        free(*adapter); *adapter = NULL; free(p);
        return rc;
    }
    snprintf(p, n, "%s/config.json", run_dir);
    cJSON *j = NULL;
    const char *mp = NULL;
    int rc = pl_json_load(p, 1 << 24, &j, err);
    if (!rc) rc = pl_json_str(j, "model", p, &mp, err);
    if (!rc && !(*model = strdup(mp))) rc = pl_err_set(err, PL_ENOMEM, "out of memory");
    cJSON_Delete(j);
    free(p);
    if (rc) { free(*adapter); *adapter = NULL; }
    return rc;
}

int pl_export_job_run(const pl_export_job *j, char *said, size_t said_cap, pl_err *err) {
    pl_model *m = NULL;
    pl_lora *l = NULL;
    pl_gguf *tg = NULL;
    int rc;
    if (said_cap) said[0] = 0;
    /* the folder to write into (peft, merged), or the GGUF file's folder */
    {
        char parent[4200];
        snprintf(parent, sizeof parent, "%s", j->out);
        if (!strcmp(j->format, "gguf")) {
            char *sl = strrchr(parent, '/');
            if (sl && sl != parent) *sl = 0;
            else parent[0] = 0;
        }
        if (*parent && (rc = pl_mkdirs(parent, err))) return rc;
    }
    if ((rc = pl_model_load(&m, j->model, NULL, err))) goto done;
    if (j->adapter && (rc = pl_lora_load_peft(&l, m, j->adapter, err))) goto done;
    if (!strcmp(j->format, "peft")) {
        char *name = pl_export_base_name(m, j->base_name);
        if (!name) { rc = pl_err_set(err, PL_ENOMEM, "out of memory"); goto done; }
        rc = pl_lora_save_peft(l, m, j->out, name, err);
        if (!rc) rc = pl_export_base_record(m, name, j->out, err);
        if (!rc) snprintf(said, said_cap, "PEFT adapter (%d modules, r %d, base \"%s\")", l->n, l->cfg.r, name);
        free(name);
        goto done;
    }
    if (l && ((rc = pl_export_writable(m, err)) || (rc = pl_lora_merge(m, l, err)))) goto done;
    /* The note names the adapter by its weights' digest, not by its path: the
     * path is the exporter's own folder, and with it in the file two
     * exports of the same run would differ. */
    char note[128];
    snprintf(note, sizeof note, "Adapter merged: (none)");
    if (j->adapter) {
        char path[4300], hex[65];
        uint8_t d[32];
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", j->adapter);
        if ((rc = pl_sha256_file(path, d, err))) goto done;
        pl_sha256_hex(d, hex);
        snprintf(note, sizeof note, "Adapter merged: adapter_model.safetensors sha256 %.16s", hex);
    }
    if (!strcmp(j->format, "merged")) {
        pl_export_hf_opts o = {.dtype = j->dtype, .max_shard_bytes = j->max_shard_bytes, .note = note};
        if ((rc = pl_export_hf(m, j->out, &o, err))) goto done;
        snprintf(said, said_cap, "merged model (%s)", pl_dtype_name(j->dtype));
    } else {
        if (j->tokenizer_gguf && (rc = pl_gguf_open(&tg, j->tokenizer_gguf, err))) goto done;
        pl_export_gguf_opts o = {.ftype = j->gguf_ftype, .tok_src = tg, .name = j->adapter ? note : NULL};
        if ((rc = pl_export_gguf(m, j->out, &o, err))) goto done;
        snprintf(said, said_cap, "merged model (GGUF %s)", pl_gguf_ftype_name(j->gguf_ftype));
    }
done:
    pl_gguf_close(tg);
    pl_lora_free(l);
    pl_model_free(m);
    return rc;
}
