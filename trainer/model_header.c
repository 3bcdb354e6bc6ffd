/* model_header.c: a model's shape and stored dtypes from its header only
 * (trainer/plan.h: pl_model_read_header), for `potluck plan`: the loaders'
 * own config parsers (pl_model_hf_config, pl_model_gguf_config, the
 * llama2.c header) without reading a weight. */
#include "plan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/json.h"
#include "model_int.h"
#include <cjson/cJSON.h>

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* torch_dtype of a config.json (BF16 when absent: the releases' choice). */
static pl_dtype hf_dtype(const char *cfg_path) {
    cJSON *j = NULL;
    pl_err e = {0};
    if (pl_json_load(cfg_path, 16u << 20, &j, &e)) return PL_BF16;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "torch_dtype");
    pl_dtype t = PL_BF16;
    if (cJSON_IsString(d)) {
        if (!strcmp(d->valuestring, "float32")) t = PL_F32;
        else if (!strcmp(d->valuestring, "float16")) t = PL_F16;
    }
    cJSON_Delete(j);
    return t;
}

static pl_dtype gguf_type(const pl_model *m, const char *name, pl_dtype dflt) {
    const pl_gguf_tensor *t = pl_gguf_find_tensor(m->gguf, name);
    return t ? t->type : dflt;
}

int pl_model_read_header(const char *path, pl_model_header *h, pl_err *err) {
    memset(h, 0, sizeof *h);
    if (pl_model_is_random(path)) { /* a rehearsal model: NF4 layers, BF16 embeddings and head (model_random.c) */
        uint64_t seed;
        int rc = pl_model_random_spec(path, &h->cfg, &seed, err);
        h->source = PL_SRC_RANDOM;
        h->layer_dtype = PL_NF4;
        h->embd_dtype = h->head_dtype = PL_BF16;
        return rc;
    }
    struct stat st;
    if (stat(path, &st) != 0) return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    char cfg_path[4200];
    pl_model_source src;
    if (S_ISDIR(st.st_mode)) {
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
        if (access(cfg_path, R_OK))
            return pl_err_set(err, PL_EINVAL, "%s: a folder without config.json is not a Hugging Face model", path);
        src = PL_SRC_HF;
    } else if (!S_ISREG(st.st_mode)) {
        return pl_err_set(err, PL_EINVAL, "%s: not a model file or folder", path);
    } else if (ends_with(path, ".json")) {
        snprintf(cfg_path, sizeof cfg_path, "%s", path);
        src = PL_SRC_HF;
    } else {
        unsigned char b[28] = {0};
        int fd = open(path, O_RDONLY);
        if (fd < 0) return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
        ssize_t n = read(fd, b, sizeof b);
        close(fd);
        if (n >= 4 && !memcmp(b, "GGUF", 4)) src = PL_SRC_GGUF;
        else if (ends_with(path, ".safetensors"))
            return pl_err_set(err, PL_EINVAL, "%s: give the model directory (config.json + safetensors), not a weights file",
                              path);
        else {
            if (n < 28)
                return pl_err_set(err, PL_EFORMAT, "%s: not a model: %zd bytes, no GGUF magic, too short for a llama2.c header",
                                  path, n);
            int32_t hd[7];
            memcpy(hd, b, sizeof hd);
            for (int i = 0; i < 7; i++)
                if (i != 5 && hd[i] <= 0)
                    return pl_err_set(err, PL_EFORMAT,
                                      "%s: not a model: no GGUF magic, and not a llama2.c checkpoint (header field %d is %d)",
                                      path, i, hd[i]);
            pl_model_config *c = &h->cfg;
            pl_model_llama2c_config(hd, c);
            pl_err e2 = {0};
            if (pl_model_check_config(c, "header", &e2))
                return pl_err_set(err, PL_EFORMAT, "%s: not a model: no GGUF magic, and as a llama2.c %s", path,
                                  e2.msg);
            /* the loader's size check: 28 + 4 * floats (weights, norms, RoPE tables) */
            int64_t D = c->dim, H = c->hidden, NL = c->n_layers, V = c->vocab, kvd = (int64_t)c->n_kv_heads * c->head_dim;
            int64_t nf = V * D + NL * D + NL * D * D + 2 * NL * D * kvd + NL * D * D + NL * D + 3 * NL * D * H + D +
                         (int64_t)c->max_seq * c->head_dim + (c->tied_embeddings ? 0 : V * D);
            if ((int64_t)st.st_size != 28 + 4 * nf)
                return pl_err_set(err, PL_EFORMAT, "%s: not a model: no GGUF magic, and %lld bytes is not the size of the "
                                  "llama2.c checkpoint its header describes (%lld)", path, (long long)st.st_size,
                                  (long long)(28 + 4 * nf));
            h->source = PL_SRC_LLAMA2C;
            h->layer_dtype = h->embd_dtype = h->head_dtype = PL_F32;
            return 0;
        }
    }
    pl_model *m = pl_model_new(path, src);
    if (!m) return pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    int rc;
    if (src == PL_SRC_HF) {
        rc = pl_model_hf_config(m, cfg_path, err);
        h->layer_dtype = h->embd_dtype = h->head_dtype = hf_dtype(cfg_path);
    } else {
        rc = pl_model_gguf_config(m, err);
        if (!rc) {
            h->layer_dtype = gguf_type(m, "blk.0.ffn_gate.weight", PL_F32);
            h->embd_dtype = gguf_type(m, "token_embd.weight", PL_F32);
            h->head_dtype = gguf_type(m, "output.weight", h->embd_dtype);
            m->cfg.tied_embeddings = pl_gguf_find_tensor(m->gguf, "output.weight") == NULL;
        }
    }
    h->cfg = m->cfg;
    h->source = src;
    pl_model_free(m);
    return rc;
}
