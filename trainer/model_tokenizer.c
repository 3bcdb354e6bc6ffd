/* model_tokenizer.c: the tokenizer that goes with a model: one named by the
 * user, or the model's own (a GGUF's vocabulary, a Hugging Face directory's
 * tokenizer.json, a llama2.c model's tokenizer.bin beside it, a random:
 * model's tokenizer.json beside its shape's config.json). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../datasets/tokenizer.h"
#include "model.h"

int pl_model_tokenizer(const pl_model *m, const char *tok_path, pl_tokenizer **out, pl_err *err) {
    *out = NULL;
    if (!tok_path && m->source == PL_SRC_GGUF) return pl_tokenizer_from_gguf(out, m->gguf, err);
    char guess[4096];
    if (!tok_path && m->source == PL_SRC_LLAMA2C) {
        const char *slash = strrchr(m->path, '/');
        int dirlen = slash ? (int)(slash - m->path) : 1;
        snprintf(guess, sizeof guess, "%.*s/tokenizer.bin", dirlen, slash ? m->path : ".");
        if (access(guess, R_OK) != 0)
            return pl_err_set(err, PL_ENOTFOUND,
                              "%s: a llama2.c checkpoint needs its tokenizer: pass --tokenizer PATH (no %s)",
                              m->path, guess);
        tok_path = guess;
    }
    if (!tok_path && m->source == PL_SRC_HF) return pl_tokenizer_load(out, m->path, err);
    if (!tok_path && m->source == PL_SRC_RANDOM) {
        if (pl_model_random_tokenizer_dir(m->path, guess, sizeof guess)) return pl_tokenizer_open(out, guess, m->cfg.vocab, err);
        return pl_err_set(err, PL_ENOTFOUND, "%s: a random model has no tokenizer: pass --tokenizer PATH (one with at most "
                          "%d tokens), put a tokenizer.json beside the shape's config.json, or train on a pre-tokenized "
                          "dataset", m->path, m->cfg.vocab);
    }

    return pl_tokenizer_open(out, tok_path, m->cfg.vocab, err);
}
