#include <string.h>
#include "ops/kv_window.h"

void rg_kv_window_write(const rg_kv_window *kv, int64_t pos0, const float *k, const float *v, int n) {
    size_t row = sizeof(float) * (size_t)kv->hd;
    for (int t = n > kv->window ? n - kv->window : 0; t < n; t++) {
        size_t slot = (size_t)((pos0 + t) % kv->window);
        memcpy(kv->k + slot * kv->hd, k + (size_t)t * kv->hd, row);
        memcpy(kv->v + slot * kv->hd, v + (size_t)t * kv->hd, row);
    }
}

int rg_kv_window_span(const rg_kv_window *kv, int64_t s, int64_t end, const float **k, const float **v) {
    int64_t slot = s % kv->window;
    int64_t len = end - s < kv->window - slot ? end - s : kv->window - slot;
    *k = kv->k + slot * kv->hd;
    *v = kv->v + slot * kv->hd;
    return (int)len;
}

/* While pos < W only slots [0, pos) have ever been written, and no other slot
 * is read before it is written again, so only those are copied (a short
 * context's snapshot costs little). */
void rg_kv_window_copy(const rg_kv_window *dst, const rg_kv_window *src, int64_t pos) {
    size_t used = pos < src->window ? (size_t)pos : (size_t)src->window;
    size_t bytes = used * (size_t)src->hd * sizeof(float);
    memcpy(dst->k, src->k, bytes);
    memcpy(dst->v, src->v, bytes);
}
