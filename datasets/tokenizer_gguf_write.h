/* tokenizer_gguf_write.h: a loaded tokenizer as GGUF tokenizer metadata (tokenizer.ggml.*), as llama.cpp reads it.
 *
 * Supported: byte-level BPE (tokenizer.json or vocab.json + merges.txt, written
 * as tokenizer.ggml.model "gpt2" with the tokenizer.ggml.pre name whose
 * regexes are exactly the tokenizer's pre-tokenizer regexes), SentencePiece-
 * style BPE from a tokenizer.json (Prepend/Replace U+2581 normalizers or a
 * Metaspace pre-tokenizer, written as "llama" with scores -rank of the merge
 * that forms each piece), and vocabularies read from GGUF (written back as
 * read). Anything GGUF cannot express (other normalizers, a pre-tokenizer
 * with no llama.cpp name, WordPiece) is an error naming it, never a guess.
 * Added tokens' lstrip/rstrip/single_word flags have no GGUF key and are
 * dropped (as llama.cpp's converter does): text where such a token meets
 * whitespace can tokenize differently from the GGUF. */
#ifndef PL_TOKENIZER_GGUF_WRITE_H
#define PL_TOKENIZER_GGUF_WRITE_H

#include "../core/error.h"
#include "../core/gguf_write.h"
#include "tokenizer.h"

/* Set tokenizer.ggml.{model, pre, tokens, token_type, scores, merges,
 * bos/eos/unknown/padding_token_id, add_bos_token, add_space_prefix} and
 * tokenizer.chat_template (when t has one) in w. n_vocab: the model's
 * token rows (0: the tokenizer's size); when larger than the tokenizer, the
 * extra ids are written as llama.cpp's converter pads them ("[PAD<id>]",
 * type unused); smaller is an error. what names the tokenizer in error
 * messages. */
int pl_tokenizer_to_gguf(const pl_tokenizer *t, pl_gguf_writer *w, int n_vocab, const char *what, pl_err *err);

#endif
