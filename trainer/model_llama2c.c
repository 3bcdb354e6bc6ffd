/* model_llama2c.c: loading a llama2.c checkpoint (.bin, "version 0"):
 * seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len), then fp32 arrays: token_embedding, rms_att, wq, wk, wv, wo,
 * rms_ffn, w1, w2, w3, rms_final, two legacy freq_cis arrays, and wcls when
 * vocab_size is negative (unshared classifier). Q/K rows are interleaved and
 * are permuted to rotate-half order on load. */
#include "model_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mapfile.h"

/* The config a llama2.c header (dim, hidden, layers, heads, kv heads, vocab
 * (negative: untied), max seq) describes; the loader and the header reader share it. */
void pl_model_llama2c_config(const int32_t h[7], pl_model_config *c) {
    c->arch = PL_ARCH_LLAMA;
    c->dim = h[0];
    c->hidden = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->tied_embeddings = h[5] > 0;
    c->vocab = h[5] > 0 ? h[5] : (h[5] == INT32_MIN ? 0 : -h[5]);
    c->max_seq = h[6];
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->bos_id = 1;
    c->eos_id = 2;
}

int pl_model_load_llama2c(pl_model *m, pl_err *err) {
    char *buf = NULL;
    size_t len = 0;
    int rc = pl_read_file(m->path, (size_t)1 << 36, &buf, &len, err);
    if (rc) return rc;
    m->file_buf = (unsigned char *)buf;
    if (len < 28)
        return pl_err_set(err, PL_EFORMAT,
                          "%s: not a model file: %zu bytes is too short for a llama2.c header and there is no GGUF magic",
                          m->path, len);
    int32_t h[7];
    memcpy(h, buf, sizeof h);
    for (int i = 0; i < 7; i++)
        if (i != 5 && h[i] <= 0)
            return pl_err_set(err, PL_EFORMAT,
                              "%s: not a llama2.c checkpoint (header field %d is %d) and not a GGUF file",
                              m->path, i, h[i]);
    pl_model_config *c = &m->cfg;
    pl_model_llama2c_config(h, c);
    if ((rc = pl_model_check_config(c, m->path, err))) return rc;
    if (c->dim % c->n_heads)
        return pl_err_set(err, PL_EFORMAT, "%s: dim %d is not a multiple of n_heads %d", m->path, c->dim, c->n_heads);
    if (c->max_seq > (1 << 20))
        return pl_err_set(err, PL_EFORMAT, "%s: seq_len %d is out of range", m->path, c->max_seq);

    /* Expected size, in floats, computed in 64 bits (the header values are
     * bounded by check_config, so nothing here overflows). */
    int64_t D = c->dim, H = c->hidden, NL = c->n_layers, V = c->vocab, hd = c->head_dim;
    int64_t kvd = (int64_t)c->n_kv_heads * hd;
    int64_t n = V * D + NL * D + NL * D * D + 2 * NL * D * kvd + NL * D * D + NL * D + 3 * NL * D * H + D +
                (int64_t)c->max_seq * hd; /* freq_cis_real + freq_cis_imag */
    if (!c->tied_embeddings) n += V * D;
    int64_t want = 28 + 4 * n;
    if ((int64_t)len != want)
        return pl_err_set(err, PL_EFORMAT,
                          "%s: llama2.c checkpoint of dim %d, %d layers, vocab %d should be %lld bytes, found %zu",
                          m->path, c->dim, c->n_layers, c->vocab, (long long)want, len);
    float *p = (float *)(buf + 28);
#define TAKE(count) (p += (count), p - (count))
    float *emb = TAKE(V * D), *rms_att = TAKE(NL * D), *wq = TAKE(NL * D * D), *wk = TAKE(NL * kvd * D),
          *wv = TAKE(NL * kvd * D), *wo = TAKE(NL * D * D), *rms_ffn = TAKE(NL * D), *w1 = TAKE(NL * H * D),
          *w2 = TAKE(NL * D * H), *w3 = TAKE(NL * H * D), *rms_final = TAKE(D);
    p += (int64_t)c->max_seq * hd; /* skip freq_cis_real and freq_cis_imag */
    float *wcls = c->tied_embeddings ? emb : TAKE(V * D);
#undef TAKE
    m->layers = pl_model_own(m, (size_t)NL * sizeof *m->layers);
    float *tmp = malloc((size_t)(D > kvd ? D : kvd) * D * sizeof(float));
    if (!m->layers || !tmp) {
        free(tmp);
        return pl_err_set(err, PL_ENOMEM, "%s: out of memory", m->path);
    }
#define MAT(w, r, cl) ((pl_qweight){.dtype = PL_F32, .rows = (r), .cols = (cl), .row_bytes = (size_t)(cl) * 4, .data = (w)})
    m->tok_embd = MAT(emb, V, D);
    m->lm_head = MAT(wcls, V, D);
    m->out_norm = rms_final;
    for (int64_t l = 0; l < NL; l++) {
        pl_layer *L = &m->layers[l];
        float *q = wq + l * D * D, *k = wk + l * kvd * D;
        memcpy(tmp, q, (size_t)(D * D) * sizeof(float));
        pl_model_unpermute_rows(q, tmp, c->n_heads, c->head_dim, (size_t)D * sizeof(float));
        memcpy(tmp, k, (size_t)(kvd * D) * sizeof(float));
        pl_model_unpermute_rows(k, tmp, c->n_kv_heads, c->head_dim, (size_t)D * sizeof(float));
        L->attn_norm = rms_att + l * D;
        L->ffn_norm = rms_ffn + l * D;
        L->wq = MAT(q, D, D);
        L->wk = MAT(k, kvd, D);
        L->wv = MAT(wv + l * kvd * D, kvd, D);
        L->wo = MAT(wo + l * D * D, D, D);
        L->w_gate = MAT(w1 + l * H * D, H, D);
        L->w_down = MAT(w2 + l * D * H, D, H);
        L->w_up = MAT(w3 + l * H * D, H, D);
    }
#undef MAT
    free(tmp);
    return pl_model_init_rope(m, NULL, err);
}
