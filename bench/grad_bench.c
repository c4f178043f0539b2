/* grad-bench: the training gradient's speed (rg_grad_compute, one sequence
 * of ctx tokens) on a config.json, against this machine's float32 FMA peak.
 *
 *   build/grad-bench bench/demo-config.json [-n CTX] [-r REPS] [-t THREADS] [-k KERNELS]
 *
 * Throughput counts 6 * params * tokens FLOPs per step (forward 2, backward
 * 4 per parameter and token; attention scores and the elementwise work are
 * not counted). The peak is what one thread reaches in
 * rg_measure_peak_flops(0) (12 independent FMA chains of the active kernel
 * set; best of 3) times the threads: on a machine shared with other work
 * the all-threads measurement is whatever the other processes leave, while
 * one thread's best is the core's rate (137 GFLOP/s on the 2-core AVX-512
 * Xeon this was written on: 2 FMA ports x 16 lanes x 2 at about 2.1 GHz).
 * -p GFLOPS gives the peak instead (e.g. from a quiet moment). Each step's
 * process CPU time is printed too: with OMP_WAIT_POLICY=passive (threads
 * that wait sleep instead of spinning) flops / CPU time / one thread's peak
 * is the fraction of peak the work itself runs at, however busy the
 * machine is.
 * The parameters are random: the speed does not depend on their values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "rgemma.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* xorshift64*: uniform in [0, 1) */
static double uniform(uint64_t *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* Weights uniform with standard deviation 1/sqrt(fan in), vectors small;
 * recurrent_param in [-2.5, 0.5] so that the RG-LRU's a spans (0, 1). */
static void random_params(const rg_grad *g, float *p, uint64_t seed) {
    for (int i = 0; i < rg_grad_n_tensors(g); i++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, i);
        double half = t->ndim >= 2 ? sqrt(3.0 / (double)t->shape[t->ndim - 1]) : 0.3;
        int lru = strstr(t->name, "recurrent_param") != NULL;
        for (size_t j = 0; j < t->count; j++)
            p[t->offset + j] = (float)(lru ? -2.5 + 3 * uniform(&seed) : half * (2 * uniform(&seed) - 1));
    }
}

static void usage(void) {
    fprintf(stderr, "usage: grad-bench CONFIG.json [-n CTX (512)] [-r REPS (3)] [-t THREADS] [-k KERNELS]"
                    " [-p PEAK_GFLOPS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    int ctx = 512, reps = 3, opt;
    double given_peak = 0;
    while ((opt = getopt(argc, argv, "n:r:t:k:p:")) != -1) {
        switch (opt) {
        case 'n': ctx = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'p': given_peak = atof(optarg) * 1e9; break;
        case 't': rg_set_threads(atoi(optarg)); break;
        case 'k':
            if (rg_set_kernel_path(optarg)) {
                fprintf(stderr, "grad-bench: %s\n", rg_last_error());
                return 1;
            }
            break;
        default: usage();
        }
    }
    if (optind != argc - 1 || ctx < 2 || reps < 1) usage();
    rg_config cfg;
    rg_grad *g;
    if (rg_config_load(argv[optind], &cfg) || !(g = rg_grad_new(&cfg))) {
        fprintf(stderr, "grad-bench: %s\n", rg_last_error());
        return 1;
    }
    size_t np = rg_grad_size(g);
    float *params = malloc(sizeof(float) * np), *grad = malloc(sizeof(float) * np);
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)ctx);
    if (!params || !grad || !tokens) {
        fprintf(stderr, "grad-bench: out of memory\n");
        return 1;
    }
    random_params(g, params, 1);
    uint64_t s = 7;
    for (int t = 0; t < ctx; t++) tokens[t] = (int32_t)(uniform(&s) * cfg.vocab_size);

    int threads = rg_get_threads();
    double core_peak = given_peak / threads;
    rg_set_threads(1);
    for (int r = 0; r < 3 && !given_peak; r++) {
        double p = rg_measure_peak_flops(0);
        core_peak = p > core_peak ? p : core_peak;
    }
    rg_set_threads(threads);
    double peak = core_peak * threads, flops = 6.0 * (double)np * ctx, best = INFINITY, best_cpu = INFINITY, nll = 0;
    printf("config %s: hidden %d, lru %d, mlp %d, %d layers, %d heads x %d, vocab %d, window %d; %.2f M params\n",
           argv[optind], cfg.hidden_size, cfg.lru_width, cfg.mlp_width, cfg.num_layers, cfg.num_heads, cfg.head_dim,
           cfg.vocab_size, cfg.window, (double)np / 1e6);
    printf("ctx %d, %d threads, kernels %s; FMA peak %.1f GFLOP/s (%.1f per thread x %d%s)\n", ctx, threads,
           rg_kernel_path(), peak / 1e9, core_peak / 1e9, threads, given_peak ? ", given" : "");
    for (int r = 0; r <= reps; r++) { /* round 0 warms up */
        memset(grad, 0, sizeof(float) * np);
        int64_t nt;
        double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (rg_grad_compute(g, params, tokens, ctx, NULL, 1.0 / (ctx - 1), grad, &nll, &nt)) {
            fprintf(stderr, "grad-bench: %s\n", rg_last_error());
            return 1;
        }
        double dt = clock_s(CLOCK_MONOTONIC) - t0, cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (r == 0) continue;
        best = dt < best ? dt : best;
        best_cpu = cpu < best_cpu ? cpu : best_cpu;
        printf("  rep %d: %.3f s, %.3f s CPU\n", r, dt, cpu);
    }
    printf("grad: %.3f s/step (best of %d), %.0f tokens/s, %.1f GFLOP/s = %.1f%% of peak (loss %.4f)\n", best, reps,
           ctx / best, flops / best / 1e9, 100 * flops / best / peak, nll / (ctx - 1));
    printf("work: %.3f CPU s/step, %.1f GFLOP per CPU second = %.1f%% of one thread's peak\n", best_cpu,
           flops / best_cpu / 1e9, 100 * flops / best_cpu / core_peak);
    free(params);
    free(grad);
    free(tokens);
    rg_grad_free(g);
    return 0;
}
