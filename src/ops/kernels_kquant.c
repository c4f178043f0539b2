/* K-quant kernels (Q4_K, Q6_K weights) of the x86 sets, written once over
 * 256-bit integer instructions (every x86 set has AVX2) and compiled per set
 * (the Makefile builds kernels_kquant_avx2.o and kernels_kquant_avx512.o from
 * this file); the avx512 copy fuses a multiply-add of int16 pairs and its
 * accumulation into one VNNI instruction (vpdpwssd).
 *
 * The activation rows are rounded per super-block of 256 to int8 (d_x =
 * max|x| / 127, q = round(x / d_x), as the Q8_0/Q4_0 kernels do per 32),
 * with the sum of each 16 q (bsum), once per matmul call. The weights are
 * unsigned bytes once unpacked: Q4_K the nibble u in 0..15 (w = d sc_j u -
 * dmin m_j for sub-block j of 32), Q6_K the code u in 0..63 (w = d sc_j (u -
 * 32) for sub-block j of 16). Per 32 weights, vpmaddubsw(u, q) gives 16
 * int16 pair sums (|pair| <= 2 * 63 * 127 < 2^15: no saturation), which are
 * multiplied by their sub-block's scale and summed into int32 lanes (vpmaddwd
 * + vpaddd, or vpdpwssd). The offsets come from the bsums: Q6_K subtracts 32
 * sum_j sc_j bsum_j from the integer sum; Q4_K adds -dmin d_x sum_j m_j
 * (bsums of sub-block j) to the float sum. Then one fma by d_w d_x per
 * super-block. Rounding the activations is the only approximation
 * (tests/unit/test_kernels.c bounds it per 256, as per 32 for Q8_0).
 *
 * Each weight row is read once for up to KT tokens (its unpacking shared by
 * them); with more tokens the row is read again from cache for the next KT,
 * and tokens go in blocks of TOKEN_BLOCK so that their activations stay in
 * L2 while every row of the piece passes. */
#include "ops/simd.h"
#include "util/util.h"

/* KT tokens per pass over a row: their accumulators (2 KT vectors) stay in
 * registers, 16 of them on avx2, 32 on avx512 */
#ifdef RG_SIMD_AVX512
enum { KT = 8 };
#else
enum { KT = 4 };
#endif
enum { TOKEN_BLOCK = 64, QK = RG_QK_BLOCK };

/* n activation rows rounded: q [n x k], d [n x k/256], bsum [n x k/16] */
typedef struct {
    int8_t *q;
    float *d;
    int16_t *bsum;
} kact;

static void quantize_act(const float *x, int ldx, int n, int k, const kact *a) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7); /* undo the packs' lane interleave */
    int nb = k / QK;
    for (int t = 0; t < n; t++)
        for (int b = 0; b < nb; b++) {
            const float *xb = x + (size_t)t * ldx + (size_t)b * QK;
            __m256 m = _mm256_setzero_ps();
            for (int i = 0; i < QK; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i)));
            __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            h = _mm_max_ps(h, _mm_movehl_ps(h, h));
            h = _mm_max_ss(h, _mm_movehdup_ps(h));
            float amax = _mm_cvtss_f32(h);
            __m256 id = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
            size_t at = (size_t)t * nb + b;
            int8_t *q = a->q + at * QK;
            for (int i = 0; i < QK; i += 32) {
                __m256i v[4];
                for (int j = 0; j < 4; j++) v[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8 * j), id));
                __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
                _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(p, order));
            }
            a->d[at] = amax / 127.0f;
            for (int j = 0; j < QK / 16; j++) {
                int s = 0;
                for (int i = 0; i < 16; i++) s += q[16 * j + i];
                a->bsum[at * (QK / 16) + j] = (int16_t)s;
            }
        }
}

/* x rounded in this thread's scratch, reused while the same call passes the
 * same x (both types round alike; the key's type keeps them apart anyway) */
static kact round_act(rg_dtype dt, const float *x, int ldx, int n, int k) {
    size_t qbytes = ((size_t)n * k + 63) & ~(size_t)63, dbytes = (sizeof(float) * (size_t)n * (k / QK) + 63) & ~(size_t)63;
    uint8_t *buf = rg_scratch(RG_SCRATCH_ACT, qbytes + dbytes + sizeof(int16_t) * (size_t)n * (k / 16));
    kact a = {(int8_t *)buf, (float *)(buf + qbytes), (int16_t *)(buf + qbytes + dbytes)};
    static _Thread_local act_key last;
    if (!act_cached(&last, x, ldx, n, k, 2, dt)) quantize_act(x, ldx, n, k, &a);
    return a;
}

/* isum + the int16 pair sums p times the int16 scales s, pairwise summed */
INLINE __m256i add_scaled(__m256i isum, __m256i p, __m256i s) {
#ifdef RG_SIMD_AVX512
    return _mm256_dpwssd_epi32(isum, p, s);
#else
    return _mm256_add_epi32(isum, _mm256_madd_epi16(p, s));
#endif
}

/* 32 activation bytes of token t from element i of its row */
INLINE __m256i act32(const kact *a, int k, int t, size_t i) {
    return _mm256_loadu_si256((const __m256i *)(a->q + (size_t)t * k + i));
}

