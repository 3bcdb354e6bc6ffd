/* model_lora.c: LoRA adapters (lora/lora.h) on a pl_model: shaped after its
 * layers' linear weights and allocated by its backend; PEFT adapter files
 * checked against it; merged into its weights. */
#include "model_lora.h"

#include <stdlib.h>
#include <string.h>

#include "../core/gemm.h"
#include "model_int.h"

static const char *const peft_names[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

static const pl_qweight *module_weight(const pl_model *m, int layer, int which) {
    const pl_layer *L = &m->layers[layer];
    const pl_qweight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return ws[which];
}


/* The shapes of m's q,k,v,o,gate,up,down weights, layer by layer, as
 * pl_lora_alloc takes them; NULL when out of memory. */
static pl_lora_dims *model_dims(const pl_model *m) {
    int n = m->cfg.n_layers * 7;
    pl_lora_dims *d = calloc((size_t)(n > 0 ? n : 1), sizeof *d);
    if (!d) return NULL;
    for (int layer = 0; layer < m->cfg.n_layers; layer++)
        for (int j = 0; j < 7; j++) {
            const pl_qweight *w = module_weight(m, layer, j);
            d[layer * 7 + j] = (pl_lora_dims){.out = (int)w->rows, .in = (int)w->cols};
        }
    return d;
}

static pl_allocator model_mem(const pl_model *m) {
    const pl_backend *be = m->be ? m->be : pl_backend_cpu();
    return (pl_allocator){.alloc = be->alloc, .free = be->free};
}

int pl_lora_init(pl_lora **out, const pl_model *m, const pl_lora_cfg *cfg, pl_err *err) {
    *out = NULL;
    pl_lora_dims *dims = model_dims(m);
    if (!dims) return pl_err_set(err, PL_ENOMEM, "lora: out of memory");
    pl_allocator mem = model_mem(m);
    int rc = pl_lora_alloc(out, m->cfg.n_layers, dims, cfg, &mem, err);
    free(dims);
    if (rc) return rc;
    pl_lora_init_weights(*out);
    return 0;
}

int pl_lora_save_peft(const pl_lora *l, const pl_model *m, const char *dir, const char *base_model_name,
                      pl_err *err) {
    return pl_lora_write_peft(l, m->cfg.n_layers, dir, base_model_name, err);
}

int pl_lora_load_peft(pl_lora **out, const pl_model *m, const char *dir, pl_err *err) {
    *out = NULL;
    pl_lora_dims *dims = model_dims(m);
    if (!dims) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", dir);
    pl_allocator mem = model_mem(m);
    int rc = pl_lora_read_peft(out, m->cfg.n_layers, dims, &mem, dir, err);
    free(dims);
    return rc;
}

/* ------------------------------------------------------------ merge */

static int weight_writable(const pl_model *m, const void *p) {
    if (m->source == PL_SRC_LLAMA2C) return 1;
    for (int i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) return 1;
    return 0;
}

int pl_lora_merge(pl_model *m, const pl_lora *l, pl_err *err) {
    for (int i = 0; i < l->n; i++) {
        const pl_lora_module *md = &l->mods[i];
        if (md->layer < 0 || md->layer >= m->cfg.n_layers || (int)md->which < 0 || md->which >= PL_LIN_HEAD)
            return pl_err_set(err, PL_EINVAL, "%s: LoRA module %d is not in the model", m->path, i);
        pl_qweight *w = (pl_qweight *)module_weight(m, md->layer, md->which);
        if (w->dtype != PL_F32 || w->aux)
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: layers.%d.%s is %s; merging needs fp32 weights (load with opts.fp32)",
                              m->path, md->layer, peft_names[md->which], pl_dtype_name(w->dtype));
        if (w->rows != md->out || w->cols != md->in)
            return pl_err_set(err, PL_EINVAL, "%s: layers.%d.%s is (%lld, %lld), the adapter (%d, %d)", m->path,
                              md->layer, peft_names[md->which], (long long)w->rows, (long long)w->cols, md->out, md->in);
    }
    for (int i = 0; i < l->n; i++) {
        const pl_lora_module *md = &l->mods[i];
        pl_qweight *w = (pl_qweight *)module_weight(m, md->layer, md->which);
        if (!weight_writable(m, w->data)) { /* in a read-only map: copy into model-owned memory */
            size_t n = (size_t)w->rows * (size_t)w->cols * sizeof(float);
            float *cp = pl_model_own(m, n);
            if (!cp) return pl_err_set(err, PL_ENOMEM, "%s: out of memory copying layers.%d.%s", m->path, md->layer,
                                       peft_names[md->which]);
            memcpy(cp, w->data, n);
            w->data = cp;
            w->row_bytes = (size_t)w->cols * sizeof(float);
        }
        /* W (out,in) += scale * B (out,r) . A (r,in) */
        pl_gemm(0, 0, md->out, md->in, md->r, md->scale, md->B, md->r, md->A, md->in, 1.0f, (float *)w->data,
                md->in);
    }
    return 0;
}
