/* bind_model.h: the Lua binding of a local model: the handle behind
 * ctx.model(), ctx.load_model(name) and ctx.tokenizer() (docs/plugins.md,
 * "Model handles").
 *
 * A handle is a full userdata with a C-made, locked metatable (__index =
 * the method table, __metatable = "locked", __gc frees the model in C). The
 * model and its tokenizer are loaded lazily, on the first method call that
 * needs them, with pl_model_load (Hugging Face directory, GGUF file or
 * llama2.c checkpoint) and the tokenizer of the same file (as `potluck
 * generate` loads them); a load failure is remembered and raised again by
 * every later call.
 *
 * Methods (errors are Lua errors with one line):
 *   m:generate(prompts, opts) -> list of strings
 *   m:perplexity(texts)       -> list of numbers
 *   m:count_tokens(text)      -> integer    (also m:count(text))
 *   m:encode(text)            -> list of token ids
 *   m:decode(ids)             -> string
 *   m:name()                  -> the display name given to pl_lua_model_push
 * The handle doubles as the tokenizer object of ctx.tokenizer(). */
#ifndef PL_BIND_MODEL_H
#define PL_BIND_MODEL_H

#include <lua.h>
#include "../core/error.h"

/* Push a new (not yet loaded) model handle. path: the model; display_name:
 * what m:name() returns and error messages say (NULL: path). Returns 0, or
 * PL_EINVAL / PL_ENOMEM with err filled and nothing pushed. Like any push it
 * may raise a Lua memory error when the state's allocator refuses. */
int pl_lua_model_push(lua_State *L, const char *path, const char *display_name, pl_err *err);
/* As pl_lua_model_push, with a PEFT adapter (or run directory) merged into
 * the model when it loads (trainer/eval.h pl_eval_apply_adapter). */
int pl_lua_model_push_adapter(lua_State *L, const char *path, const char *adapter, const char *display_name, pl_err *err);

/* Load the handle at stack index idx now (eager loading; also what every
 * method does first). Returns 0 or the load error (remembered). */
int pl_lua_model_load(lua_State *L, int idx, pl_err *err);

/* Split every m:generate of this process over size ranks (a recipe child of
 * `potluck run` under mpirun, running a stage registered with shard =
 * "calls"; docs/distributed.md): this rank generates its contiguous part of
 * the prompts (pl_dist_shard_lo; prompt i still samples from RNG stream
 * stream0 + i), and the parts come back in order from every rank through
 * the parent process (pl_child_call), so every rank gets the whole list one
 * process makes. A request also carries a SHA-256 of the call (every
 * prompt's tokens and the options), so the parent can check that the ranks
 * made the same call. size 1: no split (the default). */
void pl_lua_model_split_calls(int rank, int size);
/* What a split call's request starts with (the parent reads it): kind
 * (PL_CALLS_REQUEST, or PL_CALLS_END from the parent itself when the stage
 * has ended) as a u32, then the call's 32-byte hash. */
enum { PL_CALLS_REQUEST = 1, PL_CALLS_END = 2, PL_CALLS_HEADER = 4 + 32 };

/* The seed m:generate uses when opts.seed is absent: the host sets it to
 * ctx.seed before each stage (kept in the registry; 0 until set). */
void pl_lua_model_set_default_seed(lua_State *L, lua_Integer seed);

#endif
