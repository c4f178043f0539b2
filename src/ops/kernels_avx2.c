/* AVX2 + FMA + F16C kernels (only this file is built with those
 * instructions; matmul.c picks it only on a CPU that has them).
 *
 * Several tokens: every weight type keeps float32 activations: each step
 * widens 8 weights of each of RB rows to float32 in registers (Q8_0/Q4_0:
 * d * q, d * (q - 8)) and does RB*TB fused multiply-adds with TB tokens. With
 * more than TB tokens (prefill) the k axis is cut in blocks of KC and a tile
 * of rows is widened once into a float32 scratch buffer that serves every
 * token. Row lengths that are not a multiple of 8 finish with masked loads.
 *
 * One token (decode) with Q8_0/Q4_0 weights: the activation row is rounded
 * per block of 32 to int8 (d_x = max|x|/127, as the avx512 path does) and a
 * block's dot product is integer: vpmaddubsw of |x_q| and w_q with x_q's
 * sign (pairs in int16: |sum| <= 2 * 127 * 128 < 2^15), vpmaddwd to int32,
 * then one fma by d_w d_x. Widening every weight to float32 costs about
 * twice as many instructions, which decode on one core cannot hide. */
#include <immintrin.h>
#include <math.h>
#include "ops/ops.h"
#include "util/util.h"

#define INLINE static inline __attribute__((always_inline))

enum { RB = 4, TB = 3, KC = 512 };

/* ------------------------------------------------------------ helpers */

/* lanes [0, count) of a vector (count < 8) */
INLINE __m256i lane_mask(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

INLINE __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
    __m256 u = _mm256_hadd_ps(t0, t1);
    return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

/* a0 + a1 + a2 + a3, all lanes summed */
INLINE float add_all4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    u = _mm_hadd_ps(u, u);
    return _mm_cvtss_f32(_mm_hadd_ps(u, u));
}

INLINE float f16_scale(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return _cvtsh_ss(h);
}

/* 8 weights from element i of a row, widened to float32; i is a multiple
 * of 8 and, for the quantised types, all 8 lie in one block. */
INLINE __m256 load_w(rg_dtype dt, const uint8_t *row, int i) {
    switch (dt) {
    case RG_DT_F32: return _mm256_loadu_ps((const float *)row + i);
    case RG_DT_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    case RG_DT_BF16:
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i))), 16));
    case RG_DT_Q8_0: {
        const uint8_t *blk = row + (size_t)(i / RG_QBLOCK) * 34;
        __m128i q = _mm_loadl_epi64((const __m128i *)(blk + 2 + i % RG_QBLOCK));
        return _mm256_mul_ps(_mm256_set1_ps(f16_scale(blk)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
    }
    default: { /* Q4_0: elements 0..15 are the low nibbles, 16..31 the high */
        const uint8_t *blk = row + (size_t)(i / RG_QBLOCK) * 18;
        int j = i % RG_QBLOCK;
        __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + j % 16)));
        b = j < 16 ? _mm256_and_si256(b, _mm256_set1_epi32(15)) : _mm256_srli_epi32(b, 4);
        __m256 q = _mm256_cvtepi32_ps(_mm256_sub_epi32(b, _mm256_set1_epi32(8)));
        return _mm256_mul_ps(_mm256_set1_ps(f16_scale(blk)), q);
    }
    }
}

