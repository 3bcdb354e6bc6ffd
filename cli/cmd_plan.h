/* cmd_plan.h: `potluck plan`. */
#ifndef PL_CMD_PLAN_H
#define PL_CMD_PLAN_H

int cmd_plan(int argc, char **argv);
/* `potluck plan RECIPE.lua --sizes ...` (cmd_plan_recipe.c): cmd_plan hands
 * over when its first argument is a .lua file. */
int cmd_plan_recipe(int argc, char **argv);

#endif
