/* The vector mapping the SIMD kernels are written over. kernels_simd.c is
 * compiled once per instruction set; the quantised kernels of each set
 * (kernels_avx2.c, kernels_avx512.c, kernels_neon.c: what differs in kind,
 * the int8 dot products and the panel repacks) use the same helpers. The
 * Makefile builds an object ending in _avx2 with -mavx2 -mfma -mf16c
 * -DRG_SIMD_AVX2, one ending in _avx512 with the AVX-512 flags and
 * -DRG_SIMD_AVX512 (x86-64 targets), and on arm64 one ending in _neon with
 * -DRG_SIMD_NEON and one ending in _neon_dotprod with -march=armv8.2-a+dotprod
 * -DRG_SIMD_NEON -DRG_SIMD_DOTPROD; matmul.c picks a set only on a CPU that
 * has its instructions.
 *
 * vf holds VW float32 lanes. A function taking `count` works on lanes
 * [0, count) and reads count >= VW as all of them (a constant VW folds the
 * mask away after inlining). vf4 holds 4 float32 lanes in every set. */
#ifndef RG_SIMD_H
#define RG_SIMD_H

#include <stdint.h>
#include <string.h>
#include "ops/ops.h"

#define INLINE static inline __attribute__((always_inline))

/* a read of the cache line at p ahead of its use (prefetcht0 on x86-64,
 * prfm pldl1keep on arm64); never faults */
INLINE void prefetch_t0(const void *p) { __builtin_prefetch(p, 0, 3); }
/* the same into L2 only (prefetcht1; pldl2keep): for data needed later,
 * which must not evict what is in use from L1 */
INLINE void prefetch_t1(const void *p) { __builtin_prefetch(p, 0, 2); }

/* The one-token kernels (gemv) read the weights as one sequential stream,
 * but the hardware prefetcher alone keeps too few lines in flight: one core
 * read about 6 GB/s, two 13 of the 20 GB/s the machine reads. Asking for
 * the line GEMV_PREFETCH bytes ahead raised a DRAM-resident Q4_0 gemv to 16
 * GB/s and Q8_0 to 19 (2 threads, AVX-512 Xeon; 1 KiB did little, 2-8 KiB
 * about the same; not measured on arm64). Call once per `bytes` read (a
 * constant, so the loop unrolls); the address may run past the matrix, as a
 * prefetch never faults. */
#ifndef GEMV_PREFETCH
#define GEMV_PREFETCH 4096
#endif
INLINE void gemv_prefetch(const uint8_t *p, const size_t bytes) {
    for (size_t at = 0; at < bytes; at += 64) prefetch_t0(p + GEMV_PREFETCH + at);
}

/* Panels in a batched step (panels of PANEL_ROWS rows, one after another
 * in memory) are used by a few token tiles each, the first of which reads
 * the panel from memory. The first tile streams it (gemv_prefetch), and all
 * the tiles spread prefetches of the next panel (into L2) evenly over their
 * blocks, each tile of `tiles` a share, so that memory streams while every
 * tile computes, not only the first. Steps of more than
 * PANEL_PREFETCH_MAX_N tokens (prefill's chunks) compute long enough per
 * panel without either (measured: Q8_0 pp512 2-9% slower with them). */
#ifndef PANEL_PREFETCH_MAX_N
#define PANEL_PREFETCH_MAX_N 64
#endif
typedef struct {
    const uint8_t *at; /* this tile's share of the next panel, or NULL */
    size_t bytes;
} panel_share;

/* Tile `tile` of `tiles`: its share (next: NULL for none; a step of one
 * tile streams its panel instead, and passes none) */
INLINE panel_share next_panel_share(const uint8_t *next, size_t panel_bytes, int tile, int tiles) {
    if (!next) return (panel_share){NULL, 0};
    size_t lo = panel_bytes * (size_t)tile / (size_t)tiles, hi = panel_bytes * (size_t)(tile + 1) / (size_t)tiles;
    return (panel_share){next + lo, hi - lo};
}

