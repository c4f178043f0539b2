#include <string.h>
#include "ops/ops.h"

/* c_t = bias + sum_{j=0}^{K-1} w[j] * u_{t-(K-1)+j}; inputs before the
 * sequence come from the state (zeros at the start). */
void rg_conv1d(const float *u, int n, int r, int k, const float *w, const float *bias, float *state, float *out) {
    int hist = k - 1;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < r; c++) {
        const float *wc = w + (size_t)c * k;
        for (int t = 0; t < n; t++) {
            float acc = bias[c];
            for (int j = 0; j < k; j++) {
                int src = t - hist + j; /* index into u; negative = state */
                float in = src >= 0 ? u[(size_t)src * r + c] : state[(size_t)(hist + src) * r + c];
                acc += wc[j] * in;
            }
            out[(size_t)t * r + c] = acc;
        }
        /* new state = the last K-1 inputs of [state; u] */
        for (int j = 0; j < hist; j++) {
            int src = n - hist + j;
            state[(size_t)j * r + c] = src >= 0 ? u[(size_t)src * r + c] : state[(size_t)(hist + src) * r + c];
        }
    }
}
