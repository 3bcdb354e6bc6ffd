/* model_hf.c: loading a Hugging Face model directory: config.json plus
 * safetensors weights (one file or shards with model.safetensors.index.json).
 * LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM. */
#include "model_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "../core/quant.h"
#include "model_nf4.h"

static int cfg_int(const cJSON *j, const char *key, const char *where, int required, int *out, pl_err *err) {
    int64_t v;
    int rc = required ? pl_json_int(j, key, where, &v, err) : pl_json_int_opt(j, key, where, &v, err);
    if (rc) return rc;
    if (!required && !cJSON_GetObjectItemCaseSensitive(j, key)) return 0;
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, key))) return 0;
    if (v < 0 || v > (1 << 30)) return pl_err_set(err, PL_ERANGE, "%s: %s: %lld is out of range", where, key, (long long)v);
    *out = (int)v;
    return 0;
}

static int cfg_float(const cJSON *j, const char *key, const char *where, float *out, pl_err *err) {
    double v;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!it || cJSON_IsNull(it)) return 0;
    int rc = pl_json_num(j, key, where, &v, err);
    if (rc) return rc;
    *out = (float)v;
    return 0;
}

/* bos/eos may be an integer or a list (the first is used). */
static int token_id(const cJSON *j, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, key);
    if (cJSON_IsArray(it)) it = cJSON_GetArrayItem(it, 0);
    if (cJSON_IsNumber(it) && it->valuedouble >= 0 && it->valuedouble < (1 << 24)) return (int)it->valuedouble;
    return -1;
}

/* rope_scaling (transformers 4) or rope_parameters (transformers 5). */
static int parse_rope(pl_model_config *c, const cJSON *j, const char *where, pl_err *err) {
    int rc;
    if ((rc = cfg_float(j, "rope_theta", where, &c->rope_theta, err))) return rc;
    const char *keys[] = {"rope_scaling", "rope_parameters"};
    for (int k = 0; k < 2; k++) {
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        if (!rs || cJSON_IsNull(rs)) continue;
        if (!cJSON_IsObject(rs))
            return pl_err_set(err, PL_EFORMAT, "%s: %s: expected an object", where, keys[k]);
        char sub[4200];
        snprintf(sub, sizeof sub, "%s: %s", where, keys[k]);
        if ((rc = cfg_float(rs, "rope_theta", sub, &c->rope_theta, err))) return rc;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!type) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "default";
        if (!strcmp(t, "default")) continue;
        if (strcmp(t, "llama3"))
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: rope type '%s' is not supported (supported: default, llama3)", sub, t);
        c->rope_llama3 = 1;
        if ((rc = cfg_float(rs, "factor", sub, &c->rope_factor, err)) ||
            (rc = cfg_float(rs, "low_freq_factor", sub, &c->rope_low_freq, err)) ||
            (rc = cfg_float(rs, "high_freq_factor", sub, &c->rope_high_freq, err)) ||
            (rc = cfg_int(rs, "original_max_position_embeddings", sub, 1, &c->rope_orig_max, err)))
            return rc;
    }
    return 0;
}

