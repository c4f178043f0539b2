/* The float kernels of the SIMD sets, written once over simd.h and compiled
 * once per instruction set (the Makefile builds kernels_simd_avx2.o and
 * kernels_simd_avx512.o from this file on x86-64, kernels_simd_neon.o and
 * kernels_simd_neon_dotprod.o on arm64); each copy fills its set's
 * rg_kernel_set with the int8 matmuls of kernels_avx2.c / kernels_avx512.c /
 * kernels_neon.c.
 *
 * Float weights, several tokens: register tiles of RB weight rows x up to TB
 * tokens; each step widens VW weights of each row to float32 in registers
 * and does RB*TB fused multiply-adds, so every weight loaded serves TB
 * tokens. With more than TILE_MAX_N tokens (prefill) the k axis is cut in
 * blocks of KC: the block of activations stays in L2 while a weight tile,
 * widened once into a float32 scratch buffer, serves every token from L1.
 * Row lengths that are not a multiple of VW finish with masked loads. */
#include <math.h>
#include "ops/simd.h"
#include "util/util.h"

enum { RB = 4, KC = 512 };
/* float tiles prefetch this far ahead in each row (SIMD_PREFETCH), or,
 * where the rows are short (attention's keys: hd floats), at the same place
 * in the next tile's rows, which would otherwise come from memory only when
 * their own tile starts */
#define PF_AHEAD 1024
INLINE size_t tile_prefetch(size_t rb) { return !SIMD_PREFETCH ? 0 : rb * RB <= 4 * PF_AHEAD ? rb * RB : PF_AHEAD; }

/* Kernel choice by token count (measured, see README "Speed"; can be
 * overridden at build time to measure the others): one token streams rows
 * one at a time (gemv); up to TILE_MAX_N tokens each row tile is widened in
 * registers and read by every group of TB tokens; more tokens widen a tile
 * once into a float32 scratch buffer per block of KC. */
#ifndef TILE_MAX_N
#define TILE_MAX_N SIMD_TILE_MAX_N
#endif

/* ------------------------------------------------------------ helpers */

/* VW weights from element i of a row, widened to float32 (the first count
 * of them, float types only). Quantised rows are whole blocks and VW
 * divides a block: element j < 16 of a Q4_0 block is the low nibble of
 * byte j, element 16 + j its high nibble. */
INLINE vf load_w(rg_dtype dt, const uint8_t *row, int i, size_t count) {
    switch (dt) {
    case RG_DT_F32: return v_load_n((const float *)row + i, count);
    case RG_DT_F16: return v_from_f16(h_load_n((const uint16_t *)row + i, count));
    case RG_DT_BF16: return v_from_bf16(h_load_n((const uint16_t *)row + i, count));
    case RG_DT_Q8_0: {
        const uint8_t *blk = row + (size_t)(i / RG_QBLOCK) * 34;
        return v_mul(v_set1(f16_scale(blk)), v_from_i8((const int8_t *)blk + 2 + i % RG_QBLOCK));
    }
    default: { /* Q4_0: w = d (u - 8) */
        const uint8_t *blk = row + (size_t)(i / RG_QBLOCK) * 18;
        int j = i % RG_QBLOCK;
        return v_mul(v_set1(f16_scale(blk)), v_sub(v_from_u4(blk + 2 + j % 16, j >= 16), v_set1(8.0f)));
    }
    }
}

/* exp(x) = 2^n e^r, n = round(x / ln 2), r = x - n ln 2 (ln 2 in two parts,
 * the first exact in few bits, so |r| <= ln2/2 without cancellation), e^r
 * by the Cephes expf polynomial (about 1 ulp). */
INLINE vf v_exp(vf x) {
    /* operands in this order so that a NaN x stays NaN (min/max return the
     * second operand when one is NaN): a clamp must not turn NaN into a number */
    x = v_min(v_set1(EXP_MAX), v_max(v_set1(EXP_MIN), x));
    vf n = v_round(v_mul(x, v_set1(1.44269504088896341f)));
    vf r = v_fnma(n, v_set1(0.693359375f), x);
    r = v_fnma(n, v_set1(-2.12194440e-4f), r);
    vf p = v_set1(1.9875691500e-4f);
    p = v_fma(p, r, v_set1(1.3981999507e-3f));
    p = v_fma(p, r, v_set1(8.3334519073e-3f));
    p = v_fma(p, r, v_set1(4.1665795894e-2f));
    p = v_fma(p, r, v_set1(1.6666665459e-1f));
    p = v_fma(p, r, v_set1(5.0000001201e-1f));
    p = v_fma(p, v_mul(r, r), v_add(r, v_set1(1.0f)));
    return v_scale2(p, n);
}

