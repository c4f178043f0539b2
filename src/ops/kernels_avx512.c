/* AVX-512 int8 kernels for Q8_0/Q4_0 weights (F, BW, VL, DQ and VNNI; see
 * simd.h; the float kernels are kernels_simd.c's).
 *
 * Each activation row is quantised per block of 32 like Q8_0 (d_x = max|x| /
 * 127, q = round(x / d_x)); a block's dot product is one integer instruction
 * (vpdpbusd: unsigned bytes x signed bytes, summed in int32) scaled by
 * d_w * d_x. vpdpbusd wants the weights unsigned (see unpack_q); the offset
 * that adds is taken off by starting the integer sum from a bias (see
 * qmeta). Rounding the activations to int8 is the only approximation:
 * |error| of a block's dot product <= d_x/2 * sum|w| (tests/unit/
 * test_kernels.c checks that bound). The "amx" set's tile multiplies over
 * the same panels are at the end of the file. */
#include "ops/simd.h"
#include "util/util.h"

/* tile_q: RB rows x up to QTB tokens */
enum { RB = 4, QTB = 4 };

/* Kernel choice by token count (measured, see README "Speed"; each can be
 * overridden at build time to measure the others): the one-row gemv_q for
 * one token if Q_GEMV_MAX_N >= 1, the int8 tiles (tile_q) below
 * Q_PANEL_MIN_N and the panels from there. */
#ifndef Q_GEMV_MAX_N
#define Q_GEMV_MAX_N 1
#endif


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
    tile_rows(w, rb, nr, RB, wr);
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
        _mm_mask_storeu_ps(y + (size_t)t * ldy, ym, sum4_f8(acc[0][t], acc[1][t], acc[2][t], acc[3][t]));
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
 * weights, prefetched ahead (two or four rows at once streamed at half the
 * rate); 4 accumulators hide the FMA latency. */
INLINE void gemv_q(rg_dtype dt, const int wide, const uint8_t *w, size_t rb, int rows, int nb, const int8_t *q,
                   const void *meta, float *y) {
    const size_t bs = dt == RG_DT_Q8_0 ? 34 : 18;
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int b = 0;
        for (; b + 4 <= nb; b += 4) {
            gemv_prefetch(row + (size_t)b * bs, 4 * bs);
            a0 = block_dot(dt, wide, row + (size_t)b * bs, q, meta, b, a0);
            a1 = block_dot(dt, wide, row + (size_t)(b + 1) * bs, q, meta, b + 1, a1);
            a2 = block_dot(dt, wide, row + (size_t)(b + 2) * bs, q, meta, b + 2, a2);
            a3 = block_dot(dt, wide, row + (size_t)(b + 3) * bs, q, meta, b + 3, a3);
        }
        for (; b < nb; b++) a0 = block_dot(dt, wide, row + (size_t)b * bs, q, meta, b, a0);
        y[r] = sum_f8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    }
}

/* Panels (simd.h): 16 rows, one 64-byte vector per 4 bytes of each row's
 * block. vpdpbusd wants the weights unsigned: Q8_0's are flipped (xor 0x80,
 * i.e. q + 128) as they are loaded, Q4_0's nibbles are split in registers;
 * the offsets are taken off by the integer sum's start (qmeta). */
enum { PR = PANEL_ROWS, PT = 8 };

/* Panels packed per step (weights not packed at load time) pay off from
 * this many tokens. Measured on the 2B shape (Q8_0, 2 threads, Zen 4),
 * t/s of tile_q vs panels packed per step: n=2 22 vs 13, 4 41 vs 27, 8 48
 * vs 46, 16 53 vs 69, 512 (chunks of 256) 58 vs 133; again for batched
 * steps (README "Speed", Q8_0 and Q4_0, n = 1..16): tile_q faster up to 6,
 * even at 7-10. */
#ifndef Q_PANEL_MIN_N
#define Q_PANEL_MIN_N 8
#endif

/* acc + w . (the 4 activation bytes 4g..4g+3 of block b of token t, in
 * every dword), the bytes broadcast by the instruction's memory operand.
 * Written as an intrinsic, gcc hoists the 64 broadcasts of a block into
 * registers spilled to the stack: 64 stores of 64 bytes a block, and the
 * stores, not the vpdpbusd, set the rate. */
