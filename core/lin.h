/* lin.h: the linear layers of a Llama-family decoder layer (and the LM
 * head), by which the LoRA adapters (lora/) and the trainer (trainer/) name
 * the weights they work on. */
#ifndef PL_LIN_H
#define PL_LIN_H

/* The linear layers of a decoder layer, and the LM head (layer -1). */
typedef enum pl_lin {
    PL_LIN_Q = 0, PL_LIN_K, PL_LIN_V, PL_LIN_O, PL_LIN_GATE, PL_LIN_UP, PL_LIN_DOWN, PL_LIN_HEAD, PL_LIN_N
} pl_lin;

const char *pl_lin_name(pl_lin which); /* "q_proj", ..., "lm_head" */

#endif