/* tanh(x) = 1 - 2 / (exp(2x) + 1) (absolute error ~1e-7) */
INLINE vf v_tanh(vf x) {
    vf e = v_exp(v_add(x, x));
    return v_sub(v_set1(1.0f), v_div(v_set1(2.0f), v_add(e, v_set1(1.0f))));
}

/* sigmoid(x) = 1 / (1 + exp(-x)) */
INLINE vf v_sigmoid(vf x) {
    vf one = v_set1(1.0f);
    return v_div(one, v_add(one, v_exp(v_sub(v_zero(), x))));
}

/* ------------------------------------------------- matmul, float weights */

/* acc[r][t] += w[r][i..i+count) x[t][i..i+count) */
INLINE void tile_step(rg_dtype dt, const int nt, const uint8_t *const wr[RB], int i, size_t count, const float *x,
                      int ldx, vf acc[RB][TB], const size_t prefetch) {
    vf xv[TB];
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) xv[t] = v_load_n(x + (size_t)t * ldx + i, count);
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        if (prefetch)
            prefetch_t0(wr[r] + (size_t)i * (dt == RG_DT_F32 ? 4 : 2) + prefetch);
        vf wv = load_w(dt, wr[r], i, count);
#pragma GCC unroll 6
        for (int t = 0; t < nt; t++) acc[r][t] = v_fma(wv, xv[t], acc[r][t]);
    }
}

/* y[t][r] (+)= sum_{i<len} w[r][i] x[t][i] for r < nr, t < nt (a constant
 * after inlining, so acc lives in registers). Rows past nr repeat the last
 * row and are not stored. */
INLINE void tile(rg_dtype dt, const int nt, const uint8_t *w, size_t rb, int nr, int len, const float *x, int ldx,
                 float *y, int ldy, int add, const size_t prefetch) {
    vf acc[RB][TB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 6
        for (int t = 0; t < nt; t++) acc[r][t] = v_zero();
    const uint8_t *wr[RB];
    tile_rows(w, rb, nr, RB, wr);
    int i = 0;
    for (; i + VW <= len; i += VW) tile_step(dt, nt, wr, i, VW, x, ldx, acc, prefetch);
    if (i < len) tile_step(dt, nt, wr, i, (size_t)(len - i), x, ldx, acc, 0); /* float types only */
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) f4_store_n(y + (size_t)t * ldy, nr, v_sum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]), add);
}

/* One tile of nt <= TB tokens, dispatched to a constant nt (cases past TB
 * are never taken). */
INLINE void tile_any(rg_dtype dt, int nt, const uint8_t *w, size_t rb, int nr, int len, const float *x, int ldx,
                     float *y, int ldy, int add, const size_t prefetch) {
    switch (nt) {
#define TILE_CASE(NT) \
    case NT: tile(dt, NT <= TB ? NT : TB, w, rb, nr, len, x, ldx, y, ldy, add, prefetch); break;
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) default: TILE_CASE(6)
#undef TILE_CASE
    }
}

/* One token, one row at a time: a single sequential stream through the
 * weights, prefetched ahead (gemv_prefetch); 4 accumulators over k hide the
 * FMA latency. */
INLINE void gemv(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, float *y) {
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        vf a0 = v_zero(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 4 * VW <= k; i += 4 * VW) {
            gemv_prefetch(row + (size_t)i * (dt == RG_DT_F32 ? 4 : 2), 4 * VW * (dt == RG_DT_F32 ? 4 : 2));
            a0 = v_fma(load_w(dt, row, i, VW), v_loadu(x + i), a0);
            a1 = v_fma(load_w(dt, row, i + VW, VW), v_loadu(x + i + VW), a1);
            a2 = v_fma(load_w(dt, row, i + 2 * VW, VW), v_loadu(x + i + 2 * VW), a2);
            a3 = v_fma(load_w(dt, row, i + 3 * VW, VW), v_loadu(x + i + 3 * VW), a3);
        }
        for (; i < k; i += VW) /* the tail: float types only */
            a0 = v_fma(load_w(dt, row, i, (size_t)(k - i)), v_load_n(x + i, (size_t)(k - i)), a0);
        y[r] = v_sum(v_add(v_add(a0, a1), v_add(a2, a3)));
    }
}