typedef int32_t __attribute__((may_alias)) act_dword;
INLINE __m512i dot_act4(__m512i acc, __m512i w, const int8_t *q, int k, int t, int b, int g) {
    const act_dword *x4 = (const act_dword *)(q + (size_t)t * k + b * RG_QBLOCK + 4 * g);
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*x4));
    return acc;
}

/* y[t][r] = sum over blocks of d_w d_x (start + dot) for the panel's nr
 * rows and nt <= PT tokens (compact activation metadata). With one or two
 * tokens each keeps two integer sums (even and odd vectors), as a chain of
 * 8 dependent vpdpbusd per block would bound the rate. Those tiles, and
 * the first tile of a batched step over a panel (`first`: it brings the
 * panel from memory), prefetch the panel ahead, and a batched step's tiles
 * prefetch their share of the next panel (simd.h, next_panel_share). */
INLINE void panel_tile(rg_dtype dt, const int nt, const uint8_t *p, int nb, const int8_t *q, int k,
                       const qmeta *meta, float *y, int ldy, int nr, int first, panel_share next) {
    const size_t qb = panel_quant_bytes(dt);
    const int split = nt <= 2, stream = nt <= 2 || first;
    const uint8_t *scales = panel_scales(dt, p, nb);
    const __m512i lo4 = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8((char)0x80);
    __m512 acc[PT];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const __m512i *wq = (const __m512i *)(p + (size_t)b * qb);
        if (stream) {
            gemv_prefetch((const uint8_t *)wq, qb);
            if (b % 2 == 0) gemv_prefetch(scales + (size_t)b * 2 * PR, 64);
        }
        prefetch_share(next, b, nb);
        __m512i s[PT], s2[PT];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            s[t] = _mm512_set1_epi32(meta[(size_t)t * nb + b].bias);
            s2[t] = _mm512_setzero_si512();
        }
        if (dt == RG_DT_Q8_0) {
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m512i wv = _mm512_xor_si512(_mm512_load_si512(wq + g), flip);
#pragma GCC unroll 8
                for (int t = 0; t < nt; t++) {
                    if (split && g % 2) s2[t] = dot_act4(s2[t], wv, q, k, t, b, g);
                    else s[t] = dot_act4(s[t], wv, q, k, t, b, g);
                }
            }
        } else {
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                __m512i v = _mm512_load_si512(wq + g);
                __m512i lo = _mm512_and_si512(v, lo4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
#pragma GCC unroll 8
                for (int t = 0; t < nt; t++) {
                    s[t] = dot_act4(s[t], lo, q, k, t, b, g);
                    if (split) s2[t] = dot_act4(s2[t], hi, q, k, t, b, g + 4);
                    else s[t] = dot_act4(s[t], hi, q, k, t, b, g + 4);
                }
            }
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(scales + (size_t)b * 2 * PR)));
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            __m512i st = split ? _mm512_add_epi32(s[t], s2[t]) : s[t];
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(st), _mm512_mul_ps(dw, _mm512_set1_ps(meta[(size_t)t * nb + b].d)),
                                     acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) v_store_n(y + (size_t)t * ldy, (size_t)nr, acc[t]);
}

/* Every token of the step over one panel of nr rows. */
static void panel_tokens(rg_dtype dt, const uint8_t *p, int nr, int k, const int8_t *q, const qmeta *meta, int n,
                         float *y, int ldy, const uint8_t *next, size_t next_bytes) {
    int nb = k / RG_QBLOCK, tiles = (n + PT - 1) / PT;
    const int batched = n <= PANEL_PREFETCH_MAX_N;
    if (!batched) next = NULL;
    for (int t0 = 0; t0 < n; t0 += PT) {
        panel_share share = next_panel_share(tiles > 1 ? next : NULL, next_bytes, t0 / PT, tiles);
        const int8_t *qt = q + (size_t)t0 * k;
        const qmeta *mt = meta + (size_t)t0 * nb;
        float *yt = y + (size_t)t0 * ldy;
        switch (n - t0) {
#define PANEL_CASE(NT) \
    case NT: panel_tile(dt, NT, p, nb, qt, k, mt, yt, ldy, nr, t0 == 0 && batched, share); break;
            PANEL_CASE(1) PANEL_CASE(2) PANEL_CASE(3) PANEL_CASE(4) PANEL_CASE(5) PANEL_CASE(6) PANEL_CASE(7)
            default: PANEL_CASE(8)
#undef PANEL_CASE
        }
    }
}

