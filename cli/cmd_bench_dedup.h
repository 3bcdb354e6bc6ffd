/* cmd_bench_dedup.h: `potluck bench-dedup`: MinHash + LSH near-dedup throughput (bench/dedup.sh). */
#ifndef PL_CMD_BENCH_DEDUP_H
#define PL_CMD_BENCH_DEDUP_H

int cmd_bench_dedup(int argc, char **argv);

#endif
