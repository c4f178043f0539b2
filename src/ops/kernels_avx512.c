/* AVX-512 kernels (F, BW, VL, DQ and VNNI; only this file is built with
 * those instructions, and matmul.c picks it only on a CPU that has them).
 *
 * Float weights (F32, F16, BF16), float32 activations: register tiles of RB
 * weight rows x up to TB tokens. Each step loads 16 weights of each row
 * (widened in registers) and 16 activations of each token and does RB*TB
 * fused multiply-adds, so every weight loaded serves TB tokens. With more
 * than TB tokens (prefill) the k axis is cut in blocks of KC: the block of
 * activations stays in L2 while a weight tile, widened once to float32 in a
 * scratch buffer, serves every token from L1.
 *
 * Quantised weights (Q8_0, Q4_0): each activation row is quantised per block
 * of 32 like Q8_0 (d_x = max|x| / 127, q = round(x / d_x)); a block's dot
 * product is one integer instruction (vpdpbusd: unsigned bytes x signed
 * bytes, summed in int32) scaled by d_w * d_x. vpdpbusd wants the weights
 * unsigned (see unpack_q); the offset that adds is taken off by starting the
 * integer sum from a bias (see qmeta). Rounding the activations to int8 is
 * the only approximation: |error| of a block's dot product <= d_x/2 * sum|w|
 * (tests/unit/test_kernels.c checks that bound). */
#include <immintrin.h>
#include <math.h>
#include "ops/ops.h"
#include "util/util.h"

#define INLINE static inline __attribute__((always_inline))

enum { RB = 4, TB = 6, KC = 512, QTB = 4 };
/* Tiles read RB rows at once, which the hardware prefetcher follows less
 * well than one stream: float tiles prefetch this far ahead in each row,
 * quantised tiles (short rows) the same place of the next tile's rows. */
#define PF_AHEAD 1024

/* ------------------------------------------------------------ helpers */

/* [sum(a0), sum(a1), sum(a2), sum(a3)] */
INLINE __m128 hsum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    __m512 u = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))));
    __m256 v = _mm256_add_ps(_mm512_castps512_ps256(u), _mm512_extractf32x8_ps(u, 1));
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

INLINE __m128 hsum4_256(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t0 = _mm256_add_ps(_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
    __m256 t1 = _mm256_add_ps(_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
    __m256 u = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t1))),
                             _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t1))));
    return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

/* a0 + a1 + a2 + a3, all lanes summed */
INLINE float add_all4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    u = _mm_hadd_ps(u, u);
    return _mm_cvtss_f32(_mm_hadd_ps(u, u));
}

INLINE __mmask16 tail_mask(int count) { return (__mmask16)((1u << count) - 1); }

/* 16 weights from element i of a float row, widened to float32. */
INLINE __m512 load_w(rg_dtype dt, const uint8_t *row, int i, __mmask16 m) {
    if (dt == RG_DT_F32) return _mm512_maskz_loadu_ps(m, (const float *)row + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i);
    if (dt == RG_DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); /* bf16 = top half of f32 */
}

/* exp(x) = 2^n * e^r, n = round(x / ln 2), |r| <= ln2/2, e^r by the Cephes
 * expf polynomial (about 1 ulp); 2^n applied by vscalefps. */
