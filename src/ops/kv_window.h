/* The attention window's keys and values, one pair per attention layer: two
 * ring buffers of W rows of hd elements (keys, then values, in one block of
 * the sequence state), position p in slot p mod W. The elements are float32,
 * float16 (IEEE half) or Q8_0 (ggml's blocks of 32: a float16 scale and 32
 * int8, 8.5 bits an element; head dimensions that are a multiple of 32) when
 * the state was made so: half or about a quarter of the memory, and of the
 * bytes every decode step reads at depth. This module alone knows
 * that layout; the forward pass writes through it, attention reads through
 * it, the state copies through it. */
#ifndef RG_KV_WINDOW_H
#define RG_KV_WINDOW_H

#include <stddef.h>
#include <stdint.h>
#include "core/tensor.h"

typedef struct {
    void *k, *v;   /* [W x hd] each, of type */
    rg_dtype type; /* RG_DT_F32, RG_DT_F16 or RG_DT_Q8_0 */
    int window, hd;
} rg_kv_window;

/* Bytes of one row of hd elements of type (F32, F16, or Q8_0 with hd a
 * multiple of 32). Two rows are always a whole number of 4-byte words. */
static inline size_t rg_kv_row_bytes(rg_dtype type, int hd) {
    if (type == RG_DT_Q8_0) return (size_t)hd / RG_QBLOCK * RG_Q8_0_BLOCK_BYTES;
    return (size_t)hd * (type == RG_DT_F16 ? sizeof(uint16_t) : sizeof(float));
}

/* "f32", "f16" or "q8_0" (the names of the API and the CLI's --kv-type). */
static inline const char *rg_kv_type_name(rg_dtype type) {
    return type == RG_DT_F16 ? "f16" : type == RG_DT_Q8_0 ? "q8_0" : "f32";
}

/* Floats (4-byte words) of one layer's block: 2 W rows. */
static inline size_t rg_kv_window_floats(int window, int hd, rg_dtype type) {
    return 2 * (size_t)window * rg_kv_row_bytes(type, hd) / sizeof(float);
}

/* The window stored in block (rg_kv_window_floats of them). */
static inline rg_kv_window rg_kv_window_at(float *block, int window, int hd, rg_dtype type) {
    return (rg_kv_window){block, (char *)block + (size_t)window * rg_kv_row_bytes(type, hd), type, window, hd};
}

/* n rows of hd floats stored as the window of type stores them (row after
 * row, rg_kv_row_bytes each) into out. Attention reads a chunk's own keys
 * and values so for a float16 or Q8_0 window: every key and value is then
 * the same number whether read from the window or from its chunk, so that
 * how the tokens are split into chunks (prefill chunks, batched steps) does
 * not change the result. */
void rg_kv_rows_store(rg_dtype type, const float *x, int n, int hd, void *out);

/* Positions pos0..pos0+n-1 enter (rows of k and v, hd floats each, rounded
 * to nearest even for an F16 window, quantised for Q8_0); only the last W of
 * them can stay. */
void rg_kv_window_write(const rg_kv_window *kv, int64_t pos0, const float *k, const float *v, int n);

/* Rows of keys and values in consecutive memory: count rows of row_bytes
 * bytes (hd elements of type) from k and from v. */
typedef struct {
    const void *k, *v;
    rg_dtype type;
    size_t row_bytes;
    int count;
} rg_kv_span;

/* The cached rows of positions [s, end) that lie in consecutive slots from
 * s's; count >= 1 for s < end, fewer than end - s where the ring wraps. The
 * positions must still be in the window. */
rg_kv_span rg_kv_window_span(const rg_kv_window *kv, int64_t s, int64_t end);

/* Copy the window of a sequence at position pos (both of the same type). */
void rg_kv_window_copy(const rg_kv_window *dst, const rg_kv_window *src, int64_t pos);

#endif
