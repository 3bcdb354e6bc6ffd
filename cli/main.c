/* main.c: potluck's entry point: dispatches to the command handlers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_bench_dedup.h"
#include "cmd_bundle.h"
#include "cmd_bench_train.h"
#include "cmd_data.h"
#include "cmd_export.h"
#include "cmd_plan.h"
#include "cmd_run.h"
#include "cmd_template.h"
#include "cmd_tokenize.h"
#include "cmd_train.h"

static void usage(FILE *f) {
    fprintf(f,
            "potluck %s: a fine-tuning and dataset workbench\n"
            "\n"
            "usage: potluck <command> [options]\n"
            "\n"
            "commands:\n"
            "  generate    generate text with a model (greedy or sampled, batched prompts)\n"
            "  model info  describe a model: architecture, shapes, parameters, dtypes, tokenizer, chat template\n"
            "  tokenize    text <-> token ids (--model PATH [--lines] [--no-special] [--no-parse-special] [--decode])\n"
            "  data        build, verify, inspect, split, merge, export sharded HDF5 datasets; bench the loader\n"
            "  train       fine-tune: QLoRA on an NF4 base (or full with --lora-r 0); checkpoints, --resume\n"
            "  plan        memory a training run or a generation needs, per category, before it runs\n"
            "  export      export a fine-tune: PEFT adapter, merged HF directory, GGUF (F16, Q8_0)\n"
            "  eval        evaluate models side by side: multiple choice (lm-eval and llama.cpp scoring),\n"
            "              held-out loss and perplexity; results.json; --compare\n"
            "  report      one self-contained HTML page for a run: curves, eval table, recipe, card\n"
            "  import      check a PEFT adapter against a model (--peft DIR --model PATH [--out RUN_DIR])\n"
            "  template    show a dataset rendered through a chat template, trained spans marked\n"
            "  run         run a Lua recipe: data pipeline, shard, train, eval, export (cached stages)\n"
            "  recipe check  validate a recipe without running it\n"
            "  plugins     list the recipe plugins (sources, filters, generators) or show one\n"
            "  pack        pack a run directory into one verifiable bundle (NAME.potluck; --sign KEY)\n"
            "  verify      check a bundle or an unpacked one against its lock (and signature, --key PUB)\n"
            "  unpack      verify, then extract a bundle safely into a new folder\n"
            "  inspect     show a bundle's card, lock, files and signer without extracting\n"
            "  keygen      make an EC P-256 key pair for signing bundles\n"
            "  reproduce   rerun a bundle on the same base and compare byte for byte\n"
            "  bench-gen   measure prompt processing and generation speed (used by make bench)\n"
            "  bench-train measure training-step speed (forward+backward+AdamW, fp32) (used by make bench)\n"
            "  bench-dedup MinHash+LSH near-dedup throughput on a JSONL file (used by make bench)\n"
            "  help        this text\n"
            "  version     print the version\n"
            "\n"
            "Models: a Hugging Face directory (config.json + safetensors), a GGUF file,\n"
            "or a llama2.c checkpoint (.bin). `potluck <command> --help` for options.\n",
            PL_VERSION);
}

/* OpenMP's waiting threads spin for a long while by default (libgomp), which
 * is fastest on an idle machine but collapses when other processes share the
 * cores: a spinning thread burns whole time slices waiting for a descheduled
 * one (measured on 2 cores under load: 1 token/s instead of ~50). A short
 * spin keeps the idle speed and degrades gracefully. libgomp reads its
 * environment when it loads, before main, so the setting needs a re-exec;
 * OMP_WAIT_POLICY or GOMP_SPINCOUNT set by the user are left alone. */
static void tune_openmp_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", "20000", 1) != 0) return;
    execv("/proc/self/exe", argv); /* returns only on failure: run as is */
}

int main(int argc, char **argv) {
    tune_openmp_wait(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("potluck %s\n", PL_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "model")) return cmd_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench-gen")) return cmd_bench_gen(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "data")) return cmd_data(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "plan")) return cmd_plan(argc - 1, argv + 1);
    if (!strcmp(cmd, "export")) return cmd_export(argc - 1, argv + 1);
    if (!strcmp(cmd, "import")) return cmd_import(argc - 1, argv + 1);
    if (!strcmp(cmd, "template")) return cmd_template(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench-train")) return cmd_bench_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench-dedup")) return cmd_bench_dedup(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "recipe")) return cmd_recipe(argc - 1, argv + 1);
    if (!strcmp(cmd, "plugins")) return cmd_plugins(argc - 1, argv + 1);
    if (!strcmp(cmd, "pack")) return cmd_pack(argc - 1, argv + 1);
    if (!strcmp(cmd, "verify")) return cmd_verify(argc - 1, argv + 1);
    if (!strcmp(cmd, "unpack")) return cmd_unpack(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "keygen")) return cmd_keygen(argc - 1, argv + 1);
    if (!strcmp(cmd, "reproduce")) return cmd_reproduce(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    fprintf(stderr, "potluck: unknown command '%s' (try `potluck help`)\n", cmd);
    return 2;
}
