/* cmd_data.h: `potluck data` (build, inspect, verify, split, merge, export, bench). */
#ifndef PL_CMD_DATA_H
#define PL_CMD_DATA_H

int cmd_data(int argc, char **argv);

#endif