/* The last count < 8 elements from element i of a float row (F32/F16/BF16). */
INLINE __m256 load_w_tail(rg_dtype dt, const uint8_t *row, int i, int count) {
    if (dt == RG_DT_F32) return _mm256_maskload_ps((const float *)row + i, lane_mask(count));
    uint16_t h[8] = {0};
    memcpy(h, (const uint16_t *)row + i, 2 * (size_t)count);
    __m128i v = _mm_loadu_si128((const __m128i *)h);
    if (dt == RG_DT_F16) return _mm256_cvtph_ps(v);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

/* exp(x) = 2^n * e^r, n = round(x / ln 2), e^r by the Cephes expf
 * polynomial; x is clamped to [-87, 88] so 2^n stays a normal float. */
INLINE __m256 exp8(__m256 x) {
    /* operands in this order so that a NaN x stays NaN (minps/maxps return the
     * second operand when one is NaN): a clamp must not turn NaN into a number */
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

INLINE __m256 tanh8(__m256 x) {
    __m256 e = exp8(_mm256_add_ps(x, x));
    return _mm256_sub_ps(_mm256_set1_ps(1.0f),
                         _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
}

INLINE __m256 sigmoid8(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

/* Load/store count <= 8 floats (all 8 when count >= 8). */
INLINE __m256 load_n(const float *p, size_t count) {
    return count >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask((int)count));
}
INLINE void store_n(float *p, size_t count, __m256 v) {
    if (count >= 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, lane_mask((int)count), v);
}

/* ------------------------------------------------------------- matmul */

/* y[t][r] (+)= sum_{i<len} w[r][i] x[t][i] for r < nr, t < nt (constant
 * after inlining). Rows past nr repeat the last row and are not stored. */
INLINE void tile(rg_dtype dt, const int nt, const uint8_t *w, size_t rb, int nr, int len, const float *x, int ldx,
                 float *y, int ldy, int add) {
    const uint8_t *wr[RB];
    for (int r = 0; r < RB; r++) wr[r] = w + (size_t)(r < nr ? r : nr - 1) * rb;
    __m256 acc[RB][TB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 3
        for (int t = 0; t < nt; t++) acc[r][t] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= len; i += 8) {
        __m256 xv[TB];
#pragma GCC unroll 3
        for (int t = 0; t < nt; t++) xv[t] = _mm256_loadu_ps(x + (size_t)t * ldx + i);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            __m256 wv = load_w(dt, wr[r], i);
#pragma GCC unroll 3
            for (int t = 0; t < nt; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (i < len) { /* float types only: quantised rows are whole blocks */
        __m256i m = lane_mask(len - i);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            __m256 wv = load_w_tail(dt, wr[r], i, len - i);
#pragma GCC unroll 3
            for (int t = 0; t < nt; t++)
                acc[r][t] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + (size_t)t * ldx + i, m), acc[r][t]);
        }
    }
    __m128i ym = _mm_cmpgt_epi32(_mm_set1_epi32(nr), _mm_setr_epi32(0, 1, 2, 3));
#pragma GCC unroll 3
    for (int t = 0; t < nt; t++) {
        __m128 s = hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
        float *yt = y + (size_t)t * ldy;
        if (add) s = _mm_add_ps(s, _mm_maskload_ps(yt, ym));
        _mm_maskstore_ps(yt, ym, s);
    }
}

/* One token, one row at a time: a single sequential stream through the
 * weights (what the hardware prefetcher follows best); 4 accumulators over
 * k hide the FMA latency. */
INLINE void gemv(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, float *y) {
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 32 <= k; i += 32) {
            a0 = _mm256_fmadd_ps(load_w(dt, row, i), _mm256_loadu_ps(x + i), a0);
            a1 = _mm256_fmadd_ps(load_w(dt, row, i + 8), _mm256_loadu_ps(x + i + 8), a1);
            a2 = _mm256_fmadd_ps(load_w(dt, row, i + 16), _mm256_loadu_ps(x + i + 16), a2);
            a3 = _mm256_fmadd_ps(load_w(dt, row, i + 24), _mm256_loadu_ps(x + i + 24), a3);
        }
        for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(load_w(dt, row, i), _mm256_loadu_ps(x + i), a0);
        if (i < k) /* float types only: quantised rows are whole blocks */
            a1 = _mm256_fmadd_ps(load_w_tail(dt, row, i, k - i), _mm256_maskload_ps(x + i, lane_mask(k - i)), a1);
        y[r] = add_all4(a0, a1, a2, a3);
    }
}

INLINE void tile_any(rg_dtype dt, int nt, const uint8_t *w, size_t rb, int nr, int len, const float *x, int ldx,
                     float *y, int ldy, int add) {
    switch (nt) {
    case 1: tile(dt, 1, w, rb, nr, len, x, ldx, y, ldy, add); break;
    case 2: tile(dt, 2, w, rb, nr, len, x, ldx, y, ldy, add); break;
    default: tile(dt, 3, w, rb, nr, len, x, ldx, y, ldy, add); break;
    }
}

