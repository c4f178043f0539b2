/* LoRA's two pieces of math (see train.h). Each output element is summed by
 * one thread in a fixed order: the same bits on any number of threads. */
#include <string.h>
#include "train/train.h"

int rg_lora_target(const char *name) {
    static const char *const ends[] = {"_proj.weight", ".linear_x.weight", ".linear_y.weight", ".linear_out.weight"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        size_t k = strlen(ends[i]);
        if (n > k && !strcmp(name + n - k, ends[i]) && !strncmp(name, "model.layers.", 13)) return 1;
    }
    return 0;
}

void rg_lora_merge(const float *base, const float *A, const float *B, int out, int in, int r, float s, float *W) {
    #pragma omp parallel for schedule(static)
    for (int o = 0; o < out; o++) {
        float *w = W + (size_t)o * in;
        memset(w, 0, sizeof *w * (size_t)in);
        for (int k = 0; k < r; k++) {
            float b = B[(size_t)o * r + k];
            const float *a = A + (size_t)k * in;
            for (int i = 0; i < in; i++) w[i] += b * a[i];
        }
        for (int i = 0; i < in; i++) w[i] = base[(size_t)o * in + i] + s * w[i];
    }
}

/* dA is summed over the rows of G in column blocks, so that threads share
 * the work even when the rank is small. */
#define COLUMNS 256

void rg_lora_gradients(const float *G, const float *A, const float *B, int out, int in, int r, float s, float *dA,
                       float *dB) {
    #pragma omp parallel for schedule(static)
    for (int o = 0; o < out; o++)
        for (int k = 0; k < r; k++) {
            const float *g = G + (size_t)o * in, *a = A + (size_t)k * in;
            float acc = 0;
            for (int i = 0; i < in; i++) acc += g[i] * a[i];
            dB[(size_t)o * r + k] = s * acc;
        }
    int blocks = (in + COLUMNS - 1) / COLUMNS;
    #pragma omp parallel for schedule(static)
    for (int blk = 0; blk < blocks; blk++) {
        int i0 = blk * COLUMNS, i1 = i0 + COLUMNS < in ? i0 + COLUMNS : in;
        for (int k = 0; k < r; k++) {
            float *da = dA + (size_t)k * in;
            for (int i = i0; i < i1; i++) da[i] = 0;
            for (int o = 0; o < out; o++) {
                float b = s * B[(size_t)o * r + k];
                const float *g = G + (size_t)o * in;
                for (int i = i0; i < i1; i++) da[i] += b * g[i];
            }
        }
    }
}