INLINE __m512 exp16(__m512 x) {
    /* operands in this order so that a NaN x stays NaN (minps/maxps return the
     * second operand when one is NaN): a clamp must not turn NaN into a number */
    x = _mm512_min_ps(_mm512_set1_ps(88.8f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* tanh(x) = 1 - 2 / (exp(2x) + 1) (absolute error ~1e-7) */
INLINE __m512 tanh16(__m512 x) {
    __m512 e = exp16(_mm512_add_ps(x, x));
    return _mm512_sub_ps(_mm512_set1_ps(1.0f),
                         _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
}

INLINE __m512 sigmoid16(__m512 x) {
    __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

/* ------------------------------------------------- matmul, float weights */

/* acc[r][t] += w[r][i..i+16) x[t][i..i+16) (lanes outside m are 0) */
INLINE void tile_step(rg_dtype dt, const int nt, const uint8_t *const wr[RB], int i, __mmask16 m, const float *x,
                      int ldx, __m512 acc[RB][TB], const int prefetch) {
    __m512 wv[RB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        if (prefetch)
            _mm_prefetch((const char *)wr[r] + (size_t)i * (dt == RG_DT_F32 ? 4 : 2) + PF_AHEAD, _MM_HINT_T0);
        wv[r] = load_w(dt, wr[r], i, m);
    }
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) {
        __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)t * ldx + i);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
}

/* y[t][r] (+)= sum_{i<len} w[r][i] x[t][i] for r < nr, t < nt (a constant
 * after inlining, so acc lives in registers). Rows past nr repeat the last
 * row and are not stored. */
INLINE void tile_f(rg_dtype dt, const int nt, const uint8_t *w, size_t rb, int nr, int len, const float *x, int ldx,
                   float *y, int ldy, int add, const int prefetch) {
    const uint8_t *wr[RB];
    for (int r = 0; r < RB; r++) wr[r] = w + (size_t)(r < nr ? r : nr - 1) * rb;
    __m512 acc[RB][TB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 6
        for (int t = 0; t < nt; t++) acc[r][t] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= len; i += 16) tile_step(dt, nt, wr, i, 0xffff, x, ldx, acc, prefetch);
    if (i < len) tile_step(dt, nt, wr, i, tail_mask(len - i), x, ldx, acc, 0);
    __mmask8 ym = (__mmask8)((1u << nr) - 1);
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) {
        __m128 s = hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
        float *yt = y + (size_t)t * ldy;
        if (add) s = _mm_add_ps(s, _mm_maskz_loadu_ps(ym, yt));
        _mm_mask_storeu_ps(yt, ym, s);
    }
}

/* One token, one row at a time: a single sequential stream through the
 * weights (what the hardware prefetcher follows best); 4 accumulators over
 * k hide the FMA latency. */
INLINE void gemv_f(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, float *y) {
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 64 <= k; i += 64) {
            a0 = _mm512_fmadd_ps(load_w(dt, row, i, 0xffff), _mm512_loadu_ps(x + i), a0);
            a1 = _mm512_fmadd_ps(load_w(dt, row, i + 16, 0xffff), _mm512_loadu_ps(x + i + 16), a1);
            a2 = _mm512_fmadd_ps(load_w(dt, row, i + 32, 0xffff), _mm512_loadu_ps(x + i + 32), a2);
            a3 = _mm512_fmadd_ps(load_w(dt, row, i + 48, 0xffff), _mm512_loadu_ps(x + i + 48), a3);
        }
        for (; i < k; i += 16) {
            __mmask16 m = k - i >= 16 ? 0xffff : tail_mask(k - i);
            a0 = _mm512_fmadd_ps(load_w(dt, row, i, m), _mm512_maskz_loadu_ps(m, x + i), a0);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}

/* One tile of nt <= TB tokens, dispatched to a constant nt. */
INLINE void tile_f_any(rg_dtype dt, int nt, const uint8_t *w, size_t rb, int nr, int len, const float *x, int ldx,
                       float *y, int ldy, int add, const int prefetch) {
    switch (nt) {
    case 1: tile_f(dt, 1, w, rb, nr, len, x, ldx, y, ldy, add, prefetch); break;
    case 2: tile_f(dt, 2, w, rb, nr, len, x, ldx, y, ldy, add, prefetch); break;
    case 3: tile_f(dt, 3, w, rb, nr, len, x, ldx, y, ldy, add, prefetch); break;
    case 4: tile_f(dt, 4, w, rb, nr, len, x, ldx, y, ldy, add, prefetch); break;
    case 5: tile_f(dt, 5, w, rb, nr, len, x, ldx, y, ldy, add, prefetch); break;
    default: tile_f(dt, 6, w, rb, nr, len, x, ldx, y, ldy, add, prefetch); break;
    }
}

/* Widen len elements of nr rows (from element i0) to float32 rows of KC. */
INLINE void widen_tile(rg_dtype dt, const uint8_t *w, size_t rb, int nr, int i0, int len, float *dst) {
    for (int r = 0; r < nr; r++)
        for (int i = 0; i < len; i += 16) {
            __mmask16 m = len - i >= 16 ? 0xffff : tail_mask(len - i);
            _mm512_mask_storeu_ps(dst + (size_t)r * KC + i, m, load_w(dt, w + (size_t)r * rb, i0 + i, m));
        }
}

/* Kernel choice by token count (measured, see README "Speed"; each can be
 * overridden at build time to measure the others): float weights use the
 * one-row gemv for one token, register tiles up to TILE_MAX_N tokens, then
 * tiles widened once per block of KC; Q8_0/Q4_0 the one-row gemv_q for one
 * token if Q_GEMV_MAX_N >= 1, the int8 tiles (tile_q) below Q_PANEL_MIN_N
 * and the panels from there. */
#ifndef TILE_MAX_N
#define TILE_MAX_N 32
#endif
#ifndef Q_GEMV_MAX_N
#define Q_GEMV_MAX_N 1
#endif

INLINE void matmul_float(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n,
                         float *y, int ldy) {
    if (n == 1) { /* decode */
        gemv_f(dt, w, rb, rows, k, x, y);
        return;
    }
    if (n <= TILE_MAX_N) { /* a few tokens: stream each row tile once, widening in registers */
        for (int r0 = 0; r0 < rows; r0 += RB)
            for (int t0 = 0; t0 < n; t0 += TB)
                tile_f_any(dt, n - t0 < TB ? n - t0 : TB, w + (size_t)r0 * rb, rb, rows - r0 < RB ? rows - r0 : RB, k,
                           x + (size_t)t0 * ldx, ldx, y + (size_t)t0 * ldy + r0, ldy, 0, 1);
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
                /* the next tile's weights (2 bytes each) come from memory while this one computes */
                for (int r = r0 + RB; r < rows && r < r0 + 2 * RB; r++)
                    for (size_t b = 0; b < (size_t)len * 2; b += 64)
                        _mm_prefetch((const char *)(w + (size_t)r * rb + (size_t)k0 * 2 + b), _MM_HINT_T0);
                src = (const uint8_t *)wide;
                srb = sizeof(float) * KC;
            }
            for (int t0 = 0; t0 < n; t0 += TB)
                tile_f_any(RG_DT_F32, n - t0 < TB ? n - t0 : TB, src, srb, nr, len, x + (size_t)t0 * ldx + k0, ldx,
                           y + (size_t)t0 * ldy + r0, ldy, k0 > 0, 0);
        }
    }
}

