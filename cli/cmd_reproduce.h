/* cmd_reproduce.h: what the two halves of `potluck reproduce` share:
 * cmd_reproduce.c (verify, unpack, the base check, the same-size rerun and
 * its byte-for-byte table) and cmd_reproduce_size.c (another base: the
 * tokenizer and chat-template check, the plan at the new size, the run and
 * the side-by-side table). */
#ifndef PL_CMD_REPRODUCE_H
#define PL_CMD_REPRODUCE_H

#include <cjson/cJSON.h>

typedef struct repro_ctx {
    const char *out;      /* DIR */
    const char *ub;       /* DIR/bundle: the unpacked bundle */
    const char *rd;       /* DIR/run: the rerun */
    const char *base;     /* the base model to run on */
    const char *size;     /* --size, or NULL */
    const char *rname;    /* the recipe's name inside the bundle ("recipe/x.lua") */
    int threads;          /* the original's thread count (0: not recorded) */
    const cJSON *lock;    /* potluck.lock.json */
    const cJSON *plan;    /* the original's plan.json */
} repro_ctx;

/* A resolved dependency of the lock by name ("base/weights", "data/train/..."). */
const cJSON *repro_find_dep(const cJSON *lock, const char *name);
/* The lock's predicate.buildDefinition.internalParameters. */
const cJSON *repro_internal(const cJSON *lock);
/* sha256 of a file as hex; "" and -1 when it cannot be read. */
int repro_file_hex(const char *p, char hex[65]);
/* Run `potluck run RECIPE --base B --out RD [--size S] [--threads N]` in a
 * child; 0 when it succeeded, else a message was printed. */
int repro_run_child(const repro_ctx *x, const char *size);
/* Reproduce at another size (cmd_reproduce_size.c); the exit status. */
int repro_other_size(const repro_ctx *x);

#endif
