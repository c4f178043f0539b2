/* Sampler: llama.cpp defaults and semantics, reproducibility, and the
 * distribution it draws from (chi-square against softmax(logits / T)). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include "sampling/sampling.h"
#include "util/util.h"

static rg_sampling_params plain(float temp, uint64_t seed) {
    rg_sampling_params p;
    rg_sampling_params_default(&p);
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

static void random_logits(float *l, int n, uint64_t seed) {
    srand((unsigned)seed);
    for (int i = 0; i < n; i++) l[i] = (float)rand() / RAND_MAX * 10.0f - 5.0f;
}

static void test_defaults(void **state) {
    (void)state;
    rg_sampling_params p;
    rg_sampling_params_default(&p);
    /* llama.cpp common_params_sampling */
    assert_true(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f);
    assert_true(p.repeat_penalty == 1.0f && p.repeat_last_n == 64);
    assert_true(p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f);
    assert_true(p.seed == RG_SEED_RANDOM);
    rg_generate_params g;
    rg_generate_params_default(&g);
    assert_int_equal(g.max_tokens, -1);
    assert_true(g.sampling.top_k == 40);
    /* a random seed is drawn, reported, and not the sentinel */
    rg_sampler *a = rg_sampler_new(&p, 10), *b = rg_sampler_new(&p, 10);
    assert_true(rg_sampler_seed(a) != RG_SEED_RANDOM);
    assert_true(rg_sampler_seed(a) != rg_sampler_seed(b)); /* 1 in 4e9 to collide */
    rg_sampler_free(a);
    rg_sampler_free(b);
}

static void test_invalid(void **state) {
    (void)state;
    rg_sampling_params p = plain(1, 1);
    assert_null(rg_sampler_new(&p, 0));
    p.temperature = -1;
    assert_null(rg_sampler_new(&p, 10));
    assert_non_null(strstr(rg_last_error(), "temperature"));
    p = plain(1, 1);
    p.temperature = NAN;
    assert_null(rg_sampler_new(&p, 10));
    p = plain(1, 1);
    p.min_p = 2;
    assert_null(rg_sampler_new(&p, 10));
    p = plain(1, 1);
    p.repeat_penalty = 0;
    assert_null(rg_sampler_new(&p, 10));
    p = plain(1, 1);
    p.repeat_last_n = -2;
    assert_null(rg_sampler_new(&p, 10));
}

static void test_greedy(void **state) {
    (void)state;
    float l[6] = {1, 5, 2, 5, -1, 0};
    rg_sampling_params p = plain(0, 1);
    rg_sampler *s = rg_sampler_new(&p, 6);
    assert_int_equal(rg_sampler_sample(s, l), 1); /* tie: the lower id */
    rg_sampler_free(s);
}

static void test_same_seed_same_tokens(void **state) {
    (void)state;
    enum { V = 1000, N = 200 };
    float base[V], l[V];
    random_logits(base, V, 3);
    rg_sampling_params p;
    rg_sampling_params_default(&p);
    p.seed = 1234;
    int32_t a[N], b[N], c[N];
    rg_sampler *s = rg_sampler_new(&p, V);
    for (int i = 0; i < N; i++) memcpy(l, base, sizeof l), a[i] = rg_sampler_sample(s, l);
    rg_sampler_reset(s); /* restarts the stream */
    for (int i = 0; i < N; i++) memcpy(l, base, sizeof l), b[i] = rg_sampler_sample(s, l);
    rg_sampler_free(s);
    p.seed = 1235;
    s = rg_sampler_new(&p, V);
    for (int i = 0; i < N; i++) memcpy(l, base, sizeof l), c[i] = rg_sampler_sample(s, l);
    rg_sampler_free(s);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
}