static void matmul_f32(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                       int ldy) {
    matmul_float(RG_DT_F32, w, rb, rows, k, x, ldx, n, y, ldy);
}
static void matmul_f16(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                       int ldy) {
    matmul_float(RG_DT_F16, w, rb, rows, k, x, ldx, n, y, ldy);
}
static void matmul_bf16(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                        int ldy) {
    matmul_float(RG_DT_BF16, w, rb, rows, k, x, ldx, n, y, ldy);
}

/* --------------------------------------------- matmul, quantised weights */

/* Per activation block: its scale d and the starting value of the integer
 * sum, which takes off the weight offset (Q8_0 uses q + 128: -128 *
 * sum(x_q); Q4_0 uses the nibbles: -8 * sum(x_q)). Stored compact (8 bytes a
 * block: d and the whole block's start, as the panels use it) or wide (64
 * bytes, the 8 lanes of the one-row kernels ready: two instructions fewer a
 * block, worth it while a row of them stays in L1). In those kernels Q8_0
 * spreads the start over the 8 lanes; Q4_0 over lanes 0..3, as its lanes
 * 4..7 hold 16 x the high nibbles (see unpack_q): their start is 0 and their
 * scale d/16, exact. */
typedef struct {
    float d;
    int32_t bias;
} qmeta;
typedef struct {
    float d[8];
    int32_t bias[8];
} qmeta_wide;

/* Decode rows up to this long use the wide form. */
#define WIDE_MAX_K 4096

/* A block's start spread over the lanes of the one-row kernels (exact:
 * -128 * sum is a multiple of 8, -8 * sum of 4). */
INLINE int32_t lane_start(rg_dtype dt, int32_t block_start) {
    return dt == RG_DT_Q8_0 ? block_start / 8 : block_start / 4;
}

/* Quantise n activation rows (k a multiple of 32) into q [n x k] and meta
 * [n x k/32] (qmeta or, if wide, qmeta_wide) for weight type dt. */
static void quantize_act(rg_dtype dt, const float *x, int ldx, int n, int k, int8_t *q, void *meta, int wide) {
    int nb = k / RG_QBLOCK;
    for (int t = 0; t < n; t++)
        for (int b = 0; b < nb; b++) {
            const float *xb = x + (size_t)t * ldx + b * RG_QBLOCK;
            __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
            __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
            __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
            int8_t *qb = q + (size_t)t * k + b * RG_QBLOCK;
            _mm_storeu_si128((__m128i *)qb, _mm512_cvtsepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(qb + 16), _mm512_cvtsepi32_epi8(q1));
            int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            size_t at = (size_t)t * nb + b;
            qmeta c = {d, dt == RG_DT_Q8_0 ? -128 * sum : -8 * sum};
            if (!wide) {
                ((qmeta *)meta)[at] = c;
                continue;
            }
            qmeta_wide *m = (qmeta_wide *)meta + at;
            for (int l = 0; l < 8; l++) {
                int all = dt == RG_DT_Q8_0 || l < 4;
                m->d[l] = all ? d : d / 16;
                m->bias[l] = all ? lane_start(dt, c.bias) : 0;
            }
        }
}

