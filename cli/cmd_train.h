/* cmd_train.h: `potluck train`. */
#ifndef PL_CMD_TRAIN_H
#define PL_CMD_TRAIN_H

int cmd_train(int argc, char **argv);

#endif