/* Widen len elements of nr rows (from element i0, a multiple of KC) to
 * float32 rows of KC. */
INLINE void widen_tile(rg_dtype dt, const uint8_t *w, size_t rb, int nr, int i0, int len, float *dst) {
    for (int r = 0; r < nr; r++)
        for (int i = 0; i < len; i += VW) {
            size_t count = (size_t)(len - i);
            v_store_n(dst + (size_t)r * KC + i, count, load_w(dt, w + (size_t)r * rb, i0 + i, count));
        }
}

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
                         x + (size_t)t0 * ldx, ldx, y + (size_t)t0 * ldy + r0, ldy, 0, tile_prefetch(rb));
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
                if (SIMD_PREFETCH && (dt == RG_DT_F16 || dt == RG_DT_BF16))
                    for (int r = r0 + RB; r < rows && r < r0 + 2 * RB; r++)
                        for (size_t b = 0; b < (size_t)len * 2; b += 64)
                            prefetch_t0(w + (size_t)r * rb + (size_t)k0 * 2 + b);
                src = (const uint8_t *)wide;
                srb = sizeof(float) * KC;
            }
            for (int t0 = 0; t0 < n; t0 += TB)
                tile_any(RG_DT_F32, n - t0 < TB ? n - t0 : TB, src, srb, nr, len, x + (size_t)t0 * ldx + k0, ldx,
                         y + (size_t)t0 * ldy + r0, ldy, k0 > 0, 0);
        }
    }
}

void SIMD_NAME(rg_matmul_widened)(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx,
                                  int n, float *y, int ldy) {
    if (dt == RG_DT_Q8_0) matmul_float(RG_DT_Q8_0, w, rb, rows, k, x, ldx, n, y, ldy);
    else matmul_float(RG_DT_Q4_0, w, rb, rows, k, x, ldx, n, y, ldy);
}

static RG_MATMUL_OF(matmul_f32, RG_DT_F32, matmul_float)
static RG_MATMUL_OF(matmul_f16, RG_DT_F16, matmul_float)
static RG_MATMUL_OF(matmul_bf16, RG_DT_BF16, matmul_float)

/* ------------------------------------------------ attention, activations */

static float softmax(float *x, int n, float scale, float *max) {
    vf mx = v_set1(-INFINITY), sc = v_set1(scale);
    for (int j = 0; j < n; j += VW) {
        size_t c = (size_t)(n - j);
        vf v = v_mul(v_load_n(x + j, c), sc);
        v_store_n(x + j, c, v);
        mx = v_max_n(mx, v, c);
    }
    *max = v_max_lane(mx);
    vf top = v_set1(*max), sum = v_zero();
    for (int j = 0; j < n; j += VW) {
        size_t c = (size_t)(n - j);
        vf e = v_exp(v_sub(v_load_n(x + j, c), top));
        v_store_n(x + j, c, e);
        sum = v_add(sum, v_keep_n(e, c));
    }
    return v_sum(sum);
}

/* Heads in groups of at most WG (the 2B model's 10 heads in one),
 * WSUM_VECS * VW columns at a time: each value row segment is loaded once
 * for the group (widened to float32 from F16 or Q8_0 values), whose accumulators
 * stay in registers (g and vt are constants in each copy), and each weight
 * p is broadcast once for WSUM_VECS products. The value rows go by in blocks
 * of WSUM_BLOCK_BYTES (32 KiB), each read from memory once and then from L1
 * for every pass over its columns. */
enum { WG = 12, WSUM_BLOCK_BYTES = 32768 };