/* Block b of nb: its part of the share */
INLINE void prefetch_share(panel_share sh, int b, int nb) {
    if (!sh.at) return;
    for (size_t at = sh.bytes * (size_t)b / (size_t)nb & ~(size_t)63; at < sh.bytes * (size_t)(b + 1) / (size_t)nb;
         at += 64)
        prefetch_t1(sh.at + at);
}

/* The row pointers of a tile of nr <= count rows of rb bytes from w; rows
 * past nr repeat the last (computed, not stored). */
INLINE void tile_rows(const uint8_t *w, size_t rb, int nr, int count, const uint8_t **wr) {
    for (int r = 0; r < count; r++) wr[r] = w + (size_t)(r < nr ? r : nr - 1) * rb;
}

/* The roofline probes' loop, SIMD_PEAK_LOOP(iters, BODY), in each section
 * below: iters rounds of BODY (assembly over vector registers 0..11,
 * reading 12 and 13, 14 free as a temporary), all 15 registers zeroed
 * first; in assembly so the compiler cannot fold it. SIMD_PEAK_FMA is the
 * float32 body: 12 independent fused multiply-add chains. */
#define SIMD_REGS12 "0,1,2,3,4,5,6,7,8,9,10,11"

#if defined(RG_SIMD_AVX2) || defined(RG_SIMD_AVX512)
/* ==================================================== x86-64: AVX2, AVX-512 */
#include <immintrin.h>

typedef __m128 vf4;

/* ---- 256-bit helpers (every set has AVX2): the int8 kernels of both sets
 * work on 32-byte blocks */

/* [sum(a0), sum(a1), sum(a2), sum(a3)]: pairwise interleaves, then halves */
INLINE __m128 sum4_f8(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t0 = _mm256_add_ps(_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
    __m256 t1 = _mm256_add_ps(_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
    __m256 u = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t1))),
                             _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t1))));
    return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

INLINE float sum_f4(__m128 u) {
    u = _mm_add_ps(u, _mm_movehl_ps(u, u));
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_movehdup_ps(u)));
}

INLINE float sum_f8(__m256 a) {
    return sum_f4(_mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)));
}

/* a block's float16 scale d */
INLINE float f16_scale(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return _cvtsh_ss(h);
}

/* ---- the mapping: MM(op) names the set's intrinsic _mm256_op or _mm512_op */
#if defined(RG_SIMD_AVX512)

#define VW 16
#define MM(op) _mm512_##op
#define SIMD_SET_NAME "avx512"
#define SIMD_NAME(x) x##_avx512
#define SIMD_REG "zmm"
/* Float tiles: TB tokens x RB rows of accumulators (32 registers); they
 * prefetch ahead in each row, as RB rows at once are more streams than the
 * hardware prefetcher follows well (measured with these kernels). The
 * attention's weighted sum keeps WSUM_VECS vectors of up to 12 heads. GEMM
 * tiles: GEMM_MR rows x GEMM_NV vectors of accumulators (24), the NV
 * vectors of B and a broadcast of A. */
enum { TB = 6, SIMD_PREFETCH = 1, WSUM_VECS = 2, GEMM_MR = 12, GEMM_NV = 2 };
#define SIMD_TILE_MAX_N 32
/* exp's clamp: vscalefps makes 2^n for any n, so only overflow is cut */
#define EXP_MIN -104.0f
#define EXP_MAX 88.8f

typedef __m512 vf;
typedef __m512i vi;
typedef __m256i vh; /* VW 16-bit floats */
typedef __mmask16 vmask;