/* The 8 lanes' starting values and activation scales of block `at`. */
INLINE __m256i lane_bias(rg_dtype dt, int wide, const void *meta, size_t at) {
    if (wide) return _mm256_load_si256((const __m256i *)((const qmeta_wide *)meta)[at].bias);
    int32_t v = lane_start(dt, ((const qmeta *)meta)[at].bias);
    return dt == RG_DT_Q8_0 ? _mm256_set1_epi32(v) : _mm256_maskz_set1_epi32(0x0f, v);
}
INLINE __m256 lane_scale(rg_dtype dt, int wide, const void *meta, size_t at) {
    if (wide) return _mm256_load_ps(((const qmeta_wide *)meta)[at].d);
    __m256 d = _mm256_set1_ps(((const qmeta *)meta)[at].d);
    return dt == RG_DT_Q8_0 ? d : _mm256_mask_mul_ps(d, 0xf0, d, _mm256_set1_ps(1.0f / 16));
}

/* A weight block's 32 values as unsigned bytes for vpdpbusd: Q8_0 gives
 * q + 128 (xor 0x80); Q4_0 gives the 16 bytes twice, masked to the low
 * nibbles (elements 0..15) in the first half and to the high nibbles, i.e.
 * 16 x elements 16..31, in the second (two instructions, no shift). */
INLINE __m256i unpack_q(rg_dtype dt, const uint8_t *blk) {
    if (dt == RG_DT_Q8_0)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 2)), _mm256_set1_epi8((char)0x80));
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 2)));
    return _mm256_and_si256(b, _mm256_setr_m128i(_mm_set1_epi8(0x0f), _mm_set1_epi8((char)0xf0)));
}

/* A block's weight scale d_w in 8 lanes */
INLINE __m256 scale_w(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16((short)h));
}

/* Prefill: RB rows x nt tokens (compact activation metadata, shared by the
 * RB rows). */
INLINE void tile_q(rg_dtype dt, const int nt, const uint8_t *w, size_t rb, int nr, int nb, const int8_t *q,
                   const qmeta *meta, int k, float *y, int ldy) {
    const size_t bs = dt == RG_DT_Q8_0 ? 34 : 18;
    const uint8_t *wr[RB];
    for (int r = 0; r < RB; r++) wr[r] = w + (size_t)(r < nr ? r : nr - 1) * rb;
    __m256 acc[RB][QTB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) acc[r][t] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m256i wu[RB];
        __m256 dw[RB];
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const uint8_t *blk = wr[r] + (size_t)b * bs;
            _mm_prefetch((const char *)blk + RB * rb, _MM_HINT_T0);
            wu[r] = unpack_q(dt, blk);
            dw[r] = scale_w(blk);
        }
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            __m256i xq = _mm256_loadu_si256((const __m256i *)(q + (size_t)t * k + b * RG_QBLOCK));
            size_t at = (size_t)t * nb + b;
            __m256i bias = lane_bias(dt, 0, meta, at);
            __m256 dx = lane_scale(dt, 0, meta, at);
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) {
                __m256i s = _mm256_dpbusd_epi32(bias, wu[r], xq);
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw[r], dx), acc[r][t]);
            }
        }
    }
    __mmask8 ym = (__mmask8)((1u << nr) - 1);
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++)
        _mm_mask_storeu_ps(y + (size_t)t * ldy, ym, hsum4_256(acc[0][t], acc[1][t], acc[2][t], acc[3][t]));
}

/* acc += one block's dot product (row block blk, activation block b) */
INLINE __m256 block_dot(rg_dtype dt, const int wide, const uint8_t *blk, const int8_t *q, const void *meta, int b,
                        __m256 acc) {
    __m256i s = _mm256_dpbusd_epi32(lane_bias(dt, wide, meta, (size_t)b), unpack_q(dt, blk),
                                    _mm256_loadu_si256((const __m256i *)(q + b * RG_QBLOCK)));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(scale_w(blk), lane_scale(dt, wide, meta, (size_t)b)),
                           acc);
}

/* Decode: one row at a time, a single sequential stream through the
 * weights (what the hardware prefetcher follows best; two or four rows at
 * once stream at half the rate); 4 accumulators hide the FMA latency. */
INLINE void gemv_q(rg_dtype dt, const int wide, const uint8_t *w, size_t rb, int rows, int nb, const int8_t *q,
                   const void *meta, float *y) {
    const size_t bs = dt == RG_DT_Q8_0 ? 34 : 18;
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int b = 0;
        for (; b + 4 <= nb; b += 4) {
            a0 = block_dot(dt, wide, row + (size_t)b * bs, q, meta, b, a0);
            a1 = block_dot(dt, wide, row + (size_t)(b + 1) * bs, q, meta, b + 1, a1);
            a2 = block_dot(dt, wide, row + (size_t)(b + 2) * bs, q, meta, b + 2, a2);
            a3 = block_dot(dt, wide, row + (size_t)(b + 3) * bs, q, meta, b + 3, a3);
        }
        for (; b < nb; b++) a0 = block_dot(dt, wide, row + (size_t)b * bs, q, meta, b, a0);
        y[r] = add_all4(a0, a1, a2, a3);
    }
}

