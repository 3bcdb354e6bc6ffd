/* plan.c: the memory plan of a training run (pl_train_plan) and of a
 * generation (pl_gen_plan_make), and the published shapes `potluck plan
 * --preset` knows.
 *
 * Every tagged buffer of the trainer is one item here with the bytes of one
 * buffer (each) and how many exist (count). pl_train_init_opts and
 * pl_train_attach_lora allocate item[...].each, so a change to a buffer's
 * size is a change here and the plan follows it by construction; what the
 * trainer allocates as sums of unequal tensors (parameter gradients, LoRA's
 * A/B/gA/gB, AdamW's m and v) is summed here over the same shapes, and
 * tests/test_plan.c checks the peaks against the plan.
 *
 * Shapes: T tokens per forward, D hidden, qd = n_heads * head_dim, kvd =
 * n_kv_heads * head_dim, H intermediate, V vocabulary, L layers. fp32. */
#include "plan.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../core/lin.h"
#include "../lora/nf4.h"
#include "cuda/cuda_sizes.h"
#include "model_init.h"

static size_t al8(size_t x) { return (x + 7) & ~(size_t)7; }

size_t pl_plan_lora_xa_bytes(int T, int r, int act_bytes) { return (size_t)act_bytes * (size_t)T * (size_t)r; }

size_t pl_plan_nf4_tensor_bytes(int64_t n, int blocksize, int double_quant) {
    pl_nf4 shape;
    if (pl_nf4_shape(&shape, n, blocksize, double_quant)) return 0;
    size_t bytes = pl_nf4_layout(&shape, NULL);
    return bytes > SIZE_MAX - al8(sizeof(pl_nf4)) ? 0 : al8(sizeof(pl_nf4)) + bytes;
}

size_t pl_kvcache_bytes(const pl_model_config *c, int n_seq, int n_ctx, int act_bytes) {
    size_t n, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    if (n_seq <= 0 || n_ctx <= 0 || (act_bytes != 2 && act_bytes != 4)) return 0;
    if (!pl_mul_ok((size_t)c->n_layers * (size_t)n_seq, (size_t)n_ctx, &n) ||
        !pl_mul_ok(n, kvd * (size_t)act_bytes, &n) || n > SIZE_MAX / 2)
        return 0;
    return 2 * n; /* K and V */
}

/* The 7 adapted weights of a layer: (out, in) in q,k,v,o,gate,up,down order. */
static void lin_shapes(const pl_model_config *c, int64_t out[7], int64_t in[7]) {
    int64_t D = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t H = c->hidden;
    const int64_t o[7] = {qd, kvd, kvd, D, H, H, D}, i[7] = {D, D, D, qd, D, D, H};
    memcpy(out, o, sizeof o);
    memcpy(in, i, sizeof i);
}

/* Bytes of a (rows, cols) weight held as dtype t (0 when unknown). */
static size_t stored_bytes(pl_dtype t, int64_t rows, int64_t cols) {
    size_t rb = pl_dtype_row_bytes(t, cols);
    return rb ? rb * (size_t)rows : 0;
}

static void set(pl_mem_plan *p, pl_plan_buf b, const char *name, const char *what, pl_mem_cat cat, int tracked,
                size_t each, size_t count) {
    pl_plan_item *it = &p->item[b];
    it->name = name;
    it->what = what;
    it->cat = cat;
    it->tracked = tracked;
    it->each = each;
    it->count = count;
    it->bytes = each * count;
}

/* An item that is a sum of unequal buffers. */
static void set_sum(pl_mem_plan *p, pl_plan_buf b, const char *name, const char *what, pl_mem_cat cat, int tracked,
                    size_t bytes, size_t count) {
    set(p, b, name, what, cat, tracked, 0, count);
    p->item[b].bytes = bytes;
}

int64_t pl_plan_params(const pl_model_config *c) {
    const int64_t d = c->dim, f = c->hidden, L = c->n_layers, V = c->vocab;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t layer = d * qd * 2 + d * kvd * 2 + d * f * 3 + d * 2;
    return V * d * (c->tied_embeddings ? 1 : 2) + L * layer + d;
}

/* Layers stored in NF4 (a random model's: trainer/model_random.c) are planned
 * as they are made, blocksize 64 and double-quantized, whatever the shape's
 * quantization settings say: the loaded model keeps them so. */
static pl_train_shape as_stored(const pl_train_shape *s) {
    pl_train_shape sh = *s;
    if (sh.layer_dtype == PL_NF4) {
        sh.nf4_blocksize = PL_INIT_NF4_BLOCK;
        sh.nf4_double_quant = 1;
    }
    return sh;
}