INLINE vmask v_mask(size_t count) { return count >= VW ? (vmask)0xffff : (vmask)((1u << count) - 1); }
INLINE vf v_round(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* p * 2^n for integral n */
INLINE vf v_scale2(vf p, vf n) { return _mm512_scalef_ps(p, n); }
INLINE vf v_load_n(const float *p, size_t count) { return _mm512_maskz_loadu_ps(v_mask(count), p); }
INLINE void v_store_n(float *p, size_t count, vf v) { _mm512_mask_storeu_ps(p, v_mask(count), v); }
/* lanes past count set to 0 */
INLINE vf v_keep_n(vf v, size_t count) { return _mm512_maskz_mov_ps(v_mask(count), v); }
/* max(m, v) in lanes [0, count), m in the others */
INLINE vf v_max_n(vf m, vf v, size_t count) { return _mm512_mask_max_ps(m, v_mask(count), m, v); }
INLINE float v_sum(vf a) { return _mm512_reduce_add_ps(a); }
INLINE float v_max_lane(vf a) { return _mm512_reduce_max_ps(a); }
INLINE vh h_load_n(const uint16_t *p, size_t count) { return _mm256_maskz_loadu_epi16(v_mask(count), p); }
INLINE vf v_from_f16(vh h) { return _mm512_cvtph_ps(h); }
INLINE vi vi_and(vi a, vi b) { return _mm512_and_si512(a, b); }
INLINE void vi_store(vi *p, vi a) { _mm512_store_si512(p, a); }
/* 128-bit lane l = the 16 bytes at p[l] */
INLINE vi vi_from_lanes(const uint8_t *const p[4]) {
    vi v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p[0]));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p[1]), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p[2]), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p[3]), 3);
}
INLINE vf v_from_bits(vi a) { return _mm512_castsi512_ps(a); }
/* VW bytes */
INLINE __m128i bytes_vw(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
/* [sum(a0), sum(a1), sum(a2), sum(a3)] */
INLINE __m128 v_sum4(vf a0, vf a1, vf a2, vf a3) {
    __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    __m512 u = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))));
    __m256 v = _mm256_add_ps(_mm512_castps512_ps256(u), _mm512_extractf32x8_ps(u, 1));
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}
/* p[0, count) (+)= s[0, count), count <= 4 */
INLINE void f4_store_n(float *p, int count, __m128 s, int add) {
    __mmask8 m = (__mmask8)((1u << count) - 1);
    if (add) s = _mm_add_ps(s, _mm_maskz_loadu_ps(m, p));
    _mm_mask_storeu_ps(p, m, s);
}

#elif defined(RG_SIMD_AVX2)

#define VW 8
#define MM(op) _mm256_##op
#define SIMD_SET_NAME "avx2"
#define SIMD_NAME(x) x##_avx2
#define SIMD_REG "ymm"
/* Float tiles: TB tokens x RB rows of accumulators plus TB activations and
 * one weight vector fill the 16 registers; no software prefetch (these
 * kernels were measured without it). GEMM tiles: 6 x 2 accumulators, 2
 * vectors of B and a broadcast of A (15 registers). */
enum { TB = 3, SIMD_PREFETCH = 0, WSUM_VECS = 1, GEMM_MR = 6, GEMM_NV = 2 };
#define SIMD_TILE_MAX_N 24
/* exp's clamp: 2^n is built in the exponent field, so n + 127 must stay in
 * [1, 254] (normal floats) */
#define EXP_MIN -87.0f
#define EXP_MAX 88.0f

typedef __m256 vf;
typedef __m256i vi;
typedef __m128i vh; /* VW 16-bit floats */
typedef __m256i vmask;

