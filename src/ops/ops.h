/* Kernels of the Griffin forward pass. Activations are float32 row-major
 * matrices [tokens x width]; weights are rg_tensor views of any rg_dtype. */
#ifndef RG_OPS_H
#define RG_OPS_H

#include "core/tensor.h"
#include "ops/kv_window.h"

/* ---- matmul (ops/matmul.c, kernels_*.c) ---------------------------------
 * y[t*ldy + r] = sum_i x[t*ldx + i] * W[row0 + r][i]  (+ bias[r])
 * for t < n tokens and r < rows, with W stored [out, in] (row length k =
 * W.shape[last]). The rows are split evenly over the threads. */
void rg_matmul(const rg_tensor *w, int64_t row0, int rows, const float *x, int ldx, int n, float *y, int ldy,
               const float *bias);
/* Several such products over the same n tokens in one parallel region (one
 * fork and join instead of njobs): the rows of all jobs, in order, are split
 * evenly over the threads. */
typedef struct {
    const rg_tensor *w;
    int64_t row0;
    int rows;
    const float *x;
    int ldx;
    float *y;
    int ldy;
    const float *bias; /* NULL or [rows] */
} rg_matmul_job;
void rg_matmul_jobs(const rg_matmul_job *jobs, int njobs, int n);

/* One kernel set per instruction set. Every function is single-threaded:
 * the callers in ops/ split the work over the threads.
 *   matmul[dt]: rows [0, rows) of a weight block (rows of row_bytes bytes
 *     holding k elements each) times n activation rows:
 *     y[t*ldy + r] = dot(row r, x[t*ldx ..]).
 *   softmax: x[i] = exp(x[i]*scale - m), m = max_j x[j]*scale (stored in
 *     *max), returns the sum of the x[i] (n >= 1).
 *   wsum: out[h*ldo + i] += sum_j p[h*ldp + j] * v[j*hd + i], h < nh, i < hd,
 *     the value rows v of type vt: RG_DT_F32, RG_DT_F16 or RG_DT_Q8_0 (an
 *     attention window's types; rows of hd elements, rg_kv_row_bytes).
 *   gelu_mul: g[i] = gelu_tanh(g[i]) * u[i].
 *   softcap: x[i] = cap * tanh(x[i] / cap).
 *   rglru: the RG-LRU scan (see rg_rglru_scan) for channels [0, r) of
 *     matrices with row stride ld.
 *   gemm: the rg_gemm contract on one thread. */
typedef void (*rg_matmul_fn)(const uint8_t *w, size_t row_bytes, int rows, int k, const float *x, int ldx, int n,
                             float *y, int ldy);
/* Defines NAME, an rg_matmul_fn, as FN(DT, ...): one kernel over the weight
 * types, a copy per type (prefix `static` for a file's own). */
#define RG_MATMUL_OF(NAME, DT, FN)                                                                             \
    void NAME(const uint8_t *w, size_t row_bytes, int rows, int k, const float *x, int ldx, int n, float *y, \
              int ldy) {                                                                                     \
        FN(DT, w, row_bytes, rows, k, x, ldx, n, y, ldy);                                                    \
    }
/* A set's own weight layout, made once at load time (rg_pack_weights) so
 * that a step reads the weights as its kernels want them instead of
 * rearranging them each time: `rows` weight rows per panel (the last panel
 * padded with zero rows).
 *   bytes: size of a [rows x k] matrix of type dt packed; 0 when the set
 *     keeps dt as stored.
 *   pack: packs rows (a multiple of the panel rows, or the matrix's last
 *     ones) of rb bytes each from w into out.
 *   matmul[dt]: the rg_matmul_fn contract over packed rows: rows [0, rows)
 *     of the panels starting at p.
 *   row: row r of a packed [. x k] matrix widened to float32 (k floats). */
typedef void (*rg_packed_matmul_fn)(const uint8_t *p, int rows, int k, const float *x, int ldx, int n, float *y,
                                    int ldy);
typedef struct {
    int rows;
    size_t (*bytes)(rg_dtype dt, int rows, int k);
    void (*pack)(rg_dtype dt, const uint8_t *w, size_t rb, int rows, int k, uint8_t *out);
    rg_packed_matmul_fn matmul[RG_DT_COUNT];
    void (*row)(rg_dtype dt, const uint8_t *p, int k, int64_t r, float *out);
} rg_pack_set;

