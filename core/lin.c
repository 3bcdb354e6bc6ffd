/* lin.c: names of the decoder's linear layers (Hugging Face's). */
#include "lin.h"

static const char *const lin_names[PL_LIN_N] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                "gate_proj", "up_proj", "down_proj", "lm_head"};
const char *pl_lin_name(pl_lin which) { return (int)which >= 0 && which < PL_LIN_N ? lin_names[which] : "?"; }
