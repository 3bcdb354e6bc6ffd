/* lora.c: LoRA adapters (PEFT's definition): the tensors, their init, PEFT adapter I/O.
 * On a model: trainer/model_lora.c (init, load, save, merge); in training:
 * trainer/qlora.c (dropout masks, the QLoRA step).
 *
 * Names and shapes follow PEFT exactly: for layer N and module q_proj the
 * tensors are base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight
 * (r, in) and ...lora_B.weight (out, r) (gate/up/down under mlp.). The Q/K
 * rows of a potluck model are in Hugging Face's rotate-half order whatever
 * the source (HF directories store them so; GGUF llama and llama2.c rows are
 * un-permuted on load), so the B of a q/k adapter is in HF order and the
 * adapter loads onto the transformers model as is, with no permutation.
 *
 * Random draws (core/rng.h, Philox keyed by the adapter seed): init of
 * module i, element e of A: stream LORA_STREAM_INIT + i, index e. (Dropout
 * masks: trainer/qlora.c.) */
#include "lora.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/json.h"
#include "../core/rng.h"
#include "../core/safetensors.h"

#define LORA_STREAM_INIT 0x4c6f524100000000ull /* "LoRA" << 32 */

static const char *const peft_names[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
static const char *const short_names[7] = {"q", "k", "v", "o", "gate", "up", "down"};

/* ------------------------------------------------------------ targets */

int pl_lora_parse_targets(const char *s, unsigned *mask, pl_err *err) {
    *mask = 0;
    if (!s) return pl_err_set(err, PL_EINVAL, "lora targets: missing");
    if (!strcmp(s, "all-linear") || !strcmp(s, "all")) {
        *mask = PL_LORA_ALL_LINEAR;
        return 0;
    }
    const char *p = s;
    unsigned m = 0;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && (*p == ' ' || *p == '\t')) { p++; n--; }
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
        int found = -1;
        for (int j = 0; j < 7; j++)
            if ((n == strlen(short_names[j]) && !strncmp(p, short_names[j], n)) ||
                (n == strlen(peft_names[j]) && !strncmp(p, peft_names[j], n)))
                found = j;
        if (found < 0)
            return pl_err_set(err, PL_EINVAL,
                              "lora targets '%s': unknown module '%.*s' (expected all-linear or a comma list of "
                              "q,k,v,o,gate,up,down)", s, (int)n, p);
        m |= 1u << found;
        if (!e) break;
        p = e + 1;
    }
    if (!m) return pl_err_set(err, PL_EINVAL, "lora targets '%s': no module named", s);
    *mask = m;
    return 0;
}

/* ------------------------------------------------------------ init / free */

static float lora_scale(const pl_lora_cfg *c) {
    return c->rslora ? c->alpha / sqrtf((float)c->r) : c->alpha / (float)c->r;
}

static int check_cfg(const pl_lora_cfg *c, pl_err *err) {
    if (c->r < 1 || c->r > 65536) return pl_err_set(err, PL_EINVAL, "lora: rank r = %d is out of range (1..65536)", c->r);
    if (!(c->alpha > 0) || !isfinite(c->alpha))
        return pl_err_set(err, PL_EINVAL, "lora: alpha = %g, expected a positive number", (double)c->alpha);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return pl_err_set(err, PL_EINVAL, "lora: dropout = %g, expected a value in [0, 1)", (double)c->dropout);
    if (!c->targets || (c->targets & ~PL_LORA_ALL_LINEAR))
        return pl_err_set(err, PL_EINVAL, "lora: target mask 0x%x, expected a non-empty subset of 0x%x",
                          c->targets, PL_LORA_ALL_LINEAR);
    return 0;
}

