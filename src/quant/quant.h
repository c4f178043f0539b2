/* Weight quantisation: row converters to every stored type, and the policy
 * that decides which tensors are quantised and which stay in higher
 * precision (see README "Quantized models"). */
#ifndef RG_QUANT_H
#define RG_QUANT_H

#include "model/tensor.h"

/* Convert n float32 values to type dt, writing rg_dtype_row_bytes(dt, n)
 * bytes (n a multiple of 32 for Q8_0/Q4_0). Returns -1 (with a message) on a
 * non-finite value or a block scale that does not fit a float16. */
int rg_quantize_row(rg_dtype dt, const float *x, int64_t n, uint8_t *out);

/* Parse "f32", "f16", "bf16", "q8_0", "q4_0". */
int rg_dtype_parse(const char *s, rg_dtype *out);

/* The stored type of tensor `name` (shape of t) when the user asked for
 * `want` and `embed` for the tied embedding. *why is NULL when the tensor
 * gets the requested type, otherwise the reason it does not. */
rg_dtype rg_quant_choose(const char *name, const rg_tensor *t, rg_dtype want, rg_dtype embed, const char **why);

#endif
