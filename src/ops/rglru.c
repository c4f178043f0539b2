/* RG-LRU (SPEC §5.2), per channel:
 *   log_a = -8 * sigmoid(ga) * softplus(L);  a = exp(log_a)
 *   mult  = sqrt(1 - exp(2 log_a)), or 1 at position 0
 *   h_t   = a * h_{t-1} + x * sigmoid(gx) * mult   (h_{t-1} = 0 at position 0)
 * The state h is float32; the scan is sequential in time and parallel over
 * channels. */
#include <math.h>
#include "ops/ops.h"

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void rg_rglru_scan(const float *x, const float *gx, const float *ga, const float *softplus_a, int n, int r,
                   int64_t pos0, float *h, float *y) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < r; c++) {
        float hc = h[c];
        for (int t = 0; t < n; t++) {
            size_t i = (size_t)t * r + c;
            float log_a = -8.0f * sigmoidf(ga[i]) * softplus_a[c];
            float a = expf(log_a);
            float mult = sqrtf(1.0f - expf(2.0f * log_a));
            if (pos0 + t == 0) {
                a = 0.0f;
                mult = 1.0f;
            }
            hc = a * hc + x[i] * sigmoidf(gx[i]) * mult;
            y[i] = hc;
        }
        h[c] = hc;
    }
}