/* Modules and buffers with A = B = 0. */
int pl_lora_alloc(pl_lora **out, int n_layers, const pl_lora_dims *dims, const pl_lora_cfg *cfg,
                  const pl_allocator *mem, pl_err *err) {
    *out = NULL;
    int rc = check_cfg(cfg, err);
    if (rc) return rc;
    pl_lora *l = calloc(1, sizeof *l);
    if (!l) return pl_err_set(err, PL_ENOMEM, "lora: out of memory");
    l->cfg = *cfg;
    l->mem = *mem;
    int per = 0;
    for (int j = 0; j < 7; j++) per += (cfg->targets >> j) & 1;
    int n = per * n_layers;
    l->mods = calloc((size_t)(n > 0 ? n : 1), sizeof *l->mods);
    if (!l->mods) { free(l); return pl_err_set(err, PL_ENOMEM, "lora: out of memory"); }
    float scale = lora_scale(cfg);
    for (int layer = 0; layer < n_layers; layer++)
        for (int j = 0; j < 7; j++) {
            if (!((cfg->targets >> j) & 1)) continue;
            const pl_lora_dims *d = &dims[layer * 7 + j];
            pl_lora_module *md = &l->mods[l->n++];
            md->layer = layer;
            md->which = (pl_lin)j;
            md->r = cfg->r;
            md->in = d->in;
            md->out = d->out;
            md->scale = scale;
            size_t na = (size_t)md->r * (size_t)md->in, nb = (size_t)md->out * (size_t)md->r;
            md->A = mem->alloc(na * sizeof(float), PL_MEM_WEIGHTS);
            md->B = mem->alloc(nb * sizeof(float), PL_MEM_WEIGHTS);
            md->gA = mem->alloc(na * sizeof(float), PL_MEM_GRADIENTS);
            md->gB = mem->alloc(nb * sizeof(float), PL_MEM_GRADIENTS);
            if (!md->A || !md->B || !md->gA || !md->gB) {
                pl_lora_free(l);
                return pl_err_set(err, PL_ENOMEM, "lora: out of memory for layers.%d.%s (r %d)", layer,
                                  peft_names[j], cfg->r);
            }
        }
    *out = l;
    return 0;
}

void pl_lora_init_weights(pl_lora *l) {
    /* PEFT: kaiming_uniform_(A, a=sqrt(5)) -> U(-1/sqrt(in), 1/sqrt(in)); B = 0 (as allocated) */
    for (int i = 0; i < l->n; i++) {
        pl_lora_module *md = &l->mods[i];
        float bound = 1.0f / sqrtf((float)md->in);
        long na = (long)md->r * md->in;
#pragma omp parallel for schedule(static) if (na >= 65536)
        for (long e = 0; e < na; e++)
            md->A[e] = bound * (2.0f * pl_rng_uniform(l->cfg.seed, LORA_STREAM_INIT + (uint64_t)i, (uint64_t)e) - 1.0f);
    }
}

void pl_lora_free(pl_lora *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) {
        pl_lora_module *md = &l->mods[i];
        float *ps[] = {md->A, md->B, md->gA, md->gB, md->mA, md->vA, md->mB, md->vB};
        for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++)
            if (ps[k]) l->mem.free(ps[k]);
    }
    free(l->mods);
    free(l);
}

pl_lora_module *pl_lora_find(pl_lora *l, int layer, pl_lin which) {
    for (int i = 0; l && i < l->n; i++)
        if (l->mods[i].layer == layer && l->mods[i].which == which) return &l->mods[i];
    return NULL;
}

int64_t pl_lora_n_params(const pl_lora *l) {
    int64_t n = 0;
    for (int i = 0; l && i < l->n; i++) n += (int64_t)l->mods[i].r * (l->mods[i].in + l->mods[i].out);
    return n;
}

/* ------------------------------------------------------------ PEFT I/O */

static void peft_name(char *buf, size_t cap, int layer, int which, char ab) {
    snprintf(buf, cap, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer,
             which <= PL_LIN_O ? "self_attn" : "mlp", peft_names[which], ab);
}

static int make_dir(const char *dir, pl_err *err) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return pl_err_set(err, PL_EIO, "%s: cannot create the adapter directory: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return pl_err_set(err, PL_EIO, "%s: not a directory", dir);
    return 0;
}

/* adapter_config.json with the keys peft 0.21 writes for a LoraConfig
 * (PeftModel.save_pretrained, which saves with inference_mode true). */