/* Bytes of the first n elements of a value row (n a multiple of 32 for Q8_0). */
INLINE size_t cols_bytes(rg_dtype vt, int n) {
    return vt == RG_DT_Q8_0 ? (size_t)n / RG_QBLOCK * 34 : (size_t)n * (vt == RG_DT_F16 ? 2 : 4);
}
INLINE void wsum_group(const int g, const rg_dtype vt, const float *p, int ldp, const void *v, int nk, int hd,
                       float *out, int ldo) {
    const uint8_t *rows = v;
    size_t rb = cols_bytes(vt, hd);
    int block = WSUM_BLOCK_BYTES / rb > 0 ? (int)(WSUM_BLOCK_BYTES / rb) : 1;
    const int pass_cols = WSUM_VECS * VW, passes = (hd + pass_cols - 1) / pass_cols;
    for (int j0 = 0; j0 < nk; j0 += block) {
        int j1 = nk - j0 < block ? nk : j0 + block;
        /* the block after next, into L2 in order, a line a row from the
         * start of each pass until the pass's share is asked for, so that
         * the next block's prefetches below find it there: from memory
         * they wait on few line buffers. Measured (10 heads x 2048 keys x
         * 256, Q8_0, two threads, values from memory): avx2 334-391 ->
         * 181-192 us, avx512 123-131 -> 114-122; in cache unchanged. */
        int far = j0 + 2 * block < nk ? j0 + 2 * block : nk;
        size_t far_bytes = (size_t)((nk - far < block ? nk : far + block) - far) * rb;
        for (int i = 0; i < hd; i += pass_cols) {
            size_t far_at = far_bytes * (size_t)(i / pass_cols) / (size_t)passes & ~(size_t)63,
                   far_end = far_bytes * (size_t)(i / pass_cols + 1) / (size_t)passes;
            size_t c[WSUM_VECS];
            vf acc[WG][WSUM_VECS];
            for (int u = 0; u < WSUM_VECS; u++) c[u] = hd - i > u * VW ? (size_t)(hd - i - u * VW) : 0;
#pragma GCC unroll 12
            for (int h = 0; h < g; h++)
#pragma GCC unroll 2
                for (int u = 0; u < WSUM_VECS; u++) acc[h][u] = v_load_n(out + (size_t)h * ldo + i + u * VW, c[u]);
            for (int j = j0; j < j1; j++) {
                /* the next block's same columns, so that its first pass
                 * finds them in cache (the passes' strided reads of a block
                 * are more streams than the hardware prefetcher follows) */
                if (j + block < nk)
                    for (size_t at = 0; at < cols_bytes(vt, WSUM_VECS * VW); at += 64)
                        prefetch_t0(rows + (size_t)(j + block) * rb + cols_bytes(vt, i) + at);
                if (far_at < far_end) {
                    prefetch_t1(rows + (size_t)far * rb + far_at);
                    far_at += 64;
                }
                vf vv[WSUM_VECS];
#pragma GCC unroll 2
                for (int u = 0; u < WSUM_VECS; u++) vv[u] = load_w(vt, rows + (size_t)j * rb, i + u * VW, c[u]);
#pragma GCC unroll 12
                for (int h = 0; h < g; h++) {
                    vf ph = v_set1(p[(size_t)h * ldp + j]);
#pragma GCC unroll 2
                    for (int u = 0; u < WSUM_VECS; u++) acc[h][u] = v_fma(ph, vv[u], acc[h][u]);
                }
            }
#pragma GCC unroll 12
            for (int h = 0; h < g; h++)
#pragma GCC unroll 2
                for (int u = 0; u < WSUM_VECS; u++) v_store_n(out + (size_t)h * ldo + i + u * VW, c[u], acc[h][u]);
        }
    }
}

INLINE void wsum_of(const rg_dtype vt, const float *p, int ldp, int nh, const void *v, int nk, int hd, float *out,
                    int ldo) {
    int groups = (nh + WG - 1) / WG;
    for (int h0 = 0, gi = 0; gi < groups; gi++) {
        int g = (nh - h0 + (groups - gi) - 1) / (groups - gi); /* even groups: 16 heads = 8 + 8 */
        const float *pg = p + (size_t)h0 * ldp;
        float *og = out + (size_t)h0 * ldo;
        switch (g) {
#define WSUM_CASE(G) \
    case G: wsum_group(G, vt, pg, ldp, v, nk, hd, og, ldo); break;
            WSUM_CASE(1) WSUM_CASE(2) WSUM_CASE(3) WSUM_CASE(4) WSUM_CASE(5) WSUM_CASE(6)
            WSUM_CASE(7) WSUM_CASE(8) WSUM_CASE(9) WSUM_CASE(10) WSUM_CASE(11) default: WSUM_CASE(12)
#undef WSUM_CASE
        }
        h0 += g;
    }
}