INLINE vmask v_mask(size_t count) {
    int c = count >= VW ? VW : (int)count;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
INLINE vf v_round(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* p * 2^n for integral n in [-126, 127]: 2^n = (n + 127) << 23 as a float */
INLINE vf v_scale2(vf p, vf n) {
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
INLINE vf v_load_n(const float *p, size_t count) {
    return count >= VW ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, v_mask(count));
}
INLINE void v_store_n(float *p, size_t count, vf v) {
    if (count >= VW) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, v_mask(count), v);
}
/* lanes past count set to 0 */
INLINE vf v_keep_n(vf v, size_t count) {
    return count >= VW ? v : _mm256_and_ps(v, _mm256_castsi256_ps(v_mask(count)));
}
/* max(m, v) in lanes [0, count), m in the others */
INLINE vf v_max_n(vf m, vf v, size_t count) {
    __m256 mx = _mm256_max_ps(m, v);
    return count >= VW ? mx : _mm256_blendv_ps(m, mx, _mm256_castsi256_ps(v_mask(count)));
}
INLINE float v_sum(vf a) { return sum_f8(a); }
INLINE float v_max_lane(vf a) {
    __m128 u = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    u = _mm_max_ps(u, _mm_movehl_ps(u, u));
    return _mm_cvtss_f32(_mm_max_ss(u, _mm_movehdup_ps(u)));
}
INLINE vh h_load_n(const uint16_t *p, size_t count) {
    if (count >= VW) return _mm_loadu_si128((const __m128i *)p);
    uint16_t h[VW] = {0};
    memcpy(h, p, 2 * count);
    return _mm_loadu_si128((const __m128i *)h);
}
INLINE vf v_from_f16(vh h) { return _mm256_cvtph_ps(h); }
INLINE vi vi_and(vi a, vi b) { return _mm256_and_si256(a, b); }
INLINE void vi_store(vi *p, vi a) { _mm256_store_si256(p, a); }
/* 128-bit lane l = the 16 bytes at p[l] */
INLINE vi vi_from_lanes(const uint8_t *const p[2]) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p[0])),
                                   _mm_loadu_si128((const __m128i *)p[1]), 1);
}
INLINE vf v_from_bits(vi a) { return _mm256_castsi256_ps(a); }
/* VW bytes */
INLINE __m128i bytes_vw(const void *p) { return _mm_loadl_epi64((const __m128i *)p); }
INLINE __m128 v_sum4(vf a0, vf a1, vf a2, vf a3) { return sum4_f8(a0, a1, a2, a3); }
/* p[0, count) (+)= s[0, count), count <= 4 */
INLINE void f4_store_n(float *p, int count, __m128 s, int add) {
    __m128i m = _mm_cmpgt_epi32(_mm_set1_epi32(count), _mm_setr_epi32(0, 1, 2, 3));
    if (add) s = _mm_add_ps(s, _mm_maskload_ps(p, m));
    _mm_maskstore_ps(p, m, s);
}

#endif

/* ---- the same in both x86 sets */
#define PS(op) MM(op##_ps)
INLINE vf v_zero(void) { return PS(setzero)(); }
INLINE vf v_set1(float a) { return PS(set1)(a); }
INLINE vf v_loadu(const float *p) { return PS(loadu)(p); }
INLINE vf v_add(vf a, vf b) { return PS(add)(a, b); }
INLINE vf v_sub(vf a, vf b) { return PS(sub)(a, b); }
INLINE vf v_mul(vf a, vf b) { return PS(mul)(a, b); }
INLINE vf v_div(vf a, vf b) { return PS(div)(a, b); }
INLINE vf v_sqrt(vf a) { return PS(sqrt)(a); }
/* a * b + c and c - a * b, one rounding */
INLINE vf v_fma(vf a, vf b, vf c) { return PS(fmadd)(a, b, c); }
INLINE vf v_fnma(vf a, vf b, vf c) { return PS(fnmadd)(a, b, c); }
/* like minps/maxps: b when either is NaN */
INLINE vf v_min(vf a, vf b) { return PS(min)(a, b); }
INLINE vf v_max(vf a, vf b) { return PS(max)(a, b); }
/* bf16 is the top half of a float32 */
INLINE vf v_from_bf16(vh h) { return v_from_bits(MM(slli_epi32)(MM(cvtepu16_epi32)(h), 16)); }
INLINE vf v_from_i8(const int8_t *p) { return MM(cvtepi32_ps)(MM(cvtepi8_epi32)(bytes_vw(p))); }
/* the low (high = 0) or high nibbles of VW bytes */
INLINE vf v_from_u4(const uint8_t *p, int high) {
    vi b = MM(cvtepu8_epi32)(bytes_vw(p));
    return MM(cvtepi32_ps)(high ? MM(srli_epi32)(b, 4) : vi_and(b, MM(set1_epi32)(15)));
}

