/* cmd_recipe.c: `potluck recipe check RECIPE.lua`: evaluate and validate a
 * recipe (sandboxed, in a child) without running anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../plugins/pipeline.h"
#include "cli.h"
#include "cmd_run.h"
#include "recipe_flags.h"

static const char *recipe_help =
    "usage: potluck recipe check RECIPE.lua [--size NAME] [--base PATH] [--allow-read PATH] [--json]\n"
    "\n"
    "Evaluates the recipe in the sandbox and validates it: every section and key,\n"
    "every pipeline step and its parameters against its plugin, the lora/train\n"
    "settings against the trainer's, and every scale entry. Prints the resolved\n"
    "plan (with --json, as JSON) and where the base model was found. Nothing is\n"
    "written. Exit status 0 when the recipe is valid and its base (and teacher)\n"
    "model can be found.\n"
    "\n"
    "  --json               the plan as JSON\n"
    "  --size NAME          check with the recipe's scale[NAME] overrides applied\n"
    "  --base PATH          base model, instead of the recipe's base (checked that it exists)\n"
    "  --teacher PATH       teacher model, instead of the recipe's teacher\n"
    "  --allow-read PATH    let the recipe read PATH too, as potluck run does (repeatable)\n"
    "The other options of potluck run are accepted so that a run's command line can be\n"
    "checked as it is, and change nothing here: --out, --backend, --from, --only, --to,\n"
    "--force, --threads, --quiet. The sandbox limits apply as in potluck run:\n";

static void print_plan(const cJSON *p, const char *base, const char *base_err) {
    printf("recipe:   %s\n", cJSON_GetStringValue(cJSON_GetObjectItem(p, "name")));
    const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(p, "description"));
    if (d) printf("about:    %s\n", d);
    const char *size = cJSON_GetStringValue(cJSON_GetObjectItem(p, "size"));
    if (size) printf("size:     %s\n", size);
    printf("seed:     %.0f\n", cJSON_GetNumberValue(cJSON_GetObjectItem(p, "seed")));
    const char *b = cJSON_GetStringValue(cJSON_GetObjectItem(p, "base"));
    printf("base:     %s -> %s\n", b ? b : "(none)", base ? base : base_err);
    const cJSON *it;
    printf("steps:\n");
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(p, "steps")) {
        char *params = cJSON_PrintUnformatted(cJSON_GetObjectItem(it, "params"));
        printf("  %-28s %.12s  %s\n", cJSON_GetStringValue(cJSON_GetObjectItem(it, "label")),
               cJSON_GetStringValue(cJSON_GetObjectItem(it, "hash")), params ? params : "");
        free(params);
    }
    printf("  then shard, train, eval, export\n");
    const char *secs[] = {"lora", "train", "eval", "export"};
    for (int i = 0; i < 4; i++) {
        char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(p, secs[i]));
        printf("%-9s %s\n", secs[i], s ? s : "{}");
        free(s);
    }
    printf("sizes:    ");
    int n = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(p, "sizes")) printf("%s%s", n++ ? ", " : "", cJSON_GetStringValue(it));
    printf("%s\n", n ? "" : "(no scale section)");
}

int cmd_recipe(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(recipe_help, argc < 2 ? stderr : stdout);
        fputs(pl_lua_limits_help(), argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "check")) return cli_fail("recipe: unknown subcommand '%s' (expected check)", argv[1]);
    pl_pipe_opts o = {0};
    pl_lua_limits_default(&o.limits);
    int json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(recipe_help, stdout); fputs(pl_lua_limits_help(), stdout); return 0; }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        int t = cli_recipe_flag(&o, argc, argv, &i);
        if (t < 0) return 1;
        if (t) continue;
        if (a[0] == '-') return cli_fail("recipe check: unknown option %s", a);
        if (o.recipe) return cli_fail("recipe check: one recipe only");
        o.recipe = a;
    }
    if (!o.recipe) return cli_fail("recipe check: expected a recipe file");
    o.quiet = 1;
    pl_err err = {0};
    cJSON *plan = NULL;
    if (pl_pipeline_plan(&o, &plan, &err)) return cli_fail_err(&err);
    const char *bname = o.base ? o.base : cJSON_GetStringValue(cJSON_GetObjectItem(plan, "base"));
    char *base = NULL;
    pl_err berr = {0};
    if (bname && *bname) pl_model_resolve(bname, o.base != NULL, &base, &berr);
    else pl_err_set(&berr, PL_EINVAL, "(no base model named: potluck run needs --base PATH)");
    /* a named base that cannot be found is a problem run would hit: say so here */
    if (bname && *bname && !base) {
        cJSON_Delete(plan);
        return cli_fail("recipe check: %s: %s%s", o.recipe, o.base ? "--base " : "base: ", berr.msg);
    }
    const char *tname = o.teacher ? o.teacher : cJSON_GetStringValue(cJSON_GetObjectItem(plan, "teacher"));
    if (tname && *tname) {
        char *teacher = NULL;
        pl_err terr = {0};
        if (pl_model_resolve(tname, o.teacher != NULL, &teacher, &terr)) {
            cJSON_Delete(plan);
            free(base);
            return cli_fail("recipe check: %s: %s%s", o.recipe, o.teacher ? "--teacher " : "teacher: ", terr.msg);
        }
        free(teacher);
    }
    if (json) {
        char *s = cJSON_Print(plan);
        if (s) puts(s);
        free(s);
    } else {
        print_plan(plan, base, berr.msg);
        printf("ok: %s is a valid recipe\n", o.recipe);
    }
    free(base);
    cJSON_Delete(plan);
    return 0;
}
