/* NEON int8 kernels for Q8_0/Q4_0 weights (arm64; see simd.h; the float
 * kernels are kernels_simd.c's). Compiled twice: kernels_neon.o for every
 * arm64 CPU (-DRG_SIMD_NEON) and kernels_neon_dotprod.o for those with the
 * dot-product instructions (-march=armv8.2-a+dotprod -DRG_SIMD_NEON
 * -DRG_SIMD_DOTPROD); matmul.c runs the second only where the kernel
 * reports HWCAP_ASIMDDP.
 *
 * The activation rows are rounded per block of 32 as on the x86 sets (d_x =
 * max|x|/127, q = round(x / d_x) to nearest even, |q| <= 127), once per
 * matmul call. Both weight types are signed bytes once unpacked (Q8_0 as
 * stored, Q4_0 as nibble - 8), so a block's dot product is signed int8
 * times signed int8, summed in int32:
 *  - dotprod: two sdot (vdotq_s32), each summing 4 products per int32 lane;
 *  - plain NEON: smull + smlal2 (pairs of products in int16: |w q| <= 128 *
 *    127, a pair <= 32512 < 2^15) then sadalp (pairs added into int32).
 * Then one fma by d_w d_x per block. Both give the same integers, so both
 * sets give the same results. Rounding the activations is the only
 * approximation: |error| of a block's dot product <= d_x/2 * sum|w|
 * (tests/unit/test_kernels.c checks that bound).
 *
 * One token streams each row once (gemv_q); more use tiles of RB rows x up
 * to QT tokens, whose unpacked weights serve every token of the tile. */
#include "ops/simd.h"
#include "util/util.h"

enum { RB = 4, QT = 4 };

/* n activation rows (k a multiple of 32) rounded to q [n x k], with each
 * block's d_x in d [n x k/32] */
static void quantize_act(const float *x, int ldx, int n, int k, int8_t *q, float *d) {
    int nb = k / RG_QBLOCK;
    for (int t = 0; t < n; t++)
        for (int b = 0; b < nb; b++) {
            const float *xb = x + (size_t)t * ldx + b * RG_QBLOCK;
            float32x4_t v[8], m = vdupq_n_f32(0.0f);
            for (int j = 0; j < 8; j++) {
                v[j] = vld1q_f32(xb + 4 * j);
                m = vmaxq_f32(m, vabsq_f32(v[j]));
            }
            float amax = vmaxvq_f32(m), id = amax > 0 ? 127.0f / amax : 0.0f;
            int16x8_t h[4];
            for (int j = 0; j < 4; j++)
                h[j] = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[2 * j], id))),
                                    vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[2 * j + 1], id))));
            int8_t *qb = q + (size_t)t * k + b * RG_QBLOCK;
            vst1q_s8(qb, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
            vst1q_s8(qb + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
            d[(size_t)t * nb + b] = amax / 127.0f;
        }
}

/* A block's 32 weights as signed bytes in element order: w[0] elements
 * 0..15, w[1] 16..31 (Q4_0: the low nibbles, then the high ones, less 8). */
INLINE void block_w(rg_dtype dt, const uint8_t *blk, int8x16_t w[2]) {
    if (dt == RG_DT_Q8_0) {
        w[0] = vld1q_s8((const int8_t *)blk + 2);
        w[1] = vld1q_s8((const int8_t *)blk + 18);
        return;
    }
    uint8x16_t b = vld1q_u8(blk + 2);
    const int8x16_t eight = vdupq_n_s8(8);
    w[0] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f))), eight);
    w[1] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(b, 4)), eight);
}

/* The 32 products of a block, summed in 4 int32 lanes. */
INLINE int32x4_t dot32(const int8x16_t w[2], int8x16_t x0, int8x16_t x1) {
#ifdef RG_SIMD_DOTPROD
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w[0], x0), w[1], x1);
#else
    int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w[0]), vget_low_s8(x0)), w[0], x0);
    int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w[1]), vget_low_s8(x1)), w[1], x1);
    return vpadalq_s16(vpaddlq_s16(p0), p1);
#endif
}

/* acc + the block's dot product times d_w d_x */
INLINE float32x4_t block_dot(rg_dtype dt, const uint8_t *blk, const int8_t *q, float dx, float32x4_t acc) {
    int8x16_t w[2];
    block_w(dt, blk, w);
    int32x4_t s = dot32(w, vld1q_s8(q), vld1q_s8(q + 16));
    return vfmaq_n_f32(acc, vcvtq_f32_s32(s), f16_scale(blk) * dx);
}

/* One token, one row at a time: a single sequential stream through the
 * weights, prefetched ahead (gemv_prefetch), 4 accumulators. */