/* one copy per value type, so that its loads are fixed at compile time */
static void wsum(const float *p, int ldp, int nh, rg_dtype vt, const void *v, int nk, int hd, float *out, int ldo) {
    if (vt == RG_DT_F16) wsum_of(RG_DT_F16, p, ldp, nh, v, nk, hd, out, ldo);
    else if (vt == RG_DT_Q8_0) wsum_of(RG_DT_Q8_0, p, ldp, nh, v, nk, hd, out, ldo);
    else wsum_of(RG_DT_F32, p, ldp, nh, v, nk, hd, out, ldo);
}

/* g = gelu_tanh(g) * u, gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
static void gelu_mul(float *g, const float *u, size_t count) {
    const vf k = v_set1(0.7978845608028654f), c = v_set1(0.044715f), half = v_set1(0.5f), one = v_set1(1.0f);
    for (size_t i = 0; i < count; i += VW) {
        vf x = v_load_n(g + i, count - i);
        vf inner = v_mul(k, v_add(x, v_mul(v_mul(v_mul(c, x), x), x)));
        vf ge = v_mul(v_mul(half, x), v_add(one, v_tanh(inner)));
        v_store_n(g + i, count - i, v_mul(ge, v_load_n(u + i, count - i)));
    }
}

/* x = cap tanh(x / cap) */
static void softcap(float *x, size_t count, float cap) {
    const vf c = v_set1(cap);
    for (size_t i = 0; i < count; i += VW)
        v_store_n(x + i, count - i, v_mul(c, v_tanh(v_div(v_load_n(x + i, count - i), c))));
}

/* The scalar kernel's formulas (kernels_scalar.c), VW channels at a time:
 *   log_a = -8 sigmoid(ga) softplus(L), a = exp(log_a),
 *   mult = sqrt(1 - exp(2 log_a)) (1 at position 0, where a = 0),
 *   h = a h + x sigmoid(gx) mult. */
static void rglru(const float *x, const float *gx, const float *ga, const float *softplus_a, int n, int r, int ld,
                  int64_t pos0, float *h, float *y) {
    const vf one = v_set1(1.0f), m8 = v_set1(-8.0f);
    for (int c = 0; c < r; c += VW) {
        size_t cnt = (size_t)(r - c);
        vf sp = v_load_n(softplus_a + c, cnt), hc = v_load_n(h + c, cnt);
        for (int t = 0; t < n; t++) {
            size_t i = (size_t)t * ld + c;
            vf log_a = v_mul(v_mul(m8, v_sigmoid(v_load_n(ga + i, cnt))), sp);
            vf a = v_exp(log_a);
            vf mult = v_sqrt(v_sub(one, v_exp(v_add(log_a, log_a))));
            if (pos0 + t == 0) {
                a = v_zero();
                mult = one;
            }
            vf xin = v_mul(v_mul(v_load_n(x + i, cnt), v_sigmoid(v_load_n(gx + i, cnt))), mult);
            hc = v_fma(a, hc, xin);
            v_store_n(y + i, cnt, hc);
        }
        v_store_n(h + c, cnt, hc);
    }
}

/* ------------------------------------------------ GEMM, float32 (training)
 * The rg_gemm contract in the usual blocked form: the k axis is cut in
 * blocks of GEMM_KC; for each, B's slab (GEMM_KC x n) is packed in panels of
 * GEMM_NR columns, k-major (a k's GEMM_NR values side by side: the tile
 * loads them as vectors), and A in blocks of GEMM_MC rows, in panels of
 * GEMM_MR rows (the tile broadcasts them one by one). Panels are padded
 * with zeros. An A panel is k-major too when A's rows are strided (a_cs >
 * 1: packing is a copy per k), else row-major with rows GEMM_KC apart (a
 * copy per row): either way a plain copy, where the other layout would be
 * a transpose. B's panels need a transpose only when its rows are strided
 * (Y = X W^T). A tile keeps GEMM_MR x GEMM_NR sums in registers over a
 * block, from c's values (a later block, or add), with a fused multiply-add
 * per k in order: every element is the same chain of operations wherever
 * its tile falls. A B panel (32 KiB on avx512) stays in L1 while the A
 * panels of a block (240 KiB) stream from L2. */
