/* train_int.h: internals shared by train.c and train_backward.c. */
#ifndef PL_TRAIN_INT_H
#define PL_TRAIN_INT_H

#include "train.h"

/* Layer l's forward over t->T_fwd tokens from t->acts[l].x_in into the
 * layer's buffers (and each adapted module's saved xa); x_out (T,D) gets the
 * layer's output. The backward calls it to recompute a checkpointed layer;
 * with mlp 0 it stops after xn2 (the MLP's input). */
void pl_train_layer_forward(pl_train *t, int l, void *x_out, int mlp);
/* Rows r0 .. r0 + n - 1 of layer l's MLP into a->gate, a->up, a->act (from
 * their row 0) and, unless out is NULL, down_proj's output into out's rows
 * r0.. */
void pl_train_mlp_rows(pl_train *t, int l, void *out, int r0, int n);
/* Rows per MLP chunk for a forward of T tokens: t->mlp_chunk when it is set
 * and shorter than T, else T (one chunk). */
static inline int pl_train_mlp_chunk(const pl_train *t, int T) {
    return t->mlp_chunk > 0 && t->mlp_chunk < T ? t->mlp_chunk : T;
}

#endif