/* Weights as stored: each panel packed into scratch p, then every token. */
static void matmul_panels(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const int8_t *q,
                          const qmeta *meta, int n, float *y, int ldy, uint8_t *p) {
    for (int r0 = 0; r0 < rows; r0 += PR) {
        int nr = rows - r0 < PR ? rows - r0 : PR;
        pack_panel(dt, w + (size_t)r0 * rb, rb, nr, k / RG_QBLOCK, p);
        if (dt == RG_DT_Q8_0) panel_tokens(RG_DT_Q8_0, p, nr, k, q, meta, n, y + r0, ldy, NULL, 0);
        else panel_tokens(RG_DT_Q4_0, p, nr, k, q, meta, n, y + r0, ldy, NULL, 0);
    }
}

/* x rounded to int8 (compact or wide metadata) in this thread's scratch,
 * reused while the same call passes the same x */
static int8_t *round_act(rg_dtype dt, const float *x, int ldx, int n, int k, int wide, void **meta) {
    int nb = k / RG_QBLOCK;
    size_t qbytes = ((size_t)n * k + 63) & ~(size_t)63;
    size_t mbytes = (((wide ? sizeof(qmeta_wide) : sizeof(qmeta)) * (size_t)n * nb) + 63) & ~(size_t)63;
    int8_t *q = rg_scratch(RG_SCRATCH_ACT, qbytes + mbytes);
    *meta = q + qbytes;
    static _Thread_local act_key last;
    if (!act_cached(&last, x, ldx, n, k, wide, dt)) quantize_act(dt, x, ldx, n, k, q, *meta, wide);
    return q;
}

