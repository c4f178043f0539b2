/* RG-LRU scan, h_t = a_t * h_{t-1} + x_t * sigmoid(gx_t) * sqrt(1 - a_t^2)
 * (the full formula above rglru() in kernels_scalar.c): sequential in time,
 * independent per channel, so the channels are split over the threads. The
 * math is in the kernel sets. */
#include <omp.h>
#include "ops/ops.h"

void rg_rglru_scan(const float *x, const float *gx, const float *ga, const float *softplus_a, int n, int r,
                   int64_t pos0, float *h, float *y) {
    const rg_kernel_set *ks = rg_active_kernels();
#pragma omp parallel
    {
        size_t c0, c1;
        rg_split((size_t)r, 16, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        if (c1 > c0)
            ks->rglru(x + c0, gx + c0, ga + c0, softplus_a + c0, n, (int)(c1 - c0), r, pos0, h + c0, y + c0);
    }
}
