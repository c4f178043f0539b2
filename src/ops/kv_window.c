#include <string.h>
#include "ops/kv_window.h"
#include "util/util.h"

static void store_row(rg_dtype type, void *dst, const float *src, int hd) {
    if (type == RG_DT_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)hd);
    } else if (type == RG_DT_F16) {
        uint16_t *half = dst;
        for (int i = 0; i < hd; i++) half[i] = rg_f32_to_f16(src[i]);
    } else if (rg_quantize_row(RG_DT_Q8_0, src, hd, dst)) {
        /* a non-finite key or value (broken weights): every block's scale
         * NaN, so that the logits show it (they are checked) */
        rg_clear_error();
        for (int b = 0; b < hd / RG_QBLOCK; b++) {
            uint8_t *blk = (uint8_t *)dst + (size_t)b * RG_Q8_0_BLOCK_BYTES;
            uint16_t nan = 0x7e00;
            memcpy(blk, &nan, sizeof nan);
        }
    }
}

void rg_kv_rows_store(rg_dtype type, const float *x, int n, int hd, void *out) {
    size_t rb = rg_kv_row_bytes(type, hd);
    for (int t = 0; t < n; t++) store_row(type, (char *)out + (size_t)t * rb, x + (size_t)t * hd, hd);
}

void rg_kv_window_write(const rg_kv_window *kv, int64_t pos0, const float *k, const float *v, int n) {
    size_t row = rg_kv_row_bytes(kv->type, kv->hd);
    for (int t = n > kv->window ? n - kv->window : 0; t < n; t++) {
        size_t slot = (size_t)((pos0 + t) % kv->window);
        store_row(kv->type, (char *)kv->k + slot * row, k + (size_t)t * kv->hd, kv->hd);
        store_row(kv->type, (char *)kv->v + slot * row, v + (size_t)t * kv->hd, kv->hd);
    }
}

rg_kv_span rg_kv_window_span(const rg_kv_window *kv, int64_t s, int64_t end) {
    int64_t slot = s % kv->window;
    int64_t len = end - s < kv->window - slot ? end - s : kv->window - slot;
    size_t row = rg_kv_row_bytes(kv->type, kv->hd);
    return (rg_kv_span){(const char *)kv->k + (size_t)slot * row, (const char *)kv->v + (size_t)slot * row, kv->type,
                        row, (int)len};
}

/* While pos < W only slots [0, pos) have ever been written, and no other slot
 * is read before it is written again, so only those are copied (a short
 * context's snapshot costs little). */
void rg_kv_window_copy(const rg_kv_window *dst, const rg_kv_window *src, int64_t pos) {
    size_t used = pos < src->window ? (size_t)pos : (size_t)src->window;
    size_t bytes = used * rg_kv_row_bytes(src->type, src->hd);
    memcpy(dst->k, src->k, bytes);
    memcpy(dst->v, src->v, bytes);
}