INLINE void matmul_quant(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n,
                         float *y, int ldy) {
    int gemv1 = n == 1 && Q_GEMV_MAX_N >= 1, nb = k / RG_QBLOCK, wide = gemv1 && k <= WIDE_MAX_K;
    void *meta;
    int8_t *q = round_act(dt, x, ldx, n, k, wide, &meta);
    if (gemv1) { /* decode */
        if (wide) gemv_q(dt, 1, w, rb, rows, nb, q, meta, y);
        else gemv_q(dt, 0, w, rb, rows, nb, q, meta, y);
        return;
    }
    if (n >= Q_PANEL_MIN_N) {
        matmul_panels(dt, w, rb, rows, k, q, meta, n, y, ldy, rg_scratch(RG_SCRATCH_KERNEL, panel_bytes(dt, nb)));
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

RG_MATMUL_OF(rg_matmul_q8_0_avx512, RG_DT_Q8_0, matmul_quant)
RG_MATMUL_OF(rg_matmul_q4_0_avx512, RG_DT_Q4_0, matmul_quant)

/* Packed at load time: panels for every token count */
INLINE void matmul_packed(rg_dtype dt, const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y,
                          int ldy) {
    void *meta;
    int8_t *q = round_act(dt, x, ldx, n, k, 0, &meta);
    size_t pb = panel_bytes(dt, k / RG_QBLOCK);
    for (int r0 = 0; r0 < rows; r0 += PR)
        panel_tokens(dt, p + (size_t)(r0 / PR) * pb, rows - r0 < PR ? rows - r0 : PR, k, q, meta, n, y + r0, ldy,
                     r0 + PR < rows ? p + (size_t)(r0 / PR + 1) * pb : NULL, pb);
}

void rg_matmul_packed_q8_0_avx512(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y,
                                  int ldy) {
    matmul_packed(RG_DT_Q8_0, p, rows, k, x, ldx, n, y, ldy);
}
void rg_matmul_packed_q4_0_avx512(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y,
                                  int ldy) {
    matmul_packed(RG_DT_Q4_0, p, rows, k, x, ldx, n, y, ldy);
}

/* vpdpbusd: 64 multiply-adds an instruction */
double rg_peak_int8_avx512(long iters) {
    SIMD_PEAK_LOOP(iters, ".irp r," SIMD_REGS12 "\n\tvpdpbusd %%zmm12, %%zmm13, %%zmm\\r\n\t.endr\n\t");
    return (double)iters * 12 * 64 * 2;
}

/* ---- AMX (the "amx" set: avx512's, with these three matmuls) -----------
 * A tile multiply (tdpbssd) takes 16 tokens' activation block (16 rows of
 * 32 signed bytes, read in place with the row stride k) times one block of
 * a panel's 16 weight rows, which the panels already hold in the layout
 * the instruction wants (8 rows of 64 bytes: 4 bytes of each of the 16
 * weight rows), and gives the 16 x 16 integer block sums in one
 * instruction where the vpdpbusd tiles need 128. Each block sum is then
 * scaled and added as in panel_tile (acc += float(sum) * d_w * d_x), in
 * the same order: the results equal the avx512 set's bit for bit. Q8_0's
 * weights are used signed as stored; Q4_0's nibbles are widened to q - 8
 * (amx_weights), so neither needs the integer sums' start. Steps of fewer
 * than 16 tokens, and the last n % 16, take the avx512 tiles. Measured on
 * the 2B shape (Sapphire Rapids, 2 threads): pp512 and 64 sequences
 * 1.2-1.5x the avx512 set's, 16 sequences 1.1-1.2x (README "Speed"). The
 * third, Q8_0 rows as stored (attention keys), is at the end.
 *
 * Tiles: 0 and 1 block sums, 2 and 3 activations, 4 and 5 weights; two
 * blocks in flight, so that one block's sums are scaled while the next is
 * multiplied. */
enum { AMX_T = 16 };

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) amx_config;

/* Tiles 0, 1: sums (16 tokens x 16 rows of int32); 2, 3: activations (16
 * tokens x 32 bytes); 4, 5: weights (8 x 16 rows x 4 bytes). A constant in
 * memory: gcc 12 drops a local's stores before ldtilecfg reads it. */
static const amx_config g_amx_config = {
    .palette = 1,
    .colsb = {4 * PR, 4 * PR, RG_QBLOCK, RG_QBLOCK, 4 * PR, 4 * PR},
    .rows = {AMX_T, AMX_T, AMX_T, AMX_T, RG_QBLOCK / 4, RG_QBLOCK / 4},
};

/* Block b of a Q4_0 panel's nibbles widened to q - 8, as a Q8_0 panel's
 * block (8 rows of 64 bytes; the low nibbles are elements 4g..4g+3, the
 * high ones 16 + 4g.., so rows 0..3 then 4..7 keep the block's order).
 * Streams the panel from memory with the decode's prefetch. */
INLINE void amx_widen_block(const uint8_t *p, int b, int8_t *out) {
    const __m512i lo4 = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    const __m512i *wq = (const __m512i *)(p + (size_t)b * panel_quant_bytes(RG_DT_Q4_0));
    gemv_prefetch((const uint8_t *)wq, panel_quant_bytes(RG_DT_Q4_0));
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        __m512i v = _mm512_load_si512(wq + g);
        _mm512_store_si512(out + 64 * g, _mm512_sub_epi8(_mm512_and_si512(v, lo4), eight));
        _mm512_store_si512(out + 64 * (4 + g), _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), lo4), eight));
    }
}

/* Where the Q4_0 panels' widened blocks live. A panel used by more than
 * AMX_RING_GROUPS token groups is widened whole, once, into a buffer
 * (nibbles NULL) that the groups share. Fewer groups widen each block on
 * the way, AMX_AHEAD blocks before its multiply, into a ring of AMX_RING
 * blocks (nibbles: the panel): the widened panel (20-60 KiB for the 2B
 * shape) and the activations no longer fight over L1, and the tile loads
 * still read bytes stored several blocks earlier, not ones in the store
 * buffer. Measured on one core, 16 tokens: 165 -> 202-219 GMAC/s; 32 and
 * 48 tokens 1.0-1.07x; 64 and more were slower by the ring. */
