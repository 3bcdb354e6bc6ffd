/* cmd_export.c: `potluck export`: a fine-tune as a PEFT adapter, a merged
 * Hugging Face directory or a merged GGUF file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cmd_export.h"
#include "../trainer/export.h"

static const char *export_help =
    "usage: potluck export [RUN_DIR] --format peft|merged|gguf --out PATH [options]\n"
    "\n"
    "Exports a fine-tune. The adapter is RUN_DIR's newest complete checkpoint's\n"
    "(final/ first), or --adapter DIR (a PEFT adapter directory); the base model\n"
    "is RUN_DIR/config.json's \"model\", or --model PATH.\n"
    "\n"
    "  --format peft        adapter_config.json + adapter_model.safetensors (PEFT names)\n"
    "  --format merged      base with the adapter merged: a Hugging Face directory\n"
    "                       (config.json, model.safetensors, the base's tokenizer files)\n"
    "  --format gguf        base with the adapter merged: one GGUF file for llama.cpp\n"
    "  --out PATH           output directory (peft, merged) or file (gguf)\n"
    "  --adapter DIR        PEFT adapter directory (instead of RUN_DIR)\n"
    "  --model PATH         base model (Hugging Face directory or GGUF)\n"
    "  --base-name NAME     peft: the base's name in adapter_config.json (a Hugging Face\n"
    "                       id such as HuggingFaceTB/SmolLM2-135M-Instruct); default: the\n"
    "                       id the base records, else derived from its file or folder name.\n"
    "                       The local path and sha256 go to potluck_base.json\n"
    "  --dtype f32|bf16     merged: tensor type (default f32)\n"
    "  --shard-mb N         merged: shards of at most N MB (default: one file)\n"
    "  --type TYPE          gguf: llama.cpp's file type (default f16): f32, f16, bf16,\n"
    "                       q8_0, q6_k, q5_k_m, q5_k_s, q5_1, q5_0, q4_k_m, q4_k_s,\n"
    "                       q4_1, q4_0; each tensor gets the type llama.cpp's quantizer\n"
    "                       gives it (e.g. q4_k_m: Q6_K output and some attn_v and\n"
    "                       ffn_down), with the same bytes\n"
    "  --tokenizer-gguf F   gguf from a Hugging Face base: take the tokenizer metadata\n"
    "                       from GGUF file F (same vocabulary); default: converted\n"
    "                       from the base's tokenizer.json / vocab.json + merges.txt\n"
    "  --threads N          worker threads\n"
    "Without an adapter (only --model), merged and gguf convert the base as is.\n";

int cmd_export(int argc, char **argv) {
    const char *run = NULL, *fmt = NULL, *out = NULL, *adapter_opt = NULL, *model_opt = NULL, *tokg = NULL,
               *base_name = NULL;
    pl_dtype dt = PL_F32;
    pl_gguf_ftype gt = PL_FTYPE_F16;
    long shard_mb = 0, threads = 0;
    char *adapter = NULL, *model_path = NULL;
    pl_err err = {0};
    int status = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(export_help, stdout); return 0; }
        if (a[0] != '-') {
            if (run) return cli_fail("export: one RUN_DIR only ('%s' and '%s')", run, a);
            run = a;
            continue;
        }
        if (!strcmp(a, "--format") || !strcmp(a, "--out") || !strcmp(a, "--adapter") || !strcmp(a, "--model") ||
            !strcmp(a, "--dtype") || !strcmp(a, "--type") || !strcmp(a, "--tokenizer-gguf") || !strcmp(a, "--base-name") ||
            !strcmp(a, "--shard-mb") || !strcmp(a, "--threads")) {
            if (!v) return cli_fail("export: %s: expected a value", a);
            i++;
            if (!strcmp(a, "--format")) fmt = v;
            else if (!strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--adapter")) adapter_opt = v;
            else if (!strcmp(a, "--model")) model_opt = v;
            else if (!strcmp(a, "--tokenizer-gguf")) tokg = v;
            else if (!strcmp(a, "--base-name")) base_name = v;
            else if (!strcmp(a, "--shard-mb")) { if (cli_int(a, v, 1, 1 << 20, &shard_mb)) return 1; }
            else if (!strcmp(a, "--threads")) { if (cli_int(a, v, 1, 1024, &threads)) return 1; }
            else if (!strcmp(a, "--dtype")) {
                if (!strcmp(v, "f32")) dt = PL_F32;
                else if (!strcmp(v, "bf16")) dt = PL_BF16;
                else return cli_fail("export: --dtype: expected f32 or bf16, got '%s'", v);
            } else {
                if (pl_gguf_ftype_parse(v, &gt))
                    return cli_fail("export: --type: expected one of %s; got '%s'", pl_gguf_ftype_list(), v);
            }
            continue;
        }
        return cli_fail("export: unknown option '%s' (see potluck export --help)", a);
    }
    if (!fmt || (strcmp(fmt, "peft") && strcmp(fmt, "merged") && strcmp(fmt, "gguf")))
        return cli_fail("export: --format peft|merged|gguf is required (see potluck export --help)");
    if (!out) return cli_fail("export: --out PATH is required");
    struct stat ost;
    if (stat(out, &ost) == 0) {
        if (!strcmp(fmt, "gguf") && S_ISDIR(ost.st_mode))
            return cli_fail("export: --out %s is a folder, and --format gguf writes one file: give a file name "
                            "(e.g. --out %s/model.gguf)", out, out);
        if (strcmp(fmt, "gguf") && !S_ISDIR(ost.st_mode))
            return cli_fail("export: --out %s is a file, and --format %s writes a folder: give a folder name "
                            "(it is created)", out, fmt);
    }
    if (run && (!adapter_opt || !model_opt)) {
        char *ra = NULL, *rm = NULL;
        if (pl_run_adapter(run, &ra, &rm, &err)) return cli_fail_err(&err);
        adapter = adapter_opt ? strdup(adapter_opt) : ra;
        model_path = model_opt ? strdup(model_opt) : rm;
        if (adapter != ra) free(ra);
        if (model_path != rm) free(rm);
    } else {
        adapter = adapter_opt ? strdup(adapter_opt) : NULL;
        model_path = model_opt ? strdup(model_opt) : NULL;
    }
    if (!model_path) { status = cli_fail("export: no base model: give RUN_DIR or --model PATH"); goto done; }
    if (!adapter && !strcmp(fmt, "peft")) { status = cli_fail("export: --format peft needs RUN_DIR or --adapter DIR"); goto done; }
    cli_set_threads((int)threads);
    pl_export_job job = {.format = fmt, .out = out, .adapter = adapter, .model = model_path, .dtype = dt,
                         .max_shard_bytes = (size_t)shard_mb << 20, .gguf_ftype = gt, .tokenizer_gguf = tokg,
                         .base_name = base_name};
    char said[128];
    if (pl_export_job_run(&job, said, sizeof said, &err)) { status = cli_fail_err(&err); goto done; }
    printf("export: %s -> %s\n", said, out);
    status = 0;
done:
    free(adapter);
    free(model_path);
    return status;
}
