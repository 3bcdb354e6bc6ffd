/* cmd_run.c: `potluck run RECIPE.lua`: every stage of a recipe, cached. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dist.h"
#include "../core/units.h"
#include "../plugins/pipeline.h"
#include "cli.h"
#include "cmd_run.h"
#include "recipe_flags.h"

static const char *run_help =
    "usage: potluck run RECIPE.lua [--out RUN_DIR] [--base PATH] [--size NAME] [options]\n"
    "\n"
    "Runs a recipe (docs/recipes.md): its data pipeline (sources, maps, filters,\n"
    "generators, dedup, decontamination, split), then shard, train, eval, export.\n"
    "Each stage's output is cached under a hash of its definition and its inputs,\n"
    "so a second run redoes only what changed, and an interrupted run continues\n"
    "(training resumes from its last checkpoint). Recipe code runs sandboxed in a\n"
    "child process (docs/recipes.md, \"Sandbox\").\n"
    "\n"
    "  --out RUN_DIR        run directory (default runs/<recipe name>[-SIZE])\n"
    "  --base PATH          base model, instead of the recipe's base\n"
    "  --teacher PATH       teacher model for distillation, instead of the recipe's\n"
    "  --size NAME          apply the recipe's scale[NAME] overrides (e.g. 13b)\n"
    "  --backend cpu|cuda   where the train and eval stages run: cpu, or cuda (the GPU build, make gpu; or the\n"
    "                       emulated build, make emu, on the CPU); recipe generation stays on the cpu\n"
    "  --from STAGE         redo STAGE and everything after it\n"
    "  --only STAGE         redo only STAGE (the stages before it must be up to date)\n"
    "  --to STAGE           stop after STAGE (e.g. --to shard: build the data only)\n"
    "  --force              redo every stage\n"
    "  --dry-run            resolve the recipe (and --size), plan the training's memory, write\n"
    "                       plan.json and memory_plan.json into the run directory, run nothing\n"
    "  --gpu-mem SIZE       with --backend cuda: the card's memory the training may use (24GiB, 80GB;\n"
    "                       train.gpu_mem): the run's CUDA plan and the CUDA runtime's 512 MiB reserve\n"
    "                       must fit in it, and the backend refuses any allocation past SIZE less the\n"
    "                       reserve\n"
    "  --no-memory-check    train even when the memory plan says it does not fit this machine (with\n"
    "                       --backend cuda: the device's memory; a --gpu-mem cap still holds)\n"
    "                       (by default the run stops before its first stage, naming what to change)\n"
    "  --threads N          worker threads (training and generation)\n"
    "  --quiet              no stage lines, logs or progress lines\n"
    "  --allow-read PATH    let the recipe read PATH (a file or folder) too; by default it\n"
    "                       reads only its own folder (not dot-files or dot-folders) and\n"
    "                       the run directory (repeatable, up to 16)\n"
    "STAGE: a number, a label (03-filter.length), kind.name, a kind, or\n"
    "shard, train, eval, export.\n"
    "Models named by recipes are looked up in $POTLUCK_MODELS (':'-separated\n"
    "folders; default $POTLUCK_CACHE/models and ~/.cache/potluck/models).\n"
    "Stage lines go to stdout; logs and each long stage's progress (a redrawn line\n"
    "with rate and ETA on a terminal, plain lines every 10 s otherwise) to stderr;\n"
    "POTLUCK_PROGRESS=tty|plain|off chooses (docs/cli.md).\n"
    "Under mpirun -np N (or srun) the per-sample data stages and MinHash dedup are split\n"
    "over the ranks with the bytes one process writes, every rank trains its rows of each\n"
    "step, and rank 0 evaluates and exports (docs/distributed.md).\n";

int cmd_run(int argc, char **argv) {
    pl_pipe_opts o = {0};
    pl_lua_limits_default(&o.limits);
    /* main passes argv + 1: the program name is just before (see pipeline.h) */
    o.argv = argv - 1;
    o.argc = argc + 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(run_help, stdout);
            fputs(pl_lua_limits_help(), stdout);
            return 0;
        }
        if (!strcmp(a, "--dry-run")) { o.dry_run = 1; continue; }
        if (!strcmp(a, "--no-memory-check")) { o.no_memory_check = 1; continue; }
        if (!strcmp(a, "--gpu-mem")) {
            if (i + 1 >= argc) return cli_fail("run: --gpu-mem: expected a size (24GiB, 80GB, or bytes)");
            o.gpu_mem = argv[++i];
            continue;
        }
        int t = cli_recipe_flag(&o, argc, argv, &i);
        if (t < 0) return 1;
        if (t) continue;
        if (a[0] == '-') return cli_fail("run: unknown option %s (see potluck run --help)", a);
        if (o.recipe) return cli_fail("run: one recipe only ('%s' and '%s')", o.recipe, a);
        o.recipe = a;
    }
    if (!o.recipe) return cli_fail("run: expected a recipe file (potluck run RECIPE.lua; see --help)");
    if (o.from && o.only) return cli_fail("run: --from and --only together: choose one");
    if (o.gpu_mem) {
        double b = 0;
        const char *why = pl_parse_bytes(o.gpu_mem, &b);
        if (why) return cli_fail("run: --gpu-mem: %s: got \"%s\"", why, o.gpu_mem);
        if (!o.backend || strcmp(o.backend, "cuda"))
            return cli_fail("run: --gpu-mem caps the CUDA backend's memory: it needs --backend cuda");
    }
    pl_err err = {0};
    /* under mpirun the data stages are split over the ranks (docs/distributed.md) */
    if (pl_dist_init(&err)) {
        cli_fail_err(&err);
        if (pl_dist_size() > 1) pl_dist_abort(1);
        return 1;
    }
    int rc = pl_pipeline_run(&o, &err);
    if (rc && pl_dist_size() > 1) {
        /* one rank's failure ends every rank (the others may wait for it) */
        pl_err_prefix(&err, "rank %d of %d", pl_dist_rank(), pl_dist_size());
        cli_fail_err(&err);
        pl_dist_abort(rc == 130 || rc == 143 ? rc : 1);
    }
    if (rc) {
        cli_fail_err(&err);
        return rc == 130 || rc == 143 ? rc : 1;
    }
    return 0;
}