enum { AMX_RING = 8, AMX_AHEAD = 4, AMX_RING_GROUPS = 3 };
INLINE const int8_t *amx_weights(int8_t *w, const uint8_t *nibbles, int nb, int b) {
    if (!nibbles) return w + (size_t)b * RG_QBLOCK * PR;
    int ahead = b + AMX_AHEAD;
    if (ahead < nb) amx_widen_block(nibbles, ahead, w + (size_t)(ahead % AMX_RING) * RG_QBLOCK * PR);
    return w + (size_t)(b % AMX_RING) * RG_QBLOCK * PR;
}

/* acc[t] += float(sums[t]) * d_w * d_x(t, b) for the 16 tokens */
INLINE void amx_scale(const int32_t *sums, const uint8_t *scales, const qmeta *meta, int nb, int b, __m512 *acc) {
    __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(scales + (size_t)b * 2 * PR)));
#pragma GCC unroll 16
    for (int t = 0; t < AMX_T; t++)
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums + 16 * t)),
                                 _mm512_mul_ps(dw, _mm512_set1_ps(meta[(size_t)t * nb + b].d)), acc[t]);
}

/* Block b's tile multiply into sums tile C (activations tile A, weights
 * tile W; tile numbers are constants of the instructions) */
#define AMX_MULTIPLY(C, A, W, b)                                              \
    do {                                                                      \
        _tile_loadd(W, amx_weights(w, nibbles, nb, b), 4 * PR);              \
        _tile_loadd(A, q + (size_t)(b) * RG_QBLOCK, k);                       \
        _tile_zero(C);                                                        \
        _tile_dpbssd(C, A, W);                                                \
    } while (0)

/* 16 tokens over one panel of nr rows: w its signed weights (512 bytes a
 * block; with nibbles, the ring they are widened into), scales its d_w.
 * Software-pipelined: block b + 1's multiply is issued before block b's
 * sums are stored and scaled. `stream`: prefetch the weights ahead (they
 * come from memory). */
INLINE void amx_tile(int8_t *w, const uint8_t *nibbles, const uint8_t *scales, int nb, const int8_t *q, int k,
                     const qmeta *meta, float *y, int ldy, int nr, int stream, panel_share next) {
    int32_t sums[AMX_T * PR] __attribute__((aligned(64)));
    __m512 acc[AMX_T];
#pragma GCC unroll 16
    for (int t = 0; t < AMX_T; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; nibbles && b < AMX_AHEAD && b < nb; b++) /* the ring's first blocks */
        amx_widen_block(nibbles, b, w + (size_t)b * RG_QBLOCK * PR);
    AMX_MULTIPLY(0, 2, 4, 0);
    for (int b = 0; b < nb; b += 2) {
        if (stream) {
            gemv_prefetch((const uint8_t *)w + (size_t)b * RG_QBLOCK * PR, 2 * RG_QBLOCK * PR);
            if (b % 4 == 0) gemv_prefetch(scales + (size_t)b * 2 * PR, 64);
        }
        prefetch_share(next, b, nb);
        if (b + 1 < nb) AMX_MULTIPLY(1, 3, 5, b + 1);
        _tile_stored(0, sums, 4 * PR);
        amx_scale(sums, scales, meta, nb, b, acc);
        if (b + 1 >= nb) break;
        prefetch_share(next, b + 1, nb);
        if (b + 2 < nb) AMX_MULTIPLY(0, 2, 4, b + 2);
        _tile_stored(1, sums, 4 * PR);
        amx_scale(sums, scales, meta, nb, b + 1, acc);
    }
#pragma GCC unroll 16
    for (int t = 0; t < AMX_T; t++) v_store_n(y + (size_t)t * ldy, (size_t)nr, acc[t]);
}
#undef AMX_MULTIPLY

/* Packed at load time: 16 tokens at a time by tile multiplies, the rest
 * (fewer than 16) by the avx512 panels. */