/* Widen len elements of nr rows (from element i0, a multiple of KC) to
 * float32 rows of KC. */
INLINE void widen_tile(rg_dtype dt, const uint8_t *w, size_t rb, int nr, int i0, int len, float *dst) {
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        int i = 0;
        for (; i + 8 <= len; i += 8) _mm256_storeu_ps(dst + (size_t)r * KC + i, load_w(dt, row, i0 + i));
        if (i < len)
            _mm256_maskstore_ps(dst + (size_t)r * KC + i, lane_mask(len - i), load_w_tail(dt, row, i0 + i, len - i));
    }
}

/* ---------------------------------------- one token, quantised weights */

/* x rounded per block of 32: q [k] int8 and d [k/32] */
static void quantize_row(const float *x, int k, int8_t *q, float *d) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7); /* undo the packs' lane interleave */
    for (int b = 0; b < k / RG_QBLOCK; b++) {
        const float *xb = x + b * RG_QBLOCK;
        __m256 v[4], m;
        for (int j = 0; j < 4; j++) v[j] = _mm256_loadu_ps(xb + 8 * j);
        m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                          _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h), id = amax > 0 ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        __m256i i[4];
        for (int j = 0; j < 4; j++) i[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], _mm256_set1_ps(id)));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
        _mm256_storeu_si256((__m256i *)(q + b * RG_QBLOCK), _mm256_permutevar8x32_epi32(p, order));
    }
}

/* A weight block's 32 values as signed bytes: Q8_0 as stored, Q4_0 nibble - 8. */
INLINE __m256i block_weights(rg_dtype dt, const uint8_t *blk) {
    if (dt == RG_DT_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    __m128i v = _mm_loadu_si128((const __m128i *)(blk + 2)), lo4 = _mm_set1_epi8(0x0f);
    __m256i n = _mm256_setr_m128i(_mm_and_si128(v, lo4), _mm_and_si128(_mm_srli_epi16(v, 4), lo4));
    return _mm256_sub_epi8(n, _mm256_set1_epi8(8));
}

INLINE __m256 block_dot(rg_dtype dt, const uint8_t *blk, const int8_t *q, float dx, __m256 acc) {
    __m256i xq = _mm256_loadu_si256((const __m256i *)q);
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(xq, xq), _mm256_sign_epi8(block_weights(dt, blk), xq));
    __m256i s = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(f16_scale(blk) * dx), acc);
}

/* One row at a time (one sequential stream), 4 accumulators. */
INLINE void gemv_q(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, float *y) {
    const size_t bs = dt == RG_DT_Q8_0 ? 34 : 18;
    int nb = k / RG_QBLOCK;
    int8_t *q = rg_scratch(RG_SCRATCH_ACT, (size_t)k + sizeof(float) * (size_t)nb);
    float *dx = (float *)(q + k); /* k is a multiple of 32 */
    quantize_row(x, k, q, dx);
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int b = 0;
        for (; b + 4 <= nb; b += 4) {
            a0 = block_dot(dt, row + (size_t)b * bs, q + b * RG_QBLOCK, dx[b], a0);
            a1 = block_dot(dt, row + (size_t)(b + 1) * bs, q + (b + 1) * RG_QBLOCK, dx[b + 1], a1);
            a2 = block_dot(dt, row + (size_t)(b + 2) * bs, q + (b + 2) * RG_QBLOCK, dx[b + 2], a2);
            a3 = block_dot(dt, row + (size_t)(b + 3) * bs, q + (b + 3) * RG_QBLOCK, dx[b + 3], a3);
        }
        for (; b < nb; b++) a0 = block_dot(dt, row + (size_t)b * bs, q + b * RG_QBLOCK, dx[b], a0);
        y[r] = add_all4(a0, a1, a2, a3);
    }
}

