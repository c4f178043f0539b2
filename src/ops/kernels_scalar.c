/* Portable kernels: the reference every SIMD path is tested against, and the
 * fallback on CPUs without AVX2. One matmul per weight type, each a dot
 * product of a weight row with n activation rows. */
#include <stdlib.h>
#include "ops/ops.h"
#include "util/util.h"

/* Widen k weights of one row (any dtype) to float32. */
static void widen_row(rg_dtype dt, const uint8_t *w, int k, float *out) {
    switch (dt) {
    case RG_DT_F32:
        memcpy(out, w, sizeof(float) * (size_t)k);
        break;
    case RG_DT_BF16:
        for (int i = 0; i < k; i++) {
            uint16_t h;
            memcpy(&h, w + 2 * i, 2);
            out[i] = rg_bf16_to_f32(h);
        }
        break;
    case RG_DT_F16:
        for (int i = 0; i < k; i++) {
            uint16_t h;
            memcpy(&h, w + 2 * i, 2);
            out[i] = rg_f16_to_f32(h);
        }
        break;
    case RG_DT_Q8_0:
        for (int b = 0; b < k / RG_QBLOCK; b++) {
            const uint8_t *blk = w + (size_t)b * 34;
            uint16_t d16;
            memcpy(&d16, blk, 2);
            float d = rg_f16_to_f32(d16);
            for (int j = 0; j < RG_QBLOCK; j++) out[b * RG_QBLOCK + j] = d * (float)(int8_t)blk[2 + j];
        }
        break;
    case RG_DT_Q4_0:
        for (int b = 0; b < k / RG_QBLOCK; b++) {
            const uint8_t *blk = w + (size_t)b * 18;
            uint16_t d16;
            memcpy(&d16, blk, 2);
            float d = rg_f16_to_f32(d16);
            for (int j = 0; j < 16; j++) {
                out[b * RG_QBLOCK + j] = d * (float)((blk[2 + j] & 0x0f) - 8);
                out[b * RG_QBLOCK + j + 16] = d * (float)((blk[2 + j] >> 4) - 8);
            }
        }
        break;
    default:
        break;
    }
}

void rg_dequant_row(const rg_tensor *w, int64_t row, float *out) {
    size_t rb = rg_tensor_row_bytes(w);
    widen_row(w->dtype, (const uint8_t *)w->data + (size_t)row * rb, (int)w->shape[w->ndim - 1], out);
}

/* Generic scalar matmul for one dtype: widen each row once, then dot it with
 * every token. */
static void matmul_scalar(rg_dtype dt, const uint8_t *w, size_t row_bytes, int rows, int k, const float *x, int ldx,
                          int n, float *y, int ldy) {
    float *row = rg_xmalloc(sizeof(float) * (size_t)k);
    for (int r = 0; r < rows; r++) {
        widen_row(dt, w + (size_t)r * row_bytes, k, row);
        for (int t = 0; t < n; t++) {
            const float *xt = x + (size_t)t * ldx;
            float acc = 0;
            for (int i = 0; i < k; i++) acc += row[i] * xt[i];
            y[(size_t)t * ldy + r] = acc;
        }
    }
    free(row);
}

#define SCALAR_KERNEL(NAME, DT)                                                                               \
    static void NAME(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y, \
                     int ldy) {                                                                               \
        matmul_scalar(DT, w, rb, rows, k, x, ldx, n, y, ldy);                                                 \
    }
SCALAR_KERNEL(matmul_f32, RG_DT_F32)
SCALAR_KERNEL(matmul_f16, RG_DT_F16)
SCALAR_KERNEL(matmul_bf16, RG_DT_BF16)
SCALAR_KERNEL(matmul_q8_0, RG_DT_Q8_0)
SCALAR_KERNEL(matmul_q4_0, RG_DT_Q4_0)

const rg_kernel_set rg_kernels_scalar = {
    "scalar",
    {[RG_DT_F32] = matmul_f32, [RG_DT_F16] = matmul_f16, [RG_DT_BF16] = matmul_bf16, [RG_DT_Q8_0] = matmul_q8_0,
     [RG_DT_Q4_0] = matmul_q4_0},
};
