/* AVX2 + FMA + F16C kernels (only this file is built with those
 * instructions; matmul.c picks it only on a CPU that has them).
 *
 * Float weights, several tokens: each step widens 8 weights of each of RB
 * rows to float32 in registers and does RB*TB fused multiply-adds with TB
 * tokens. With more tokens (prefill) the k axis is cut in blocks of KC and
 * a tile of rows is widened once into a float32 scratch buffer that serves
 * every token. Row lengths that are not a multiple of 8 finish with masked
 * loads.
 *
 * Q8_0/Q4_0 weights: the activations are rounded per block of 32 to int8
 * and a block's dot product is integer (vpmaddubsw + vpmaddwd, see the
 * quantised section): one token streams each row once (gemv_q), several
 * tokens use 8-row panels repacked so that one vector serves every row
 * (matmul_panels). Widening every weight to float32 costs about twice as
 * many instructions, which one core cannot hide. */
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

/* ------------------------------ quantised weights, int8 activations
 *
 * The activation rows are rounded per block of 32 (d_x = max|x|/127, q =
 * round(x / d_x), |q| <= 127, as the avx512 path does), once per matmul
 * call. A block's integer dot product is vpmaddubsw (unsigned bytes x
 * signed bytes, adjacent pairs summed in int16, saturating) then vpmaddwd
 * (int16 pairs summed in int32):
 *  - Q8_0 (w in [-128, 127]): |q| times w with q's sign (vpsignb), each pair
 *    <= 2 * 127 * 128 < 2^15;
 *  - Q4_0: the nibble u in [0, 15] (w = u - 8) times q: no sign step, each
 *    pair <= 2 * 15 * 127, so the 8 pair sums of a block's panel groups add
 *    in int16 without overflow (<= 30480); the offset is taken off by
 *    starting the int32 sum at -8 * sum(q).
 * Then one fma by d_w d_x per block. Rounding the activations is the only
 * approximation: |error| of a block's dot product <= d_x/2 * sum|w| (tests/
 * unit/test_kernels.c checks that bound). */

typedef struct {
    float d;      /* d_x */
    int32_t bias; /* Q4_0: -8 * sum of the block's q; Q8_0: 0 */
} qmeta;

/* n activation rows rounded for weight type dt: q [n x k], aq = |q| (Q8_0),
 * meta [n x k/32], lanes [n x k/32 x 8]: -8 * each 4 consecutive q summed
 * (Q4_0 one-row kernel: the int32 lanes of its block product; else NULL) */
typedef struct {
    int8_t *q;
    uint8_t *aq;
    qmeta *meta;
    int32_t *lanes;
} qact;

INLINE int32_t sum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}

static void quantize_act(rg_dtype dt, const float *x, int ldx, int n, int k, const qact *a) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7); /* undo the packs' lane interleave */
    int nb = k / RG_QBLOCK;
    for (int t = 0; t < n; t++)
        for (int b = 0; b < nb; b++) {
            const float *xb = x + (size_t)t * ldx + b * RG_QBLOCK;
            size_t at = (size_t)t * nb + b;
            __m256 v[4], m;
            for (int j = 0; j < 4; j++) v[j] = _mm256_loadu_ps(xb + 8 * j);
            m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                              _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
            __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            h = _mm_max_ps(h, _mm_movehl_ps(h, h));
            h = _mm_max_ss(h, _mm_movehdup_ps(h));
            float amax = _mm_cvtss_f32(h), id = amax > 0 ? 127.0f / amax : 0.0f;
            __m256i i[4];
            for (int j = 0; j < 4; j++) i[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], _mm256_set1_ps(id)));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
            p = _mm256_permutevar8x32_epi32(p, order);
            _mm256_storeu_si256((__m256i *)(a->q + at * RG_QBLOCK), p);
            if (a->aq) _mm256_storeu_si256((__m256i *)(a->aq + at * RG_QBLOCK), _mm256_abs_epi8(p));
            __m256i g4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(-8));
            if (a->lanes) _mm256_storeu_si256((__m256i *)(a->lanes + at * 8), g4);
            a->meta[at] = (qmeta){amax / 127.0f, dt == RG_DT_Q4_0 ? sum_epi32(g4) : 0};
        }
}