/* ---- int8 panels: the layout of Q8_0/Q4_0 weights the quantised kernels
 * of both sets read for several tokens (and, packed at load time, for one).
 *
 * PANEL_ROWS = VW weight rows rearranged so that one integer vector holds
 * the same 4 consecutive bytes of each row: an int8 dot product of that
 * vector with 4 activation bytes broadcast adds 4 products into each row's
 * lane, so a block's groups leave the rows' whole-block dot products in one
 * register and the block's scaling is paid once for all of them. A panel of
 * nb blocks holds first the quants of every block, then their scales (two
 * sequential streams, every vector aligned), padded to 64 bytes:
 *   quants, per block: vector g = bytes 4g..4g+3 of each row's block as
 *     stored; Q8_0: 8 vectors (weights 4g..4g+3), Q4_0: 4 vectors (low
 *     nibbles: weights 4g..4g+3, high nibbles: weights 16+4g..16+4g+3);
 *   scales, per block: the rows' float16 d_w (0 past the last row).
 * The same bytes as the file, rearranged: packed once at load time
 * (rg_pack_weights) or, for weights that are not, per step and panel. */
#define SIMD_PANELS 1
/* Q4_K and Q6_K kernels (kernels_kquant.c, 256-bit integer instructions) */
#define SIMD_KQUANTS 1
enum { PANEL_ROWS = VW };
INLINE size_t panel_quant_bytes(rg_dtype dt) { return (size_t)(dt == RG_DT_Q8_0 ? 8 : 4) * 4 * PANEL_ROWS; }
INLINE size_t panel_bytes(rg_dtype dt, int nb) {
    return ((size_t)nb * (panel_quant_bytes(dt) + 2 * PANEL_ROWS) + 63) & ~(size_t)63;
}
INLINE const uint8_t *panel_scales(rg_dtype dt, const uint8_t *p, int nb) { return p + (size_t)nb * panel_quant_bytes(dt); }

/* Within each 128-bit lane, the 4x4 dword transpose of z[0..3]: u[j] holds
 * dword j of that lane of z[0], z[1], z[2], z[3] (32-bit then 64-bit
 * interleaves). */
INLINE void transpose_4x4_lanes(const vi z[4], vi u[4]) {
    vi t0 = MM(unpacklo_epi32)(z[0], z[1]), t1 = MM(unpackhi_epi32)(z[0], z[1]);
    vi t2 = MM(unpacklo_epi32)(z[2], z[3]), t3 = MM(unpackhi_epi32)(z[2], z[3]);
    u[0] = MM(unpacklo_epi64)(t0, t2);
    u[1] = MM(unpackhi_epi64)(t0, t2);
    u[2] = MM(unpacklo_epi64)(t1, t3);
    u[3] = MM(unpackhi_epi64)(t1, t3);
}

/* One panel: nr <= PANEL_ROWS rows of rb bytes from w, nb blocks, into p.
 * Per 16 bytes of the blocks' quants: z[i]'s 128-bit lane L holds row 4L +
 * i, so the in-lane transpose leaves dword g of rows 0.. in order. */