INLINE void matmul_packed_amx(rg_dtype dt, const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y,
                              int ldy) {
    if (n < AMX_T) {
        matmul_packed(dt, p, rows, k, x, ldx, n, y, ldy);
        return;
    }
    void *meta;
    int8_t *q = round_act(dt, x, ldx, n, k, 0, &meta);
    const qmeta *mq = meta;
    int nb = k / RG_QBLOCK, groups = n / AMX_T, rest = n - groups * AMX_T;
    int batched = n <= PANEL_PREFETCH_MAX_N;
    size_t pb = panel_bytes(dt, nb);
    _tile_loadconfig(&g_amx_config);
    int8_t *wide = dt == RG_DT_Q4_0 ? rg_scratch(RG_SCRATCH_KERNEL, (size_t)nb * RG_QBLOCK * PR) : NULL;
    for (int r0 = 0; r0 < rows; r0 += PR) {
        const uint8_t *panel = p + (size_t)(r0 / PR) * pb, *next = batched && r0 + PR < rows ? panel + pb : NULL;
        int nr = rows - r0 < PR ? rows - r0 : PR;
        int8_t *w = wide ? wide : (int8_t *)panel;
        const uint8_t *nibbles = wide && groups <= AMX_RING_GROUPS ? panel : NULL;
        for (int b = 0; wide && !nibbles && b < nb; b++) amx_widen_block(panel, b, wide + (size_t)b * RG_QBLOCK * PR);
        /* the first group streams the panel (Q8_0) or the widening does
         * (Q4_0); the groups share the next panel's prefetch, a lone Q4_0
         * group all of it (its widening would otherwise wait on it) */
        for (int g = 0; g < groups; g++)
            amx_tile(w, nibbles, panel_scales(dt, panel, nb), nb, q + (size_t)g * AMX_T * k, k,
                     mq + (size_t)g * AMX_T * nb, y + (size_t)g * AMX_T * ldy + r0, ldy, nr, g == 0 && batched && !wide,
                     next_panel_share(groups > 1 || wide ? next : NULL, pb, g, groups));
        if (rest)
            panel_tokens(dt, panel, nr, k, q + (size_t)groups * AMX_T * k, mq + (size_t)groups * AMX_T * nb, rest,
                         y + (size_t)groups * AMX_T * ldy + r0, ldy, NULL, 0);
    }
    _tile_release();
}

/* Q8_0 rows as stored, not packed at load time: above all an attention
 * window's keys, scored for one token's heads (the heads are the tokens: 10
 * for the 2B shape, 16 for 9B). The rows are the tile multiply's first
 * operand, read in place (a block's 32 bytes of 16 rows, at the row stride),
 * and the tokens its second, rearranged once a call, so nothing is packed
 * per panel (packing cost more than the panels' multiplies it would save).
 * A sums tile is then 16 rows x nt tokens, and y[t][r] += float(sum) *
 * (d_w * d_x) row by row, in block order: equal to avx512's panels bit for
 * bit. 8..16 tokens; other counts take the avx512 kernels. Measured, 2048
 * rows x k = 256 (a 2B window's keys), 10 tokens: one thread, rows in L2,
 * 33-38 us a call against avx512's 66-71; two threads, rows from memory,
 * 56-61 us against 143-146 (65 without the prefetch AMX_STORED_AHEAD panels
 * ahead into L2). */
#ifndef AMX_STORED_AHEAD
#define AMX_STORED_AHEAD 4
#endif
#define AMX_STORED_CONFIG(NT)                                                                      \
    {.palette = 1, .colsb = {4 * (NT), 4 * (NT), RG_QBLOCK, RG_QBLOCK, 4 * (NT), 4 * (NT)},        \
     .rows = {PR, PR, PR, PR, RG_QBLOCK / 4, RG_QBLOCK / 4}}
/* Tiles 0, 1: sums (16 rows x nt tokens of int32); 2, 3: the rows' block
 * (16 x 32 bytes); 4, 5: the tokens' block (8 x nt x 4 bytes). By nt. */
static const amx_config g_amx_stored_configs[AMX_T + 1] = {
    AMX_STORED_CONFIG(0),  AMX_STORED_CONFIG(1),  AMX_STORED_CONFIG(2),  AMX_STORED_CONFIG(3),
    AMX_STORED_CONFIG(4),  AMX_STORED_CONFIG(5),  AMX_STORED_CONFIG(6),  AMX_STORED_CONFIG(7),
    AMX_STORED_CONFIG(8),  AMX_STORED_CONFIG(9),  AMX_STORED_CONFIG(10), AMX_STORED_CONFIG(11),
    AMX_STORED_CONFIG(12), AMX_STORED_CONFIG(13), AMX_STORED_CONFIG(14), AMX_STORED_CONFIG(15),
    AMX_STORED_CONFIG(16)};