int pl_train_plan(const pl_model_config *c, const pl_train_shape *s0, pl_mem_plan *out, pl_err *err) {
    memset(out, 0, sizeof *out);
    const pl_train_shape sh = as_stored(s0), *s = &sh;
    out->shape = sh;
    if (s->seq_len <= 0 || s->micro_batch <= 0 || (int64_t)s->seq_len * s->micro_batch > (1 << 20))
        return pl_err_set(err, PL_EINVAL, "plan: %d tokens x %d rows per forward is out of range (1..1048576 tokens)",
                          s->seq_len, s->micro_batch);
    if (c->dim <= 0 || c->hidden <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->head_dim <= 0 || c->vocab <= 0)
        return pl_err_set(err, PL_EINVAL, "plan: the model shape has a size <= 0");
    if (s->lora_r < 0 || (s->lora_r > 0 && !s->frozen_base))
        return pl_err_set(err, PL_EINVAL, "plan: LoRA rank %d needs a frozen base", s->lora_r);
    if (s->lora_targets & ~0x7fu)
        return pl_err_set(err, PL_EINVAL, "plan: LoRA target mask 0x%x is not a subset of 0x7f", s->lora_targets);
    if (s->nf4_blocksize > 0 && !pl_nf4_valid_blocksize(s->nf4_blocksize))
        return pl_err_set(err, PL_EINVAL, "plan: nf4 blocksize %d: expected a power of two in 32..4096",
                          s->nf4_blocksize);
    const int T = s->seq_len * s->micro_batch;
    out->T = T;
    /* 64-bit sizes: every product below is of int-sized factors, at most three
     * of which exceed 2^20 together only for absurd shapes, checked here */
    const size_t Tz = (size_t)T, D = (size_t)c->dim, qd = (size_t)c->n_heads * c->head_dim;
    const size_t kvd = (size_t)c->n_kv_heads * c->head_dim, H = (size_t)c->hidden, V = (size_t)c->vocab;
    const size_t L = (size_t)c->n_layers;
    if (D > (1u << 20) || H > (1u << 22) || V > (1u << 24) || L > 4096 || qd > (1u << 22) || kvd > (1u << 22))
        return pl_err_set(err, PL_ERANGE, "plan: the model shape is out of range");
    const pl_mem_cat A = PL_MEM_ACTIVATIONS, G = PL_MEM_GRADIENTS, W = PL_MEM_WORKSPACE;
    const size_t per = s->checkpoint ? 1 : L; /* per-layer buffers other than x_in */
    const size_t ab = s->cuda ? 2 : 4;        /* bytes of an activation element: bf16 on CUDA, fp32 on the CPU */
    if (s->cuda && !s->frozen_base)
        return pl_err_set(err, PL_EUNSUPPORTED, "plan: the cuda backend trains adapters on a frozen base only");
    if (s->offload && (!s->cuda || !s->checkpoint))
        return pl_err_set(err, PL_EINVAL, "plan: offloaded checkpoints need the cuda backend and checkpointing");
    /* offload (train.c: pl_train_init_opts): two device buffers take turns as
     * x_in; the inputs of layers 0..L-3 go to pinned host memory and come back
     * for the backward, the last two layers' stay on the device */
    const size_t n_xin = s->offload && L > 2 ? 2 : L, n_xhost = s->offload && L > 2 ? L - 2 : 0;
    if (s->mlp_chunk && (s->mlp_chunk < 0 || s->mlp_chunk % 8 || !s->checkpoint))
        return pl_err_set(err, PL_EINVAL, "plan: MLP chunks of %d tokens: expected a positive multiple of 8, with "
                          "checkpointing", s->mlp_chunk);
    /* rows of the MLP's buffers (train.c: pl_train_mlp_chunk) */
    const size_t Tm = s->mlp_chunk > 0 && s->mlp_chunk < T ? (size_t)s->mlp_chunk : Tz;

    /* saved activations (train.c: pl_train_init_opts) */
    set(out, PL_PB_TOKENS, "tokens", "ids, targets, positions, segments, last key: int32 (T) each", A, 1, 4 * Tz, 5);
    set(out, PL_PB_X_IN, "x_in", n_xhost ? "layer input (T,D): two device buffers taking turns (offloaded)"
                                         : "layer input (T,D), kept per layer", A, 1, ab * Tz * D, n_xin);
    set(out, PL_PB_X_HOST, "x_host", "layer input (T,D) of layers 0..L-3 offloaded to pinned host memory", A, 1,
        ab * Tz * D, n_xhost);
    set(out, PL_PB_XN1, "xn1", "attn rmsnorm output (T,D)", A, 1, ab * Tz * D, per);
    set(out, PL_PB_Q, "q", "query after RoPE (T,qd)", A, 1, ab * Tz * qd, per);
    set(out, PL_PB_K, "k", "key after RoPE (T,kvd)", A, 1, ab * Tz * kvd, per);
    set(out, PL_PB_V, "v", "value (T,kvd)", A, 1, ab * Tz * kvd, per);
    set(out, PL_PB_ATT, "att", "attention output (T,qd)", A, 1, ab * Tz * qd, per);
    set(out, PL_PB_X_MID, "x_mid", "residual after attention (T,D)", A, 1, ab * Tz * D, per);
    set(out, PL_PB_XN2, "xn2", "mlp rmsnorm output (T,D)", A, 1, ab * Tz * D, per);
    const int mc = Tm < Tz;
    set(out, PL_PB_GATE, "gate", mc ? "gate_proj output (chunk,H)" : "gate_proj output (T,H)", A, 1, ab * Tm * H, per);
    set(out, PL_PB_UP, "up", mc ? "up_proj output (chunk,H)" : "up_proj output (T,H)", A, 1, ab * Tm * H, per);
    set(out, PL_PB_ACT, "act", mc ? "silu(gate)*up (chunk,H)" : "silu(gate)*up (T,H)", A, 1, ab * Tm * H, per);
    set(out, PL_PB_X_FINAL, "x_final", "last layer output (T,D)", A, 1, ab * Tz * D, 1);
    set(out, PL_PB_XNF, "xnf", "final rmsnorm output (T,D)", A, 1, ab * Tz * D, 1);
    if (s->cuda)
        set(out, PL_PB_LOGITS, "lse", "log-sum-exp of each row (T) fp32: the LM head is fused with the loss, no (T,V) "
            "logits", A, 1, 4 * Tz, 1);
    else
        set(out, PL_PB_LOGITS, "logits", "logits (T,V); cross-entropy writes dlogits over them (no other CE buffer)", A,
            1, 4 * Tz * V, 1);

    /* activation gradients, one set */
    set(out, PL_PB_D_RES, "d_res", "residual gradient (T,D)", G, 1, ab * Tz * D, 1);
    set(out, PL_PB_D_TMP, "d_tmp", "gradient scratch (T,D)", G, 1, ab * Tz * D, 1);
    set(out, PL_PB_D_XN, "d_xn", "rmsnorm output gradient (T,D)", G, 1, ab * Tz * D, 1);
    set(out, PL_PB_D_Q, "d_q", "query gradient (T,qd)", G, 1, ab * Tz * qd, 1);
    set(out, PL_PB_D_K, "d_k", "key gradient (T,kvd)", G, 1, ab * Tz * kvd, 1);
    set(out, PL_PB_D_V, "d_v", "value gradient (T,kvd)", G, 1, ab * Tz * kvd, 1);
    set(out, PL_PB_D_ATT, "d_att", "attention output gradient (T,qd)", G, 1, ab * Tz * qd, 1);
    set(out, PL_PB_D_ACT, "d_act", mc ? "swiglu output gradient (chunk,H)" : "swiglu output gradient (T,H)", G, 1,
        ab * Tm * H, 1);
    set(out, PL_PB_D_UP, "d_up", mc ? "up/gate gradient (chunk,H)" : "up/gate gradient (T,H)", G, 1, ab * Tm * H, 1);
    set(out, PL_PB_WS_LIN, "ws_lin", "o_proj / down_proj output before the residual add (T,D)", W, 1, ab * Tz * D, 1);
    size_t widest = D > H ? D : H;
    if (qd > widest) widest = qd;
    const int ws_q = s->frozen_base && !s->cuda; /* CUDA: the backend's own scratch (below) */
    set(out, PL_PB_WS_Q, "ws_q", "GEMM workspace: dequantized weight rows of linear_q", W, 1,
        ws_q ? 4 * pl_cpu_linear_q_workspace((int64_t)widest) : 0, ws_q ? 1 : 0);

    /* parameters: full fine-tuning trains every fp32 weight */
    int64_t lo[7], li[7];
    lin_shapes(c, lo, li);
    size_t layer_w = 0; /* elements of one layer's 7 matrices */
    for (int j = 0; j < 7; j++) layer_w += (size_t)lo[j] * (size_t)li[j];
    const size_t bias_n = c->qkv_bias ? qd + 2 * kvd : 0;
    const int tied = c->tied_embeddings;
    if (!s->frozen_base) {
        size_t n = V * D + L * (2 * D + layer_w + bias_n) + D + (tied ? 0 : V * D);
        size_t tensors = 1 + L * (9 + (c->qkv_bias ? 3 : 0)) + 1 + (tied ? 0 : 1);
        out->trained_params = (int64_t)n;
        set_sum(out, PL_PB_PARAM_GRAD, "param_grads", "one fp32 gradient per parameter", G, 1, 4 * n, tensors);
    } else {
        set(out, PL_PB_PARAM_GRAD, "param_grads", "none: the base is frozen", G, 1, 0, 0);
    }

    /* LoRA (lora.c: pl_lora_alloc; train.c: pl_train_attach_lora) */
    size_t lora_n = 0, mods = 0;
    int maxI = 1, maxO = 1, r = s->lora_r;
    size_t rowsI = Tz, rowsO = Tz; /* LoRA scratch elements: the largest (rows x width) of an adapted module's
                                    * call, rows T, or the chunk's for the MLP's modules */
    if (s->frozen_base && r > 0) {
        for (int j = 0; j < 7; j++) {
            if (!((s->lora_targets >> j) & 1)) continue;
            lora_n += (size_t)r * (size_t)(li[j] + lo[j]);
            mods++;
            if (li[j] > maxI) maxI = (int)li[j];
            if (lo[j] > maxO) maxO = (int)lo[j];
            const size_t rows = j >= PL_LIN_GATE ? Tm : Tz;
            if (rows * (size_t)li[j] > rowsI) rowsI = rows * (size_t)li[j];
            if (rows * (size_t)lo[j] > rowsO) rowsO = rows * (size_t)lo[j];
        }
        lora_n *= L;
        mods *= L;
        out->trained_params = (int64_t)lora_n;
    }
    out->n_lora_modules = (int64_t)mods;
    out->lora_params = (int64_t)lora_n;
    out->max_in = maxI;
    out->max_out = maxO;
    const int has_lora = s->frozen_base && r > 0; /* attached (scratch exists even with no module) */
    set(out, PL_PB_LORA_XA, "lora_xa", "drop(x).A^T (T,r) per adapted module", A, 1,
        has_lora ? pl_plan_lora_xa_bytes(T, r, (int)ab) : 0, mods);
    set(out, PL_PB_LORA_DXA, "lora_dxa", "gradient of xa (T,r)", G, 1, has_lora ? ab * Tz * (size_t)r : 0, has_lora);
    set_sum(out, PL_PB_LORA_GRAD, "lora_grads", "gA, gB fp32", G, 1, 4 * lora_n, 2 * mods);
    set(out, PL_PB_LORA_U, "lora_u", mc ? "dropped input (rows x widest adapted in; the MLP's rows a chunk)"
                                        : "dropped input (T, widest adapted in)", W, 1, has_lora ? ab * rowsI : 0,
        has_lora);
    set(out, PL_PB_LORA_DU, "lora_du", "its gradient (as lora_u)", W, 1, has_lora ? ab * rowsI : 0, has_lora);
    set(out, PL_PB_LORA_Y, "lora_y", mc ? "B.xa (rows x widest adapted out; the MLP's rows a chunk)"
                                        : "B.xa (T, widest adapted out)", W, 1, has_lora ? ab * rowsO : 0, has_lora);
    set_sum(out, PL_PB_LORA_W, "lora_weights", "LoRA A (r,in), B (out,r) fp32 masters", PL_MEM_WEIGHTS, 1,
            4 * lora_n, 2 * mods);
    set_sum(out, PL_PB_ADAMW, "adamw", "AdamW m and v, fp32, allocated at the first step", PL_MEM_OPTIMIZER, 1,
            8 * (size_t)out->trained_params, 2 * (s->frozen_base ? 2 * mods : (size_t)out->item[PL_PB_PARAM_GRAD].count));

    /* the model's own weights (not allocated through the backend) */
    const int mapped = s->stored_mapped;
    if (!s->frozen_base) {
        set(out, PL_PB_BASE, "base_layers", "layer matrices as owned fp32 copies (trained)", PL_MEM_WEIGHTS, 0,
            4 * layer_w, L);
        set(out, PL_PB_EMBD, "embedding", "token embedding, owned fp32 copy (trained)", PL_MEM_WEIGHTS, 0, 4 * V * D,
            1);
        set(out, PL_PB_HEAD, "lm_head", tied ? "tied to the embedding" : "LM head, owned fp32 copy (trained)",
            PL_MEM_WEIGHTS, 0, tied ? 0 : 4 * V * D, tied ? 0 : 1);
    } else {
        size_t base = 0;
        for (int j = 0; j < 7; j++) {
            size_t b = s->nf4_blocksize > 0
                           ? pl_plan_nf4_tensor_bytes(lo[j] * li[j], s->nf4_blocksize, s->nf4_double_quant)
                           : stored_bytes(s->layer_dtype, lo[j], li[j]);
            base += b; /* 0 for a dtype without a fixed row size (the caller says so) */
        }
        const char *bw = s->nf4_blocksize > 0 ? (s->nf4_double_quant ? "layer matrices in NF4 (+ double-quantized absmax)"
                                                                     : "layer matrices in NF4 (+ fp32 absmax)")
                                              : mapped ? "layer matrices as stored, read from the file map"
                                                       : "layer matrices as stored";
        set(out, PL_PB_BASE, "base_layers", bw, PL_MEM_WEIGHTS, 0, base, L);
        out->item[PL_PB_BASE].mapped = s->nf4_blocksize <= 0 && mapped;
        if (s->nf4_blocksize > 0 && !mapped && s->layer_dtype != PL_NF4) {
            /* a llama2.c checkpoint is read whole and stays in memory (a random model is made in NF4) */
            size_t src = 0;
            for (int j = 0; j < 7; j++) src += stored_bytes(s->layer_dtype, lo[j], li[j]);
            set(out, PL_PB_BASE_SOURCE, "base_source", "the stored layer matrices, kept in memory beside the NF4 copy",
                PL_MEM_WEIGHTS, 0, src, L);
        }
        size_t eb = stored_bytes(s->embd_dtype, (int64_t)V, (int64_t)D);
        size_t hb = tied ? 0 : stored_bytes(s->head_dtype, (int64_t)V, (int64_t)D);
        set(out, PL_PB_EMBD, "embedding", mapped ? "token embedding as stored (file map), frozen"
                                                 : "token embedding as stored, frozen", PL_MEM_WEIGHTS, 0, eb, 1);
        set(out, PL_PB_HEAD, "lm_head", tied ? "tied to the embedding" : mapped ? "LM head as stored (file map), frozen"
                                                                                : "LM head as stored, frozen",
            PL_MEM_WEIGHTS, 0, hb, tied ? 0 : 1);
        out->item[PL_PB_EMBD].mapped = mapped;
        out->item[PL_PB_HEAD].mapped = mapped;
    }
    set(out, PL_PB_NORMS, "norms", "rmsnorm weights, biases, RoPE frequencies (fp32, model-owned)", PL_MEM_WEIGHTS,
        0, 4 * ((2 * L + 1) * D + L * bias_n + (size_t)c->head_dim / 2), 1);
    size_t nt = s->threads > 0 ? (size_t)s->threads : 1;
    if (!s->cuda) /* CUDA: on the device, in the backend's scratch */
        set(out, PL_PB_ATTN_SCRATCH, "attn_scratch",
            "attention backward: per-query max, 1/sum, D (T*n_heads) + one score row per thread (malloc per call)", W,
            0, 4 * (3 * Tz * (size_t)c->n_heads + nt * Tz), 1);

    /* the CUDA backend's device memory (trainer/cuda/cuda_backend.cu, sizes from cuda_sizes.h) */
    if (s->cuda) {
        size_t dev = 0, maxw = 0;
        for (int j = 0; j < 7; j++) {
            size_t n = (size_t)lo[j] * (size_t)li[j];
            dev += s->nf4_blocksize > 0 ? pl_cuda_nf4_bytes((int64_t)n, s->nf4_blocksize, s->nf4_double_quant) : 2 * n;
            if (n > maxw) maxw = n;
        }
        set(out, PL_PB_DEV_BASE, "dev_base", s->nf4_blocksize > 0 ? "device copy of the NF4 layer matrices (same bytes)"
                                                                   : "device copy of the layer matrices in bf16",
            PL_MEM_WEIGHTS, 1, dev, L);
        set(out, PL_PB_DEV_EMBD, "dev_embedding", "token embedding in bf16 on the device", PL_MEM_WEIGHTS, 1, 2 * V * D, 1);
        set(out, PL_PB_DEV_HEAD, "dev_lm_head", tied ? "tied: the embedding's copy" : "LM head in bf16 on the device",
            PL_MEM_WEIGHTS, 1, tied ? 0 : 2 * V * D, tied ? 0 : 1);
        set(out, PL_PB_DEV_NORMS, "dev_norms", "rmsnorm weights, biases, RoPE frequencies (fp32) on the device",
            PL_MEM_WEIGHTS, 1, 4 * ((2 * L + 1) * D + L * bias_n + (size_t)c->head_dim / 2), 1);
        set(out, PL_PB_DEV_GEMM_WS, "gemm_ws", "cuBLASLt workspace (allocated when the backend opens)", W, 1,
            PL_CUDA_GEMM_WORKSPACE, 1);
        /* the grow-only scratch slots at their largest call: T tokens */
        const int Ti = T, Di = (int)D, Vi = (int)V, nh = c->n_heads, hd = c->head_dim;
        size_t sc[PL_CUDA_SC_N] = {0};
        sc[PL_CUDA_SC_WBF16] = s->nf4_blocksize > 0 ? pl_cuda_sc_wbf16((int64_t)maxw) : 0;
        size_t f32 = pl_cuda_sc_rmsnorm_ws(Ti, Di);
        if (pl_cuda_sc_attention_ws(Ti, nh) > f32) f32 = pl_cuda_sc_attention_ws(Ti, nh);
        if (has_lora && mods) {
            for (int j = 0; j < 7; j++) {
                if (!((s->lora_targets >> j) & 1)) continue;
                if (pl_cuda_sc_lora_a(r, (int)li[j]) > sc[PL_CUDA_SC_LORA_A]) sc[PL_CUDA_SC_LORA_A] = pl_cuda_sc_lora_a(r, (int)li[j]);
                if (pl_cuda_sc_lora_b((int)lo[j], r) > sc[PL_CUDA_SC_LORA_B]) sc[PL_CUDA_SC_LORA_B] = pl_cuda_sc_lora_b((int)lo[j], r);
                size_t g = pl_cuda_sc_sumsq_ws((int64_t)r * li[j]), h = pl_cuda_sc_sumsq_ws((int64_t)r * lo[j]);
                if (g > f32) f32 = g;
                if (h > f32) f32 = h;
            }
        }
        sc[PL_CUDA_SC_F32] = f32;
        sc[PL_CUDA_SC_ATT_OUT] = pl_cuda_sc_att_out(Ti, nh, hd);
        sc[PL_CUDA_SC_WS] = pl_cuda_sc_ce_ws(Ti, Vi) > pl_cuda_sc_ce_bwd_ws(Ti, Di) ? pl_cuda_sc_ce_ws(Ti, Vi)
                                                                                   : pl_cuda_sc_ce_bwd_ws(Ti, Di);
        sc[PL_CUDA_SC_DSUM] = PL_CUDA_SC_DSUM_BYTES;
        sc[PL_CUDA_SC_NORM] = pl_cuda_sc_norm(Ti, Di);
        size_t tot = 0, nsc = 0;
        for (int k = 0; k < PL_CUDA_SC_N; k++) {
            tot += sc[k];
            nsc += sc[k] > 0;
        }
        set_sum(out, PL_PB_DEV_SCRATCH, "dev_scratch",
                "the backend's scratch: a dequantized NF4 weight (bf16), LoRA A/B in bf16, kernel workspaces, "
                "recomputed attention output and RMSNorm rstd",
                W, 1, tot, nsc);
    }

    for (int b = 0; b < PL_PB_N; b++) {
        const pl_plan_item *it = &out->item[b];
        if (it->tracked) out->cat[it->cat] += it->bytes;
        else if (it->mapped) out->mapped += it->bytes;
        else out->owned += it->bytes;
    }
    for (int k = 0; k < PL_MEM_NCAT; k++) out->tracked += out->cat[k];
    out->total = out->tracked + out->owned + out->mapped;
    out->offloaded = out->item[PL_PB_X_HOST].bytes;
    out->device = out->tracked - out->offloaded;
    if (s->cuda && s->paged_optim && has_lora) { /* trainer/train.c: pl_train_optim_alloc */
        size_t pmin = s->paged_min ? s->paged_min : PL_PAGED_MIN, big = 0;
        for (int j = 0; j < 7; j++) {
            if (!((s->lora_targets >> j) & 1)) continue;
            size_t na = (size_t)r * (size_t)li[j], nb = (size_t)lo[j] * (size_t)r;
            if (na >= pmin) { out->paged += 8 * na * L; if (8 * na > big) big = 8 * na; }
            if (nb >= pmin) { out->paged += 8 * nb * L; if (8 * nb > big) big = 8 * nb; }
        }
        out->device = out->tracked - out->offloaded - out->paged + big;
    }
    out->runtime = s->cuda ? pl_plan_cuda_runtime() : 0;
    out->need = s->cuda ? out->device + out->runtime : out->total;
    return 0;
}