enum { GEMM_NR = GEMM_NV * VW, GEMM_KC = 256, GEMM_MC = 20 * GEMM_MR };
/* A panel's footprint: GEMM_MR rows of GEMM_KC, plus 16 floats per row so
 * that a row-major panel's rows fall in different L1 sets (rows exactly
 * 1 KiB apart shared 4 of them: 79 GFLOP/s in cache instead of 100) */
enum { GEMM_PITCH = GEMM_KC + 16 };

/* lines l < count of src (element p of line l at src[l*ls + p*ps], p < kc)
 * into panels of `width` lines at dst, panel q at dst + q*width*pitch:
 * k-major (element p of line l at p*width + l) or, when line_major, row
 * by row (at l*GEMM_PITCH + p); lines past count are 0 up to a whole panel */
INLINE void pack_panels(const float *src, size_t ls, size_t ps, int count, int kc, const int width,
                        const int line_major, const size_t pitch, float *dst) {
    for (int l0 = 0; l0 < count; l0 += width) {
        int nl = count - l0 < width ? count - l0 : width;
        float *d = dst + (size_t)l0 * pitch;
        const float *s = src + (size_t)l0 * ls;
        if (line_major) { /* ps == 1: each line is contiguous */
            for (int l = 0; l < width; l++)
                if (l < nl) memcpy(d + (size_t)l * GEMM_PITCH, s + (size_t)l * ls, sizeof(float) * (size_t)kc);
                else memset(d + (size_t)l * GEMM_PITCH, 0, sizeof(float) * (size_t)kc);
        } else if (ls == 1) { /* a k's values are contiguous: vector copies, zeros past nl */
            for (int p = 0; p < kc; p++)
                for (int l = 0; l < width; l += VW)
                    v_store_n(d + (size_t)p * width + l, (size_t)(width - l),
                              v_load_n(s + (size_t)p * ps + l, nl > l ? (size_t)(nl - l) : 0));
        } else { /* a transpose: walk each line along k */
            for (int l = 0; l < nl; l++)
                for (int p = 0; p < kc; p++) d[(size_t)p * width + l] = s[(size_t)l * ls + (size_t)p * ps];
            for (int p = 0; p < kc; p++)
                for (int l = nl; l < width; l++) d[(size_t)p * width + l] = 0.0f;
        }
    }
}

/* c[i][j] (+)= sum_{p<kc} A(i, p) b[p*GEMM_NR + j] for i < mr, j < nc, A's
 * panel k-major or row-major (see pack_panels) */
INLINE void gemm_tile(int kc, const float *a, const int a_line_major, const float *b, float *c, size_t ldc, int mr,
                      int nc, int load_c) {
    const size_t a_is = a_line_major ? GEMM_PITCH : 1, a_ps = a_line_major ? 1 : GEMM_MR;
    vf acc[GEMM_MR][GEMM_NV];
    size_t cnt[GEMM_NV];
#pragma GCC unroll 4
    for (int v = 0; v < GEMM_NV; v++) cnt[v] = nc > v * VW ? (size_t)(nc - v * VW) : 0;
#pragma GCC unroll 16
    for (int i = 0; i < GEMM_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < GEMM_NV; v++)
            acc[i][v] = load_c && i < mr ? v_load_n(c + (size_t)i * ldc + v * VW, cnt[v]) : v_zero();
    for (int p = 0; p < kc; p++) {
        vf bv[GEMM_NV];
#pragma GCC unroll 4
        for (int v = 0; v < GEMM_NV; v++) bv[v] = v_loadu(b + (size_t)p * GEMM_NR + v * VW);
#pragma GCC unroll 16
        for (int i = 0; i < GEMM_MR; i++) {
            vf ai = v_set1(a[(size_t)i * a_is + (size_t)p * a_ps]);
#pragma GCC unroll 4
            for (int v = 0; v < GEMM_NV; v++) acc[i][v] = v_fma(ai, bv[v], acc[i][v]);
        }
    }
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < GEMM_NV; v++) v_store_n(c + (size_t)i * ldc + v * VW, cnt[v], acc[i][v]);
}