/* A Q8_0 block's 32 weights (signed bytes). */
INLINE __m256i block_q8(const uint8_t *blk) { return _mm256_loadu_si256((const __m256i *)(blk + 2)); }

/* A Q4_0 block's 32 nibbles as unsigned bytes in element order (elements
 * 0..15 are the low nibbles, 16..31 the high): the 16 bytes in both halves,
 * the upper half shifted right by 4, masked. */
INLINE __m256i block_q4(const uint8_t *blk) {
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 2)));
    return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0f));
}

/* Q8_0: w times x, 4 consecutive products summed in each int32 lane (ax = |x|). */
INLINE __m256i dot4_q8(__m256i w, __m256i x, __m256i ax) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, x)), _mm256_set1_epi16(1));
}

/* One token, one row at a time: a single sequential stream through the
 * weights (what the hardware prefetcher follows best), 4 accumulators. Per
 * block: Q4_0 unpack (2), vpmaddubsw, vpmaddwd, start (vpaddd), Q8_0 sign
 * step instead of the unpack and start; then cvt and one fma by d_w d_x. */
INLINE __m256 block_dot(rg_dtype dt, const uint8_t *blk, const qact *a, int b, __m256 acc) {
    __m256i x = _mm256_loadu_si256((const __m256i *)(a->q + (size_t)b * RG_QBLOCK)), s;
    if (dt == RG_DT_Q8_0) {
        s = dot4_q8(block_q8(blk), x, _mm256_loadu_si256((const __m256i *)(a->aq + (size_t)b * RG_QBLOCK)));
    } else {
        s = _mm256_madd_epi16(_mm256_maddubs_epi16(block_q4(blk), x), _mm256_set1_epi16(1));
        s = _mm256_add_epi32(s, _mm256_loadu_si256((const __m256i *)(a->lanes + (size_t)b * 8)));
    }
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(f16_scale(blk) * a->meta[b].d), acc);
}

INLINE void gemv_q(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const qact *a, float *y) {
    const size_t bs = dt == RG_DT_Q8_0 ? 34 : 18;
    int nb = k / RG_QBLOCK;
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int b = 0;
        for (; b + 4 <= nb; b += 4) {
            a0 = block_dot(dt, row + (size_t)b * bs, a, b, a0);
            a1 = block_dot(dt, row + (size_t)(b + 1) * bs, a, b + 1, a1);
            a2 = block_dot(dt, row + (size_t)(b + 2) * bs, a, b + 2, a2);
            a3 = block_dot(dt, row + (size_t)(b + 3) * bs, a, b + 3, a3);
        }
        for (; b < nb; b++) a0 = block_dot(dt, row + (size_t)b * bs, a, b, a0);
        y[r] = add_all4(a0, a1, a2, a3);
    }
}

/* Several tokens: PR weight rows are first repacked into a panel in which
 * one 32-byte vector holds the same 4 consecutive weights of each of the PR
 * rows (Q8_0 as signed bytes, Q4_0 as nibbles). vpmaddubsw of that vector
 * with 4 activation bytes broadcast gives each row's 4 products in pairs, so
 * the 8 groups of a block leave the PR rows' whole-block dot products in one
 * register, and the block's scaling (cvt, d_w * d_x, fma) is paid once per 8
 * groups instead of once per group. The repack (a transpose in registers) is
 * paid once per panel and shared by all the tokens. */
#ifndef PANEL_PT
#define PANEL_PT 4
#endif
enum { PR = 8, PT = PANEL_PT }; /* PT <= 8 tokens at a time */
typedef struct {
    uint8_t q[8][PR][4]; /* q[g][r]: weights 4g..4g+3 of the block in row r */
    float d[PR];         /* d_w of each row's block (0 past the last row) */
} panel_block;

/* Rows past the last (nr < PR) read this block: weights 0, d_w 0. */
static const uint8_t zero_block[34];