int pl_gen_plan_make(const pl_model_config *c, const pl_train_shape *s0, int n_seq, int n_ctx, int prefill,
                     pl_gen_plan *out, pl_err *err) {
    memset(out, 0, sizeof *out);
    const pl_train_shape sh = as_stored(s0), *s = &sh;
    if (n_seq <= 0 || n_ctx <= 0 || (int64_t)n_seq * n_ctx > (1 << 24))
        return pl_err_set(err, PL_EINVAL, "plan: %d sequences of %d tokens is out of range", n_seq, n_ctx);
    if (prefill > n_seq * n_ctx)
        return pl_err_set(err, PL_EINVAL, "plan: a prefill of %d tokens does not fit %d sequences of %d", prefill,
                          n_seq, n_ctx);
    out->n_seq = n_seq;
    out->n_ctx = n_ctx;
    out->cuda = s->cuda;
    /* the largest decode call: the prefill (a later step decodes one token per sequence, n_seq <= T) */
    out->T = prefill > 0 ? (prefill > n_seq ? prefill : n_seq) : n_seq * n_ctx;
    const size_t ab = s->cuda ? 2 : 4; /* an activation element: bf16 on CUDA, fp32 on the CPU (pl_act_bytes) */
    out->kv = pl_kvcache_bytes(c, n_seq, n_ctx, (int)ab);
    if (!out->kv) return pl_err_set(err, PL_ERANGE, "plan: the KV cache of %d x %d tokens is too large", n_seq, n_ctx);
    /* pl_model_decode's buffers (model_forward.c: buf_alloc, the last rows xl, and on a backend without host
     * memory the head's (n, V) output) */
    size_t T = (size_t)out->T, D = (size_t)c->dim, qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, H = (size_t)c->hidden, V = (size_t)c->vocab;
    size_t maxc = D > H ? D : H;
    if (qd > maxc) maxc = qd;
    out->activations = ab * T * (D + maxc + 2 * qd + 2 * kvd + 2 * H) + ab * (size_t)n_seq * D +
                       4 * 4 * T; /* + the ids, positions, last keys and segments (int32) */
    if (s->cuda) out->activations += ab * (size_t)n_seq * V;
    out->workspace = 4 * pl_cpu_linear_q_workspace((int64_t)maxc);
    out->logits = 4 * (size_t)n_seq * V;
    pl_train_shape ws = *s;
    ws.seq_len = 1;
    ws.micro_batch = 1;
    ws.frozen_base = 1;
    ws.lora_r = 0;
    ws.checkpoint = 1;
    ws.paged_optim = 0;
    ws.offload = 0;
    ws.mlp_chunk = 0;
    pl_mem_plan p;
    int rc = pl_train_plan(c, &ws, &p, err);
    if (rc) return rc;
    out->weights_mapped = p.item[PL_PB_BASE].mapped ? p.item[PL_PB_BASE].bytes : 0;
    out->weights_owned = p.item[PL_PB_BASE].mapped ? 0 : p.item[PL_PB_BASE].bytes;
    for (int b = PL_PB_BASE_SOURCE; b <= PL_PB_NORMS; b++) {
        if (p.item[b].mapped) out->weights_mapped += p.item[b].bytes;
        else out->weights_owned += p.item[b].bytes;
    }
    if (s->cuda) {
        /* the device copies are the training plan's, the same weights used by the same ops */
        for (int b = PL_PB_DEV_BASE; b <= PL_PB_DEV_NORMS; b++) out->dev_weights += p.item[b].bytes;
        out->dev_gemm_ws = p.item[PL_PB_DEV_GEMM_WS].bytes;
        /* the scratch: linear_q on an NF4 weight for more tokens than the GEMV takes dequantizes it to bf16
         * (the largest matrix); other weights are resident bf16 copies and the forward ops need no scratch */
        if (s->nf4_blocksize > 0 && out->T > PL_CUDA_GEMV_MAX_T) {
            int64_t maxw = 0, lo[7], li[7];
            lin_shapes(c, lo, li);
            for (int j = 0; j < 7; j++)
                if (lo[j] * li[j] > maxw) maxw = lo[j] * li[j];
            out->dev_scratch = pl_cuda_sc_wbf16(maxw);
        }
        out->workspace += out->dev_gemm_ws + out->dev_scratch;
    }
    out->cat[PL_MEM_WEIGHTS] = out->dev_weights;
    out->cat[PL_MEM_ACTIVATIONS] = out->activations;
    out->cat[PL_MEM_WORKSPACE] = out->workspace;
    out->cat[PL_MEM_KVCACHE] = out->kv;
    for (int k = 0; k < PL_MEM_NCAT; k++) out->tracked += out->cat[k];
    out->device = s->cuda ? out->tracked : 0;
    out->total = out->tracked + out->logits + out->weights_owned + out->weights_mapped;
    out->runtime = s->cuda ? pl_plan_cuda_runtime() : 0;
    out->need = s->cuda ? out->device + out->runtime : out->total;
    return 0;
}

