/* The attention window's keys and values, one pair per attention layer: two
 * ring buffers of W rows of hd floats (keys, then values, in one block of
 * the sequence state), position p in slot p mod W. This module alone knows
 * that layout; the forward pass writes through it, attention reads through
 * it, the state copies through it. */
#ifndef RG_KV_WINDOW_H
#define RG_KV_WINDOW_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float *k, *v; /* [W x hd] each */
    int window, hd;
} rg_kv_window;

/* Floats of one layer's block. */
static inline size_t rg_kv_window_floats(int window, int hd) { return 2 * (size_t)window * hd; }

/* The window stored in block (rg_kv_window_floats of them). */
static inline rg_kv_window rg_kv_window_at(float *block, int window, int hd) {
    return (rg_kv_window){block, block + (size_t)window * hd, window, hd};
}

/* Positions pos0..pos0+n-1 enter (rows of k and v, hd floats each); only
 * the last W of them can stay. */
void rg_kv_window_write(const rg_kv_window *kv, int64_t pos0, const float *k, const float *v, int n);

/* The cached rows of positions [s, end) that lie in consecutive slots from
 * s's: their first key and value rows; returns how many (>= 1 for s < end;
 * fewer than end - s where the ring wraps). The positions must still be in
 * the window. */
int rg_kv_window_span(const rg_kv_window *kv, int64_t s, int64_t end, const float **k, const float **v);

/* Copy the window of a sequence at position pos. */
void rg_kv_window_copy(const rg_kv_window *dst, const rg_kv_window *src, int64_t pos);

#endif