/* One block of A (mc rows from a, k from p0) against the packed B slab. */
INLINE void gemm_block(const int a_line_major, int mc, int kc, int n, const float *a, size_t a_rs, size_t a_cs,
                       const float *pb, float *pa, float *c, size_t ldc, int load_c) {
    pack_panels(a, a_rs, a_cs, mc, kc, GEMM_MR, a_line_major, GEMM_PITCH, pa);
    for (int j0 = 0; j0 < n; j0 += GEMM_NR)
        for (int i = 0; i < mc; i += GEMM_MR)
            gemm_tile(kc, pa + (size_t)i * GEMM_PITCH, a_line_major, pb + (size_t)j0 * GEMM_KC, c + (size_t)i * ldc + j0,
                      ldc, mc - i < GEMM_MR ? mc - i : GEMM_MR, n - j0 < GEMM_NR ? n - j0 : GEMM_NR, load_c);
}

static void gemm(int m, int n, int k, const float *a, size_t a_rs, size_t a_cs, const float *b, size_t b_rs,
                 size_t b_cs, float *c, size_t ldc, int add) {
    if (k == 0 && !add) /* an empty sum */
        for (int i = 0; i < m; i++) memset(c + (size_t)i * ldc, 0, sizeof(float) * (size_t)n);
    size_t b_floats = (size_t)GEMM_KC * (size_t)((n + GEMM_NR - 1) / GEMM_NR * GEMM_NR);
    float *pb = rg_scratch(RG_SCRATCH_KERNEL, sizeof(float) * (b_floats + (size_t)GEMM_MC * GEMM_PITCH)),
          *pa = pb + b_floats;
    for (int p0 = 0; p0 < k; p0 += GEMM_KC) {
        int kc = k - p0 < GEMM_KC ? k - p0 : GEMM_KC;
        pack_panels(b + (size_t)p0 * b_rs, b_cs, b_rs, n, kc, GEMM_NR, 0, GEMM_KC, pb);
        for (int i0 = 0; i0 < m; i0 += GEMM_MC) {
            int mc = m - i0 < GEMM_MC ? m - i0 : GEMM_MC;
            const float *ab = a + (size_t)i0 * a_rs + (size_t)p0 * a_cs;
            float *cb = c + (size_t)i0 * ldc;
            if (a_cs == 1) gemm_block(1, mc, kc, n, ab, a_rs, a_cs, pb, pa, cb, ldc, add || p0 > 0);
            else gemm_block(0, mc, kc, n, ab, a_rs, a_cs, pb, pa, cb, ldc, add || p0 > 0);
        }
    }
}

/* ------------------------------------------------------ roofline probes */

static float read_sum(const float *p, size_t n) {
    vf s0 = v_zero(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 4 * VW <= n; i += 4 * VW) {
        s0 = v_add(s0, v_loadu(p + i));
        s1 = v_add(s1, v_loadu(p + i + VW));
        s2 = v_add(s2, v_loadu(p + i + 2 * VW));
        s3 = v_add(s3, v_loadu(p + i + 3 * VW));
    }
    float s = v_sum(v_add(v_add(s0, s1), v_add(s2, s3)));
    for (; i < n; i++) s += p[i];
    return s;
}

/* float32: 12 independent fused multiply-add chains (vfmadd231ps, fmla;
 * more than latency x throughput on current cores); int8: the set's own
 * step. */
static double peak_loop(int int8, long iters) {
    if (iters <= 0) return 0;
    if (int8) return SIMD_NAME(rg_peak_int8)(iters);
    SIMD_PEAK_LOOP(iters, SIMD_PEAK_FMA);
    return (double)iters * 12 * VW * 2;
}

/* ------------------------------------- Q8_0/Q4_0 packed in int8 panels */
#ifdef SIMD_PANELS /* the x86 sets (simd.h); arm64's use the weights as stored */

static size_t packed_bytes(rg_dtype dt, int rows, int k) {
    if (dt != RG_DT_Q8_0 && dt != RG_DT_Q4_0) return 0;
    return (size_t)((rows + PANEL_ROWS - 1) / PANEL_ROWS) * panel_bytes(dt, k / RG_QBLOCK);
}