static cJSON *peft_config_json(const pl_lora *l, const char *base_model_name) {
    const pl_lora_cfg *c = &l->cfg;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNullToObject(o, "alora_invocation_tokens");
    cJSON_AddItemToObject(o, "alpha_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(o, "arrow_config");
    cJSON_AddNullToObject(o, "auto_mapping");
    if (base_model_name) cJSON_AddStringToObject(o, "base_model_name_or_path", base_model_name);
    else cJSON_AddNullToObject(o, "base_model_name_or_path");
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddNullToObject(o, "corda_config");
    cJSON_AddFalseToObject(o, "ensure_weight_tying");
    cJSON_AddNullToObject(o, "eva_config");
    cJSON_AddNullToObject(o, "exclude_modules");
    cJSON_AddFalseToObject(o, "fan_in_fan_out");
    cJSON_AddTrueToObject(o, "inference_mode");
    cJSON_AddTrueToObject(o, "init_lora_weights");
    cJSON_AddNullToObject(o, "kasa_config");
    cJSON_AddNullToObject(o, "layer_replication");
    cJSON_AddNullToObject(o, "layers_pattern");
    cJSON_AddNullToObject(o, "layers_to_transform");
    cJSON_AddItemToObject(o, "loftq_config", cJSON_CreateObject());
    /* alpha as PEFT stores it: an integer when it is one */
    if (c->alpha == floorf(c->alpha) && c->alpha < 1e9f) cJSON_AddNumberToObject(o, "lora_alpha", (double)(int64_t)c->alpha);
    else cJSON_AddNumberToObject(o, "lora_alpha", (double)c->alpha);
    cJSON_AddFalseToObject(o, "lora_bias");
    /* the float's shortest decimal form (0.05, not 0.05000000074505806) */
    char dbuf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(dbuf, sizeof dbuf, "%.*g", prec, (double)c->dropout);
        if ((float)strtod(dbuf, NULL) == c->dropout) break;
    }
    if (!strchr(dbuf, '.') && !strchr(dbuf, 'e') && strlen(dbuf) + 3 < sizeof dbuf) strcat(dbuf, ".0");
    cJSON_AddItemToObject(o, "lora_dropout", cJSON_CreateRaw(dbuf));
    cJSON_AddNullToObject(o, "lora_ga_config");
    cJSON_AddNullToObject(o, "megatron_config");
    cJSON_AddStringToObject(o, "megatron_core", "megatron.core");
    cJSON_AddNullToObject(o, "modules_to_save");
    cJSON_AddNullToObject(o, "monteclora_config");
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddStringToObject(o, "peft_version", "0.21.2"); /* the PEFT format this mirrors */
    cJSON_AddNumberToObject(o, "qalora_group_size", 16);
    cJSON_AddNumberToObject(o, "r", c->r);
    cJSON_AddItemToObject(o, "rank_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(o, "revision");
    cJSON *tm = cJSON_AddArrayToObject(o, "target_modules");
    for (int j = 0; tm && j < 7; j++)
        if ((c->targets >> j) & 1) cJSON_AddItemToArray(tm, cJSON_CreateString(peft_names[j]));
    cJSON_AddNullToObject(o, "target_parameters");
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    cJSON_AddNullToObject(o, "trainable_token_indices");
    cJSON_AddNullToObject(o, "use_bdlora");
    cJSON_AddFalseToObject(o, "use_dora");
    cJSON_AddFalseToObject(o, "use_qalora");
    cJSON_AddBoolToObject(o, "use_rslora", c->rslora != 0);
    cJSON_AddNullToObject(o, "velora_config");
    return o;
}

int pl_lora_write_peft(const pl_lora *l, int n_layers, const char *dir, const char *base_model_name, pl_err *err) {
    int rc = make_dir(dir, err);
    if (rc) return rc;
    for (int i = 0; i < l->n; i++) {
        const pl_lora_module *md = &l->mods[i];
        if (md->layer < 0 || md->layer >= n_layers || (int)md->which < 0 || md->which >= PL_LIN_HEAD)
            return pl_err_set(err, PL_EINVAL, "%s: LoRA module %d (layer %d, %s) is not in the model", dir, i,
                              md->layer, pl_lin_name(md->which));
    }
    pl_st_writer *w = pl_st_writer_new();
    if (!w) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
    char name[192];
    for (int i = 0; !rc && i < l->n; i++) {
        const pl_lora_module *md = &l->mods[i];
        int64_t sa[2] = {md->r, md->in}, sb[2] = {md->out, md->r};
        peft_name(name, sizeof name, md->layer, md->which, 'A');
        rc = pl_st_writer_add(w, name, PL_F32, 2, sa, md->A, err);
        if (rc) break;
        peft_name(name, sizeof name, md->layer, md->which, 'B');
        rc = pl_st_writer_add(w, name, PL_F32, 2, sb, md->B, err);
    }
    size_t plen = strlen(dir) + 64;
    char *path = malloc(plen);
    if (!rc && !path) rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
    if (!rc) rc = pl_st_writer_meta(w, "format", "pt", err);
    if (!rc) {
        snprintf(path, plen, "%s/adapter_model.safetensors", dir);
        rc = pl_st_writer_write(w, path, err);
    }
    pl_st_writer_free(w);
    if (!rc) {
        cJSON *cfg = peft_config_json(l, base_model_name);
        if (!cfg) rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
        else {
            snprintf(path, plen, "%s/adapter_config.json", dir);
            rc = pl_json_write(path, cfg, err);
            cJSON_Delete(cfg);
        }
    }
    free(path);
    return rc;
}

/* A config key that must be absent, null, false, or an empty object/list. */
static int cfg_unset(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return 1;
    if ((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child) return 1;
    return 0;
}

static int parse_peft_config(const char *path, pl_lora_cfg *c, pl_err *err) {
    cJSON *o = NULL;
    int rc = pl_json_load(path, 1 << 20, &o, err);
    if (rc) return rc;
    memset(c, 0, sizeof *c);
    const char *s = NULL;
    int64_t r = 0;
    double alpha = 0, dropout = 0;
    int rs = 0;
    if (!cJSON_IsObject(o)) { rc = pl_err_set(err, PL_EFORMAT, "%s: expected a JSON object", path); goto done; }
    if ((rc = pl_json_str(o, "peft_type", path, &s, err))) goto done;
    if (strcmp(s, "LORA")) { rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: peft_type is '%s', expected LORA", path, s); goto done; }
    if ((rc = pl_json_int(o, "r", path, &r, err))) goto done;
    if ((rc = pl_json_num(o, "lora_alpha", path, &alpha, err))) goto done;
    if ((rc = pl_json_num_opt(o, "lora_dropout", path, &dropout, err))) goto done;
    if ((rc = pl_json_bool_opt(o, "use_rslora", path, &rs, err))) goto done;
    s = "none";
    if ((rc = pl_json_str_opt(o, "bias", path, &s, err))) goto done;
    if (strcmp(s, "none")) { rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: bias is '%s'; only \"none\" is supported", path, s); goto done; }
    static const char *const unsupported[] = {"use_dora", "fan_in_fan_out", "rank_pattern", "alpha_pattern",
                                              "layers_to_transform", "modules_to_save", "layer_replication",
                                              "lora_bias", "use_qalora", "trainable_token_indices",
                                              "target_parameters", "exclude_modules"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (!cfg_unset(o, unsupported[i])) {
            rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: '%s' is set; potluck supports plain LoRA adapters only", path,
                            unsupported[i]);
            goto done;
        }
    if (r < 1 || r > 65536) { rc = pl_err_set(err, PL_ERANGE, "%s: r = %lld, expected 1..65536", path, (long long)r); goto done; }
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(o, "target_modules");
    unsigned mask = 0;
    if (cJSON_IsString(tm)) {
        if ((rc = pl_lora_parse_targets(tm->valuestring, &mask, err))) {
            rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: target_modules '%s': expected all-linear or a list of module names",
                            path, tm->valuestring);
            goto done;
        }
    } else if (cJSON_IsArray(tm)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, tm) {
            int found = -1;
            if (cJSON_IsString(it))
                for (int j = 0; j < 7; j++)
                    if (!strcmp(it->valuestring, peft_names[j])) found = j;
            if (found < 0) {
                rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: target_modules: '%s' is not one of q_proj, k_proj, v_proj, "
                                "o_proj, gate_proj, up_proj, down_proj", path,
                                cJSON_IsString(it) ? it->valuestring : "(not a string)");
                goto done;
            }
            mask |= 1u << found;
        }
    } else {
        rc = pl_err_set(err, PL_EFORMAT, "%s: target_modules: expected a list of module names", path);
        goto done;
    }
    c->r = (int)r;
    c->alpha = (float)alpha;
    c->dropout = (float)dropout;
    c->rslora = rs;
    c->targets = mask;
    rc = check_cfg(c, err);
    if (rc && err) pl_err_prefix(err, "%s", path);
