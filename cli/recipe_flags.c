/* recipe_flags.c: the flags `potluck run` and `potluck recipe check` share
 * (recipe_flags.h). */
#include <string.h>

#include "cli.h"
#include "recipe_flags.h"

int cli_recipe_flag(pl_pipe_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    int used = 0;
    pl_err err = {0};
    if (pl_lua_limits_flag(&o->limits, argc - *i, argv + *i, &used, &err)) return cli_fail_err(&err), -1;
    if (used) { *i += used - 1; return 1; }
    static const char *const valued[] = {"--out", "--base", "--teacher", "--size", "--backend", "--from", "--only", "--to", "--threads",
                                         "--allow-read"};
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
        if (strcmp(a, valued[k])) continue;
        if (*i + 1 >= argc) { cli_fail("%s: expected a value", a); return -1; }
        const char *v = argv[++*i];
        if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--base")) o->base = v;
        else if (!strcmp(a, "--teacher")) o->teacher = v;
        else if (!strcmp(a, "--size")) o->size = v;
        else if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--from")) o->from = v;
        else if (!strcmp(a, "--only")) o->only = v;
        else if (!strcmp(a, "--to")) o->to = v;
        else if (!strcmp(a, "--allow-read")) {
            if (o->n_allow_read >= PL_SANDBOX_MAX_ALLOW) { cli_fail("--allow-read: at most %d paths", PL_SANDBOX_MAX_ALLOW); return -1; }
            o->allow_read[o->n_allow_read++] = v;
        } else {
            long t;
            if (cli_int(a, v, 1, 1024, &t)) return -1;
            o->threads = (int)t;
        }
        return 1;
    }
    if (!strcmp(a, "--force")) { o->force = 1; return 1; }
    if (!strcmp(a, "--quiet")) { o->quiet = 1; return 1; }
    return 0;
}
