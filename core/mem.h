/* mem.h: allocation categories (docs/memory.md lists them; the planner uses
 * the same), and a tagged allocator that a layer below the backends can be
 * handed (a backend's alloc and free: trainer/backend.h). */
#ifndef PL_MEM_H
#define PL_MEM_H

#include <stddef.h>

typedef enum pl_mem_cat {
    PL_MEM_WEIGHTS = 0,
    PL_MEM_ACTIVATIONS,
    PL_MEM_GRADIENTS,
    PL_MEM_OPTIMIZER,
    PL_MEM_WORKSPACE,
    PL_MEM_KVCACHE,
    PL_MEM_NCAT
} pl_mem_cat;

/* Zeroed allocations tagged with a category, and their release. */
typedef struct pl_allocator {
    void *(*alloc)(size_t bytes, pl_mem_cat cat);
    void (*free)(void *p);
} pl_allocator;

#endif