/* 8 rows x 8 dwords, z[i] = row i, into out[g] = dword g of rows 0..7:
 * 32-bit then 64-bit interleaves within 128-bit lanes, then lane swaps. */
INLINE void transpose_8x8(const __m256i z[8], __m256i out[8]) {
    __m256i t[8], u[8];
    for (int h = 0; h < 2; h++) { /* rows 0-3, then 4-7 */
        const __m256i *zz = z + 4 * h;
        t[4 * h + 0] = _mm256_unpacklo_epi32(zz[0], zz[1]);
        t[4 * h + 1] = _mm256_unpackhi_epi32(zz[0], zz[1]);
        t[4 * h + 2] = _mm256_unpacklo_epi32(zz[2], zz[3]);
        t[4 * h + 3] = _mm256_unpackhi_epi32(zz[2], zz[3]);
        u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]); /* dwords 0 | 4 */
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]); /* 1 | 5 */
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]); /* 2 | 6 */
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]); /* 3 | 7 */
    }
    for (int g = 0; g < 4; g++) {
        out[g] = _mm256_permute2x128_si256(u[g], u[g + 4], 0x20);
        out[g + 4] = _mm256_permute2x128_si256(u[g], u[g + 4], 0x31);
    }
}

#ifndef PANEL_PREFETCH
#define PANEL_PREFETCH 1
#endif

/* Repacks nr <= PR rows. The PR rows are PR streams at once, which the
 * hardware prefetcher follows less well than one: each block also
 * prefetches the same block of the next panel's rows. */
static void repack_panel(rg_dtype dt, const uint8_t *w, size_t rb, int nr, int nb, panel_block *p) {
    const int prefetch = PANEL_PREFETCH;
    const size_t bs = dt == RG_DT_Q8_0 ? 34 : 18;
    for (int b = 0; b < nb; b++) {
        uint16_t d[PR];
        __m256i z[PR], out[8];
        for (int i = 0; i < PR; i++) {
            const uint8_t *blk = i < nr ? w + (size_t)i * rb + (size_t)b * bs : zero_block;
            if (prefetch) _mm_prefetch((const char *)blk + PR * rb, _MM_HINT_T0); /* the next panel's row */
            memcpy(&d[i], blk, 2);
            z[i] = dt == RG_DT_Q8_0 ? block_q8(blk) : block_q4(blk);
        }
        _mm256_store_ps(p[b].d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d)));
        transpose_8x8(z, out);
        for (int g = 0; g < 8; g++) _mm256_store_si256((__m256i *)p[b].q[g], out[g]);
    }
}

/* y[t][r] = sum over blocks of d_w d_x (start + dot) for the panel's rows,
 * nt <= PT tokens (a constant after inlining). */
INLINE void panel_tile(rg_dtype dt, const int nt, const panel_block *p, int nb, const qact *a, int k, float *y,
                       int ldy, __m256i m) {
    const __m256i one = _mm256_set1_epi16(1);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m256i s[8]; /* Q8_0: int32 sums; Q4_0: int16 pair sums */
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) s[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m256i wv = _mm256_load_si256((const __m256i *)p[b].q[g]);
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                size_t at = (size_t)t * k + (size_t)b * RG_QBLOCK + 4 * g;
                int32_t x4;
                memcpy(&x4, a->q + at, 4);
                if (dt == RG_DT_Q8_0) {
                    int32_t ax4;
                    memcpy(&ax4, a->aq + at, 4);
                    s[t] = _mm256_add_epi32(s[t], dot4_q8(wv, _mm256_set1_epi32(x4), _mm256_set1_epi32(ax4)));
                } else {
                    s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(wv, _mm256_set1_epi32(x4)));
                }
            }
        }
        __m256 dw = _mm256_load_ps(p[b].d);
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const qmeta *mt = &a->meta[(size_t)t * nb + b];
            if (dt == RG_DT_Q4_0) s[t] = _mm256_add_epi32(_mm256_madd_epi16(s[t], one), _mm256_set1_epi32(mt->bias));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), _mm256_mul_ps(dw, _mm256_set1_ps(mt->d)), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) _mm256_maskstore_ps(y + (size_t)t * ldy, m, acc[t]);
}