#undef AMX_STORED_CONFIG

/* acc[r] += float(sums[r]) * (d_w(r, b) * d_x) for the 16 rows, d_x the
 * tokens' scales of block b (lanes past nt 0) */
INLINE void amx_stored_scale(const int32_t *sums, const uint8_t *w, size_t rb, int b, __m512 dx, __m512 *acc) {
    const __m512i at = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                          _mm512_set1_epi32((int)rb));
    float dw[PR] __attribute__((aligned(64)));
    __m512i half = _mm512_i32gather_epi32(at, w + (size_t)b * 34, 1); /* d_w in the low 16 bits */
    _mm512_store_ps(dw, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(half)));
#pragma GCC unroll 16
    for (int r = 0; r < PR; r++) {
        __m512 dwr; /* broadcast from memory: gcc would otherwise permute a register (port 5) */
        __asm__("vbroadcastss %1, %0" : "=v"(dwr) : "m"(dw[r]));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums + AMX_T * r)), _mm512_mul_ps(dx, dwr),
                                 acc[r]);
    }
}

/* Block b's tile multiply into sums tile C (rows tile R, tokens tile X) */
#define AMX_STORED_MULTIPLY(C, R, X, b)                                       \
    do {                                                                      \
        _tile_loadd(R, w + 2 + (size_t)(b) * 34, rb);                         \
        _tile_loadd(X, xt + (size_t)(b) * (RG_QBLOCK / 4) * 64, 64);          \
        _tile_zero(C);                                                        \
        _tile_dpbssd(C, R, X);                                                \
    } while (0)

/* One panel: 16 rows from w (rb bytes each, all readable), nr stored; xt
 * the tokens' blocks as the second operand, dx their scales by block. */
static void amx_stored_panel(const uint8_t *w, size_t rb, int nb, const int8_t *xt, const __m512 *dx, int nt, int nr,
                             float *y, int ldy, const uint8_t *next, const uint8_t *ahead, int32_t *sums) {
    float out[PR * AMX_T] __attribute__((aligned(64)));
    __m512 acc[PR];
#pragma GCC unroll 16
    for (int r = 0; r < PR; r++) acc[r] = _mm512_setzero_ps();
    AMX_STORED_MULTIPLY(0, 2, 4, 0);
    for (int b = 0; b < nb; b += 2) {
        /* the next panel into L1, over this one's blocks: a tile load waits
         * for its rows */
        for (size_t at = (size_t)b * PR * rb / nb & ~(size_t)63; next && at < (size_t)(b + 2) * PR * rb / nb; at += 64)
            prefetch_t0(next + at);
        for (size_t at = (size_t)b * PR * rb / nb & ~(size_t)63; ahead && at < (size_t)(b + 2) * PR * rb / nb; at += 64)
            prefetch_t1(ahead + at);
        if (b + 1 < nb) AMX_STORED_MULTIPLY(1, 3, 5, b + 1);
        _tile_stored(0, sums, 4 * AMX_T);
        amx_stored_scale(sums, w, rb, b, dx[b], acc);
        if (b + 1 >= nb) break;
        if (b + 2 < nb) AMX_STORED_MULTIPLY(0, 2, 4, b + 2);
        _tile_stored(1, sums, 4 * AMX_T);
        amx_stored_scale(sums, w, rb, b + 1, dx[b + 1], acc);
    }
    /* out[r][t] -> y[t][r] */
#pragma GCC unroll 16
    for (int r = 0; r < PR; r++) _mm512_store_ps(out + AMX_T * r, acc[r]);
    const __m512i col = _mm512_set_epi32(240, 224, 208, 192, 176, 160, 144, 128, 112, 96, 80, 64, 48, 32, 16, 0);
    for (int t = 0; t < nt; t++) v_store_n(y + (size_t)t * ldy, (size_t)nr, _mm512_i32gather_ps(col, out + t, 4));
}
#undef AMX_STORED_MULTIPLY