typedef struct {
    const char *name;
    /* NULL for a type the set has no kernel for: rg_matmul runs the scalar one */
    rg_matmul_fn matmul[RG_DT_COUNT];
    const rg_pack_set *packed; /* NULL: the weights are used as stored */
    /* bit dt set: matmul[dt] rounds the activations to int8 per block of 32
     * (d = max|x|/127; per 256 for the K-quants): avx512, neon and
     * neon-dotprod always, avx2 at the token counts where its int8 kernels
     * are the faster (see kernels_avx2.c); otherwise it computes in float32 */
    unsigned int8_act;
    float (*softmax)(float *x, int n, float scale, float *max);
    void (*wsum)(const float *p, int ldp, int nh, rg_dtype vt, const void *v, int nk, int hd, float *out, int ldo);
    void (*gelu_mul)(float *g, const float *u, size_t count);
    void (*softcap)(float *x, size_t count, float cap);
    void (*rglru)(const float *x, const float *gx, const float *ga, const float *softplus_a, int n, int r, int ld,
                  int64_t pos0, float *h, float *y);
    void (*gemm)(int m, int n, int k, const float *a, size_t a_rs, size_t a_cs, const float *b, size_t b_rs,
                 size_t b_cs, float *c, size_t ldc, int add);
    /* roofline probes (ops/probe.c): read_sum streams n floats (returns
     * their sum so the reads happen); peak_loop runs iters rounds of
     * independent multiply-adds with the instruction matmul uses (float32
     * FMA, or the int8 dot product when int8 != 0) and returns the FLOPs done
     * (2 per multiply-add), 0 if the set has no int8 dot product. */
    float (*read_sum)(const float *p, size_t n);
    double (*peak_loop)(int int8, long iters);
} rg_kernel_set;

/* A kernel set's table from its file's functions named as the fields are
 * (softmax, wsum, ...), given its matmuls in rg_dtype order. */
#define RG_KERNEL_SET(NAME, INT8_ACT, F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, PACKED)                           \
    {NAME,                                                                                                    \
     {[RG_DT_F32] = F32, [RG_DT_F16] = F16, [RG_DT_BF16] = BF16, [RG_DT_Q8_0] = Q8_0, [RG_DT_Q4_0] = Q4_0,       \
      [RG_DT_Q4_K] = Q4_K, [RG_DT_Q6_K] = Q6_K},                                                              \
     PACKED, INT8_ACT, softmax, wsum, gelu_mul, softcap, rglru, gemm, read_sum, peak_loop}

/* The sets a build has: scalar everywhere, and those of its target (the
 * Makefile compiles the SIMD ones for that architecture only). */
extern const rg_kernel_set rg_kernels_scalar;
#if defined(__x86_64__) || defined(__i386__)
extern const rg_kernel_set rg_kernels_avx2, rg_kernels_avx512, rg_kernels_amx;
#elif defined(__aarch64__)
extern const rg_kernel_set rg_kernels_neon, rg_kernels_neon_dotprod;
#endif
const rg_kernel_set *rg_active_kernels(void);
/* Bytes w needs in the active set's own layout (0: the set has none for
 * its type); rg_pack_weights packs w into dst (that many bytes, 64-byte
 * aligned; over the threads) and records it in w->packed. rg_matmul then
 * reads dst while that set is active, w->data otherwise. */
size_t rg_packed_bytes(const rg_tensor *w);
void rg_pack_weights(rg_tensor *w, void *dst);
/* Row `row` of a 2-D weight widened to float32, from its packed copy when it
 * has one (the file's pages were given back: rg_dequant_row would read them
 * in again), else as stored. */
void rg_weight_row(const rg_tensor *w, int64_t row, float *out);
/* Every kernel set this CPU can run, best last (for tests); returns the count. */
int rg_kernel_sets(const rg_kernel_set **sets, int max);
/* Every kernel set this build has, runnable here or not, best last. */
int rg_kernel_sets_built(const rg_kernel_set **sets, int max);
/* A per-thread scratch buffer of at least bytes bytes (64-byte aligned),
 * kept between calls; valid until the thread's next call with the same
 * slot. Slot RG_SCRATCH_KERNEL is the kernels', RG_SCRATCH_ACT holds only
 * the quantised-weight kernels' rounded activations, RG_SCRATCH_OP is the
 * ops' (attention), the last two the forward pass's. */
