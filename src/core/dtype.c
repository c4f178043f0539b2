/* The weight-type table: per type its name, block layout, ggml id and the
 * row conversions to and from float32 (ggml's block layouts for Q8_0 and
 * Q4_0). */
#include <math.h>
#include <strings.h>
#include "core/tensor.h"
#include "util/util.h"

static void f32_to_float(const uint8_t *w, int64_t n, float *out) { memcpy(out, w, sizeof(float) * (size_t)n); }

static void f16_to_float(const uint8_t *w, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, w + 2 * i, 2);
        out[i] = rg_f16_to_f32(h);
    }
}

static void bf16_to_float(const uint8_t *w, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, w + 2 * i, 2);
        out[i] = rg_bf16_to_f32(h);
    }
}

static float block_scale(const uint8_t *blk) {
    uint16_t d16;
    memcpy(&d16, blk, 2);
    return rg_f16_to_f32(d16);
}

static void q8_0_to_float(const uint8_t *w, int64_t n, float *out) {
    for (int64_t b = 0; b < n / RG_QBLOCK; b++) {
        const uint8_t *blk = w + b * RG_Q8_0_BLOCK_BYTES;
        float d = block_scale(blk);
        for (int j = 0; j < RG_QBLOCK; j++) out[b * RG_QBLOCK + j] = d * (float)(int8_t)blk[2 + j];
    }
}

/* element j is the low nibble of byte j, element j+16 the high nibble */
static void q4_0_to_float(const uint8_t *w, int64_t n, float *out) {
    for (int64_t b = 0; b < n / RG_QBLOCK; b++) {
        const uint8_t *blk = w + b * RG_Q4_0_BLOCK_BYTES;
        float d = block_scale(blk);
        for (int j = 0; j < RG_QBLOCK / 2; j++) {
            out[b * RG_QBLOCK + j] = d * (float)((blk[2 + j] & 0x0f) - 8);
            out[b * RG_QBLOCK + j + RG_QBLOCK / 2] = d * (float)((blk[2 + j] >> 4) - 8);
        }
    }
}

static int f32_from_float(const float *x, int64_t n, uint8_t *out) {
    memcpy(out, x, sizeof(float) * (size_t)n);
    return 0;
}

static int f16_from_float(const float *x, int64_t n, uint8_t *out) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = rg_f32_to_f16(x[i]);
        memcpy(out + 2 * i, &h, 2);
    }
    return 0;
}

static int bf16_from_float(const float *x, int64_t n, uint8_t *out) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = rg_f32_to_bf16(x[i]);
        memcpy(out + 2 * i, &h, 2);
    }
    return 0;
}

/* Q8_0 block of 32: d = max|x| / 127 stored as float16, q = round(x / d)
 * with the float16-rounded d (the value the kernels will multiply by), so
 * |x - d q| <= d/2 up to the f16 rounding of d. */
