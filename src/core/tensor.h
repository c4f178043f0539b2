/* Weight types and the tensor view every layer shares. Everything the engine
 * knows about a weight type (name, block layout, ggml id, conversions) lives
 * in one table, core/dtype.c; the rest of the code asks it. */
#ifndef RG_TENSOR_H
#define RG_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    RG_DT_F32 = 0,
    RG_DT_F16,
    RG_DT_BF16,
    RG_DT_Q8_0, /* ggml block: f16 scale + 32 int8 */
    RG_DT_Q4_0, /* ggml block: f16 scale + 16 bytes of nibbles */
    RG_DT_COUNT
} rg_dtype;

/* ggml's quantised blocks: RG_QBLOCK weights behind a float16 scale */
#define RG_QBLOCK 32
#define RG_Q8_0_BLOCK_BYTES (2 + RG_QBLOCK)     /* 34 */
#define RG_Q4_0_BLOCK_BYTES (2 + RG_QBLOCK / 2) /* 18 */

/* ggml tensor type ids of the types the engine runs (GGUF tensor infos) */
enum { RG_GGML_F32 = 0, RG_GGML_F16 = 1, RG_GGML_Q4_0 = 2, RG_GGML_Q8_0 = 8, RG_GGML_BF16 = 30 };

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
