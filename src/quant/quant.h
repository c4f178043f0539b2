/* Weight quantisation policy: which tensors are quantised and which stay in
 * higher precision (see README "Quantized models"). The row converters are
 * the type table's (core/dtype.c). */
#ifndef RG_QUANT_H
#define RG_QUANT_H

#include "core/tensor.h"

/* The stored type of tensor `name` (shape of t) when the user asked for
 * `want` and `embed` for the tied embedding. *why is NULL when the tensor
 * gets the requested type, otherwise the reason it does not. */
rg_dtype rg_quant_choose(const char *name, const rg_tensor *t, rg_dtype want, rg_dtype embed, const char **why);

#endif
