/* GGUF v3 (the ggml file format): reader and streaming writer. What the
 * keys mean to the model and the tokenizer is theirs (model/gguf_config.c,
 * tokenizer/gguf_tokenizer.c).
 *
 * Layout (all integers little-endian):
 *   "GGUF"  u32 version (3)  u64 tensor_count  u64 kv_count
 *   kv_count x { string key, u32 value_type, value }
 *   tensor_count x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   padding to general.alignment (default 32), then the data section;
 *   each tensor's offset is relative to it and a multiple of the alignment.
 * string = u64 length + bytes (no NUL); array = u32 elem_type, u64 count, elems.
 * ne[0] is the fastest-varying dimension, so an HF tensor [rows, cols] has
 * ne = {cols, rows}; rg_tensor.shape is kept in HF (row-major) order. */
#ifndef RG_GGUF_H
#define RG_GGUF_H

#include <stdio.h>
#include "core/tensor.h"
#include "util/util.h"

#define RG_GGUF_VERSION 3
#define RG_GGUF_DEFAULT_ALIGNMENT 32
#define RG_GGUF_ARCH "recurrentgemma"
/* ggml keeps tensor names in char[64] (GGML_MAX_NAME) */
#define RG_GGUF_MAX_NAME 63

typedef enum {
    RG_GGUF_UINT8 = 0,
    RG_GGUF_INT8 = 1,
    RG_GGUF_UINT16 = 2,
    RG_GGUF_INT16 = 3,
    RG_GGUF_UINT32 = 4,
    RG_GGUF_INT32 = 5,
    RG_GGUF_FLOAT32 = 6,
    RG_GGUF_BOOL = 7,
    RG_GGUF_STRING = 8,
    RG_GGUF_ARRAY = 9,
    RG_GGUF_UINT64 = 10,
    RG_GGUF_INT64 = 11,
    RG_GGUF_FLOAT64 = 12,
    RG_GGUF_NTYPES
} rg_gguf_type;

/* A string inside the mapped file (not NUL-terminated). */
typedef struct {
    const char *s;
    uint64_t len;
} rg_gguf_str;

typedef struct {
    rg_gguf_str key;
    rg_gguf_type type;
    rg_gguf_type elem_type; /* arrays: type of the elements */
    uint64_t count;         /* arrays: number of elements */
    const uint8_t *value;   /* the value (arrays: the first element) */
    uint64_t offset;        /* file offset of the value, for messages */
} rg_gguf_kv;

typedef struct {
    char *name;
    int ggml_type;
    uint64_t offset; /* in the data section */
    rg_tensor t;     /* shape in HF order, data = mapped bytes */
} rg_gguf_tensor;

typedef struct {
    rg_mapped_file f;
    const char *path;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset; /* file offset of the data section */
    rg_gguf_kv *kv;
    uint64_t n_kv;
    rg_gguf_tensor *tensors;
    uint64_t n_tensors;
} rg_gguf;

/* Map and validate a whole file: header, every key/value, every tensor
 * info (type, dims, offset, alignment, bounds, overlaps). */
int rg_gguf_open(rg_gguf **out, const char *path);
void rg_gguf_close(rg_gguf *g);

const rg_gguf_kv *rg_gguf_find(const rg_gguf *g, const char *key);
const rg_gguf_tensor *rg_gguf_find_tensor(const rg_gguf *g, const char *name);
const char *rg_gguf_type_name(rg_gguf_type t);

/* Typed reads of metadata. A missing key is an error unless a default is
 * given; a value of the wrong type is an error naming the key, its type and
 * its offset. Integer reads accept any integer type and check [lo, hi]. */
int rg_gguf_get_int(const rg_gguf *g, const char *key, int64_t lo, int64_t hi, const int64_t *dflt, int64_t *out);
int rg_gguf_get_float(const rg_gguf *g, const char *key, double lo, double hi, const double *dflt, double *out);
int rg_gguf_get_bool(const rg_gguf *g, const char *key, const int *dflt, int *out);
int rg_gguf_get_str(const rg_gguf *g, const char *key, rg_gguf_str *out);
/* An array whose elements have type elem (any integer type when elem is
 * RG_GGUF_INT32, FLOAT32 or FLOAT64 when elem is RG_GGUF_FLOAT32). */
int rg_gguf_get_array(const rg_gguf *g, const char *key, rg_gguf_type elem, const rg_gguf_kv **out);
/* Element i of a validated numeric array, widened. */
int64_t rg_gguf_arr_int(const rg_gguf_kv *kv, uint64_t i);
double rg_gguf_arr_float(const rg_gguf_kv *kv, uint64_t i);
/* The strings of a validated string array, in order (malloc'd array of views). */
rg_gguf_str *rg_gguf_arr_strs(const rg_gguf_kv *kv);

/* ---- writer ---------------------------------------------------------------
 * Collect metadata and tensor infos, then stream the tensor data in the
 * order the tensors were added. The file is written as PATH.tmp and renamed
 * when finished, so a failed run leaves no partial PATH. */
typedef struct rg_gguf_writer rg_gguf_writer;

rg_gguf_writer *rg_gguf_writer_new(void);
void rg_gguf_writer_free(rg_gguf_writer *w); /* also removes an unfinished PATH.tmp */
void rg_gguf_w_u32(rg_gguf_writer *w, const char *key, uint32_t v);
void rg_gguf_w_i32(rg_gguf_writer *w, const char *key, int32_t v);
void rg_gguf_w_f32(rg_gguf_writer *w, const char *key, float v);
void rg_gguf_w_bool(rg_gguf_writer *w, const char *key, int v);
void rg_gguf_w_str(rg_gguf_writer *w, const char *key, const char *v);
void rg_gguf_w_arr_str(rg_gguf_writer *w, const char *key, const char *const *v, uint64_t n);
/* strings of the given lengths (they may hold NUL bytes) */
void rg_gguf_w_arr_strn(rg_gguf_writer *w, const char *key, const char *const *v, const uint64_t *lens, uint64_t n);
void rg_gguf_w_arr_f32(rg_gguf_writer *w, const char *key, const float *v, uint64_t n);
void rg_gguf_w_arr_i32(rg_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* Declare the next tensor (shape in HF order). */
int rg_gguf_w_tensor(rg_gguf_writer *w, const char *name, rg_dtype dtype, int ndim, const int64_t *shape);
/* Write the header and padding; then rg_gguf_w_data the tensors' bytes in order. */
int rg_gguf_w_begin(rg_gguf_writer *w, const char *path);
int rg_gguf_w_data(rg_gguf_writer *w, const void *data, size_t n);
/* Check that every tensor got exactly its bytes, flush, rename into place. */
int rg_gguf_w_finish(rg_gguf_writer *w);

#endif