enum {
    RG_SCRATCH_KERNEL = 0,
    RG_SCRATCH_ACT = 1,
    RG_SCRATCH_OP = 2,
    RG_SCRATCH_FORWARD = 3, /* the forward pass's activations (model/forward.c) */
    RG_SCRATCH_LOGITS = 4,  /* logits of a batched step's rows before they go to their sequences */
    RG_SCRATCH_SLOTS = 5
};
void *rg_scratch(int slot, size_t bytes);
/* Nonzero while this thread runs a piece of an rg_matmul_jobs call, and
 * different for each call: activations are constant during one call, so a
 * kernel may keep what it derived from x (e.g. x rounded to int8) for the
 * same x in its next piece. 0 when a kernel is called directly. */
unsigned long rg_matmul_call_id(void);

/* Part `part` of `parts` of [0, total), cut at multiples of align (so SIMD
 * kernels see whole vectors): [*begin, *end). */
static inline void rg_split(size_t total, size_t align, int part, int parts, size_t *begin, size_t *end) {
    size_t units = (total + align - 1) / align;
    size_t b = units * (size_t)part / (size_t)parts, e = units * (size_t)(part + 1) / (size_t)parts;
    *begin = b * align < total ? b * align : total;
    *end = e * align < total ? e * align : total;
}

/* ---- float32 GEMM (ops/gemm.c, kernels_*.c): what training multiplies ----
 * c[i*ldc + j] (+)= sum_{p<k} A(i, p) B(p, j) for i < m, j < n, with
 * A(i, p) = a[i*a_rs + p*a_cs] and B(p, j) = b[p*b_rs + j*b_cs] (so either
 * operand may be transposed); add = 0 overwrites c, 1 adds to it. c is cut
 * in blocks over the threads; each element is summed by one thread, over p
 * in order (from its value in c when add), so the result does not depend on
 * the thread count. */
void rg_gemm(int m, int n, int k, const float *a, size_t a_rs, size_t a_cs, const float *b, size_t b_rs, size_t b_cs,
             float *c, size_t ldc, int add);

/* ---- norms and activations (ops/norm.c) --------------------------------- */
/* y = x / sqrt(mean(x^2) + eps) * (1 + w), per row of width d. */
void rg_rmsnorm(const float *x, const float *w, int n, int d, float eps, float *y);
/* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
float rg_gelu_tanh(float x);
/* g = gelu(g) * u and x = cap tanh(x / cap), split over the threads. */
void rg_gelu_mul(float *g, const float *u, size_t count);
void rg_softcap(float *x, size_t count, float cap);

/* ---- conv1d (ops/conv1d.c) ---------------------------------------------
 * Depthwise causal conv of width K over n rows of u [n x R], continuing from
 * state [K-1 x R] (the previous K-1 inputs, oldest first), which is updated.
 * w is [K x R], taps by position (tap K-1 multiplies the current input).
 * out may not alias u. */
void rg_conv1d(const float *u, int n, int r, int k, const float *w, const float *bias, float *state, float *out);

/* ---- RG-LRU (ops/rglru.c) ------------------------------------------------
 * x: [n x R] conv output; gx, ga: [n x R] gate pre-activations (before the
 * sigmoid); softplus_a: softplus(recurrent_param) [R]; h: float32 state [R];
 * pos0: position of the first row (reset at position 0). Writes y [n x R]. */
void rg_rglru_scan(const float *x, const float *gx, const float *ga, const float *softplus_a, int n, int r,
                   int64_t pos0, float *h, float *y);

/* ---- local attention (ops/attention.c) -----------------------------------
 * Multi-query attention for n query rows at positions pos0..pos0+n-1.
 * q: [n x H*hd] (rotated), k, v: [n x hd] (k rotated) for the chunk;
 * cache: the window, holding positions < pos0. Token p attends to
 * max(0, p-W)..p. Writes out [n x H*hd]. The caller writes the chunk's keys
 * and values into the window afterwards. */
void rg_local_attention(const float *q, const float *k, const float *v, int n, int heads, int hd, int64_t pos0,
                        const rg_kv_window *cache, float *out);

/* RoPE on the first 2*m dims of each head (pairs (i, i+m)), at position pos.
 * inv_freq has m entries. x: [heads x hd]. */
void rg_rope(float *x, int heads, int hd, int m, const float *inv_freq, int64_t pos);

#endif