static void test_top_k_1_is_greedy(void **state) {
    (void)state;
    enum { V = 3000 };
    float l[V];
    for (int trial = 0; trial < 50; trial++) {
        random_logits(l, V, 100 + trial);
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best]) best = i;
        rg_sampling_params p = plain(1.5f, trial);
        p.top_k = 1;
        rg_sampler *s = rg_sampler_new(&p, V);
        assert_int_equal(rg_sampler_sample(s, l), best);
        rg_sampler_free(s);
    }
}

static int cmp_float_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void test_top_k_selects_the_k_best(void **state) {
    (void)state;
    enum { V = 5000, K = 37 };
    float l[V], sorted[V];
    random_logits(l, V, 9);
    for (int i = 0; i < V; i += 7) l[i] = 1.25f; /* many ties */
    memcpy(sorted, l, sizeof l);
    qsort(sorted, V, sizeof *sorted, cmp_float_desc);
    rg_sampling_params p = plain(1, 1);
    p.top_k = K;
    rg_sampler *s = rg_sampler_new(&p, V);
    rg_candidate *c;
    int n = rg_sampler_candidates(s, l, &c);
    assert_int_equal(n, K);
    for (int i = 0; i < K; i++) {
        assert_true(c[i].logit == sorted[i]);
        assert_true(l[c[i].id] == c[i].logit);
        if (i && c[i].logit == c[i - 1].logit) assert_true(c[i].id > c[i - 1].id);
    }
    rg_sampler_free(s);
}


static int cmp_cand_desc(const void *a, const void *b) {
    const rg_candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Without top-k the sampler selects a growing top set instead of sorting the
 * whole vocabulary: it must keep exactly what a full sort keeps. */
static void test_filters_without_top_k(void **state) {
    (void)state;
    enum { V = 20000 };
    float *l = malloc(sizeof(float) * V);
    rg_candidate *ref = malloc(sizeof *ref * V);
    for (int trial = 0; trial < 6; trial++) {
        random_logits(l, V, 50 + trial);
        if (trial % 2) for (int i = 0; i < V; i++) l[i] *= 0.2f; /* flat: top-p needs thousands */
        for (int i = 0; i < V; i++) ref[i] = (rg_candidate){i, l[i]};
        qsort(ref, V, sizeof *ref, cmp_cand_desc);
        double z = 0;
        for (int i = 0; i < V; i++) z += exp((double)ref[i].logit - ref[0].logit);
        const float tps[3] = {0.5f, 0.95f, 1.0f}, mps[3] = {0.0f, 0.01f, 0.3f};
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                if (tps[a] == 1.0f && mps[b] == 0.0f) continue;
                int want = V;
                double cum = 0;
                for (int i = 0; i < V && tps[a] < 1.0f; i++) {
                    cum += exp((double)ref[i].logit - ref[0].logit) / z;
                    if (cum >= tps[a]) {
                        want = i + 1;
                        break;
                    }
                }
                int keep = 1;
                while (keep < want && mps[b] > 0 && ref[keep].logit >= ref[0].logit + logf(mps[b])) keep++;
                if (mps[b] > 0) want = keep;
                rg_sampling_params p = plain(1, 1);
                p.top_p = tps[a];
                p.min_p = mps[b];
                rg_sampler *s = rg_sampler_new(&p, V);
                rg_candidate *c;
                int n = rg_sampler_candidates(s, l, &c);
                assert_int_equal(n, want);
                for (int i = 0; i < n; i++) assert_int_equal(c[i].id, ref[i].id);
                rg_sampler_free(s);
            }
    }
    free(l);
    free(ref);
}

/* probabilities 0.5, 0.2, 0.15, 0.1, 0.05 (as logits = log p) */
static void five(float *l) {
    const double pr[5] = {0.1, 0.5, 0.05, 0.2, 0.15};
    for (int i = 0; i < 5; i++) l[i] = (float)log(pr[i]);
}

