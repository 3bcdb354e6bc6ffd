/* export.h: writing a (merged) model in the formats others load: a Hugging
 * Face directory (config.json + safetensors + tokenizer files) that
 * transformers loads, and a GGUF file (llama.cpp's file types F32, F16, BF16,
 * Q8_0, Q6_K, Q5_K_M/S, Q5_1, Q5_0, Q4_K_M/S, Q4_1, Q4_0; tokenizer and chat
 * template metadata) that llama.cpp loads.
 *
 * The usual sequence for a fine-tune: pl_model_load (any format),
 * pl_export_writable (own fp32 copies of the linear layers),
 * pl_lora_merge (model_lora.h), then pl_export_hf and/or pl_export_gguf.
 * GGUF export of arch llama (and Mistral, written as llama) re-applies
 * llama.cpp's interleaved Q/K row order; qwen2 is written as is
 * (docs/model-formats.md). */
#ifndef PL_EXPORT_H
#define PL_EXPORT_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "../core/dtype.h"
#include "../core/error.h"
#include "../core/gguf.h"
#include "../core/gguf_ftype.h"
#include "model.h"

/* Give every layer's linear weights (q,k,v,o,gate,up,down) an owned,
 * writable fp32 copy, so a LoRA can be merged into them (weights of a plain
 * pl_model_load may point into a read-only file map). Embeddings and the LM
 * head are left as they are. */
int pl_export_writable(pl_model *m, pl_err *err);

typedef struct pl_export_hf_opts {
    pl_dtype dtype;          /* PL_F32 (= 0, the default) or PL_BF16 for the matrices; norms and biases too */
    size_t max_shard_bytes;  /* 0: one model.safetensors; else shards + index */
    const char *note;        /* a line for README.txt (e.g. the adapter merged), or NULL */
} pl_export_hf_opts;

/* Write m as a Hugging Face directory dir (created if missing):
 * config.json (architectures, sizes, rope incl. llama3 scaling,
 * tie_word_embeddings, bos/eos), model.safetensors (or shards + index), the
 * base's tokenizer files (tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, generation_config.json, ... when the base is a
 * Hugging Face directory) and README.txt saying where the weights and the
 * tokenizer come from. A GGUF base whose rope frequencies have per-dimension
 * factors that are not llama3 scaling is refused (config.json cannot say it). */
int pl_export_hf(const pl_model *m, const char *dir, const pl_export_hf_opts *o, pl_err *err);
/* config.json for a model of config c with tensors of type dt (F32 or BF16):
 * what transformers writes for Llama, Mistral and Qwen2. */
cJSON *pl_export_hf_config(const pl_model_config *c, pl_dtype dt);

typedef struct pl_export_gguf_opts {
    pl_gguf_ftype ftype;     /* llama.cpp's file type (NULL opts: F16): each matrix's type is
                              * the one llama.cpp's quantizer picks for it (core/gguf_ftype.h),
                              * with the same bytes (core/quantize.c) */
    const pl_gguf *tok_src;  /* copy tokenizer.* keys (all tokenizer.ggml.* and
                              * tokenizer.chat_template) from here; NULL: the model's own
                              * GGUF when it was loaded from one */
    const char *name;        /* general.name, or NULL */
} pl_export_gguf_opts;

/* Write m as a GGUF v3 file at path (atomically), with llama.cpp's tensor
 * names and metadata keys. Fails with PL_EUNSUPPORTED when there is no
 * tokenizer source (a Hugging Face base without opts->tok_src). */
int pl_export_gguf(const pl_model *m, const char *path, const pl_export_gguf_opts *o, pl_err *err);

/* The adapter directory of a run (export_run.c): RUN_DIR/final/adapter when
 * final/ is a complete checkpoint, else the newest complete RUN_DIR/
 * checkpoints/step-N/adapter, else RUN_DIR/adapter (written by `potluck
 * import --out`); and the base model named by RUN_DIR/config.json
 * ("model"). Both malloc'd. */
int pl_run_adapter(const char *run_dir, char **adapter, char **model, pl_err *err);

/* One export of a fine-tune (export_run.c): load model, load the PEFT
 * adapter (when set), then write format "peft" (the adapter with PEFT
 * names; needs an adapter), "merged" (a Hugging Face directory) or "gguf"
 * (one GGUF file), merging the adapter into the base first. said (said_cap
 * bytes) gets what was written, e.g. "merged model (GGUF f16)". */
typedef struct pl_export_job {
    const char *format;          /* "peft", "merged" or "gguf" */
    const char *out;             /* directory (peft, merged) or file (gguf) */
    const char *adapter;         /* PEFT adapter directory, or NULL: the base as is */
    const char *model;           /* base model */
    pl_dtype dtype;              /* merged: PL_F32 or PL_BF16 */
    size_t max_shard_bytes;      /* merged: 0 = one file */
    pl_gguf_ftype gguf_ftype;    /* gguf: file type (PL_FTYPE_F32 = 0 is F32; set it) */
    const char *tokenizer_gguf;  /* gguf: tokenizer metadata from this GGUF file, or NULL */
    const char *base_name;       /* peft: base_model_name_or_path; NULL: pl_export_base_name */
} pl_export_job;
int pl_export_job_run(const pl_export_job *j, char *said, size_t said_cap, pl_err *err);

/* The name a peer resolves the base by (export_base.c): given when set,
 * else the Hugging Face id the GGUF metadata or config.json records, else
 * "general.organization/<file name without .gguf and quant tag>" for a GGUF,
 * the folder's name for a model folder. malloc'd (NULL: out of memory). */
char *pl_export_base_name(const pl_model *m, const char *given);
/* DIR/potluck_base.json: that name, the base's local path, format and the
 * sha256 of its files (the GGUF; a folder's config, tokenizer, safetensors). */
int pl_export_base_record(const pl_model *m, const char *name, const char *dir, pl_err *err);

#endif