void rg_matmul_q8_0_amx(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                        int ldy) {
    if (n < Q_PANEL_MIN_N || n > AMX_T || rb > INT32_MAX / PR) { /* (the scales' gather offsets are int32) */
        rg_matmul_q8_0_avx512(w, rb, rows, k, x, ldx, n, y, ldy);
        return;
    }
    void *meta;
    const int8_t *q = round_act(RG_DT_Q8_0, x, ldx, n, k, 0, &meta);
    const qmeta *mq = meta;
    int nb = k / RG_QBLOCK;
    /* scratch: the tokens' blocks (8 rows of 64 bytes each: dword g of
     * token t at 4t), their scales by block, a last panel's rows padded */
    size_t xt_bytes = (size_t)nb * (RG_QBLOCK / 4) * 64, dx_bytes = sizeof(__m512) * (size_t)nb;
    uint8_t *buf = rg_scratch(RG_SCRATCH_KERNEL, xt_bytes + dx_bytes + PR * rb);
    int8_t *xt = (int8_t *)buf;
    __m512 *dx = (__m512 *)(buf + xt_bytes);
    uint8_t *pad = buf + xt_bytes + dx_bytes;
    memset(xt, 0, xt_bytes);
    for (int b = 0; b < nb; b++) {
        float d[AMX_T] = {0};
        for (int t = 0; t < n; t++) {
            d[t] = mq[(size_t)t * nb + b].d;
            for (int g = 0; g < RG_QBLOCK / 4; g++)
                memcpy(xt + ((size_t)b * (RG_QBLOCK / 4) + g) * 64 + 4 * t, q + (size_t)t * k + b * RG_QBLOCK + 4 * g, 4);
        }
        dx[b] = _mm512_loadu_ps(d);
    }
    /* a tile store fills n lanes of each row; the others (times d_x = 0) are
     * zero once */
    int32_t sums[PR * AMX_T] __attribute__((aligned(64))) = {0};
    _tile_loadconfig(&g_amx_stored_configs[n]);
    for (int r0 = 0; r0 < rows; r0 += PR) {
        int nr = rows - r0 < PR ? rows - r0 : PR;
        const uint8_t *panel = w + (size_t)r0 * rb;
        if (nr < PR) { /* the tile loads read 16 rows */
            memset(pad, 0, PR * rb);
            memcpy(pad, panel, (size_t)nr * rb);
            panel = pad;
        }
        const uint8_t *next = r0 + 2 * PR <= rows ? panel + PR * rb : NULL;
        const uint8_t *ahead = r0 + (AMX_STORED_AHEAD + 1) * PR <= rows ? panel + AMX_STORED_AHEAD * PR * rb : NULL;
        amx_stored_panel(panel, rb, nb, xt, dx, n, nr, y + r0, ldy, next, AMX_STORED_AHEAD ? ahead : NULL, sums);
    }
    _tile_release();
}

/* The tile multiply's peak: 4 independent sums tiles, each a 16 x 16 x 64
 * tdpbssd (16,384 multiply-adds) an instruction, K = 64 as the hardware
 * takes it at most; the kernels above take 32 (one block) at a time, for
 * the blocks' scales, so they can reach half of it at most. */
double rg_peak_int8_amx(long iters) {
    static const amx_config probe = {
        .palette = 1, .colsb = {64, 64, 64, 64, 64, 64}, .rows = {16, 16, 16, 16, 16, 16}};
    _tile_loadconfig(&probe);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_zero(4);
    _tile_zero(5);
    for (long i = 0; i < iters; i++) {
        _tile_dpbssd(0, 4, 5);
        _tile_dpbssd(1, 4, 5);
        _tile_dpbssd(2, 4, 5);
        _tile_dpbssd(3, 4, 5);
    }
    _tile_release();
    return (double)iters * 4 * 16 * 16 * 64 * 2;
}

void rg_matmul_packed_q8_0_amx(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y, int ldy) {
    matmul_packed_amx(RG_DT_Q8_0, p, rows, k, x, ldx, n, y, ldy);
}
void rg_matmul_packed_q4_0_amx(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y, int ldy) {
    matmul_packed_amx(RG_DT_Q4_0, p, rows, k, x, ldx, n, y, ldy);
}