/* Prefill with many tokens: PR weight rows are first repacked into a panel
 * in which one 64-byte vector holds the same 4 consecutive weights (as
 * unsigned bytes) of each of the PR rows. vpdpbusd of that vector with 4
 * activation bytes broadcast adds 4 products into each row's lane, so 8 of
 * them leave the PR rows' whole-block dot products in one register, and the
 * block's scaling (cvt, d_w * d_x, fma) costs 3 instructions per 8 vpdpbusd
 * instead of 3 per one as in tile_q. The repack (a transpose in registers)
 * is paid once per panel and shared by all the tokens. */
enum { PR = 16, PT = 8 };
typedef struct {
    uint8_t q[8][PR][4]; /* q[g][r]: weights 4g..4g+3 of the block in row r */
    float d[PR];         /* d_w of each row's block (0 past the last row) */
} panel_block;

/* Panels pay off from this many tokens. Measured on the 2B shape (Q8_0, 2
 * threads, Zen 4), t/s of tile_q vs panels: n=2 22 vs 13, 4 41 vs 27, 8 48
 * vs 46, 16 53 vs 69, 512 (chunks of 256) 58 vs 133; again for batched
 * steps (README "Speed", Q8_0 and Q4_0, n = 1..16): tile_q faster up to 6,
 * even at 7-10. */
#ifndef Q_PANEL_MIN_N
#define Q_PANEL_MIN_N 8
#endif

/* Rows past the last (nr < PR) read this block: weights 0, d_w 0. */
static const uint8_t zero_block[34];

/* Transposes 16 rows x 8 dwords, given as z[i] = [row i | row i + 8], into
 * out[g] = dword g of rows 0..15: two 8x8 transposes side by side (32-bit
 * then 64-bit interleaves within 128-bit lanes, then one two-source qword
 * permute per output). */
INLINE void transpose_16x8(const __m512i z[8], __m512i out[8]) {
    __m512i t[8], u[8];
    for (int h = 0; h < 2; h++) { /* rows 0-3 (and 8-11), then 4-7 (and 12-15) */
        const __m512i *zz = z + 4 * h;
        t[4 * h + 0] = _mm512_unpacklo_epi32(zz[0], zz[1]);
        t[4 * h + 1] = _mm512_unpackhi_epi32(zz[0], zz[1]);
        t[4 * h + 2] = _mm512_unpacklo_epi32(zz[2], zz[3]);
        t[4 * h + 3] = _mm512_unpackhi_epi32(zz[2], zz[3]);
        u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]); /* dwords 0 | 4 */
        u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]); /* 1 | 5 */
        u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]); /* 2 | 6 */
        u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]); /* 3 | 7 */
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int g = 0; g < 4; g++) {
        out[g] = _mm512_permutex2var_epi64(u[g], lo, u[g + 4]);
        out[g + 4] = _mm512_permutex2var_epi64(u[g], hi, u[g + 4]);
    }
}

static void repack_panel(rg_dtype dt, const uint8_t *w, size_t rb, int nr, int nb, panel_block *p) {
    const size_t bs = dt == RG_DT_Q8_0 ? 34 : 18;
    const __m512i lo4 = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8((char)0x80);
    const __m512i twice = _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3);
    for (int b = 0; b < nb; b++) {
        uint16_t d[PR];
        __m512i z[8], out[8];
        for (int i = 0; i < 8; i++) {
            const uint8_t *b0 = i < nr ? w + (size_t)i * rb + (size_t)b * bs : zero_block;
            const uint8_t *b1 = i + 8 < nr ? w + (size_t)(i + 8) * rb + (size_t)b * bs : zero_block;
            memcpy(&d[i], b0, 2);
            memcpy(&d[i + 8], b1, 2);
            if (dt == RG_DT_Q8_0) {
                __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),
                                               _mm256_loadu_si256((const __m256i *)(b1 + 2)), 1);
                z[i] = _mm512_xor_si512(v, flip);
            } else { /* element j < 16 is the low nibble of byte j, element 16 + j its high nibble */
                __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b0 + 2))),
                                                    _mm_loadu_si128((const __m128i *)(b1 + 2)), 1);
                __m512i vv = _mm512_permutexvar_epi64(twice, _mm512_castsi256_si512(v)); /* each row's 16 bytes twice */
                z[i] = _mm512_and_si512(_mm512_mask_srli_epi16(vv, 0xff00ff00, vv, 4), lo4);
            }
        }
        _mm512_store_ps(p[b].d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)d)));
        transpose_16x8(z, out);
        for (int g = 0; g < 8; g++) _mm512_store_si512(p[b].q[g], out[g]);
    }
}

