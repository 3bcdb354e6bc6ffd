/* recipe_flags.h: the recipe flags shared by `potluck run` and `potluck
 * recipe check` (--out, --base, --size, --allow-read, the Lua limits, ...). */
#ifndef PL_CLI_RECIPE_FLAGS_H
#define PL_CLI_RECIPE_FLAGS_H

#include "../plugins/pipeline.h"

/* Returns 1 when argv[*i] was taken (and advances *i past its value), 0 when
 * it is not a recipe flag, -1 on error (printed). */
int cli_recipe_flag(pl_pipe_opts *o, int argc, char **argv, int *i);

#endif