static void test_top_p_smallest_set(void **state) {
    (void)state;
    float l[5];
    five(l);
    struct { float p; int keep; } cases[] = {{0.4f, 1}, {0.5f, 1}, {0.6f, 2}, {0.69f, 2}, {0.8f, 3}, {0.9f, 4}, {0.99f, 5}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        rg_sampling_params p = plain(1, 1);
        p.top_p = cases[k].p;
        rg_sampler *s = rg_sampler_new(&p, 5);
        rg_candidate *c;
        int n = rg_sampler_candidates(s, l, &c);
        assert_int_equal(n, cases[k].keep);
        /* best first: ids 1, 3, 4, 0, 2 */
        const int order[5] = {1, 3, 4, 0, 2};
        for (int i = 0; i < n; i++) assert_int_equal(c[i].id, order[i]);
        /* the draw never leaves the set */
        for (int d = 0; d < 300; d++) {
            float lc[5];
            memcpy(lc, l, sizeof l);
            int32_t t = rg_sampler_sample(s, lc);
            int in = 0;
            for (int i = 0; i < n; i++) in |= order[i] == t;
            assert_true(in);
        }
        rg_sampler_free(s);
    }
}

static void test_min_p(void **state) {
    (void)state;
    float l[5];
    five(l);
    /* keep p >= min_p * 0.5 */
    struct { float m; int keep; } cases[] = {{0.05f, 5}, {0.11f, 4}, {0.25f, 3}, {0.35f, 2}, {0.5f, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        rg_sampling_params p = plain(1, 1);
        p.min_p = cases[k].m;
        rg_sampler *s = rg_sampler_new(&p, 5);
        rg_candidate *c;
        assert_int_equal(rg_sampler_candidates(s, l, &c), cases[k].keep);
        rg_sampler_free(s);
    }
}

static void test_penalties(void **state) {
    (void)state;
    enum { V = 8 };
    float l[V] = {2, -2, 1, -1, 4, 0.5f, 3, -3};
    rg_sampling_params p = plain(0, 1);
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 0.25f;
    p.presence_penalty = 0.5f;
    p.repeat_last_n = 4;
    rg_sampler *s = rg_sampler_new(&p, V);
    const int32_t hist[] = {4, 0, 1, 1, 3, 1}; /* the window keeps 1, 1, 3, 1 */
    for (size_t i = 0; i < sizeof hist / sizeof hist[0]; i++) rg_sampler_accept(s, hist[i]);
    float got[V];
    memcpy(got, l, sizeof l);
    rg_sampler_apply_penalties(s, got);
    float want[V];
    memcpy(want, l, sizeof l);
    want[1] = -2 * 2.0f - 3 * 0.25f - 0.5f; /* negative: multiplied; seen 3 times */
    want[3] = -1 * 2.0f - 1 * 0.25f - 0.5f;
    for (int i = 0; i < V; i++) assert_float_equal(got[i], want[i], 1e-6);
    rg_sampler_free(s);

    /* positive logits are divided; -1 = the whole history; 0 = off */
    p.repeat_last_n = -1;
    p.frequency_penalty = p.presence_penalty = 0;
    s = rg_sampler_new(&p, V);
    for (size_t i = 0; i < sizeof hist / sizeof hist[0]; i++) rg_sampler_accept(s, hist[i]);
    memcpy(got, l, sizeof l);
    rg_sampler_apply_penalties(s, got);
    assert_float_equal(got[4], 2.0f, 1e-6);
    assert_float_equal(got[0], 1.0f, 1e-6);
    assert_float_equal(got[6], 3.0f, 1e-6);
    /* greedy sees the penalised logits: 4 (4 -> 2) loses to 6 (3) */
    memcpy(got, l, sizeof l);
    assert_int_equal(rg_sampler_sample(s, got), 6);
    rg_sampler_free(s);
    p.repeat_last_n = 0;
    s = rg_sampler_new(&p, V);
    rg_sampler_accept(s, 4);
    memcpy(got, l, sizeof l);
    rg_sampler_apply_penalties(s, got);
    assert_memory_equal(got, l, sizeof l);
    rg_sampler_free(s);
}

/* Chi-square goodness of fit of n draws against softmax(logits / T), with
 * bins of expected count >= 5 (the small ones pooled). Fixed seeds: the
 * outcome is deterministic, and the limit is the 0.999 quantile. */
/* Draws at temperature T, judged against softmax(logits / judge_T);
 * returns whether the fit passes. */
static int fits(const float *logits, int V, float T, float judge_T, int draws, uint64_t seed) {
    double *prob = malloc(sizeof(double) * V), z = 0, mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = fmax(mx, logits[i]);
    for (int i = 0; i < V; i++) z += prob[i] = exp((logits[i] - mx) / judge_T);
    int *count = calloc((size_t)V, sizeof(int));
    rg_sampling_params p = plain(T, seed);
    rg_sampler *s = rg_sampler_new(&p, V);
    float *l = malloc(sizeof(float) * V);
    for (int d = 0; d < draws; d++) {
        memcpy(l, logits, sizeof(float) * V);
        count[rg_sampler_sample(s, l)]++;
    }
    double chi = 0, pooled_e = 0, pooled_o = 0;
    int bins = 0;
    for (int i = 0; i < V; i++) {
        double e = prob[i] / z * draws;
        if (e >= 5) {
            chi += (count[i] - e) * (count[i] - e) / e;
            bins++;
        } else {
            pooled_e += e;
            pooled_o += count[i];
        }
    }
    if (pooled_e > 0) {
        chi += (pooled_o - pooled_e) * (pooled_o - pooled_e) / fmax(pooled_e, 1e-9);
        bins++;
    }
    /* 0.999 quantile of chi-square with k = bins - 1 dof (Wilson-Hilferty) */
    double k = bins - 1, zq = 3.0902;
    double limit = k * pow(1 - 2 / (9 * k) + zq * sqrt(2 / (9 * k)), 3);
    printf("  drawn at T=%.2f, judged at T=%.2f: chi-square %.1f over %d bins (limit %.1f)\n", T, judge_T, chi,
           bins, limit);
    assert_true(bins >= 5);
    free(prob), free(count), free(l);
    rg_sampler_free(s);
    return chi < limit;
}

static void check_distribution(const float *logits, int V, float T, int draws, uint64_t seed) {
    assert_true(fits(logits, V, T, T, draws, seed));
}

static void test_temperature_distribution(void **state) {
    (void)state;
    float l[12];
    for (int i = 0; i < 12; i++) l[i] = (float)(0.4 * i - 0.03 * i * i);
    check_distribution(l, 12, 1.0f, 40000, 5);
    check_distribution(l, 12, 0.5f, 40000, 6);
    check_distribution(l, 12, 2.0f, 40000, 7);
}

/* The logits of a real (tiny, golden) model. */
static void test_temperature_distribution_on_model(void **state) {
    (void)state;
    rg_model *m;
    if (rg_model_load("tests/data/golden/dev_4layer", &m)) fail_msg("%s", rg_last_error());
    int V = rg_model_config(m)->vocab_size;
    rg_state *st = rg_state_new(m);
    int32_t toks[5] = {2, 104, 181, 188, 384};
    float *l = malloc(sizeof(float) * V);
    assert_int_equal(rg_forward(m, st, toks, 5, l, 0), 0);
    check_distribution(l, V, 1.0f, 40000, 11);
    check_distribution(l, V, 0.7f, 40000, 12);
    /* the test has power: draws at T = 1 do not pass for T = 1.15 */
    assert_false(fits(l, V, 1.0f, 1.15f, 40000, 11));
    free(l);
    rg_state_free(st);
    rg_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_same_seed_same_tokens),
        cmocka_unit_test(test_top_k_1_is_greedy),
        cmocka_unit_test(test_top_k_selects_the_k_best),
        cmocka_unit_test(test_top_p_smallest_set),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_filters_without_top_k),
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_temperature_distribution),
        cmocka_unit_test(test_temperature_distribution_on_model),
    };
    return cmocka_run_group_tests_name("sampling", tests, NULL, NULL);
}