INLINE void pack_panel(rg_dtype dt, const uint8_t *w, size_t rb, int nr, int nb, uint8_t *p) {
    static const uint8_t zero_block[34]; /* rows past nr: weights 0, d_w 0 */
    const size_t bs = dt == RG_DT_Q8_0 ? 34 : 18, qb = panel_quant_bytes(dt);
    uint8_t *scales = p + (size_t)nb * qb;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk[PANEL_ROWS];
        for (int r = 0; r < PANEL_ROWS; r++) {
            blk[r] = r < nr ? w + (size_t)r * rb + (size_t)b * bs : zero_block;
            memcpy(scales + ((size_t)b * PANEL_ROWS + r) * 2, blk[r], 2);
        }
        vi *out = (vi *)(p + (size_t)b * qb);
        for (int half = 0; half < (dt == RG_DT_Q8_0 ? 2 : 1); half++) {
            vi z[4], u[4];
            for (int i = 0; i < 4; i++) {
                const uint8_t *lanes[VW / 4];
                for (int l = 0; l < VW / 4; l++) lanes[l] = blk[4 * l + i] + 2 + 16 * half;
                z[i] = vi_from_lanes(lanes);
            }
            transpose_4x4_lanes(z, u);
            for (int g = 0; g < 4; g++) vi_store(out + 4 * half + g, u[g]);
        }
    }
}

