/* AVX2 int8 kernels for Q8_0/Q4_0 weights (built with -mavx2 -mfma -mf16c,
 * see simd.h; the float kernels are kernels_simd.c's).
 *
 * The activations are rounded per block of 32 to int8 and a block's dot
 * product is integer (vpmaddubsw + vpmaddwd, see below): one token streams
 * each row once (gemv_q), several tokens use 8-row panels repacked so that
 * one vector serves every row (matmul_panels). Widening every weight to
 * float32 costs about twice as many instructions, which one core cannot
 * hide. */
#include "ops/simd.h"
#include "util/util.h"

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
 * weights, prefetched ahead (gemv_prefetch), 4 accumulators. Per
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
            gemv_prefetch(row + (size_t)b * bs, 4 * bs);
            a0 = block_dot(dt, row + (size_t)b * bs, a, b, a0);
            a1 = block_dot(dt, row + (size_t)(b + 1) * bs, a, b + 1, a1);
            a2 = block_dot(dt, row + (size_t)(b + 2) * bs, a, b + 2, a2);
            a3 = block_dot(dt, row + (size_t)(b + 3) * bs, a, b + 3, a3);
        }
        for (; b < nb; b++) a0 = block_dot(dt, row + (size_t)b * bs, a, b, a0);
        y[r] = sum_f8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    }
}

/* Several tokens: panels (simd.h) of 8 rows, one 32-byte vector per 4
 * bytes of each row's block. vpmaddubsw of that vector with 4 activation
 * bytes broadcast gives each row's 4 products in pairs (Q8_0: the signs
 * moved onto the activations as in dot4_q8; Q4_0: the nibbles split in
 * registers), so a block's groups leave the 8 rows' whole-block dot
 * products in one register, and the block's scaling (cvt, d_w * d_x, fma)
 * is paid once per block instead of once per group. Weights packed at
 * load time are read as they are; others are packed per step, one panel at
 * a time, shared by all the tokens. */
#ifndef PANEL_PT
#define PANEL_PT 4
#endif
enum { PR = PANEL_ROWS, PT = PANEL_PT }; /* PT <= 8 tokens at a time */

/* y[t][r] = sum over blocks of d_w d_x (start + dot) for the panel's nr
 * rows, nt <= PT tokens (a constant after inlining); one or two tokens, and
 * the first tile of a step over the panel (`first`: it brings the panel
 * from memory), prefetch the panel ahead. A batched step's tiles also
 * prefetch their share of the next panel (simd.h, next_panel_share). */
INLINE void panel_tile(rg_dtype dt, const int nt, const uint8_t *p, int nb, const qact *a, int k, float *y, int ldy,
                       int nr, int first, panel_share next) {
    const __m256i one = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(0x0f);
    const size_t qb = panel_quant_bytes(dt);
    const uint8_t *scales = panel_scales(dt, p, nb);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const __m256i *wq = (const __m256i *)(p + (size_t)b * qb);
        if (nt <= 2 || first) {
            gemv_prefetch((const uint8_t *)wq, qb);
            if (b % 4 == 0) gemv_prefetch(scales + (size_t)b * 2 * PR, 64);
        }
        prefetch_share(next, b, nb);
        __m256i s[8]; /* Q8_0: int32 sums; Q4_0: int16 pair sums */
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) s[t] = _mm256_setzero_si256();
        if (dt == RG_DT_Q8_0) {
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m256i wv = _mm256_load_si256(wq + g);
#pragma GCC unroll 8
                for (int t = 0; t < nt; t++) {
                    size_t at = (size_t)t * k + (size_t)b * RG_QBLOCK + 4 * g;
                    int32_t x4, ax4;
                    memcpy(&x4, a->q + at, 4);
                    memcpy(&ax4, a->aq + at, 4);
                    s[t] = _mm256_add_epi32(s[t], dot4_q8(wv, _mm256_set1_epi32(x4), _mm256_set1_epi32(ax4)));
                }
            }
        } else {
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                __m256i v = _mm256_load_si256(wq + g);
                __m256i lo = _mm256_and_si256(v, lo4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
#pragma GCC unroll 8
                for (int t = 0; t < nt; t++) {
                    size_t at = (size_t)t * k + (size_t)b * RG_QBLOCK + 4 * g;
                    int32_t xl, xh;
                    memcpy(&xl, a->q + at, 4);
                    memcpy(&xh, a->q + at + 16, 4);
                    s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(xl)));
                    s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xh)));
                }
            }
        }
        __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(scales + (size_t)b * 2 * PR)));
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const qmeta *mt = &a->meta[(size_t)t * nb + b];
            if (dt == RG_DT_Q4_0) s[t] = _mm256_add_epi32(_mm256_madd_epi16(s[t], one), _mm256_set1_epi32(mt->bias));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), _mm256_mul_ps(dw, _mm256_set1_ps(mt->d)), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) v_store_n(y + (size_t)t * ldy, (size_t)nr, acc[t]);
}