INLINE void matmul_any(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n,
                       float *y, int ldy) {
    if (n == 1) { /* decode */
        if (dt == RG_DT_Q8_0 || dt == RG_DT_Q4_0) gemv_q(dt, w, rb, rows, k, x, y);
        else gemv(dt, w, rb, rows, k, x, y);
        return;
    }
    if (n <= TB) { /* a few tokens: stream each row once, widening in registers */
        for (int r0 = 0; r0 < rows; r0 += RB)
            tile_any(dt, n, w + (size_t)r0 * rb, rb, rows - r0 < RB ? rows - r0 : RB, k, x, ldx, y + r0, ldy, 0);
        return;
    }
    float *wide = dt == RG_DT_F32 ? NULL : rg_scratch(RG_SCRATCH_KERNEL, sizeof(float) * RB * KC);
    for (int k0 = 0; k0 < k; k0 += KC) {
        int len = k - k0 < KC ? k - k0 : KC;
        for (int r0 = 0; r0 < rows; r0 += RB) {
            int nr = rows - r0 < RB ? rows - r0 : RB;
            const uint8_t *src = w + (size_t)r0 * rb + (size_t)k0 * sizeof(float);
            size_t srb = rb;
            if (wide) {
                widen_tile(dt, w + (size_t)r0 * rb, rb, nr, k0, len, wide);
                src = (const uint8_t *)wide;
                srb = sizeof(float) * KC;
            }
            for (int t0 = 0; t0 < n; t0 += TB)
                tile_any(RG_DT_F32, n - t0 < TB ? n - t0 : TB, src, srb, nr, len, x + (size_t)t0 * ldx + k0, ldx,
                         y + (size_t)t0 * ldy + r0, ldy, k0 > 0);
        }
    }
}

#define AVX2_MATMUL(NAME, DT)                                                                                \
    static void NAME(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y, \
                     int ldy) {                                                                              \
        matmul_any(DT, w, rb, rows, k, x, ldx, n, y, ldy);                                                   \
    }
AVX2_MATMUL(matmul_f32, RG_DT_F32)
AVX2_MATMUL(matmul_f16, RG_DT_F16)
AVX2_MATMUL(matmul_bf16, RG_DT_BF16)
AVX2_MATMUL(matmul_q8_0, RG_DT_Q8_0)
AVX2_MATMUL(matmul_q4_0, RG_DT_Q4_0)

/* ------------------------------------------------ attention, activations */

static float softmax(float *x, int n, float scale, float *max) {
    __m256 sc = _mm256_set1_ps(scale);
    float mx = -INFINITY;
    for (int j = 0; j < n; j += 8) {
        size_t c = (size_t)(n - j);
        __m256 v = _mm256_mul_ps(load_n(x + j, c), sc);
        store_n(x + j, c, v);
        float lane[8];
        _mm256_storeu_ps(lane, v);
        for (size_t l = 0; l < (c < 8 ? c : 8); l++) mx = lane[l] > mx ? lane[l] : mx;
    }
    *max = mx;
    __m256 top = _mm256_set1_ps(mx), sum = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) {
        size_t c = (size_t)(n - j);
        __m256 e = exp8(_mm256_sub_ps(load_n(x + j, c), top));
        if (c < 8) e = _mm256_and_ps(e, _mm256_castsi256_ps(lane_mask((int)c)));
        store_n(x + j, c, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(_mm_hadd_ps(s, s));
}

static void wsum(const float *p, int ldp, int nh, const float *v, int nk, int hd, float *out, int ldo) {
    for (int h0 = 0; h0 < nh; h0 += 8) {
        int g = nh - h0 < 8 ? nh - h0 : 8;
        for (int i = 0; i < hd; i += 8) {
            size_t c = (size_t)(hd - i);
            __m256 acc[8];
            for (int h = 0; h < g; h++) acc[h] = load_n(out + (size_t)(h0 + h) * ldo + i, c);
            for (int j = 0; j < nk; j++) {
                __m256 vv = load_n(v + (size_t)j * hd + i, c);
                const float *pj = p + (size_t)h0 * ldp + j;
                for (int h = 0; h < g; h++)
                    acc[h] = _mm256_fmadd_ps(_mm256_set1_ps(pj[(size_t)h * ldp]), vv, acc[h]);
            }
            for (int h = 0; h < g; h++) store_n(out + (size_t)(h0 + h) * ldo + i, c, acc[h]);
        }
    }
}

static void gelu_mul(float *g, const float *u, size_t count) {
    const __m256 k = _mm256_set1_ps(0.7978845608028654f), c = _mm256_set1_ps(0.044715f),
                 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (size_t i = 0; i < count; i += 8) {
        __m256 x = load_n(g + i, count - i);
        __m256 inner = _mm256_mul_ps(k, _mm256_add_ps(x, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(c, x), x), x)));
        __m256 ge = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, tanh8(inner)));
        store_n(g + i, count - i, _mm256_mul_ps(ge, load_n(u + i, count - i)));
    }
}