INLINE void gemv_q(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const int8_t *q, const float *d,
                   float *y) {
    const size_t bs = dt == RG_DT_Q8_0 ? 34 : 18;
    int nb = k / RG_QBLOCK;
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        int b = 0;
        for (; b + 4 <= nb; b += 4) {
            gemv_prefetch(row + (size_t)b * bs, 4 * bs);
            a0 = block_dot(dt, row + (size_t)b * bs, q + (size_t)b * RG_QBLOCK, d[b], a0);
            a1 = block_dot(dt, row + (size_t)(b + 1) * bs, q + (size_t)(b + 1) * RG_QBLOCK, d[b + 1], a1);
            a2 = block_dot(dt, row + (size_t)(b + 2) * bs, q + (size_t)(b + 2) * RG_QBLOCK, d[b + 2], a2);
            a3 = block_dot(dt, row + (size_t)(b + 3) * bs, q + (size_t)(b + 3) * RG_QBLOCK, d[b + 3], a3);
        }
        for (; b < nb; b++) a0 = block_dot(dt, row + (size_t)b * bs, q + (size_t)b * RG_QBLOCK, d[b], a0);
        y[r] = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    }
}

/* y[t][r] = sum over blocks of d_w d_x dot for nr <= RB rows (rows past nr
 * repeat the last, not stored) and nt <= QT tokens (a constant after
 * inlining, so the RB x nt accumulators stay in registers): each block of
 * the RB rows is unpacked once for the nt tokens. */
INLINE void tile_q(rg_dtype dt, const int nt, const uint8_t *w, size_t rb, int nr, int nb, const int8_t *q,
                   const float *d, int k, float *y, int ldy) {
    const size_t bs = dt == RG_DT_Q8_0 ? 34 : 18;
    const uint8_t *wr[RB];
    tile_rows(w, rb, nr, RB, wr);
    float32x4_t acc[RB][QT];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) acc[r][t] = vdupq_n_f32(0.0f);
    for (int b = 0; b < nb; b++) {
        int8x16_t wv[RB][2];
        float dw[RB];
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const uint8_t *blk = wr[r] + (size_t)b * bs;
            block_w(dt, blk, wv[r]);
            dw[r] = f16_scale(blk);
        }
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            const int8_t *qt = q + (size_t)t * k + (size_t)b * RG_QBLOCK;
            int8x16_t x0 = vld1q_s8(qt), x1 = vld1q_s8(qt + 16);
            float dx = d[(size_t)t * nb + b];
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++)
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(dot32(wv[r], x0, x1)), dw[r] * dx);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) f4_store_n(y + (size_t)t * ldy, nr, v_sum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]), 0);
}

INLINE size_t round64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

INLINE void matmul_quant(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n,
                         float *y, int ldy) {
    int nb = k / RG_QBLOCK;
    size_t qbytes = round64((size_t)n * k);
    uint8_t *buf = rg_scratch(RG_SCRATCH_ACT, qbytes + sizeof(float) * (size_t)n * nb);
    int8_t *q = (int8_t *)buf;
    float *d = (float *)(buf + qbytes);
    static _Thread_local act_key last;
    if (!act_cached(&last, x, ldx, n, k, 0, dt)) quantize_act(x, ldx, n, k, q, d);
    if (n == 1) {
        gemv_q(dt, w, rb, rows, k, q, d, y);
        return;
    }
    for (int r0 = 0; r0 < rows; r0 += RB) {
        int nr = rows - r0 < RB ? rows - r0 : RB;
        const uint8_t *wt = w + (size_t)r0 * rb;
        for (int t0 = 0; t0 < n; t0 += QT) {
            const int8_t *qt = q + (size_t)t0 * k;
            const float *dt0 = d + (size_t)t0 * nb;
            float *yt = y + (size_t)t0 * ldy + r0;
            switch (n - t0 < QT ? n - t0 : QT) {
            case 1: tile_q(dt, 1, wt, rb, nr, nb, qt, dt0, k, yt, ldy); break;
            case 2: tile_q(dt, 2, wt, rb, nr, nb, qt, dt0, k, yt, ldy); break;
            case 3: tile_q(dt, 3, wt, rb, nr, nb, qt, dt0, k, yt, ldy); break;
            default: tile_q(dt, QT, wt, rb, nr, nb, qt, dt0, k, yt, ldy); break;
            }
        }
    }
}

RG_MATMUL_OF(SIMD_NAME(rg_matmul_q8_0), RG_DT_Q8_0, matmul_quant)
RG_MATMUL_OF(SIMD_NAME(rg_matmul_q4_0), RG_DT_Q4_0, matmul_quant)

/* The int8 step of the quantised kernels on 12 accumulators: sdot (16
 * multiply-adds) with dotprod; without, smlal (8 multiply-adds into int16
 * lanes, the core of the smull/smlal2/sadalp step). */
double SIMD_NAME(rg_peak_int8)(long iters) {
#ifdef RG_SIMD_DOTPROD
    SIMD_PEAK_LOOP(iters, ".irp r," SIMD_REGS12 "\n\tsdot v\\r\\().4s, v12.16b, v13.16b\n\t.endr\n\t");
    return (double)iters * 12 * 16 * 2;
#else
    SIMD_PEAK_LOOP(iters, ".irp r," SIMD_REGS12 "\n\tsmlal v\\r\\().8h, v12.8b, v13.8b\n\t.endr\n\t");
    return (double)iters * 12 * 8 * 2;
#endif
}
