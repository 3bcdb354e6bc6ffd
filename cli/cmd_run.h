/* cmd_run.h: the recipe commands: `potluck run`, `potluck recipe check`,
 * `potluck plugins list|show`. */
#ifndef PL_CMD_RUN_H
#define PL_CMD_RUN_H

int cmd_run(int argc, char **argv);
int cmd_recipe(int argc, char **argv);
int cmd_plugins(int argc, char **argv);

#endif