static void matmul_panels(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const qact *a, int n, float *y,
                          int ldy, panel_block *p) {
    int nb = k / RG_QBLOCK;
    for (int r0 = 0; r0 < rows; r0 += PR) {
        int nr = rows - r0 < PR ? rows - r0 : PR;
        repack_panel(dt, w + (size_t)r0 * rb, rb, nr, nb, p);
        __m256i m = lane_mask(nr < PR ? nr : 8);
        for (int t0 = 0; t0 < n; t0 += PT) {
            qact at = {a->q + (size_t)t0 * k, a->aq ? a->aq + (size_t)t0 * k : NULL, a->meta + (size_t)t0 * nb, NULL};
            float *yt = y + (size_t)t0 * ldy + r0;
            switch (n - t0 < PT ? n - t0 : PT) {
#define PANEL_CASE(NT) \
    case NT: panel_tile(dt, NT <= PT ? NT : PT, p, nb, &at, k, yt, ldy, m); break;
                PANEL_CASE(1) PANEL_CASE(2) PANEL_CASE(3) PANEL_CASE(4) PANEL_CASE(5) PANEL_CASE(6) PANEL_CASE(7)
                default: PANEL_CASE(8)
#undef PANEL_CASE
            }
        }
    }
}

/* Kernel choice by token count (measured, see README "Speed"; each can be
 * overridden at build time to measure the others):
 *  - float weights: one token streams rows one at a time (gemv); up to
 *    TILE_MAX_N tokens each row tile is widened in registers and read by
 *    every group of TB tokens; more tokens widen a tile once into a float32
 *    scratch buffer per block of KC;
 *  - Q8_0/Q4_0: up to Q_GEMV_MAX_N tokens the one-row int8 kernel (per
 *    token), from Q_PANEL_MIN_N the int8 panels, in between the float
 *    tiles above (float32 activations). */
#ifndef TILE_MAX_N
#define TILE_MAX_N 24
#endif
#ifndef Q_GEMV_MAX_N
#define Q_GEMV_MAX_N 1
#endif
#ifndef Q_PANEL_MIN_N
#define Q_PANEL_MIN_N 2
#endif