/* y[t][r] = sum over blocks of d_w d_x (start + dot) for the panel's rows,
 * nt <= PT tokens (compact activation metadata). */
INLINE void panel_tile(const int nt, const panel_block *p, int nb, const int8_t *q, int k, const qmeta *meta,
                       float *y, int ldy, __mmask16 m) {
    __m512 acc[PT];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m512i s[PT];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) s[t] = _mm512_set1_epi32(meta[(size_t)t * nb + b].bias);
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m512i wv = _mm512_load_si512(p[b].q[g]);
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                int32_t x4;
                memcpy(&x4, q + (size_t)t * k + b * RG_QBLOCK + 4 * g, 4);
                s[t] = _mm512_dpbusd_epi32(s[t], wv, _mm512_set1_epi32(x4));
            }
        }
        __m512 dw = _mm512_load_ps(p[b].d);
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(dw, _mm512_set1_ps(meta[(size_t)t * nb + b].d)),
                                     acc[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(y + (size_t)t * ldy, m, acc[t]);
}

static void matmul_panels(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const int8_t *q,
                          const qmeta *meta, int n, float *y, int ldy, panel_block *p) {
    int nb = k / RG_QBLOCK;
    for (int r0 = 0; r0 < rows; r0 += PR) {
        int nr = rows - r0 < PR ? rows - r0 : PR;
        repack_panel(dt, w + (size_t)r0 * rb, rb, nr, nb, p);
        __mmask16 m = tail_mask(nr);
        for (int t0 = 0; t0 < n; t0 += PT) {
            const int8_t *qt = q + (size_t)t0 * k;
            const qmeta *mt = meta + (size_t)t0 * nb;
            float *yt = y + (size_t)t0 * ldy + r0;
            switch (n - t0) {
            case 1: panel_tile(1, p, nb, qt, k, mt, yt, ldy, m); break;
            case 2: panel_tile(2, p, nb, qt, k, mt, yt, ldy, m); break;
            case 3: panel_tile(3, p, nb, qt, k, mt, yt, ldy, m); break;
            case 4: panel_tile(4, p, nb, qt, k, mt, yt, ldy, m); break;
            case 5: panel_tile(5, p, nb, qt, k, mt, yt, ldy, m); break;
            case 6: panel_tile(6, p, nb, qt, k, mt, yt, ldy, m); break;
            case 7: panel_tile(7, p, nb, qt, k, mt, yt, ldy, m); break;
            default: panel_tile(8, p, nb, qt, k, mt, yt, ldy, m); break;
            }
        }
    }
}

INLINE void matmul_quant(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n,
                         float *y, int ldy) {
    int gemv1 = n == 1 && Q_GEMV_MAX_N >= 1, panels = n >= Q_PANEL_MIN_N;
    int nb = k / RG_QBLOCK, wide = gemv1 && k <= WIDE_MAX_K;
    size_t qbytes = ((size_t)n * k + 63) & ~(size_t)63;
    size_t mbytes = (((wide ? sizeof(qmeta_wide) : sizeof(qmeta)) * (size_t)n * nb) + 63) & ~(size_t)63;
    int8_t *q = rg_scratch(RG_SCRATCH_ACT, qbytes + mbytes);
    void *meta = q + qbytes;
    /* The same x as this thread's previous piece of the same matmul call:
     * q and meta still hold it (only quantised kernels write the slot, the
     * kernel set is fixed within a call, and the same sizes did not move
     * it). */
    static _Thread_local struct {
        unsigned long call;
        const float *x;
        int ldx, n, k, wide;
        rg_dtype dt;
    } done;
    unsigned long call = rg_matmul_call_id();
    if (!call || done.call != call || done.x != x || done.ldx != ldx || done.n != n || done.k != k ||
        done.wide != wide || done.dt != dt) {
        quantize_act(dt, x, ldx, n, k, q, meta, wide);
        done.call = call, done.x = x, done.ldx = ldx, done.n = n, done.k = k, done.wide = wide, done.dt = dt;
    }
    if (gemv1) { /* decode */
        if (wide) gemv_q(dt, 1, w, rb, rows, nb, q, meta, y);
        else gemv_q(dt, 0, w, rb, rows, nb, q, meta, y);
        return;
    }
    if (panels) {
        matmul_panels(dt, w, rb, rows, k, q, meta, n, y, ldy,
                      rg_scratch(RG_SCRATCH_KERNEL, sizeof(panel_block) * (size_t)nb));
        return;
    }
    for (int r0 = 0; r0 < rows; r0 += RB) {
        int nr = rows - r0 < RB ? rows - r0 : RB;
        const uint8_t *wr = w + (size_t)r0 * rb;
        for (int t0 = 0; t0 < n; t0 += QTB) {
            const int8_t *qt = q + (size_t)t0 * k;
            const qmeta *mt = (const qmeta *)meta + (size_t)t0 * nb;
            float *yt = y + (size_t)t0 * ldy + r0;
            switch (n - t0) {
            case 1: tile_q(dt, 1, wr, rb, nr, nb, qt, mt, k, yt, ldy); break;
            case 2: tile_q(dt, 2, wr, rb, nr, nb, qt, mt, k, yt, ldy); break;
            case 3: tile_q(dt, 3, wr, rb, nr, nb, qt, mt, k, yt, ldy); break;
            default: tile_q(dt, 4, wr, rb, nr, nb, qt, mt, k, yt, ldy); break;
            }
        }
    }
}