#define SIMD_PEAK_LOOP(iters, BODY)                                                                       \
    do {                                                                                                  \
        long n_ = (iters);                                                                                \
        __asm__ volatile(".irp r," SIMD_REGS12 ",12,13,14\n\tvpxor %%xmm\\r, %%xmm\\r, %%xmm\\r\n\t.endr\n\t" \
                         "1:\n\t" BODY "dec %0\n\tjnz 1b\n\t"                                             \
                         : "+r"(n_)::"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",       \
                           "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "cc");           \
    } while (0)

#define SIMD_PEAK_FMA \
    ".irp r," SIMD_REGS12 "\n\tvfmadd231ps %%" SIMD_REG "12, %%" SIMD_REG "13, %%" SIMD_REG "\\r\n\t.endr\n\t"

#elif defined(RG_SIMD_NEON)
/* ============================================== arm64: NEON (Advanced SIMD)
 * 128-bit vectors, 32 registers. Two sets share this mapping: neon (every
 * arm64 CPU has it) and neon-dotprod (RG_SIMD_DOTPROD: the int8 kernels use
 * sdot, vdotq_s32; FEAT_DotProd, from Armv8.2). The float kernels are the
 * same in both. Lanes past count are loaded and stored through a small
 * buffer: NEON has no masked loads. */
#include <arm_neon.h>

#define VW 4
#ifdef RG_SIMD_DOTPROD
#define SIMD_SET_NAME "neon-dotprod"
#define SIMD_NAME(x) x##_neon_dotprod
#else
#define SIMD_SET_NAME "neon"
#define SIMD_NAME(x) x##_neon
#endif
/* Float tiles: TB tokens x RB rows of accumulators (24), TB activations and
 * a weight vector in the 32 registers; not measured on an arm64 machine,
 * so no software prefetch in the tiles and avx2's tile limit. GEMM tiles:
 * 8 x 3 accumulators, 3 vectors of B and a broadcast of A (28 registers). */
enum { TB = 6, SIMD_PREFETCH = 0, WSUM_VECS = 2, GEMM_MR = 8, GEMM_NV = 3 };
#define SIMD_TILE_MAX_N 24
/* exp's clamp: 2^n is built in the exponent field, so n + 127 must stay in
 * [1, 254] (normal floats) */
#define EXP_MIN -87.0f
#define EXP_MAX 88.0f

typedef float32x4_t vf;
typedef float32x4_t vf4;
typedef uint16x4_t vh; /* VW 16-bit floats */

/* a block's float16 scale d (fcvt: every arm64 CPU converts float16) */
INLINE float f16_scale(const uint8_t *blk) {
    __fp16 h;
    memcpy(&h, blk, 2);
    return (float)h;
}

/* all-ones in lanes [0, count) */
INLINE uint32x4_t v_mask(size_t count) {
    static const uint32_t lane[4] = {0, 1, 2, 3};
    return vcltq_u32(vld1q_u32(lane), vdupq_n_u32((uint32_t)(count >= VW ? VW : count)));
}
INLINE vf v_zero(void) { return vdupq_n_f32(0.0f); }
INLINE vf v_set1(float a) { return vdupq_n_f32(a); }
INLINE vf v_loadu(const float *p) { return vld1q_f32(p); }
INLINE vf v_add(vf a, vf b) { return vaddq_f32(a, b); }
INLINE vf v_sub(vf a, vf b) { return vsubq_f32(a, b); }
INLINE vf v_mul(vf a, vf b) { return vmulq_f32(a, b); }
INLINE vf v_div(vf a, vf b) { return vdivq_f32(a, b); }
INLINE vf v_sqrt(vf a) { return vsqrtq_f32(a); }
/* a * b + c and c - a * b, one rounding */
INLINE vf v_fma(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }
INLINE vf v_fnma(vf a, vf b, vf c) { return vfmsq_f32(c, a, b); }
/* like minps/maxps (a < b ? a : b): b when either is NaN, as the x86 sets
 * (fmin/fmax would return NaN) */
INLINE vf v_min(vf a, vf b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
INLINE vf v_max(vf a, vf b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
/* to nearest, ties to even (as x86's rounding mode) */
INLINE vf v_round(vf a) { return vrndnq_f32(a); }
/* p * 2^n for integral n in [-126, 127]: 2^n = (n + 127) << 23 as a float */
INLINE vf v_scale2(vf p, vf n) {
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}
INLINE vf v_load_n(const float *p, size_t count) {
    if (count >= VW) return vld1q_f32(p);
    float t[VW] = {0};
    memcpy(t, p, sizeof(float) * count);
    return vld1q_f32(t);
}
INLINE void v_store_n(float *p, size_t count, vf v) {
    if (count >= VW) {
        vst1q_f32(p, v);
        return;
    }
    float t[VW];
    vst1q_f32(t, v);
    memcpy(p, t, sizeof(float) * count);
}
/* lanes past count set to 0 */
INLINE vf v_keep_n(vf v, size_t count) {
    return count >= VW ? v : vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), v_mask(count)));
}
/* max(m, v) in lanes [0, count), m in the others */
INLINE vf v_max_n(vf m, vf v, size_t count) {
    vf mx = v_max(m, v);
    return count >= VW ? mx : vbslq_f32(v_mask(count), mx, m);
}
INLINE float v_sum(vf a) { return vaddvq_f32(a); }
INLINE float v_max_lane(vf a) { return vmaxvq_f32(a); }
INLINE vh h_load_n(const uint16_t *p, size_t count) {
    if (count >= VW) return vld1_u16(p);
    uint16_t h[VW] = {0};
    memcpy(h, p, 2 * count);
    return vld1_u16(h);
}
INLINE vf v_from_f16(vh h) { return vcvt_f32_f16(vreinterpret_f16_u16(h)); }
/* bf16 is the top half of a float32 */
INLINE vf v_from_bf16(vh h) { return vreinterpretq_f32_u32(vshll_n_u16(h, 16)); }
/* VW bytes in the low lanes of a 64-bit vector */
INLINE uint8x8_t bytes_vw(const void *p) {
    uint32_t b;
    memcpy(&b, p, 4);
    return vreinterpret_u8_u32(vdup_n_u32(b));
}
INLINE vf v_from_i8(const int8_t *p) {
    int16x8_t h = vmovl_s8(vreinterpret_s8_u8(bytes_vw(p)));
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(h)));
}
/* the low (high = 0) or high nibbles of VW bytes */
INLINE vf v_from_u4(const uint8_t *p, int high) {
    uint8x8_t b = bytes_vw(p);
    b = high ? vshr_n_u8(b, 4) : vand_u8(b, vdup_n_u8(15));
    return vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(b))));
}
/* [sum(a0), sum(a1), sum(a2), sum(a3)]: pairwise adds */
INLINE vf4 v_sum4(vf a0, vf a1, vf a2, vf a3) { return vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3)); }
/* p[0, count) (+)= s[0, count), count <= 4 */
INLINE void f4_store_n(float *p, int count, vf4 s, int add) {
    if (add) s = vaddq_f32(s, v_load_n(p, (size_t)count));
    v_store_n(p, (size_t)count, s);
}