INLINE void matmul_float(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n,
                         float *y, int ldy) {
    if (n == 1) { /* decode */
        gemv(dt, w, rb, rows, k, x, y);
        return;
    }
    if (n <= TILE_MAX_N) { /* a few tokens: stream each row tile once, widening in registers */
        for (int r0 = 0; r0 < rows; r0 += RB)
            for (int t0 = 0; t0 < n; t0 += TB)
                tile_any(dt, n - t0 < TB ? n - t0 : TB, w + (size_t)r0 * rb, rb, rows - r0 < RB ? rows - r0 : RB, k,
                         x + (size_t)t0 * ldx, ldx, y + (size_t)t0 * ldy + r0, ldy, 0);
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

INLINE size_t round64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

INLINE void matmul_quant(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n,
                         float *y, int ldy) {
    int gemv1 = n <= Q_GEMV_MAX_N;
    if (!gemv1 && n < Q_PANEL_MIN_N) {
        matmul_float(dt, w, rb, rows, k, x, ldx, n, y, ldy);
        return;
    }
    int nb = k / RG_QBLOCK, lanes = gemv1 && dt == RG_DT_Q4_0;
    size_t qbytes = round64((size_t)n * k), abytes = dt == RG_DT_Q8_0 ? qbytes : 0;
    size_t mbytes = round64(sizeof(qmeta) * (size_t)n * nb), lbytes = lanes ? round64(32 * (size_t)n * nb) : 0;
    uint8_t *buf = rg_scratch(RG_SCRATCH_ACT, qbytes + abytes + mbytes + lbytes);
    qact a = {(int8_t *)buf, abytes ? buf + qbytes : NULL, (qmeta *)(buf + qbytes + abytes),
              lanes ? (int32_t *)(buf + qbytes + abytes + mbytes) : NULL};
    /* The same x as this thread's previous piece of the same matmul call:
     * the slot still holds it rounded (only quantised kernels write the
     * slot, the kernel set is fixed within a call, and the same sizes did
     * not move it). */
    static _Thread_local struct {
        unsigned long call;
        const float *x;
        int ldx, n, k;
        rg_dtype dt;
    } done;
    unsigned long call = rg_matmul_call_id();
    if (!call || done.call != call || done.x != x || done.ldx != ldx || done.n != n || done.k != k || done.dt != dt) {
        quantize_act(dt, x, ldx, n, k, &a);
        done.call = call, done.x = x, done.ldx = ldx, done.n = n, done.k = k, done.dt = dt;
    }
    if (gemv1) {
        for (int t = 0; t < n; t++) {
            qact at = {a.q + (size_t)t * k, a.aq ? a.aq + (size_t)t * k : NULL, a.meta + (size_t)t * nb,
                       a.lanes ? a.lanes + (size_t)t * nb * 8 : NULL};
            gemv_q(dt, w, rb, rows, k, &at, y + (size_t)t * ldy);
        }
        return;
    }
    matmul_panels(dt, w, rb, rows, k, &a, n, y, ldy, rg_scratch(RG_SCRATCH_KERNEL, sizeof(panel_block) * (size_t)nb));
}

#define AVX2_MATMUL(NAME, DT, FN)                                                                            \
    static void NAME(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y, \
                     int ldy) {                                                                              \
        FN(DT, w, rb, rows, k, x, ldx, n, y, ldy);                                                           \
    }
AVX2_MATMUL(matmul_f32, RG_DT_F32, matmul_float)
AVX2_MATMUL(matmul_f16, RG_DT_F16, matmul_float)
AVX2_MATMUL(matmul_bf16, RG_DT_BF16, matmul_float)
AVX2_MATMUL(matmul_q8_0, RG_DT_Q8_0, matmul_quant)
AVX2_MATMUL(matmul_q4_0, RG_DT_Q4_0, matmul_quant)

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
/* The int8 step of the Q4_0 panels: vpmaddubsw into a temporary (register
 * 14, renamed each time), vpaddw into registers 0..11. */
#define DOT12 ".irp r," REGS12 "\n\tvpmaddubsw %%ymm13, %%ymm12, %%ymm14\n\tvpaddw %%ymm14, %%ymm\\r, %%ymm\\r\n\t.endr\n\t"
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
 * loop. int8: the cheapest sequence the quantised kernels use, vpmaddubsw +
 * vpaddw (32 multiply-adds; the Q4_0 panels' inner step); Q8_0's step adds
 * vpsignb and vpmaddwd to it, so Q8_0 prefill reaches about half of this. */
static double peak_loop(int int8, long iters) {
    if (iters <= 0) return 0;
    long n = iters;
    if (int8) {
        __asm__ volatile(ZERO14 "vpxor %%xmm14, %%xmm14, %%xmm14\n\t"
                                "1:\n\t" DOT12 "dec %0\n\t"
                                "jnz 1b\n\t"
                         : "+r"(n)::CLOBBER14, "xmm14", "cc");
        return (double)iters * 12 * 32 * 2;
    }
    __asm__ volatile(ZERO14 "1:\n\t" FMA12 "dec %0\n\t"
                                          "jnz 1b\n\t"
                     : "+r"(n)::CLOBBER14, "cc");
    return (double)iters * 12 * 8 * 2;
}

const rg_kernel_set rg_kernels_avx2 = {
    "avx2",
    {[RG_DT_F32] = matmul_f32, [RG_DT_F16] = matmul_f16, [RG_DT_BF16] = matmul_bf16, [RG_DT_Q8_0] = matmul_q8_0,
     [RG_DT_Q4_0] = matmul_q4_0},
    1u << RG_DT_Q8_0 | 1u << RG_DT_Q4_0, /* except Q_GEMV_MAX_N < n < Q_PANEL_MIN_N */
    softmax,
    wsum,
    gelu_mul,
    softcap,
    rglru,
    read_sum,
    peak_loop,
};
