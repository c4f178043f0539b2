/* Portable kernels: the reference every SIMD path is tested against, and the
 * fallback on CPUs without AVX2. One matmul per weight type (a dot product
 * of each widened weight row with n activation rows), and the attention,
 * activation, RG-LRU and GEMM loops in plain C. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops.h"
#include "util/util.h"

/* Generic scalar matmul for one dtype: widen each row once, then dot it with
 * every token. */
static void matmul_scalar(rg_dtype dt, const uint8_t *w, size_t row_bytes, int rows, int k, const float *x, int ldx,
                          int n, float *y, int ldy) {
    float *row = rg_scratch(RG_SCRATCH_KERNEL, sizeof(float) * (size_t)k);
    void (*to_float)(const uint8_t *, int64_t, float *) = rg_dtype_info(dt)->to_float;
    for (int r = 0; r < rows; r++) {
        to_float(w + (size_t)r * row_bytes, k, row);
        for (int t = 0; t < n; t++) {
            const float *xt = x + (size_t)t * ldx;
            float acc = 0;
            for (int i = 0; i < k; i++) acc += row[i] * xt[i];
            y[(size_t)t * ldy + r] = acc;
        }
    }
}

static RG_MATMUL_OF(matmul_f32, RG_DT_F32, matmul_scalar)
static RG_MATMUL_OF(matmul_f16, RG_DT_F16, matmul_scalar)
static RG_MATMUL_OF(matmul_bf16, RG_DT_BF16, matmul_scalar)
static RG_MATMUL_OF(matmul_q8_0, RG_DT_Q8_0, matmul_scalar)
static RG_MATMUL_OF(matmul_q4_0, RG_DT_Q4_0, matmul_scalar)
static RG_MATMUL_OF(matmul_q4_k, RG_DT_Q4_K, matmul_scalar)
static RG_MATMUL_OF(matmul_q6_k, RG_DT_Q6_K, matmul_scalar)

static float softmax(float *x, int n, float scale, float *max) {
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        x[j] *= scale;
        if (x[j] > mx) mx = x[j];
    }
    float sum = 0;
    for (int j = 0; j < n; j++) {
        x[j] = expf(x[j] - mx);
        sum += x[j];
    }
    *max = mx;
    return sum;
}

/* element i of value row j (rows of rg_kv_row_bytes) */
static float value_at(rg_dtype vt, const void *v, int hd, int j, int i) {
    if (vt == RG_DT_F32) return ((const float *)v)[(size_t)j * hd + i];
    if (vt == RG_DT_F16) return rg_f16_to_f32(((const uint16_t *)v)[(size_t)j * hd + i]);
    const uint8_t *blk = (const uint8_t *)v + ((size_t)j * (hd / RG_QBLOCK) + i / RG_QBLOCK) * RG_Q8_0_BLOCK_BYTES;
    uint16_t d;
    memcpy(&d, blk, sizeof d);
    return rg_f16_to_f32(d) * (float)(int8_t)blk[2 + i % RG_QBLOCK];
}

static void wsum(const float *p, int ldp, int nh, rg_dtype vt, const void *v, int nk, int hd, float *out, int ldo) {
    for (int h = 0; h < nh; h++)
        for (int j = 0; j < nk; j++) {
            float pj = p[(size_t)h * ldp + j];
            for (int i = 0; i < hd; i++) out[(size_t)h * ldo + i] += pj * value_at(vt, v, hd, j, i);
        }
}

static void gelu_mul(float *g, const float *u, size_t count) {
    for (size_t i = 0; i < count; i++) g[i] = rg_gelu_tanh(g[i]) * u[i];
}

static void softcap(float *x, size_t count, float cap) {
    for (size_t i = 0; i < count; i++) x[i] = cap * tanhf(x[i] / cap);
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* RG-LRU, per channel (L: recurrent_param; as tests/reference/griffin_ref.py):
 *   log_a = -8 * sigmoid(ga) * softplus(L);  a = exp(log_a)
 *   mult  = sqrt(1 - exp(2 log_a)), or 1 at position 0
 *   h_t   = a * h_{t-1} + x * sigmoid(gx) * mult   (h_{t-1} = 0 at position 0) */
static void rglru(const float *x, const float *gx, const float *ga, const float *softplus_a, int n, int r, int ld,
                  int64_t pos0, float *h, float *y) {
    for (int c = 0; c < r; c++) {
        float hc = h[c];
        for (int t = 0; t < n; t++) {
            size_t i = (size_t)t * ld + c;
            float log_a = -8.0f * sigmoidf(ga[i]) * softplus_a[c];
            float a = expf(log_a);
            float mult = sqrtf(1.0f - expf(2.0f * log_a));
            if (pos0 + t == 0) {
                a = 0.0f;
                mult = 1.0f;
            }
            hc = a * hc + x[i] * sigmoidf(gx[i]) * mult;
            y[i] = hc;
        }
        h[c] = hc;
    }
}

/* The rg_gemm contract, one element at a time, over p in order. */
static void gemm(int m, int n, int k, const float *a, size_t a_rs, size_t a_cs, const float *b, size_t b_rs,
                 size_t b_cs, float *c, size_t ldc, int add) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float acc = add ? c[(size_t)i * ldc + j] : 0.0f;
            for (int p = 0; p < k; p++)
                acc += a[(size_t)i * a_rs + (size_t)p * a_cs] * b[(size_t)p * b_rs + (size_t)j * b_cs];
            c[(size_t)i * ldc + j] = acc;
        }
}

static float read_sum(const float *p, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
    for (; i < n; i++) s0 += p[i];
    return (s0 + s1) + (s2 + s3);
}

/* 8 independent multiply-add chains in plain C (what this set's matmul
 * does); the volatile sink keeps the loop. */
static double peak_loop(int int8, long iters) {
    if (int8 || iters <= 0) return 0;
    float a[8] = {0}, b = 0.5f, c = 0.25f;
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 8; j++) a[j] = a[j] * b + c;
    volatile float sink = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    (void)sink;
    return (double)iters * 8 * 2;
}

const rg_kernel_set rg_kernels_scalar =
    RG_KERNEL_SET("scalar", 0, matmul_f32, matmul_f16, matmul_bf16, matmul_q8_0, matmul_q4_0, matmul_q4_k,
                  matmul_q6_k, NULL);
