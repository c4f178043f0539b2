#include <omp.h>
#include <string.h>
#include "ops/ops.h"

/* c_t = bias + sum_{j=0}^{K-1} w_j * u_{t-(K-1)+j}, per channel; inputs
 * before the sequence come from the state (zeros at the start). w is [K][R]
 * (taps by position), so each tap is one pass over contiguous channels,
 * added in the order j = 0..K-1; each thread takes a range of channels. */
void rg_conv1d(const float *u, int n, int r, int k, const float *w, const float *bias, float *state, float *out) {
    int hist = k - 1;
#pragma omp parallel
    {
        size_t c0, c1;
        rg_split((size_t)r, 16, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int t = 0; t < n; t++) {
            float *o = out + (size_t)t * r;
            memcpy(o + c0, bias + c0, sizeof(float) * (c1 - c0));
            for (int j = 0; j < k; j++) {
                int src = t - hist + j; /* index into u; negative = state */
                const float *in = src >= 0 ? u + (size_t)src * r : state + (size_t)(hist + src) * r;
                const float *wj = w + (size_t)j * r;
#pragma omp simd
                for (size_t c = c0; c < c1; c++) o[c] += wj[c] * in[c];
            }
        }
        /* new state = the last K-1 inputs of [state; u]; state row j may
         * come from row n + j, later in the state and not yet replaced */
        for (int j = 0; j < hist; j++) {
            int src = n - hist + j;
            const float *in = src >= 0 ? u + (size_t)src * r : state + (size_t)(hist + src) * r;
            memcpy(state + (size_t)j * r + c0, in + c0, sizeof(float) * (c1 - c0));
        }
    }
}
