/* cli.h: the potluck command line: one cmd_<verb> per command, and the
 * small helpers they share (messages, option values, threads). A model's
 * tokenizer is pl_model_tokenizer (trainer/model.h). */
#ifndef PL_CLI_H
#define PL_CLI_H

#include "../core/error.h"
#include "../datasets/tokenizer.h"
#include "../trainer/model.h"

#define PL_VERSION "0.1.0"

int cmd_generate(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_bench_gen(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* Print "potluck: <msg>" on stderr; returns the exit status 1. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_fail_err(const pl_err *err);

/* Option value parsing with messages naming the option. */
int cli_int(const char *opt, const char *s, long min, long max, long *out);
/* --gemm tiled|openblas (benchmarks): pl_gemm_set_openblas_threaded. */
int cli_gemm_mode(const char *opt, const char *s);
int cli_float(const char *opt, const char *s, double min, double max, double *out);

/* A model argument as recipes name models: an existing file or folder as
 * is, else a name looked up in the model folders ($POTLUCK_MODELS, as
 * `potluck run` does: "SmolLM2-135M-Instruct" finds
 * SmolLM2-135M-Instruct*.gguf or a folder of that name). malloc'd into *out. */
int cli_model_path(const char *arg, char **out, pl_err *err);

/* Set OpenMP (and OpenBLAS, which shares OpenMP's pool) thread counts. */
void cli_set_threads(int n);

#endif
