/* cmd_bench_train.h: `potluck bench-train` (training-step speed on the CPU backend). */
#ifndef PL_CMD_BENCH_TRAIN_H
#define PL_CMD_BENCH_TRAIN_H

int cmd_bench_train(int argc, char **argv);

#endif