done:
    cJSON_Delete(o);
    return rc;
}

int pl_lora_read_peft(pl_lora **out, int n_layers, const pl_lora_dims *dims, const pl_allocator *mem, const char *dir,
                      pl_err *err) {
    *out = NULL;
    size_t plen = strlen(dir) + 64;
    char *path = malloc(plen);
    if (!path) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
    pl_lora_cfg cfg;
    snprintf(path, plen, "%s/adapter_config.json", dir);
    int rc = parse_peft_config(path, &cfg, err);
    pl_st *st = NULL;
    pl_lora *l = NULL;
    if (!rc) {
        snprintf(path, plen, "%s/adapter_model.safetensors", dir);
        rc = pl_st_open(&st, path, err);
    }
    if (!rc) rc = pl_lora_alloc(&l, n_layers, dims, &cfg, mem, err);
    char name[192];
    for (int i = 0; !rc && i < l->n; i++) {
        pl_lora_module *md = &l->mods[i];
        for (int ab = 0; !rc && ab < 2; ab++) {
            peft_name(name, sizeof name, md->layer, md->which, ab ? 'B' : 'A');
            const pl_st_tensor *tt = pl_st_find(st, name);
            int64_t rows = ab ? md->out : md->r, cols = ab ? md->r : md->in;
            if (!tt) {
                rc = pl_err_set(err, PL_ENOTFOUND, "%s: missing tensor '%s' (target_modules names %s)", path, name,
                                peft_names[md->which]);
            } else if (tt->n_dims != 2 || tt->shape[0] != rows || tt->shape[1] != cols) {
                rc = pl_err_set(err, PL_EFORMAT, "%s: tensor '%s': expected shape [%lld, %lld], found %d dims [%lld, %lld]",
                                path, name, (long long)rows, (long long)cols, tt->n_dims,
                                (long long)(tt->n_dims > 0 ? tt->shape[0] : 0),
                                (long long)(tt->n_dims > 1 ? tt->shape[1] : 0));
            } else {
                rc = pl_st_to_f32(tt, ab ? md->B : md->A, err);
            }
        }
    }
    if (!rc && pl_st_count(st) != (size_t)(2 * l->n)) {
        /* every expected tensor is there: name the one that is not expected */
        for (size_t i = 0; i < pl_st_count(st) && !rc; i++) {
            const char *tn = pl_st_at(st, i)->name;
            int ok = 0;
            for (int k = 0; k < l->n && !ok; k++)
                for (int ab = 0; ab < 2 && !ok; ab++) {
                    peft_name(name, sizeof name, l->mods[k].layer, l->mods[k].which, ab ? 'B' : 'A');
                    ok = !strcmp(name, tn);
                }
            if (!ok)
                rc = pl_err_set(err, PL_EFORMAT, "%s: unexpected tensor '%s' (not a LoRA A/B of the configured targets "
                                "of a %d-layer model)", path, tn, n_layers);
        }
        if (!rc) rc = pl_err_set(err, PL_EFORMAT, "%s: %zu tensors, expected %d", path, pl_st_count(st), 2 * l->n);
    }
    pl_st_close(st);
    free(path);
    if (rc) { pl_lora_free(l); return rc; }
    *out = l;
    return 0;
}