static void matmul_q8_0(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                        int ldy) {
    matmul_quant(RG_DT_Q8_0, w, rb, rows, k, x, ldx, n, y, ldy);
}
static void matmul_q4_0(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                        int ldy) {
    matmul_quant(RG_DT_Q4_0, w, rb, rows, k, x, ldx, n, y, ldy);
}

/* ------------------------------------------------ attention, activations */

static float softmax(float *x, int n, float scale, float *max) {
    __m512 mx = _mm512_set1_ps(-INFINITY), sc = _mm512_set1_ps(scale);
    for (int j = 0; j < n; j += 16) {
        __mmask16 m = n - j >= 16 ? 0xffff : tail_mask(n - j);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j), sc);
        _mm512_mask_storeu_ps(x + j, m, v);
        mx = _mm512_mask_max_ps(mx, m, mx, v);
    }
    *max = _mm512_reduce_max_ps(mx);
    __m512 top = _mm512_set1_ps(*max), sum = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        __mmask16 m = n - j >= 16 ? 0xffff : tail_mask(n - j);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), top));
        _mm512_mask_storeu_ps(x + j, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/* Heads in groups of at most WG (the 2B model's 10 heads in one), 16
 * columns at a time: each value row segment is loaded once for the group,
 * whose accumulators stay in registers (g is a constant in each copy). */
enum { WG = 12 };
INLINE void wsum_group(const int g, const float *p, int ldp, const float *v, int nk, int hd, float *out, int ldo) {
    for (int i = 0; i < hd; i += 16) {
        __mmask16 m = hd - i >= 16 ? 0xffff : tail_mask(hd - i);
        __m512 acc[WG];
#pragma GCC unroll 12
        for (int h = 0; h < g; h++) acc[h] = _mm512_maskz_loadu_ps(m, out + (size_t)h * ldo + i);
        for (int j = 0; j < nk; j++) {
            __m512 vv = _mm512_maskz_loadu_ps(m, v + (size_t)j * hd + i);
#pragma GCC unroll 12
            for (int h = 0; h < g; h++) acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(p[(size_t)h * ldp + j]), vv, acc[h]);
        }
#pragma GCC unroll 12
        for (int h = 0; h < g; h++) _mm512_mask_storeu_ps(out + (size_t)h * ldo + i, m, acc[h]);
    }
}

static void wsum(const float *p, int ldp, int nh, const float *v, int nk, int hd, float *out, int ldo) {
    int groups = (nh + WG - 1) / WG;
    for (int h0 = 0, gi = 0; gi < groups; gi++) {
        int g = (nh - h0 + (groups - gi) - 1) / (groups - gi); /* even groups: 16 heads = 8 + 8 */
        const float *pg = p + (size_t)h0 * ldp;
        float *og = out + (size_t)h0 * ldo;
        switch (g) {
#define WSUM_CASE(G) \
    case G: wsum_group(G, pg, ldp, v, nk, hd, og, ldo); break;
            WSUM_CASE(1) WSUM_CASE(2) WSUM_CASE(3) WSUM_CASE(4) WSUM_CASE(5) WSUM_CASE(6)
            WSUM_CASE(7) WSUM_CASE(8) WSUM_CASE(9) WSUM_CASE(10) WSUM_CASE(11) default: WSUM_CASE(12)
#undef WSUM_CASE
        }
        h0 += g;
    }
}