/* Every token of the step over one panel of nr rows. */
static void panel_tokens(rg_dtype dt, const uint8_t *p, int nr, int k, const qact *a, int n, float *y, int ldy,
                         const uint8_t *next, size_t next_bytes) {
    int nb = k / RG_QBLOCK, tiles = (n + PT - 1) / PT;
    const int batched = n <= PANEL_PREFETCH_MAX_N;
    if (!batched) next = NULL;
    for (int t0 = 0; t0 < n; t0 += PT) {
        panel_share share = next_panel_share(tiles > 1 ? next : NULL, next_bytes, t0 / PT, tiles);
        qact at = {a->q + (size_t)t0 * k, a->aq ? a->aq + (size_t)t0 * k : NULL, a->meta + (size_t)t0 * nb, NULL};
        float *yt = y + (size_t)t0 * ldy;
        switch (n - t0 < PT ? n - t0 : PT) {
#define PANEL_CASE(NT) \
    case NT: panel_tile(dt, NT <= PT ? NT : PT, p, nb, &at, k, yt, ldy, nr, t0 == 0 && batched, share); break;
            PANEL_CASE(1) PANEL_CASE(2) PANEL_CASE(3) PANEL_CASE(4) PANEL_CASE(5) PANEL_CASE(6) PANEL_CASE(7)
            default: PANEL_CASE(8)
#undef PANEL_CASE
        }
    }
}

/* Weights as stored: each panel packed into scratch p, then every token. */
static void matmul_panels(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const qact *a, int n, float *y,
                          int ldy, uint8_t *p) {
    for (int r0 = 0; r0 < rows; r0 += PR) {
        int nr = rows - r0 < PR ? rows - r0 : PR;
        pack_panel(dt, w + (size_t)r0 * rb, rb, nr, k / RG_QBLOCK, p);
        if (dt == RG_DT_Q8_0) panel_tokens(RG_DT_Q8_0, p, nr, k, a, n, y + r0, ldy, NULL, 0);
        else panel_tokens(RG_DT_Q4_0, p, nr, k, a, n, y + r0, ldy, NULL, 0);
    }
}

/* Kernel choice by token count (measured, see README "Speed"; each can be
 * overridden at build time to measure the others): up to Q_GEMV_MAX_N
 * tokens the one-row int8 kernel (per token), from Q_PANEL_MIN_N the int8
 * panels, in between kernels_simd.c's float tiles (float32 activations). */
#ifndef Q_GEMV_MAX_N
#define Q_GEMV_MAX_N 1
#endif
#ifndef Q_PANEL_MIN_N
#define Q_PANEL_MIN_N 2
#endif

INLINE size_t round64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* x rounded to int8 in this thread's scratch (with the Q4_0 one-row
 * kernel's lanes if asked), reused while the same call passes the same x */
