/* model_lora.h: LoRA adapters (lora/lora.h) on a pl_model: their shapes are
 * the model's q,k,v,o,gate,up,down weights and its backend allocates them. */
#ifndef PL_MODEL_LORA_H
#define PL_MODEL_LORA_H

#include "../core/error.h"
#include "../lora/lora.h"
#include "model.h"

/* Fresh adapters for m (PEFT's initialization: lora/lora.h). */
int pl_lora_init(pl_lora **out, const pl_model *m, const pl_lora_cfg *cfg, pl_err *err);

/* A PEFT adapter directory (lora/lora.h) for m: written with m's layer
 * count; read with every tensor checked against m's shapes. */
int pl_lora_save_peft(const pl_lora *l, const pl_model *m, const char *dir, const char *base_model_name,
                      pl_err *err);
int pl_lora_load_peft(pl_lora **out, const pl_model *m, const char *dir, pl_err *err);

/* W += scale * B . A on every adapted module of an fp32 model. */
int pl_lora_merge(pl_model *m, const pl_lora *l, pl_err *err);

#endif
