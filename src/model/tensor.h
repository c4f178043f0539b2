/* A weight tensor as the kernels see it: a view into a mapped file (or an
 * owned buffer when a conversion was unavoidable). */
#ifndef RG_TENSOR_H
#define RG_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    RG_DT_F32 = 0,
    RG_DT_F16,
    RG_DT_BF16,
    RG_DT_Q8_0, /* ggml block: f16 scale + 32 int8 (34 bytes / 32 weights) */
    RG_DT_Q4_0, /* ggml block: f16 scale + 16 bytes of nibbles (18 bytes / 32 weights) */
    RG_DT_COUNT
} rg_dtype;

#define RG_QBLOCK 32

typedef struct {
    rg_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
} rg_tensor;

const char *rg_dtype_name(rg_dtype t);
/* Bytes taken by n consecutive elements of one row (n a multiple of the block size for quantised types). */
size_t rg_dtype_row_bytes(rg_dtype t, int64_t n);
/* Bytes of one row of a 2-D tensor [rows, cols]. */
static inline size_t rg_tensor_row_bytes(const rg_tensor *t) { return rg_dtype_row_bytes(t->dtype, t->shape[t->ndim - 1]); }

#endif
