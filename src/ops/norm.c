#include <math.h>
#include <omp.h>
#include "ops/ops.h"

void rg_rmsnorm(const float *x, const float *w, int n, int d, float eps, float *y) {
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * d;
        float *yr = y + (size_t)t * d;
        float ss = 0;
        for (int i = 0; i < d; i++) ss += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(ss / (float)d + eps);
        for (int i = 0; i < d; i++) yr[i] = xr[i] * inv * (1.0f + w[i]);
    }
}

float rg_gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* Below this many elements a second thread costs more than it saves. */
#define PAR_MIN 4096

void rg_gelu_mul(float *g, const float *u, size_t count) {
    const rg_kernel_set *ks = rg_active_kernels();
#pragma omp parallel if (count >= PAR_MIN)
    {
        size_t b, e;
        rg_split(count, 16, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
        if (e > b) ks->gelu_mul(g + b, u + b, e - b);
    }
}

void rg_softcap(float *x, size_t count, float cap) {
    const rg_kernel_set *ks = rg_active_kernels();
#pragma omp parallel if (count >= PAR_MIN)
    {
        size_t b, e;
        rg_split(count, 16, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
        if (e > b) ks->softcap(x + b, e - b, cap);
    }
}
