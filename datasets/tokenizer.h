/* tokenizer.h: text <-> token ids for the vocabularies models ship with.
 *
 * Sources: a llama2.c tokenizer .bin (SentencePiece-style BPE by piece
 * scores with byte fallback); GGUF vocabularies of tokenizer.ggml.model
 * "llama" (same algorithm, pieces with U+2581), "gpt2" (byte-level BPE by
 * merge rank after the regex pre-split of tokenizer.ggml.pre) and "bert"
 * (WordPiece); a Hugging Face tokenizer.json (BPE or WordPiece, with its
 * normalizers, pre-tokenizers and added tokens, matching `tokenizers`); a
 * GPT-2 vocab.json + merges.txt. Special and control tokens are matched in
 * the text only when parse_special is set; user-defined / non-special added
 * tokens always. */
#ifndef PL_TOKENIZER_H
#define PL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "../core/error.h"
#include "../core/gguf.h"

typedef struct pl_tokenizer pl_tokenizer;

/* SPM: SentencePiece-style pieces (U+2581 for spaces, <0xNN> byte fallback);
 * BPE: byte-level BPE (GPT-2 characters); WPM: WordPiece (BERT). */
typedef enum pl_tok_kind { PL_TOK_SPM = 0, PL_TOK_BPE = 1, PL_TOK_WPM = 2 } pl_tok_kind;

/* Any supported tokenizer by path: a tokenizer.json, a folder holding one
 * (its tokenizer_config.json supplies the chat template, BOS/EOS and
 * add_bos_token), a GPT-2 style folder with vocab.json + merges.txt, a GGUF
 * file, or a llama2.c tokenizer .bin (its vocabulary size is what the file
 * holds). */
int pl_tokenizer_load(pl_tokenizer **out, const char *path, pl_err *err);

/* A tokenizer file named by the user for a model of vocab_size tokens: a
 * GGUF file (its tokenizer.ggml.* keys), a tokenizer.json or the folder
 * holding it (as pl_tokenizer_load), else a llama2.c tokenizer .bin read for
 * vocab_size tokens. */
int pl_tokenizer_open(pl_tokenizer **out, const char *path, int vocab_size, pl_err *err);

/* llama2.c tokenizer.bin for a model with vocab_size tokens. */
int pl_tokenizer_load_llama2c(pl_tokenizer **out, const char *path, int vocab_size, pl_err *err);
/* From GGUF metadata (tokenizer.ggml.*). */
int pl_tokenizer_from_gguf(pl_tokenizer **out, const pl_gguf *g, pl_err *err);
void pl_tokenizer_free(pl_tokenizer *t);

pl_tok_kind pl_tokenizer_kind(const pl_tokenizer *t);
int pl_tokenizer_vocab(const pl_tokenizer *t);
int pl_tokenizer_bos(const pl_tokenizer *t);   /* -1 if none */
int pl_tokenizer_eos(const pl_tokenizer *t);   /* -1 if none */
int pl_tokenizer_add_bos(const pl_tokenizer *t); /* does the model expect a BOS? */
/* Chat template text from the GGUF (tokenizer.chat_template) or NULL. */
const char *pl_tokenizer_chat_template(const pl_tokenizer *t);
/* Id of a token whose piece is exactly s (e.g. "<|im_start|>"), or -1. */
int pl_tokenizer_find(const pl_tokenizer *t, const char *s);
/* Raw piece of id as stored in the vocabulary, NULL when out of range. */
const char *pl_tokenizer_piece(const pl_tokenizer *t, int id);
/* Most bytes pl_tokenizer_decode can write for one token (a buffer of this
 * size never truncates). */
int pl_tokenizer_max_piece_bytes(const pl_tokenizer *t);
/* GGUF "gpt2" vocabularies: tokenizer.ggml.pre ("" for other kinds); *known
 * (may be NULL) is 0 when that pre-tokenizer is not implemented and GPT-2's
 * pattern is used instead. */
const char *pl_tokenizer_pre(const pl_tokenizer *t, int *known);

/* Encode len bytes of text. *ids is malloc'd. add_bos prepends BOS (when the
 * vocabulary has one). parse_special: control/user-defined token strings in
 * the text become their ids instead of being tokenized as text.
 * (As in llama.cpp and Hugging Face, GGUF user-defined tokens (type 4, e.g.
 * mpt's whitespace runs) are matched even without parse_special; control and
 * unknown tokens only with it. A llama2.c vocabulary has no special strings:
 * parse_special is ignored there, as run.c does.) */
int pl_tokenizer_encode(const pl_tokenizer *t, const char *text, size_t len, int add_bos,
                        int parse_special, int32_t **ids, int *n_ids, pl_err *err);

/* As pl_tokenizer_encode, and offs[i] (malloc'd, n_ids entries) is the byte
 * offset in text where the text of token i begins; a token the tokenizer
 * inserts (BOS, a SentencePiece dummy-prefix space) gets the offset of the
 * text that follows it. Used to turn character spans (an assistant turn)
 * into token masks exactly. */
int pl_tokenizer_encode_offsets(const pl_tokenizer *t, const char *text, size_t len, int add_bos,
                                int parse_special, int32_t **ids, int32_t **offs, int *n_ids,
                                pl_err *err);

/* Bytes of token id as it reads in running text, given the previous token
 * (SentencePiece drops the leading space of the first piece after BOS, as
 * llama2.c's run does; byte tokens <0xNN> give that byte). Writes at most
 * cap bytes to buf and returns the number of bytes (may be 0); control tokens
 * (BOS/EOS) give 0 bytes unless render_special is set. prev < 0 means the
 * start of the text and counts as BOS.
 * llama2.c vocabularies follow run.c's decode() + safe_printf() byte for
 * byte: a result that is a single byte which is neither printable ASCII nor
 * ASCII whitespace gives 0 bytes (so byte-fallback pieces of a multi-byte
 * character print nothing, exactly as llama2.c prints). */
int pl_tokenizer_decode(const pl_tokenizer *t, int prev, int id, int render_special,
                        char *buf, size_t cap);

/* A tokenizer's identity by behaviour (tokenizer_fingerprint.c): the sha256
 * of every id's bytes and the ids of a fixed set of probe texts, the same
 * for the same vocabulary read from a GGUF or a tokenizer.json. */
int pl_tokenizer_fingerprint(const pl_tokenizer *t, char hex[65], pl_err *err);

#endif