/* acc[t] += super-block b of a Q4_K row times token t's, t < nt */
INLINE void block_q4_k(const int nt, const uint8_t *blk, int b, int nb, const kact *a, int k, __m256 acc[KT]) {
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    uint8_t sm[16]; /* scales 0..7, mins 0..7 */
    rg_q4_k_scales_mins(blk + 4, sm);
    __m256i isum[KT];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * c));
        __m256i lo = _mm256_and_si256(v, lo4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
        __m256i slo = _mm256_set1_epi16((short)sm[2 * c]), shi = _mm256_set1_epi16((short)sm[2 * c + 1]);
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            size_t i = (size_t)b * QK + 64 * c;
            isum[t] = add_scaled(isum[t], _mm256_maddubs_epi16(lo, act32(a, k, t, i)), slo);
            isum[t] = add_scaled(isum[t], _mm256_maddubs_epi16(hi, act32(a, k, t, i + 32)), shi);
        }
    }
    /* each min against the bsums of its sub-block's two halves */
    __m128i m16 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(sm + 8)));
    __m256i mins = _mm256_setr_m128i(_mm_unpacklo_epi16(m16, m16), _mm_unpackhi_epi16(m16, m16));
    float d = f16_scale(blk), dmin = f16_scale(blk + 2);
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        size_t at = (size_t)t * nb + b;
        float dx = a->d[at];
        __m256i bs = _mm256_loadu_si256((const __m256i *)(a->bsum + at * (QK / 16)));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * dx), acc[t]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins)), _mm256_set1_ps(-dmin * dx), acc[t]);
    }
}

/* acc[t] += super-block b of a Q6_K row times token t's, t < nt. Per half
 * of 128: the 4 groups of 32 codes from ql's nibbles and qh's bit pairs
 * (core/dtype.c has the layout); a group spans two sub-blocks of 16, i.e.
 * the two 128-bit halves of its vector, hence a scale per half. */
INLINE void block_q6_k(const int nt, const uint8_t *blk, int b, int nb, const kact *a, int k, __m256 acc[KT]) {
    const __m256i lo4 = _mm256_set1_epi8(0x0f), hi2 = _mm256_set1_epi8(0x30);
    const int8_t *sc = (const int8_t *)(blk + 192);
    __m256i isum[KT];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h));
        __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
        __m256i u[4] = {
            _mm256_or_si256(_mm256_and_si256(ql0, lo4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), hi2)),
            _mm256_or_si256(_mm256_and_si256(ql1, lo4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), hi2)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), lo4), _mm256_and_si256(qh, hi2)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), lo4),
                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), hi2))};
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            int j = 8 * h + 2 * g; /* the sub-blocks of group g: j and j + 1 */
            __m256i s = _mm256_setr_m128i(_mm_set1_epi16(sc[j]), _mm_set1_epi16(sc[j + 1]));
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++)
                isum[t] = add_scaled(isum[t], _mm256_maddubs_epi16(u[g], act32(a, k, t, (size_t)b * QK + 128 * h + 32 * g)), s);
        }
    }
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
    float d = f16_scale(blk + 208);
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        size_t at = (size_t)t * nb + b;
        __m256i bs = _mm256_loadu_si256((const __m256i *)(a->bsum + at * (QK / 16)));
        __m256i s = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5)); /* - 32 sc bsum */
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * a->d[at]), acc[t]);
    }
}

/* y[t * ldy] = row . token t for t < nt (a constant after inlining); a row
 * read from memory (stream) is prefetched ahead */
INLINE void row_tokens(rg_dtype dt, const int nt, const uint8_t *row, int nb, const kact *a, int k, float *y, int ldy,
                       int stream) {
    const size_t bs = dt == RG_DT_Q4_K ? RG_Q4_K_BLOCK_BYTES : RG_Q6_K_BLOCK_BYTES;
    __m256 acc[KT];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bs;
        if (stream) gemv_prefetch(blk, bs);
        if (dt == RG_DT_Q4_K) block_q4_k(nt, blk, b, nb, a, k, acc);
        else block_q6_k(nt, blk, b, nb, a, k, acc);
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) y[(size_t)t * ldy] = sum_f8(acc[t]);
}

INLINE void matmul_k(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, const float *x, int ldx, int n,
                     float *y, int ldy) {
    kact a = round_act(dt, x, ldx, n, k);
    int nb = k / QK, stream = n <= KT;
    for (int t0 = 0; t0 < n; t0 += TOKEN_BLOCK) {
        int t1 = n - t0 < TOKEN_BLOCK ? n : t0 + TOKEN_BLOCK;
        for (int r = 0; r < rows; r++)
            for (int t = t0; t < t1; t += KT) {
                kact at = {a.q + (size_t)t * k, a.d + (size_t)t * nb, a.bsum + (size_t)t * (k / 16)};
                const uint8_t *row = w + (size_t)r * rb;
                float *yt = y + (size_t)t * ldy + r;
                switch (t1 - t < KT ? t1 - t : KT) { /* nt a constant in each copy; cases past KT never taken */
#define ROW_CASE(NT) \
    case NT: row_tokens(dt, NT <= KT ? NT : KT, row, nb, &at, k, yt, ldy, stream); break;
                    ROW_CASE(1) ROW_CASE(2) ROW_CASE(3) ROW_CASE(4) ROW_CASE(5) ROW_CASE(6) ROW_CASE(7)
                    default: ROW_CASE(8)
#undef ROW_CASE
                }
            }
    }
}

RG_MATMUL_OF(SIMD_NAME(rg_matmul_q4_k), RG_DT_Q4_K, matmul_k)
RG_MATMUL_OF(SIMD_NAME(rg_matmul_q6_k), RG_DT_Q6_K, matmul_k)