static void softcap(float *x, size_t count, float cap) {
    const __m256 c = _mm256_set1_ps(cap);
    for (size_t i = 0; i < count; i += 8)
        store_n(x + i, count - i, _mm256_mul_ps(c, tanh8(_mm256_div_ps(load_n(x + i, count - i), c))));
}

/* The scalar kernel's formulas (kernels_scalar.c), 8 channels at a time. */
static void rglru(const float *x, const float *gx, const float *ga, const float *softplus_a, int n, int r, int ld,
                  int64_t pos0, float *h, float *y) {
    const __m256 one = _mm256_set1_ps(1.0f), m8 = _mm256_set1_ps(-8.0f);
    for (int c = 0; c < r; c += 8) {
        size_t cnt = (size_t)(r - c);
        __m256 sp = load_n(softplus_a + c, cnt), hc = load_n(h + c, cnt);
        for (int t = 0; t < n; t++) {
            size_t i = (size_t)t * ld + c;
            __m256 log_a = _mm256_mul_ps(_mm256_mul_ps(m8, sigmoid8(load_n(ga + i, cnt))), sp);
            __m256 a = exp8(log_a);
            __m256 mult = _mm256_sqrt_ps(_mm256_sub_ps(one, exp8(_mm256_add_ps(log_a, log_a))));
            if (pos0 + t == 0) {
                a = _mm256_setzero_ps();
                mult = one;
            }
            __m256 xin = _mm256_mul_ps(_mm256_mul_ps(load_n(x + i, cnt), sigmoid8(load_n(gx + i, cnt))), mult);
            hc = _mm256_fmadd_ps(a, hc, xin);
            store_n(y + i, cnt, hc);
        }
        store_n(h + c, cnt, hc);
    }
}

/* Assembler loops over registers 0..13: zero them; 12 multiply-adds into
 * registers 0..11 from 12 and 13. */
#define REGS12 "0,1,2,3,4,5,6,7,8,9,10,11"
#define ZERO14 ".irp r," REGS12 ",12,13\n\tvpxor %%xmm\\r, %%xmm\\r, %%xmm\\r\n\t.endr\n\t"
#define FMA12 ".irp r," REGS12 "\n\tvfmadd231ps %%ymm12, %%ymm13, %%ymm\\r\n\t.endr\n\t"
#define CLOBBER14 "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13"

/* ------------------------------------------------------ roofline probes */

static float read_sum(const float *p, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
    }
    __m256 t = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    float lane[8], s = 0;
    _mm256_storeu_ps(lane, t);
    for (int l = 0; l < 8; l++) s += lane[l];
    for (; i < n; i++) s += p[i];
    return s;
}

/* 12 independent accumulators, in assembly so the compiler cannot fold the
 * loop. This set has no int8 dot product. */
static double peak_loop(int int8, long iters) {
    if (int8 || iters <= 0) return 0;
    long n = iters;
    __asm__ volatile(ZERO14 "1:\n\t" FMA12 "dec %0\n\t"
                                          "jnz 1b\n\t"
                     : "+r"(n)::CLOBBER14, "cc");
    return (double)iters * 12 * 8 * 2;
}

const rg_kernel_set rg_kernels_avx2 = {
    "avx2",
    {[RG_DT_F32] = matmul_f32, [RG_DT_F16] = matmul_f16, [RG_DT_BF16] = matmul_bf16, [RG_DT_Q8_0] = matmul_q8_0,
     [RG_DT_Q4_0] = matmul_q4_0},
    1u << RG_DT_Q8_0 | 1u << RG_DT_Q4_0, /* one token only */
    softmax,
    wsum,
    gelu_mul,
    softcap,
    rglru,
    read_sum,
    peak_loop,
};
