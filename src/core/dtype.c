/* The weight-type table: per type its name, block layout, ggml id and the
 * row conversions to and from float32 (ggml's block layouts for Q8_0, Q4_0,
 * Q4_K and Q6_K, so that other GGUF readers read the files). */
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

/* Q4_K super-block: d, dmin (float16), 12 bytes of 6-bit scales and mins
 * (rg_q4_k_scale_min), 128 bytes of nibbles; weight = d sc_j q - dmin m_j
 * for sub-block j of 32. Byte l of 32-byte group c holds element 64c + l
 * (low nibble, sub-block 2c) and 64c + 32 + l (high nibble, 2c + 1). */
static void q4_k_to_float(const uint8_t *w, int64_t n, float *out) {
    for (int64_t b = 0; b < n / RG_QK_BLOCK; b++, out += RG_QK_BLOCK) {
        const uint8_t *blk = w + b * RG_Q4_K_BLOCK_BYTES, *q = blk + 16;
        float d = block_scale(blk), dmin = block_scale(blk + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            rg_q4_k_scale_min(blk + 4, j, &sc, &m);
            int shift = 4 * (j & 1);
            for (int l = 0; l < 32; l++)
                out[32 * j + l] = d * (float)sc * (float)(q[32 * (j / 2) + l] >> shift & 0x0f) - dmin * (float)m;
        }
    }
}

/* Q6_K super-block: ql[128] (low 4 bits), qh[64] (high 2 bits), 16 int8
 * scales, d (float16); weight = d sc_{i/16} (q - 32) for element i. In each
 * half h of 128 elements, element 128h + 32g + l (g = 0..3, l < 32) has its
 * low bits in byte ql[64h + 32(g & 1) + l] (low nibble for g < 2, high for
 * g >= 2) and its high bits at bit 2g of qh[32h + l]. */
static inline int q6_k_code(const uint8_t *blk, int i) {
    int h = i / 128, g = i % 128 / 32, l = i % 32;
    int low = blk[64 * h + 32 * (g & 1) + l] >> (4 * (g >> 1)) & 0x0f;
    int high = blk[128 + 32 * h + l] >> (2 * g) & 3;
    return low | high << 4;
}