static int parse_config(pl_model *m, const char *cfg_path, int *attn_bias, pl_err *err) {
    cJSON *j = NULL;
    int rc = pl_json_load(cfg_path, 16u << 20, &j, err);
    if (rc) return rc;
    pl_model_config *c = &m->cfg;
    const char *where = cfg_path;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const char *arch = cJSON_IsString(a0) ? a0->valuestring : NULL;
    if (!arch) {
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
        arch = cJSON_IsString(mt) ? mt->valuestring : "(none)";
    }
    if (!strcmp(arch, "LlamaForCausalLM") || !strcmp(arch, "llama")) c->arch = PL_ARCH_LLAMA;
    else if (!strcmp(arch, "MistralForCausalLM") || !strcmp(arch, "mistral")) c->arch = PL_ARCH_MISTRAL;
    else if (!strcmp(arch, "Qwen2ForCausalLM") || !strcmp(arch, "qwen2")) c->arch = PL_ARCH_QWEN2;
    else {
        rc = pl_err_set(err, PL_EUNSUPPORTED,
                        "%s: unknown architecture '%s' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                        where, arch);
        cJSON_Delete(j);
        return rc;
    }
    c->rope_theta = c->arch == PL_ARCH_QWEN2 ? 1000000.0f : 10000.0f;
    c->norm_eps = 1e-6f;
    int tie = 0, bias = c->arch == PL_ARCH_QWEN2;
    if ((rc = cfg_int(j, "vocab_size", where, 1, &c->vocab, err)) ||
        (rc = cfg_int(j, "hidden_size", where, 1, &c->dim, err)) ||
        (rc = cfg_int(j, "intermediate_size", where, 1, &c->hidden, err)) ||
        (rc = cfg_int(j, "num_hidden_layers", where, 1, &c->n_layers, err)) ||
        (rc = cfg_int(j, "num_attention_heads", where, 1, &c->n_heads, err)) ||
        (rc = cfg_int(j, "max_position_embeddings", where, 0, &c->max_seq, err)) ||
        (rc = cfg_float(j, "rms_norm_eps", where, &c->norm_eps, err)) ||
        (rc = parse_rope(c, j, where, err)))
        goto done;
    if (c->arch != PL_ARCH_LLAMA) { /* Mistral's window; Qwen2's only with use_sliding_window */
        int use = c->arch == PL_ARCH_MISTRAL;
        if (c->arch == PL_ARCH_QWEN2 && (rc = pl_json_bool_opt(j, "use_sliding_window", where, &use, err))) goto done;
        if (use && (rc = cfg_int(j, "sliding_window", where, 0, &c->sliding_window, err))) goto done;
    }
    c->n_kv_heads = c->n_heads;
    if ((rc = cfg_int(j, "num_key_value_heads", where, 0, &c->n_kv_heads, err)) ||
        (rc = cfg_int(j, "head_dim", where, 0, &c->head_dim, err)) ||
        (rc = pl_json_bool_opt(j, "tie_word_embeddings", where, &tie, err)) ||
        (c->arch == PL_ARCH_LLAMA && (rc = pl_json_bool_opt(j, "attention_bias", where, &bias, err))))
        goto done;
    int mlp_bias = 0;
    if ((rc = pl_json_bool_opt(j, "mlp_bias", where, &mlp_bias, err))) goto done;
    if (mlp_bias) {
        rc = pl_err_set(err, PL_EUNSUPPORTED, "%s: mlp_bias is not supported", where);
        goto done;
    }
    c->tied_embeddings = tie;
    c->bos_id = token_id(j, "bos_token_id");
    c->eos_id = token_id(j, "eos_token_id");
    *attn_bias = bias;
    rc = pl_model_check_config(c, where, err);
done:
    cJSON_Delete(j);
    return rc;
}

static int weight(pl_model *m, const char *name, int64_t rows, int64_t cols, pl_qweight *w, pl_err *err) {
    const pl_st_tensor *t = pl_st_find(m->st, name);
    memset(w, 0, sizeof *w);
    if (!t) return pl_err_set(err, PL_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    if (t->dtype == PL_U8) return pl_model_nf4_bnb_weight(m, name, rows, cols, w, err); /* bitsandbytes 4-bit */
    if (t->n_dims != 2)
        return pl_err_set(err, PL_EFORMAT, "%s: tensor '%s': expected 2 dimensions, found %d", m->path, name, t->n_dims);
    if (t->dtype != PL_F32 && t->dtype != PL_F16 && t->dtype != PL_BF16)
        return pl_err_set(err, PL_EUNSUPPORTED, "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16)",
                          m->path, name, pl_dtype_name(t->dtype));
    w->dtype = t->dtype;
    w->rows = t->shape[0];
    w->cols = t->shape[1];
    w->row_bytes = pl_dtype_row_bytes(t->dtype, t->shape[1]);
    w->data = t->data;
    int rc = pl_model_check_weight(w, rows, cols, m->path, name, err);
    if (rc) return rc;
    size_t align = t->dtype == PL_F32 ? 4 : 2;
    if ((uintptr_t)w->data % align) { /* keep element access aligned */
        void *cp = pl_model_own(m, t->nbytes);
        if (!cp) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
        memcpy(cp, t->data, t->nbytes);
        w->data = cp;
    }
    return 0;
}

static int vector(pl_model *m, const char *name, int64_t n, float **out, pl_err *err) {
    const pl_st_tensor *t = pl_st_find(m->st, name);
    *out = NULL;
    if (!t) return pl_err_set(err, PL_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    if (t->n_dims != 1 || t->n_elems != n)
        return pl_err_set(err, PL_EFORMAT, "%s: tensor '%s': expected shape [%lld], found %d dims with %lld elements",
                          m->path, name, (long long)n, t->n_dims, (long long)t->n_elems);
    float *f = pl_model_own(m, (size_t)n * sizeof(float));
    if (!f) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
    int rc = pl_st_to_f32(t, f, err);
    if (rc) return pl_err_prefix(err, "%s", m->path);
    *out = f;
    return 0;
}

int pl_model_hf_config(pl_model *m, const char *cfg_path, pl_err *err) {
    int bias = 0;
    int rc = parse_config(m, cfg_path, &bias, err);
    if (!rc) m->cfg.qkv_bias = bias;
    return rc;
}

int pl_model_load_hf(pl_model *m, pl_err *err) {
    char cfg_path[4096];
    if (snprintf(cfg_path, sizeof cfg_path, "%s/config.json", m->path) >= (int)sizeof cfg_path)
        return pl_err_set(err, PL_EINVAL, "%s: path too long", m->path);
    int bias = 0;
    int rc = parse_config(m, cfg_path, &bias, err);
    if (rc) return rc;
    if ((rc = pl_st_open(&m->st, m->path, err))) return rc;
    pl_model_config *c = &m->cfg;
    c->qkv_bias = bias;
    int64_t D = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    if ((rc = weight(m, "model.embed_tokens.weight", c->vocab, D, &m->tok_embd, err))) return rc;
    if (!c->tied_embeddings && !pl_st_find(m->st, "lm_head.weight")) c->tied_embeddings = 1;
    if (c->tied_embeddings) m->lm_head = m->tok_embd;
    else if ((rc = weight(m, "lm_head.weight", c->vocab, D, &m->lm_head, err))) return rc;
    if ((rc = vector(m, "model.norm.weight", D, &m->out_norm, err))) return rc;
    m->layers = pl_model_own(m, (size_t)c->n_layers * sizeof *m->layers);
    if (!m->layers) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
    for (int l = 0; l < c->n_layers; l++) {
        pl_layer *L = &m->layers[l];
        char n[128];
#define NAME(s) (snprintf(n, sizeof n, "model.layers.%d.%s", l, s), n)
        if ((rc = vector(m, NAME("input_layernorm.weight"), D, &L->attn_norm, err)) ||
            (rc = vector(m, NAME("post_attention_layernorm.weight"), D, &L->ffn_norm, err)) ||
            (rc = weight(m, NAME("self_attn.q_proj.weight"), qd, D, &L->wq, err)) ||
            (rc = weight(m, NAME("self_attn.k_proj.weight"), kvd, D, &L->wk, err)) ||
            (rc = weight(m, NAME("self_attn.v_proj.weight"), kvd, D, &L->wv, err)) ||
            (rc = weight(m, NAME("self_attn.o_proj.weight"), D, qd, &L->wo, err)) ||
            (rc = weight(m, NAME("mlp.gate_proj.weight"), c->hidden, D, &L->w_gate, err)) ||
            (rc = weight(m, NAME("mlp.up_proj.weight"), c->hidden, D, &L->w_up, err)) ||
            (rc = weight(m, NAME("mlp.down_proj.weight"), D, c->hidden, &L->w_down, err)))
            return rc;
        if (bias) {
            if ((rc = vector(m, NAME("self_attn.q_proj.bias"), qd, &L->bq, err)) ||
                (rc = vector(m, NAME("self_attn.k_proj.bias"), kvd, &L->bk, err)) ||
                (rc = vector(m, NAME("self_attn.v_proj.bias"), kvd, &L->bv, err)))
                return rc;
            if (c->arch == PL_ARCH_LLAMA && pl_st_find(m->st, NAME("self_attn.o_proj.bias")))
                return pl_err_set(err, PL_EUNSUPPORTED, "%s: o_proj bias is not supported", m->path);
        }
#undef NAME
    }
    return pl_model_init_rope(m, NULL, err);
}