static void block_q8_0(const float *x, uint8_t *out) {
    float amax = 0;
    for (int j = 0; j < RG_QBLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
    uint16_t d16 = rg_f32_to_f16(amax / 127.0f);
    float d = rg_f16_to_f32(d16), id = d > 0 ? 1.0f / d : 0.0f;
    memcpy(out, &d16, 2);
    for (int j = 0; j < RG_QBLOCK; j++) {
        float q = roundf(x[j] * id);
        out[2 + j] = (uint8_t)(int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
    }
}

/* Q4_0 block of 32: value = d (q - 8) with q in 0..15; element j is the low
 * nibble of byte j, element j+16 the high nibble. ggml's reference maps the
 * element m of largest magnitude to -8 (d = m / -8). Here that scale is one
 * of 19 candidates d = m / -(8 + 0.1 k), k = -9..9: for each, q is rounded,
 * then d is refitted by least squares (d = sum x q / sum q^2, which gives the
 * error sum x^2 - (sum x q)^2 / sum q^2), and the q with the smallest error
 * wins. Same format, same speed, lower error (see README). */
static int q4_code(float x, float id) {
    float v = x * id + 8.5f; /* floor(v) = round(x / d) + 8 */
    int q = v > 0 ? (int)v : 0; /* truncation is floor for v > 0 (and no libm call) */
    return q > 15 ? 15 : q;
}

static void block_q4_0(const float *x, uint8_t *out) {
    float amax = 0, m = 0;
    for (int j = 0; j < RG_QBLOCK; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            m = x[j];
        }
    float best_d = m / -8.0f;
    double best_gain = -1;
    for (int k = -9; k <= 9 && amax > 0; k++) {
        float id = -(8.0f + 0.1f * (float)k) / m;
        double sxq = 0, sqq = 0;
        for (int j = 0; j < RG_QBLOCK; j++) {
            int q = q4_code(x[j], id) - 8;
            sxq += (double)x[j] * q;
            sqq += (double)q * q;
        }
        /* the error is sum x^2 - sxq^2 / sqq: maximise sxq^2 / sqq */
        if (sqq > 0 && sxq * sxq / sqq > best_gain) {
            best_gain = sxq * sxq / sqq;
            best_d = (float)(sxq / sqq);
        }
    }
    uint16_t d16 = rg_f32_to_f16(best_d);
    float d = rg_f16_to_f32(d16), id = d != 0 ? 1.0f / d : 0.0f;
    memcpy(out, &d16, 2);
    for (int j = 0; j < RG_QBLOCK / 2; j++)
        out[2 + j] = (uint8_t)(q4_code(x[j], id) | q4_code(x[j + RG_QBLOCK / 2], id) << 4);
}

/* Quantise block by block; a scale that overflows float16 would turn every
 * weight of its block into inf or NaN. */
static int blocks_from_float(void (*block)(const float *, uint8_t *), int block_bytes, const float *x, int64_t n,
                             uint8_t *out) {
    for (int64_t b = 0; b < n / RG_QBLOCK; b++) {
        block(x + b * RG_QBLOCK, out + b * block_bytes);
        if (!isfinite(block_scale(out + b * block_bytes)))
            return rg_error("block %lld: values too large for a float16 block scale", (long long)b);
    }
    return 0;
}

static int q8_0_from_float(const float *x, int64_t n, uint8_t *out) {
    return blocks_from_float(block_q8_0, RG_Q8_0_BLOCK_BYTES, x, n, out);
}

static int q4_0_from_float(const float *x, int64_t n, uint8_t *out) {
    return blocks_from_float(block_q4_0, RG_Q4_0_BLOCK_BYTES, x, n, out);
}

static const rg_dtype_traits traits[RG_DT_COUNT] = {
    [RG_DT_F32] = {"F32", 1, 4, RG_GGML_F32, 0, f32_to_float, f32_from_float},
    [RG_DT_F16] = {"F16", 1, 2, RG_GGML_F16, 1, f16_to_float, f16_from_float},
    [RG_DT_BF16] = {"BF16", 1, 2, RG_GGML_BF16, 32, bf16_to_float, bf16_from_float},
    [RG_DT_Q8_0] = {"Q8_0", RG_QBLOCK, RG_Q8_0_BLOCK_BYTES, RG_GGML_Q8_0, 7, q8_0_to_float, q8_0_from_float},
    [RG_DT_Q4_0] = {"Q4_0", RG_QBLOCK, RG_Q4_0_BLOCK_BYTES, RG_GGML_Q4_0, 2, q4_0_to_float, q4_0_from_float},
};

const rg_dtype_traits *rg_dtype_info(rg_dtype t) { return (unsigned)t < RG_DT_COUNT ? &traits[t] : NULL; }

const char *rg_dtype_name(rg_dtype t) { return (unsigned)t < RG_DT_COUNT ? traits[t].name : "?"; }

int rg_dtype_is_quantised(rg_dtype t) { return (unsigned)t < RG_DT_COUNT && traits[t].block > 1; }

size_t rg_dtype_row_bytes(rg_dtype t, int64_t n) {
    const rg_dtype_traits *tr = rg_dtype_info(t);
    return tr ? (size_t)(n / tr->block) * (size_t)tr->block_bytes : 0;
}

int rg_dtype_parse(const char *s, rg_dtype *out) {
    for (int d = 0; d < RG_DT_COUNT; d++)
        if (!strcasecmp(s, traits[d].name)) {
            *out = (rg_dtype)d;
            return 0;
        }
    return rg_error("unknown weight type \"%s\" (expected f32, f16, bf16, q8_0 or q4_0)", s);
}

int rg_dtype_from_ggml(uint32_t ggml_type, rg_dtype *out) {
    for (int d = 0; d < RG_DT_COUNT; d++)
        if ((uint32_t)traits[d].ggml_type == ggml_type) {
            *out = (rg_dtype)d;
            return 0;
        }
    return -1;
}

int rg_quantize_row(rg_dtype dt, const float *x, int64_t n, uint8_t *out) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return rg_error("element %lld is not finite (%g)", (long long)i, (double)x[i]);
    const rg_dtype_traits *tr = rg_dtype_info(dt);
    if (!tr) return rg_error("cannot store type %s", rg_dtype_name(dt));
    return tr->from_float(x, n, out);
}

void rg_dequant_row(const rg_tensor *w, int64_t row, float *out) {
    rg_dtype_info(w->dtype)->to_float((const uint8_t *)w->data + (size_t)row * rg_tensor_row_bytes(w),
                                      w->shape[w->ndim - 1], out);
}