static void pack(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, uint8_t *out) {
    for (int r0 = 0; r0 < rows; r0 += PANEL_ROWS)
        pack_panel(dt, w + (size_t)r0 * rb, rb, rows - r0 < PANEL_ROWS ? rows - r0 : PANEL_ROWS, k / RG_QBLOCK,
                   out + (size_t)(r0 / PANEL_ROWS) * panel_bytes(dt, k / RG_QBLOCK));
}

/* Row r gathered back into the file's blocks (see simd.h's layout), then
 * widened as the type table widens them. */
static void packed_row(rg_dtype dt, const uint8_t *p, int k, int64_t r, float *out) {
    int nb = k / RG_QBLOCK, lane = (int)(r % PANEL_ROWS), qbytes = dt == RG_DT_Q8_0 ? 32 : 16;
    const uint8_t *panel = p + (size_t)(r / PANEL_ROWS) * panel_bytes(dt, nb), *scales = panel_scales(dt, panel, nb);
    const rg_dtype_traits *tr = rg_dtype_info(dt);
    uint8_t blk[2 + 32];
    for (int b = 0; b < nb; b++) {
        const uint8_t *q = panel + (size_t)b * panel_quant_bytes(dt);
        memcpy(blk, scales + ((size_t)b * PANEL_ROWS + lane) * 2, 2);
        for (int j = 0; j < qbytes; j++) blk[2 + j] = q[(j / 4) * 4 * PANEL_ROWS + lane * 4 + j % 4];
        tr->to_float(blk, RG_QBLOCK, out + (size_t)b * RG_QBLOCK);
    }
}

static const rg_pack_set packed = {
    PANEL_ROWS,
    packed_bytes,
    pack,
    {[RG_DT_Q8_0] = SIMD_NAME(rg_matmul_packed_q8_0), [RG_DT_Q4_0] = SIMD_NAME(rg_matmul_packed_q4_0)},
    packed_row};
#define SIMD_PACKED (&packed)
#else
#define SIMD_PACKED NULL
#endif

/* K-quant kernels: the x86 sets' (kernels_kquant.c); arm64's run the scalar ones */
#ifdef SIMD_KQUANTS
#define SIMD_Q4_K SIMD_NAME(rg_matmul_q4_k)
#define SIMD_Q6_K SIMD_NAME(rg_matmul_q6_k)
#define SIMD_KQUANT_INT8 (1u << RG_DT_Q4_K | 1u << RG_DT_Q6_K)
#else
#define SIMD_Q4_K NULL
#define SIMD_Q6_K NULL
#define SIMD_KQUANT_INT8 0u
#endif

const rg_kernel_set SIMD_NAME(rg_kernels) =
    RG_KERNEL_SET(SIMD_SET_NAME, 1u << RG_DT_Q8_0 | 1u << RG_DT_Q4_0 | SIMD_KQUANT_INT8, matmul_f32, matmul_f16,
                  matmul_bf16, SIMD_NAME(rg_matmul_q8_0), SIMD_NAME(rg_matmul_q4_0), SIMD_Q4_K, SIMD_Q6_K, SIMD_PACKED);

#ifdef RG_SIMD_AVX512
/* "amx": the avx512 set whose packed Q8_0/Q4_0 matmuls, and the Q8_0 one
 * over rows as stored (attention windows' keys), multiply tiles
 * (kernels_avx512.c), over the same panels. */
static const rg_pack_set packed_amx = {
    PANEL_ROWS, packed_bytes, pack, {[RG_DT_Q8_0] = rg_matmul_packed_q8_0_amx, [RG_DT_Q4_0] = rg_matmul_packed_q4_0_amx},
    packed_row};
/* its int8 peak: the tile multiply's */
static double peak_loop_amx(int int8, long iters) {
    return int8 && iters > 0 ? rg_peak_int8_amx(iters) : peak_loop(int8, iters);
}
#define peak_loop peak_loop_amx
const rg_kernel_set rg_kernels_amx =
    RG_KERNEL_SET("amx", 1u << RG_DT_Q8_0 | 1u << RG_DT_Q4_0 | SIMD_KQUANT_INT8, matmul_f32, matmul_f16, matmul_bf16,
                  rg_matmul_q8_0_amx, SIMD_NAME(rg_matmul_q4_0), SIMD_Q4_K, SIMD_Q6_K, &packed_amx);
#undef peak_loop
#endif