static void q6_k_to_float(const uint8_t *w, int64_t n, float *out) {
    for (int64_t b = 0; b < n / RG_QK_BLOCK; b++, out += RG_QK_BLOCK) {
        const uint8_t *blk = w + b * RG_Q6_K_BLOCK_BYTES;
        float d = block_scale(blk + 208);
        for (int i = 0; i < RG_QK_BLOCK; i++)
            out[i] = d * (float)(int8_t)blk[192 + i / 16] * (float)(q6_k_code(blk, i) - 32);
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

/* A signed code in [-nmax, nmax - 1] for x at inverse scale id:
 * floor(x id + nmax + 0.5) = round(x / d) + nmax, clamped, less nmax. */
static int signed_code(float x, float id, int nmax) {
    float v = x * id + ((float)nmax + 0.5f);
    int q = v > 0 ? (int)v : 0; /* truncation is floor for v > 0 (and no libm call) */
    return (q > 2 * nmax - 1 ? 2 * nmax - 1 : q) - nmax;
}

/* The scale d of n values stored as d q, q in [-nmax, nmax - 1]. ggml's
 * reference maps the element m of largest magnitude to -nmax (d = m /
 * -nmax). Here that scale is one of 19 candidates d = m / -(nmax + 0.1 k),
 * k = -9..9: for each, q is rounded, then d is refitted by least squares (d
 * = sum x q / sum q^2, which gives the error sum x^2 - (sum x q)^2 / sum
 * q^2), and the d with the smallest error wins. Same format, same speed,
 * lower error (see README). */
static float signed_scale_search(const float *x, int n, int nmax) {
    float amax = 0, m = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            m = x[j];
        }
    float best_d = m / -(float)nmax;
    double best_gain = -1;
    for (int k = -9; k <= 9 && amax > 0; k++) {
        float id = -((float)nmax + 0.1f * (float)k) / m;
        double sxq = 0, sqq = 0;
        for (int j = 0; j < n; j++) {
            int q = signed_code(x[j], id, nmax);
            sxq += (double)x[j] * q;
            sqq += (double)q * q;
        }
        /* the error is sum x^2 - sxq^2 / sqq: maximise sxq^2 / sqq */
        if (sqq > 0 && sxq * sxq / sqq > best_gain) {
            best_gain = sxq * sxq / sqq;
            best_d = (float)(sxq / sqq);
        }
    }
    return best_d;
}

/* Q4_0 block of 32: value = d (q - 8) with q in 0..15; element j is the low
 * nibble of byte j, element j+16 the high nibble; d by the search above. */
static void block_q4_0(const float *x, uint8_t *out) {
    uint16_t d16 = rg_f32_to_f16(signed_scale_search(x, RG_QBLOCK, 8));
    float d = rg_f16_to_f32(d16), id = d != 0 ? 1.0f / d : 0.0f;
    memcpy(out, &d16, 2);
    for (int j = 0; j < RG_QBLOCK / 2; j++)
        out[2 + j] = (uint8_t)((signed_code(x[j], id, 8) + 8) | (signed_code(x[j + RG_QBLOCK / 2], id, 8) + 8) << 4);
}

/* Q4_K sub-block of 32: x ~ a q - b with q in 0..15, a >= 0, b >= 0 (the
 * block's minimum is at most 0). Candidate grids: the range [min(x, 0),
 * max x] cut in 15 + 0.1 k steps, k = -10..10; for each, q is rounded and
 * (a, b) refitted by least squares, and the pair with the smallest squared
 * error wins (a plain min/max grid is the k = 0 candidate without the
 * refit). */
static void q4_k_fit(const float *x, float *a, float *b) {
    float lo = 0, hi = x[0], sx = 0;
    for (int i = 0; i < 32; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        sx += x[i];
    }
    *a = hi > lo ? (hi - lo) / 15 : 0;
    *b = -lo;
    if (!(hi > lo)) return;
    double best = INFINITY;
    for (int k = -10; k <= 10; k++) {
        float id = (15 + 0.1f * (float)k) / (hi - lo);
        double sq = 0, sqq = 0, sxq = 0;
        int q[32];
        for (int i = 0; i < 32; i++) {
            int v = (int)((x[i] - lo) * id + 0.5f);
            q[i] = v > 15 ? 15 : v;
            sq += q[i];
            sqq += (double)q[i] * q[i];
            sxq += (double)x[i] * q[i];
        }
        /* least squares of x ~ s q + c over the 32 values, c <= 0 */
        double det = 32 * sqq - sq * sq, s, c;
        if (det <= 0) continue;
        s = (32 * sxq - sq * sx) / det;
        c = (sqq * sx - sq * sxq) / det;
        if (c > 0) {
            c = 0;
            s = sxq / sqq;
        }
        if (s < 0) continue;
        double err = 0;
        for (int i = 0; i < 32; i++) err += (s * q[i] + c - x[i]) * (s * q[i] + c - x[i]);
        if (err < best) {
            best = err;
            *a = (float)s;
            *b = (float)-c;
        }
    }
}

/* Q4_K super-block: each sub-block's (a, b) fitted, then stored as 6-bit
 * multiples of d = max a / 63 and dmin = max b / 63, and the weights
 * rounded again against the stored scale and min. -1 when d or dmin does
 * not fit a float16. */
static int block_q4_k(const float *x, uint8_t *out) {
    float a[8], b[8], amax = 0, bmax = 0;
    for (int j = 0; j < 8; j++) {
        q4_k_fit(x + 32 * j, &a[j], &b[j]);
        amax = fmaxf(amax, a[j]);
        bmax = fmaxf(bmax, b[j]);
    }
    uint16_t d16 = rg_f32_to_f16(amax / 63), dmin16 = rg_f32_to_f16(bmax / 63);
    float d = rg_f16_to_f32(d16), dmin = rg_f16_to_f32(dmin16);
    if (!isfinite(d) || !isfinite(dmin)) return -1;
    memcpy(out, &d16, 2);
    memcpy(out + 2, &dmin16, 2);
    uint8_t *scales = out + 4, *q = out + 16;
    memset(scales, 0, 12);
    memset(q, 0, RG_QK_BLOCK / 2);
    for (int j = 0; j < 8; j++) {
        int ls = d > 0 ? (int)lrintf(a[j] / d) : 0, lm = dmin > 0 ? (int)lrintf(b[j] / dmin) : 0;
        ls = ls > 63 ? 63 : ls;
        lm = lm > 63 ? 63 : lm;
        if (j < 4) {
            scales[j] |= (uint8_t)ls;
            scales[j + 4] |= (uint8_t)lm;
        } else {
            scales[j + 4] = (uint8_t)((ls & 0x0f) | (lm & 0x0f) << 4);
            scales[j - 4] |= (uint8_t)(ls >> 4 << 6);
            scales[j] |= (uint8_t)(lm >> 4 << 6);
        }
        float step = d * (float)ls, id = step > 0 ? 1.0f / step : 0.0f, shift = dmin * (float)lm;
        for (int l = 0; l < 32; l++) {
            int v = (int)((x[32 * j + l] + shift) * id + 0.5f);
            v = v < 0 ? 0 : v > 15 ? 15 : v;
            q[32 * (j / 2) + l] |= (uint8_t)(v << (4 * (j & 1)));
        }
    }
    return 0;
}

/* Q6_K super-block: each sub-block of 16's scale by the signed search (q in
 * -32..31), the 16 scales stored as int8 multiples of d = s / -128 (s the
 * scale of largest magnitude, as ggml), the weights rounded again against
 * the stored scales. -1 when d does not fit a float16. */
static int block_q6_k(const float *x, uint8_t *out) {
    float s[16], smax = 0;
    for (int j = 0; j < 16; j++) {
        s[j] = signed_scale_search(x + 16 * j, 16, 32);
        if (fabsf(s[j]) > fabsf(smax)) smax = s[j];
    }
    uint16_t d16 = rg_f32_to_f16(smax / -128);
    float d = rg_f16_to_f32(d16), id = d != 0 ? 1.0f / d : 0.0f;
    if (!isfinite(d)) return -1;
    memset(out, 0, RG_Q6_K_BLOCK_BYTES);
    memcpy(out + 208, &d16, 2);
    for (int j = 0; j < 16; j++) {
        int sc = (int)lrintf(s[j] * id);
        sc = sc < -128 ? -128 : sc > 127 ? 127 : sc;
        out[192 + j] = (uint8_t)(int8_t)sc;
        float step = d * (float)sc, is = step != 0 ? 1.0f / step : 0.0f;
        for (int l = 0; l < 16; l++) {
            int i = 16 * j + l, q = signed_code(x[i], is, 32) + 32;
            int h = i / 128, g = i % 128 / 32, p = i % 32;
            out[64 * h + 32 * (g & 1) + p] |= (uint8_t)((q & 0x0f) << (4 * (g >> 1)));
            out[128 + 32 * h + p] |= (uint8_t)((q >> 4) << (2 * g));
        }
    }
    return 0;
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

/* The K-quants' super-blocks report their own scale overflow. */
static int super_blocks_from_float(int (*block)(const float *, uint8_t *), int block_bytes, const float *x,
                                   int64_t n, uint8_t *out) {
    for (int64_t b = 0; b < n / RG_QK_BLOCK; b++)
        if (block(x + b * RG_QK_BLOCK, out + b * block_bytes))
            return rg_error("block %lld: values too large for a float16 block scale", (long long)b);
    return 0;
}

static int q4_k_from_float(const float *x, int64_t n, uint8_t *out) {
    return super_blocks_from_float(block_q4_k, RG_Q4_K_BLOCK_BYTES, x, n, out);
}

static int q6_k_from_float(const float *x, int64_t n, uint8_t *out) {
    return super_blocks_from_float(block_q6_k, RG_Q6_K_BLOCK_BYTES, x, n, out);
}

static const rg_dtype_traits traits[RG_DT_COUNT] = {
    [RG_DT_F32] = {"F32", 1, 4, RG_GGML_F32, 0, f32_to_float, f32_from_float},
    [RG_DT_F16] = {"F16", 1, 2, RG_GGML_F16, 1, f16_to_float, f16_from_float},
    [RG_DT_BF16] = {"BF16", 1, 2, RG_GGML_BF16, 32, bf16_to_float, bf16_from_float},
    [RG_DT_Q8_0] = {"Q8_0", RG_QBLOCK, RG_Q8_0_BLOCK_BYTES, RG_GGML_Q8_0, 7, q8_0_to_float, q8_0_from_float},
    [RG_DT_Q4_0] = {"Q4_0", RG_QBLOCK, RG_Q4_0_BLOCK_BYTES, RG_GGML_Q4_0, 2, q4_0_to_float, q4_0_from_float},
    /* file types: llama.cpp's MOSTLY_Q4_K_S (14) and MOSTLY_Q6_K (18) */
    [RG_DT_Q4_K] = {"Q4_K", RG_QK_BLOCK, RG_Q4_K_BLOCK_BYTES, RG_GGML_Q4_K, 14, q4_k_to_float, q4_k_from_float},
    [RG_DT_Q6_K] = {"Q6_K", RG_QK_BLOCK, RG_Q6_K_BLOCK_BYTES, RG_GGML_Q6_K, 18, q6_k_to_float, q6_k_from_float},
};

const rg_dtype_traits *rg_dtype_info(rg_dtype t) { return (unsigned)t < RG_DT_COUNT ? &traits[t] : NULL; }

const char *rg_dtype_name(rg_dtype t) { return (unsigned)t < RG_DT_COUNT ? traits[t].name : "?"; }

int rg_dtype_is_quantised(rg_dtype t) { return (unsigned)t < RG_DT_COUNT && traits[t].block > 1; }

int rg_dtype_block(rg_dtype t) { return (unsigned)t < RG_DT_COUNT ? traits[t].block : 0; }

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
    return rg_error("unknown weight type \"%s\" (expected f32, f16, bf16, q8_0, q4_0, q4_k or q6_k)", s);
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