#define SIMD_PEAK_LOOP(iters, BODY)                                                                      \
    do {                                                                                                 \
        long n_ = (iters);                                                                               \
        __asm__ volatile(".irp r," SIMD_REGS12 ",12,13,14\n\tmovi v\\r\\().16b, #0\n\t.endr\n\t"             \
                         "1:\n\t" BODY "subs %0, %0, #1\n\tb.ne 1b\n\t"                                  \
                         : "+r"(n_)::"v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", \
                           "v11", "v12", "v13", "v14", "cc");                                            \
    } while (0)
#define SIMD_PEAK_FMA ".irp r," SIMD_REGS12 "\n\tfmla v\\r\\().4s, v12.4s, v13.4s\n\t.endr\n\t"

#else
#error "compile with -DRG_SIMD_AVX2, -DRG_SIMD_AVX512 or -DRG_SIMD_NEON (see the Makefile)"
#endif

/* ---- between the shared kernels (kernels_simd.c) and the set's int8 ones */

/* Q8_0/Q4_0 (dt) weights widened to float32 in registers, float32
 * activations (the float tiles): the rg_matmul_fn contract with dt, for the
 * token counts where the int8 kernels are not the faster (avx2). */
void SIMD_NAME(rg_matmul_widened)(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx,
                                  int n, float *y, int ldy);
/* The int8-activation matmuls (rg_matmul_fn) of the set. */
void SIMD_NAME(rg_matmul_q8_0)(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                               int ldy);
void SIMD_NAME(rg_matmul_q4_0)(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                               int ldy);
/* The same over weights packed in panels (rg_packed_matmul_fn), every
 * token count. */
void SIMD_NAME(rg_matmul_packed_q8_0)(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y,
                                      int ldy);
void SIMD_NAME(rg_matmul_packed_q4_0)(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y,
                                      int ldy);
#ifdef RG_SIMD_AVX512
/* The same by AMX tile multiplies from 16 tokens on (the "amx" set). */
void rg_matmul_packed_q8_0_amx(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y, int ldy);
void rg_matmul_packed_q4_0_amx(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y, int ldy);
/* Q8_0 rows as stored (rg_matmul_fn) by tile multiplies for 8..16 tokens. */
void rg_matmul_q8_0_amx(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                        int ldy);
double rg_peak_int8_amx(long iters);
#endif
#ifdef SIMD_KQUANTS
/* The K-quant matmuls (rg_matmul_fn, int8 activations per 256). */
void SIMD_NAME(rg_matmul_q4_k)(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                               int ldy);
void SIMD_NAME(rg_matmul_q6_k)(const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n, float *y,
                               int ldy);
#endif
/* peak_loop's int8 half: iters rounds of the set's int8 dot product step on
 * 12 independent accumulators; returns the FLOPs done (2 per multiply-add) */
double SIMD_NAME(rg_peak_int8)(long iters);

/* Whether this thread's RG_SCRATCH_ACT slot still holds x rounded to int8
 * for the same call (see rg_matmul_call_id): only quantised kernels write
 * the slot, the kernel set is fixed within a call, and the same sizes did
 * not move it. `form` tells apart layouts of the same sizes. Records x as
 * the slot's content when it does not. */
typedef struct {
    unsigned long call;
    const float *x;
    int ldx, n, k, form;
    rg_dtype dt;
} act_key;
INLINE int act_cached(act_key *last, const float *x, int ldx, int n, int k, int form, rg_dtype dt) {
    act_key now = {rg_matmul_call_id(), x, ldx, n, k, form, dt};
    int same = now.call && now.call == last->call && last->x == x && now.ldx == last->ldx && now.n == last->n &&
               now.k == last->k && now.form == last->form && now.dt == last->dt;
    *last = now;
    return same;
}

#endif