static void gelu_mul(float *g, const float *u, size_t count) {
    const __m512 k = _mm512_set1_ps(0.7978845608028654f), c = _mm512_set1_ps(0.044715f),
                 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < count; i += 16) {
        __mmask16 m = count - i >= 16 ? 0xffff : tail_mask((int)(count - i));
        __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        __m512 inner = _mm512_mul_ps(k, _mm512_add_ps(x, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(c, x), x), x)));
        __m512 ge = _mm512_mul_ps(_mm512_mul_ps(half, x), _mm512_add_ps(one, tanh16(inner)));
        _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(ge, _mm512_maskz_loadu_ps(m, u + i)));
    }
}

static void softcap(float *x, size_t count, float cap) {
    const __m512 c = _mm512_set1_ps(cap);
    for (size_t i = 0; i < count; i += 16) {
        __mmask16 m = count - i >= 16 ? 0xffff : tail_mask((int)(count - i));
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(c, tanh16(_mm512_div_ps(v, c))));
    }
}

/* The scalar kernel's formulas (kernels_scalar.c), 16 channels at a time. */
static void rglru(const float *x, const float *gx, const float *ga, const float *softplus_a, int n, int r, int ld,
                  int64_t pos0, float *h, float *y) {
    const __m512 one = _mm512_set1_ps(1.0f), m8 = _mm512_set1_ps(-8.0f);
    for (int c = 0; c < r; c += 16) {
        __mmask16 m = r - c >= 16 ? 0xffff : tail_mask(r - c);
        __m512 sp = _mm512_maskz_loadu_ps(m, softplus_a + c);
        __m512 hc = _mm512_maskz_loadu_ps(m, h + c);
        for (int t = 0; t < n; t++) {
            size_t i = (size_t)t * ld + c;
            __m512 log_a = _mm512_mul_ps(_mm512_mul_ps(m8, sigmoid16(_mm512_maskz_loadu_ps(m, ga + i))), sp);
            __m512 a = exp16(log_a);
            __m512 mult = _mm512_sqrt_ps(_mm512_sub_ps(one, exp16(_mm512_add_ps(log_a, log_a))));
            if (pos0 + t == 0) {
                a = _mm512_setzero_ps();
                mult = one;
            }
            __m512 xin = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i),
                                                     sigmoid16(_mm512_maskz_loadu_ps(m, gx + i))),
                                       mult);
            hc = _mm512_fmadd_ps(a, hc, xin);
            _mm512_mask_storeu_ps(y + i, m, hc);
        }
        _mm512_mask_storeu_ps(h + c, m, hc);
    }
}

/* Assembler loops over registers 0..13: zero them; 12 multiply-adds into
 * registers 0..11 from 12 and 13. */
#define REGS12 "0,1,2,3,4,5,6,7,8,9,10,11"
#define ZERO14 ".irp r," REGS12 ",12,13\n\tvpxor %%xmm\\r, %%xmm\\r, %%xmm\\r\n\t.endr\n\t"
#define FMA12 ".irp r," REGS12 "\n\tvfmadd231ps %%zmm12, %%zmm13, %%zmm\\r\n\t.endr\n\t"
#define DP12 ".irp r," REGS12 "\n\tvpdpbusd %%zmm12, %%zmm13, %%zmm\\r\n\t.endr\n\t"
#define CLOBBER14 "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13"

/* ------------------------------------------------------ roofline probes */

static float read_sum(const float *p, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(p + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(p + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(p + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(p + i + 48));
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++) s += p[i];
    return s;
}

/* 12 independent accumulators (more than latency x throughput on current
 * cores), written in assembly so the compiler cannot fold the loop. */
static double peak_loop(int int8, long iters) {
    if (iters <= 0) return 0;
    long n = iters;
    if (int8) {
        __asm__ volatile(ZERO14 "1:\n\t" DP12 "dec %0\n\t"
                                              "jnz 1b\n\t"
                         : "+r"(n)::CLOBBER14, "cc");
        return (double)iters * 12 * 64 * 2;
    }
    __asm__ volatile(ZERO14 "1:\n\t" FMA12 "dec %0\n\t"
                                          "jnz 1b\n\t"
                     : "+r"(n)::CLOBBER14, "cc");
    return (double)iters * 12 * 16 * 2;
}

const rg_kernel_set rg_kernels_avx512 = {
    "avx512",
    {[RG_DT_F32] = matmul_f32, [RG_DT_F16] = matmul_f16, [RG_DT_BF16] = matmul_bf16, [RG_DT_Q8_0] = matmul_q8_0,
     [RG_DT_Q4_0] = matmul_q4_0},
    1u << RG_DT_Q8_0 | 1u << RG_DT_Q4_0,
    softmax,
    wsum,
    gelu_mul,
    softcap,
    rglru,
    read_sum,
    peak_loop,
};
