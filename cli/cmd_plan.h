/* cmd_plan.h: `potluck plan`. */
#ifndef PL_CMD_PLAN_H
#define PL_CMD_PLAN_H

int cmd_plan(int argc, char **argv);

#endif