static qact round_act(rg_dtype dt, const float *x, int ldx, int n, int k, int lanes) {
    int nb = k / RG_QBLOCK;
    lanes = lanes && dt == RG_DT_Q4_0;
    size_t qbytes = round64((size_t)n * k), abytes = dt == RG_DT_Q8_0 ? qbytes : 0;
    size_t mbytes = round64(sizeof(qmeta) * (size_t)n * nb), lbytes = lanes ? round64(32 * (size_t)n * nb) : 0;
    uint8_t *buf = rg_scratch(RG_SCRATCH_ACT, qbytes + abytes + mbytes + lbytes);
    qact a = {(int8_t *)buf, abytes ? buf + qbytes : NULL, (qmeta *)(buf + qbytes + abytes),
              lanes ? (int32_t *)(buf + qbytes + abytes + mbytes) : NULL};
    static _Thread_local act_key last;
    if (!act_cached(&last, x, ldx, n, k, lanes, dt)) quantize_act(dt, x, ldx, n, k, &a);
    return a;
}

INLINE void matmul_quant(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n,
                         float *y, int ldy) {
    int gemv1 = n <= Q_GEMV_MAX_N, nb = k / RG_QBLOCK;
    if (!gemv1 && n < Q_PANEL_MIN_N) {
        rg_matmul_widened_avx2(dt, w, rb, rows, k, x, ldx, n, y, ldy);
        return;
    }
    qact a = round_act(dt, x, ldx, n, k, gemv1);
    if (gemv1) {
        for (int t = 0; t < n; t++) {
            qact at = {a.q + (size_t)t * k, a.aq ? a.aq + (size_t)t * k : NULL, a.meta + (size_t)t * nb,
                       a.lanes ? a.lanes + (size_t)t * nb * 8 : NULL};
            gemv_q(dt, w, rb, rows, k, &at, y + (size_t)t * ldy);
        }
        return;
    }
    matmul_panels(dt, w, rb, rows, k, &a, n, y, ldy, rg_scratch(RG_SCRATCH_KERNEL, panel_bytes(dt, nb)));
}

/* Packed at load time: panels for every token count */
INLINE void matmul_packed(rg_dtype dt, const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y,
                          int ldy) {
    qact a = round_act(dt, x, ldx, n, k, 0);
    size_t pb = panel_bytes(dt, k / RG_QBLOCK);
    for (int r0 = 0; r0 < rows; r0 += PR)
        panel_tokens(dt, p + (size_t)(r0 / PR) * pb, rows - r0 < PR ? rows - r0 : PR, k, &a, n, y + r0, ldy,
                     r0 + PR < rows ? p + (size_t)(r0 / PR + 1) * pb : NULL, pb);
}

void rg_matmul_packed_q8_0_avx2(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y, int ldy) {
    matmul_packed(RG_DT_Q8_0, p, rows, k, x, ldx, n, y, ldy);
}
void rg_matmul_packed_q4_0_avx2(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y, int ldy) {
    matmul_packed(RG_DT_Q4_0, p, rows, k, x, ldx, n, y, ldy);
}

RG_MATMUL_OF(rg_matmul_q8_0_avx2, RG_DT_Q8_0, matmul_quant)
RG_MATMUL_OF(rg_matmul_q4_0_avx2, RG_DT_Q4_0, matmul_quant)

/* The cheapest int8 step the quantised kernels use, vpmaddubsw into a
 * temporary (register 14, renamed each time) + vpaddw: 32 multiply-adds (the
 * Q4_0 panels' inner step); Q8_0's step adds vpsignb and vpmaddwd to it, so
 * Q8_0 prefill reaches about half of this. */
double rg_peak_int8_avx2(long iters) {
    SIMD_PEAK_LOOP(iters, ".irp r," SIMD_REGS12
                          "\n\tvpmaddubsw %%ymm13, %%ymm12, %%ymm14\n\tvpaddw %%ymm14, %%ymm\\r, %%ymm\\r\n\t.endr\n\t");
    return (double)iters * 12 * 32 * 2;
}
