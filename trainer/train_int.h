/* train_int.h: internals shared by train.c and train_backward.c. */
#ifndef PL_TRAIN_INT_H
#define PL_TRAIN_INT_H

#include "train.h"

/* Layer l's forward over t->T_fwd tokens from t->acts[l].x_in into the
 * layer's buffers (and each adapted module's saved xa); x_out (T,D) gets the
 * layer's output. The backward calls it to recompute a checkpointed layer. */
void pl_train_layer_forward(pl_train *t, int l, void *x_out);

#endif
