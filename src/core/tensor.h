/* Weight types and the tensor view every layer shares. Everything the engine
 * knows about a weight type (name, block layout, ggml id, conversions) lives
 * in one table, core/dtype.c; the rest of the code asks it. */
#ifndef RG_TENSOR_H
#define RG_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    RG_DT_F32 = 0,
    RG_DT_F16,
    RG_DT_BF16,
    RG_DT_Q8_0, /* ggml block: f16 scale + 32 int8 */
    RG_DT_Q4_0, /* ggml block: f16 scale + 16 bytes of nibbles */
    RG_DT_Q4_K, /* ggml super-block of 256: 8 sub-blocks of 32, 4-bit quants, 6-bit scales and mins */
    RG_DT_Q6_K, /* ggml super-block of 256: 16 sub-blocks of 16, 6-bit quants, int8 scales */
    RG_DT_COUNT
} rg_dtype;

/* ggml's quantised blocks: RG_QBLOCK weights behind a float16 scale */
#define RG_QBLOCK 32
#define RG_Q8_0_BLOCK_BYTES (2 + RG_QBLOCK)     /* 34 */
#define RG_Q4_0_BLOCK_BYTES (2 + RG_QBLOCK / 2) /* 18 */
/* ggml's K-quants: super-blocks of RG_QK_BLOCK weights (block_q4_K, block_q6_K) */
#define RG_QK_BLOCK 256
#define RG_Q4_K_BLOCK_BYTES (2 + 2 + 12 + RG_QK_BLOCK / 2)               /* 144: d, dmin, scales, quants */
#define RG_Q6_K_BLOCK_BYTES (RG_QK_BLOCK / 2 + RG_QK_BLOCK / 4 + 16 + 2) /* 210: ql, qh, scales, d */

/* ggml tensor type ids of the types the engine runs (GGUF tensor infos) */
enum { RG_GGML_F32 = 0, RG_GGML_F16 = 1, RG_GGML_Q4_0 = 2, RG_GGML_Q8_0 = 8, RG_GGML_Q4_K = 12, RG_GGML_Q6_K = 14,
       RG_GGML_BF16 = 30 };

/* Q4_K's packed 6-bit scale and min of sub-block j (0..7) from the block's
 * 12 scale bytes: sub-blocks 0..3 in the low 6 bits of bytes j (scale) and
 * j + 4 (min); 4..7 in the nibbles of byte j + 4 (scale low, min high), with
 * their top two bits in the top bits of bytes j - 4 (scale) and j (min). */
static inline void rg_q4_k_scale_min(const uint8_t *s, int j, int *scale, int *min) {
    if (j < 4) {
        *scale = s[j] & 63;
        *min = s[j + 4] & 63;
    } else {
        *scale = (s[j + 4] & 0x0f) | (s[j - 4] >> 6) << 4;
        *min = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* All eight at once: out[j] = scale j, out[8 + j] = min j, by 32-bit words
 * of the 12 bytes (the same bit moves, four sub-blocks per operation). */
static inline void rg_q4_k_scales_mins(const uint8_t *s, uint8_t out[16]) {
    uint32_t w[3], o[4];
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ /* the words as stored: plain loads and stores */
    memcpy(w, s, sizeof w);
#else
    for (int i = 0; i < 3; i++) w[i] = (uint32_t)s[4 * i] | (uint32_t)s[4 * i + 1] << 8 | (uint32_t)s[4 * i + 2] << 16 |
                                       (uint32_t)s[4 * i + 3] << 24;
#endif
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, low2 = 0x03030303u;
    o[0] = w[0] & low6;                                     /* scales 0..3 */
    o[1] = (w[2] & low4) | ((w[0] >> 6) & low2) << 4;       /* scales 4..7 */
    o[2] = w[1] & low6;                                     /* mins 0..3 */
    o[3] = ((w[2] >> 4) & low4) | ((w[1] >> 6) & low2) << 4; /* mins 4..7 */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(out, o, sizeof o);
#else
    for (int i = 0; i < 16; i++) out[i] = (uint8_t)(o[i / 4] >> (8 * (i % 4)));
#endif
}

typedef struct {
    const char *name; /* "F32", "Q8_0": safetensors dtype, CLI spelling (any case) */
    int block;        /* elements per block: 1 for plain floats */
    int block_bytes;  /* bytes per block */
    int ggml_type;    /* RG_GGML_* */
    int file_type;    /* llama.cpp's general.file_type for a file mostly of this type */
    /* widen n elements (a multiple of block) of one row to float32 */
    void (*to_float)(const uint8_t *row, int64_t n, float *out);
    /* store n finite float32 values; -1 (with a message) when a block's scale
     * does not fit a float16 */
    int (*from_float)(const float *x, int64_t n, uint8_t *out);
} rg_dtype_traits;

/* The traits of t, NULL when t is not a type. */
const rg_dtype_traits *rg_dtype_info(rg_dtype t);
const char *rg_dtype_name(rg_dtype t);
/* Stored in blocks with a scale (rows must be a multiple of the block). */
int rg_dtype_is_quantised(rg_dtype t);
/* Elements per block: 1 for plain floats, 32 or 256 for the quantised types
 * (rows must be a multiple of it); 0 when t is not a type. */
int rg_dtype_block(rg_dtype t);
/* Bytes taken by n consecutive elements of one row (n a multiple of the block size). */
size_t rg_dtype_row_bytes(rg_dtype t, int64_t n);
/* Parse a type name, any case ("f32", "bf16", "q4_0"). */
int rg_dtype_parse(const char *s, rg_dtype *out);
/* The type with ggml tensor type id ggml_type; -1 if the engine has none. */
int rg_dtype_from_ggml(uint32_t ggml_type, rg_dtype *out);
/* Convert n float32 values to type dt, writing rg_dtype_row_bytes(dt, n)
 * bytes. Returns -1 (with a message) on a non-finite value or a block scale
 * that does not fit a float16. */
int rg_quantize_row(rg_dtype dt, const float *x, int64_t n, uint8_t *out);

typedef struct {
    rg_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
    /* the same weights in a kernel set's own layout (ops: rg_pack_weights),
     * and that set; NULL when there is none */
    const void *packed;
    const void *packed_for;
} rg_tensor;

/* Bytes of one row of a 2-D tensor [rows, cols]. */
static inline size_t rg_tensor_row_bytes(const rg_tensor *t) { return rg_dtype_row_bytes(t->dtype, t->shape[t->ndim - 1]); }
/* Widen row `row` of a 2-D weight (any dtype) to float32 (out has cols floats). */
void rg_dequant_row(const rg_tensor *w, int64_t row, float *out);

#endif