size_t pl_plan_cuda_runtime(void) {
    const char *e = getenv("POTLUCK_CUDA_RUNTIME_MIB");
    char *end = NULL;
    long long v = e && *e ? strtoll(e, &end, 10) : -1;
    if (v < 0 || !end || *end || v > (1ll << 20)) v = PL_PLAN_CUDA_RUNTIME_MIB; /* unset or not a number of MiB */
    return (size_t)v << 20;
}

/* ------------------------------------------------------------ presets
 *
 * hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, vocab_size, tie_word_embeddings, rope_theta and
 * max_position_embeddings of each release's config.json (Hugging Face hub). */

#define CFG(arch_, D, H, L, NH, NKV, V, tied, theta, maxs, eps, bias)                                               \
    { .arch = arch_, .vocab = V, .dim = D, .hidden = H, .n_layers = L, .n_heads = NH, .n_kv_heads = NKV,             \
      .head_dim = (D) / (NH), .max_seq = maxs, .rope_theta = theta, .norm_eps = eps, .tied_embeddings = tied,         \
      .qkv_bias = bias, .bos_id = -1, .eos_id = -1 }

static const pl_plan_preset presets[] = {
    /* meta-llama/Llama-2-{7b,13b,70b}-hf config.json */
    {"llama2-7b", "Llama-2 7B", CFG(PL_ARCH_LLAMA, 4096, 11008, 32, 32, 32, 32000, 0, 10000.0f, 4096, 1e-5f, 0)},
    {"llama2-13b", "Llama-2 13B", CFG(PL_ARCH_LLAMA, 5120, 13824, 40, 40, 40, 32000, 0, 10000.0f, 4096, 1e-5f, 0)},
    {"llama2-70b", "Llama-2 70B", CFG(PL_ARCH_LLAMA, 8192, 28672, 80, 64, 8, 32000, 0, 10000.0f, 4096, 1e-5f, 0)},
    /* LLaMA-1 (huggyllama/llama-{7b,13b,30b,65b} config.json; "30B" is the 32.5B model of the paper's 33B) */
    {"llama-7b", "LLaMA 7B", CFG(PL_ARCH_LLAMA, 4096, 11008, 32, 32, 32, 32000, 0, 10000.0f, 2048, 1e-6f, 0)},
    {"llama-13b", "LLaMA 13B", CFG(PL_ARCH_LLAMA, 5120, 13824, 40, 40, 40, 32000, 0, 10000.0f, 2048, 1e-6f, 0)},
    {"llama-33b", "LLaMA 33B (30B)", CFG(PL_ARCH_LLAMA, 6656, 17920, 60, 52, 52, 32000, 0, 10000.0f, 2048, 1e-6f, 0)},
    {"llama-30b", "LLaMA 30B (33B)", CFG(PL_ARCH_LLAMA, 6656, 17920, 60, 52, 52, 32000, 0, 10000.0f, 2048, 1e-6f, 0)},
    {"llama-65b", "LLaMA 65B", CFG(PL_ARCH_LLAMA, 8192, 22016, 80, 64, 64, 32000, 0, 10000.0f, 2048, 1e-5f, 0)},
    /* codellama/CodeLlama-34b-hf config.json */
    {"codellama-34b", "CodeLlama 34B",
     CFG(PL_ARCH_LLAMA, 8192, 22016, 48, 64, 8, 32000, 0, 1000000.0f, 16384, 1e-5f, 0)},
    /* meta-llama/Llama-3.1-{8B,70B} config.json (rope_scaling llama3: factor 8, low 1, high 4, original 8192) */
    {"llama3.1-8b", "Llama-3.1 8B", CFG(PL_ARCH_LLAMA, 4096, 14336, 32, 32, 8, 128256, 0, 500000.0f, 131072, 1e-5f, 0)},
    {"llama3.1-70b", "Llama-3.1 70B",
     CFG(PL_ARCH_LLAMA, 8192, 28672, 80, 64, 8, 128256, 0, 500000.0f, 131072, 1e-5f, 0)},
    /* mistralai/Mistral-7B-v0.1 config.json */
    {"mistral-7b", "Mistral 7B", CFG(PL_ARCH_MISTRAL, 4096, 14336, 32, 32, 8, 32000, 0, 10000.0f, 32768, 1e-5f, 0)},
    /* Qwen/Qwen2.5-{7B,14B,32B} config.json (q/k/v biases) */
    {"qwen2.5-7b", "Qwen2.5 7B", CFG(PL_ARCH_QWEN2, 3584, 18944, 28, 28, 4, 152064, 0, 1000000.0f, 131072, 1e-6f, 1)},
    {"qwen2.5-14b", "Qwen2.5 14B", CFG(PL_ARCH_QWEN2, 5120, 13824, 48, 40, 8, 152064, 0, 1000000.0f, 131072, 1e-5f, 1)},
    {"qwen2.5-32b", "Qwen2.5 32B", CFG(PL_ARCH_QWEN2, 5120, 27648, 64, 40, 8, 152064, 0, 1000000.0f, 131072, 1e-5f, 1)},
    /* 01-ai/Yi-34B config.json */
    {"yi-34b", "Yi 34B", CFG(PL_ARCH_LLAMA, 7168, 20480, 60, 56, 8, 64000, 0, 5000000.0f, 4096, 1e-5f, 0)},
};
#undef CFG

const pl_plan_preset *pl_plan_presets(int *n) {
    *n = (int)(sizeof presets / sizeof presets[0]);
    return presets;
}

void pl_plan_preset_names(char *buf, size_t n) {
    int k = 0;
    const pl_plan_preset *ps = pl_plan_presets(&k);
    if (n) buf[0] = 0;
    for (int i = 0; i < k; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", i ? ", " : "", ps[i].name);
    }
}

const pl_plan_preset *pl_plan_preset_find(const char *name) {
    int n;
    const pl_plan_preset *p = pl_plan_presets(&n);
    for (int i = 0; i < n; i++)
        if (!strcasecmp(p[i].name, name)) return &p[i];
    return NULL;
}
