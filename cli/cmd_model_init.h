/* cmd_model_init.h: `potluck model init` (argv[1] is "init"). */
#ifndef PL_CMD_MODEL_INIT_H
#define PL_CMD_MODEL_INIT_H
int cmd_model_init(int argc, char **argv);
#endif
