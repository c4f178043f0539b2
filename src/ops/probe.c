/* Machine roofline probes for rgemma bench: memory read bandwidth and peak
 * multiply-add rate, measured with the active kernel set on all threads, and
 * which of those rates a model's prefill runs at (include/rgemma.h, "machine
 * probes"). */
#include <omp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "ops/ops.h"
#include "rgemma.h"
#include "util/util.h"

/* Best of reps passes over n floats, all threads reading their share. */
static double best_pass(const float *buf, size_t n, int reps) {
    const rg_kernel_set *ks = rg_active_kernels();
    double best = 0;
    volatile float sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = rg_time_s();
        float total = 0;
#pragma omp parallel reduction(+ : total)
        {
            size_t b, e;
            rg_split(n, 1024, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
            total += ks->read_sum(buf + b, e - b);
        }
        double dt = rg_time_s() - t0;
        sink += total;
        if (dt > 0 && (double)(n * sizeof(float)) / dt > best) best = (double)(n * sizeof(float)) / dt;
    }
    return best;
}

/* The buffer is read twice: with transparent huge pages allowed, and with
 * 4 KiB pages as a mapped model file has; the better rate is the roofline. */
double rg_measure_read_bandwidth(size_t bytes, int reps) {
    size_t n = bytes / sizeof(float), len = n * sizeof(float);
    float *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 0;
    double best = 0;
    for (int small = 0; small < 2; small++) {
        madvise(buf, len, small ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
        madvise(buf, len, MADV_DONTNEED); /* fresh pages of that kind on the next touch */
        memset(buf, 0, len);
        double bw = best_pass(buf, n, reps);
        best = bw > best ? bw : best;
    }
    munmap(buf, len);
    return best;
}

/* Each thread runs the loop for about 0.1 s; best of 3. */
double rg_measure_peak_flops(int int8) {
    const rg_kernel_set *ks = rg_active_kernels();
    double t0 = rg_time_s(), probe = ks->peak_loop(int8, 100000), dt = rg_time_s() - t0;
    if (probe == 0) return 0;
    long iters = (long)(100000 * (0.1 / (dt > 1e-6 ? dt : 1e-6)));
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double flops = 0;
        t0 = rg_time_s();
#pragma omp parallel reduction(+ : flops)
        flops += ks->peak_loop(int8, iters);
        dt = rg_time_s() - t0;
        if (flops / dt > best) best = flops / dt;
    }
    return best;
}
