/* tokenizer_hf_write.h: a GGUF byte-level BPE tokenizer as Hugging Face
 * tokenizer files (tokenizer.json, tokenizer_config.json with the chat
 * template and special tokens, special_tokens_map.json). */
#ifndef PL_TOKENIZER_HF_WRITE_H
#define PL_TOKENIZER_HF_WRITE_H

#include <stdint.h>

#include "../core/error.h"
#include "../core/gguf.h"

/* Write the tokenizer of GGUF g into dir (which exists). max_len > 0 is
 * recorded as model_max_length. PL_EUNSUPPORTED for vocabularies other than
 * gpt2-style BPE with a known tokenizer.ggml.pre (nothing written then). */
int pl_tokenizer_gguf_write_hf(const pl_gguf *g, const char *dir, int64_t max_len, pl_err *err);

#endif
