/* The float32 GEMM (rg_gemm, the kernel sets' gemm) that the training
 * gradient multiplies with: every kernel set this CPU runs against a
 * float64 reference and against the scalar set, for each transposition of
 * either operand, overwrite and add, and awkward shapes: sizes of 1, sizes
 * that are not a multiple of the register tile (rows, columns) or of the
 * vector width, k past one k block (256), rows past one row block, padded
 * row strides of c (whose padding must stay untouched). Then the threaded
 * driver: the same bits as one call on one thread, whatever the thread
 * count.
 *
 * Tolerance, derived: float32 accumulation of k products onto c0, in any
 * order, errs by at most g * (|c0| + sum_p |A(i,p) B(p,j)|), g = (k+1) u /
 * (1 - (k+1) u), u = 2^-24; two results within that of the exact value are
 * within twice that of each other. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "ops/ops.h"
#include "rgemma.h"
#include "util/util.h"

static const rg_kernel_set *g_sets[8];
static int g_nsets;

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (2.0 / (1ull << 24)) - 1.0);
}

static float *random_floats(size_t count) {
    float *v = rg_xmalloc(sizeof(float) * (count ? count : 1));
    for (size_t i = 0; i < count; i++) v[i] = frand();
    return v;
}

/* One product's operands: A [m x k] and B [k x n] stored as a_t/b_t say
 * (0: row-major, 1: transposed, i.e. stored [k x m] / [n x k]), c [m x ldc]
 * with ldc = n + 3 (the padding holds a sentinel). */
typedef struct {
    int m, n, k, a_t, b_t, add;
    float *a, *b, *c0;
    size_t a_rs, a_cs, b_rs, b_cs, ldc;
} problem;

#define SENTINEL 1234.5f

static problem make_problem(int m, int n, int k, int a_t, int b_t, int add) {
    problem p = {m, n, k, a_t, b_t, add, random_floats((size_t)m * k), random_floats((size_t)k * n), NULL,
                 0, 0, 0, 0, (size_t)n + 3};
    p.a_rs = a_t ? 1 : (size_t)k, p.a_cs = a_t ? (size_t)m : 1;
    p.b_rs = b_t ? 1 : (size_t)n, p.b_cs = b_t ? (size_t)k : 1;
    p.c0 = random_floats((size_t)m * p.ldc);
    for (int i = 0; i < m; i++)
        for (size_t j = (size_t)n; j < p.ldc; j++) p.c0[(size_t)i * p.ldc + j] = SENTINEL;
    return p;
}

static void free_problem(problem *p) {
    free(p->a);
    free(p->b);
    free(p->c0);
}

/* c = c0, then set's gemm on it */
static float *run_set(const rg_kernel_set *set, const problem *p) {
    float *c = rg_xmalloc(sizeof(float) * (size_t)p->m * p->ldc);
    memcpy(c, p->c0, sizeof(float) * (size_t)p->m * p->ldc);
    set->gemm(p->m, p->n, p->k, p->a, p->a_rs, p->a_cs, p->b, p->b_rs, p->b_cs, c, p->ldc, p->add);
    return c;
}

/* Every element within `times` bounds of the float64 value (or of `other`
 * when given), the padding untouched. */
static void check(const char *what, const problem *p, const float *c, const float *other, double times) {
    double u = ldexp(1.0, -24), g = (p->k + 1) * u / (1 - (p->k + 1) * u);
    for (int i = 0; i < p->m; i++) {
        for (int j = 0; j < p->n; j++) {
            double c0 = p->add ? p->c0[(size_t)i * p->ldc + j] : 0, exact = c0, mag = fabs(c0);
            for (int q = 0; q < p->k; q++) {
                double prod = (double)p->a[(size_t)i * p->a_rs + (size_t)q * p->a_cs] *
                              p->b[(size_t)q * p->b_rs + (size_t)j * p->b_cs];
                exact += prod;
                mag += fabs(prod);
            }
            double want = other ? other[(size_t)i * p->ldc + j] : exact, got = c[(size_t)i * p->ldc + j];
            if (fabs(got - want) > times * g * mag + 1e-30) {
                fail_msg("%s: m %d n %d k %d a_t %d b_t %d add %d: c[%d][%d] = %.9g, want %.9g (bound %.3g)", what,
                         p->m, p->n, p->k, p->a_t, p->b_t, p->add, i, j, got, want, times * g * mag);
            }
        }
        for (size_t j = (size_t)p->n; j < p->ldc; j++)
            if (c[(size_t)i * p->ldc + j] != SENTINEL)
                fail_msg("%s: m %d n %d k %d: wrote past the row, c[%d][%zu]", what, p->m, p->n, p->k, i, j);
    }
}

/* (m, n, k): 1s; under and over a register tile (6, 8, 12 rows; 12, 16, 32
 * columns) and a vector; k over a k block (256) and not a multiple of it;
 * m over a row block (120, 160, 240 rows); k = 0 (c = c0 or 0). */
static const int shapes[][3] = {{1, 1, 1},   {1, 17, 5},   {7, 1, 3},    {5, 7, 0},    {13, 33, 17}, {12, 32, 16},
                                {25, 65, 9}, {37, 50, 300}, {250, 21, 40}, {61, 100, 513}};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static void test_sets_against_reference(void **state) {
    (void)state;
    const rg_kernel_set *scalar = &rg_kernels_scalar;
    for (int s = 0; s < NSHAPES; s++)
        for (int form = 0; form < 8; form++) {
            problem p = make_problem(shapes[s][0], shapes[s][1], shapes[s][2], form & 1, form >> 1 & 1, form >> 2);
            float *ref = run_set(scalar, &p);
            check("scalar", &p, ref, NULL, 1);
            for (int i = 0; i < g_nsets; i++) {
                float *c = run_set(g_sets[i], &p);
                check(g_sets[i]->name, &p, c, NULL, 1);
                check(g_sets[i]->name, &p, c, ref, 2);
                free(c);
            }
            free(ref);
            free_problem(&p);
        }
}

/* rg_gemm cuts c in blocks over the threads: the same bits as the active
 * set's gemm in one call, on 1, 2 or 3 threads, for the gradient's three
 * products (Y = X W^T, dX += dY W, dW += dY^T X) at sizes that make several
 * blocks. */
static void test_driver_thread_count(void **state) {
    (void)state;
    const rg_kernel_set *ks = rg_active_kernels();
    int threads = rg_get_threads();
    const int forms[3][3] = {{0, 1, 0}, {0, 0, 1}, {1, 0, 1}}; /* a_t, b_t, add */
    for (int f = 0; f < 3; f++) {
        problem p = make_problem(150, 230, 270, forms[f][0], forms[f][1], forms[f][2]);
        float *one = run_set(ks, &p), *c = rg_xmalloc(sizeof(float) * (size_t)p.m * p.ldc);
        for (int t = 1; t <= 3; t++) {
            rg_set_threads(t);
            memcpy(c, p.c0, sizeof(float) * (size_t)p.m * p.ldc);
            rg_gemm(p.m, p.n, p.k, p.a, p.a_rs, p.a_cs, p.b, p.b_rs, p.b_cs, c, p.ldc, p.add);
            if (memcmp(c, one, sizeof(float) * (size_t)p.m * p.ldc))
                fail_msg("rg_gemm on %d threads differs from one %s call (form %d)", t, ks->name, f);
        }
        rg_set_threads(threads);
        free(c);
        free(one);
        free_problem(&p);
    }
}

int main(void) {
    g_nsets = rg_kernel_sets(g_sets, 8);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sets_against_reference),
        cmocka_unit_test(test_driver_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
