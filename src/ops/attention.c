#include <math.h>
#include <stdlib.h>
#include "ops/ops.h"

void rg_rope(float *x, int heads, int hd, int m, const float *inv_freq, int64_t pos) {
    for (int i = 0; i < m; i++) {
        float phi = (float)pos * inv_freq[i];
        float c = cosf(phi), s = sinf(phi);
        for (int h = 0; h < heads; h++) {
            float *xh = x + (size_t)h * hd;
            float a = xh[i], b = xh[i + m];
            xh[i] = a * c - b * s;
            xh[i + m] = b * c + a * s;
        }
    }
}

/* score(s) = (q . k_s) / sqrt(hd); p = softmax over the W+1 allowed keys
 * (float32); out = sum_s p(s) v_s. */
void rg_local_attention(const float *q, const float *k, const float *v, int n, int heads, int hd, int64_t pos0,
                        int window, const float *kcache, const float *vcache, float *out) {
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *scores = malloc(sizeof(float) * ((size_t)window + 1));
#pragma omp for collapse(2) schedule(static)
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < heads; h++) {
                int64_t p = pos0 + t;
                int64_t first = p - window > 0 ? p - window : 0;
                int nk = (int)(p - first + 1);
                const float *qh = q + (size_t)t * heads * hd + (size_t)h * hd;
                float mx = -INFINITY;
                for (int j = 0; j < nk; j++) {
                    int64_t s = first + j;
                    const float *ks = s >= pos0 ? k + (size_t)(s - pos0) * hd : kcache + (size_t)(s % window) * hd;
                    float d = 0;
                    for (int i = 0; i < hd; i++) d += qh[i] * ks[i];
                    scores[j] = d * scale;
                    if (scores[j] > mx) mx = scores[j];
                }
                float sum = 0;
                for (int j = 0; j < nk; j++) {
                    scores[j] = expf(scores[j] - mx);
                    sum += scores[j];
                }
                float inv = 1.0f / sum;
                float *oh = out + (size_t)t * heads * hd + (size_t)h * hd;
                for (int i = 0; i < hd; i++) oh[i] = 0;
                for (int j = 0; j < nk; j++) {
                    int64_t s = first + j;
                    const float *vs = s >= pos0 ? v + (size_t)(s - pos0) * hd : vcache + (size_t)(s % window) * hd;
                    float pj = scores[j] * inv;
                    for (int i = 0; i < hd; i++) oh[i] += pj * vs[i];
                }
            }
        }
        free(scores);
    }
}
