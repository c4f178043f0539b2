/* The float16 attention window (rg_model_set_kv_type "f16") against the
 * float32 one, on every golden case (tests/data/golden and, when present,
 * $RGEMMA_SHARED/testdata/golden) with float weights: the logits of every
 * position of a sequence three windows long (so the ring wraps), processed
 * in chunks of assorted sizes.
 *
 * Tolerance. Rounding to float16 moves each stored key and value by at most
 * u |x|, u = 2^-11 (11 significant bits, round to nearest even). In one
 * attention layer that moves the output o = sum_j p_j v_j by at most
 * u max|v| through the values; through the keys it moves each score
 * s_j = q.k_j / sqrt(hd) by at most u |q||k_j| / sqrt(hd), and so the softmax
 * weights by a relative 2 u |q||k| / sqrt(hd): a relative change of the
 * layer's output of order u (1 + 2 |q||k| / sqrt(hd)). The rest of the
 * network is the same in both runs and carries that, to first order, to a
 * relative change of the logits of order u per attention layer. So we allow
 *     tol = u * n_attention_layers * max_v |logit_v|
 * per position (measured on the golden cases: at most about a quarter of
 * it; the figure is printed). Greedy tokens must agree wherever the float32
 * run's top-2 margin exceeds 2 tol (each of the two logits may move by tol). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../golden/check_golden.h"
#include "rgemma.h"
#include "util/util.h"

#define U_F16 (1.0 / 2048) /* 2^-11 */

static int is_float_type(const char *t) { return !strcmp(t, "F32") || !strcmp(t, "BF16") || !strcmp(t, "F16"); }

/* All logits of ids [n x V] from an empty state of the model's window type,
 * fed in chunks of 1..40 tokens (seeded), so both prefill and decode read
 * the window. */
static float *run_logits(const rg_model *m, const int32_t *ids, int n, uint64_t seed) {
    int V = rg_model_config(m)->vocab_size;
    float *out = malloc(sizeof(float) * (size_t)n * V);
    rg_state *s = rg_state_new(m);
    for (int done = 0; done < n;) {
        int take = 1 + (int)(rg_splitmix64(&seed) % 40);
        if (take > n - done) take = n - done;
        if (rg_forward(m, s, ids + done, take, out + (size_t)done * V, 1)) fail_msg("%s", rg_last_error());
        done += take;
    }
    rg_state_free(s);
    return out;
}

static int argmax(const float *x, int n, float *margin) {
    int best = 0, second = -1;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[best]) {
            second = best;
            best = i;
        } else if (second < 0 || x[i] > x[second]) {
            second = i;
        }
    }
    *margin = second < 0 ? INFINITY : x[best] - x[second];
    return best;
}

static void test_f16_window_vs_f32(void **state) {
    const char *dir = *state;
    rg_model *m;
    if (rg_model_load(dir, &m)) fail_msg("%s", rg_last_error());
    if (!is_float_type(rg_model_weight_type(m))) {
        printf("  %s: %s weights (not a float case, not run)\n", dir, rg_model_weight_type(m));
        rg_model_free(m);
        return;
    }
    const rg_config *c = rg_model_config(m);
    int V = c->vocab_size, n = 3 * c->window + 5, attention_layers = 0;
    for (int l = 0; l < c->num_layers; l++) attention_layers += rg_config_layer_type(c, l) == RG_LAYER_ATTENTION;
    uint64_t seed = 99;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int t = 0; t < n; t++) ids[t] = (int32_t)(rg_splitmix64(&seed) % (uint64_t)V);
    ids[0] = c->bos_id;

    assert_string_equal(rg_model_kv_type(m), "f32");
    float *f32 = run_logits(m, ids, n, 7);
    assert_int_equal(rg_model_set_kv_type(m, "f16"), 0);
    assert_string_equal(rg_model_kv_type(m), "f16");
    assert_true(rg_model_state_bytes(m) < rg_state_bytes(c));
    float *f16 = run_logits(m, ids, n, 7);

    double worst = 0, worst_ratio = 0; /* max |diff|, and max |diff| / tol */
    int compared = 0, agreed = 0;
    for (int t = 0; t < n; t++) {
        const float *a = f32 + (size_t)t * V, *b = f16 + (size_t)t * V;
        double top = 0, diff = 0;
        for (int v = 0; v < V; v++) {
            top = fmax(top, fabs(a[v]));
            double d = fabs((double)a[v] - b[v]);
            if (!(d <= diff)) diff = d; /* NaN counts as worst */
        }
        double tol = U_F16 * attention_layers * top;
        if (!(diff <= tol)) fail_msg("%s position %d: max |logit diff| %.3g > tolerance %.3g", dir, t, diff, tol);
        worst = fmax(worst, diff);
        worst_ratio = fmax(worst_ratio, diff / tol);
        float margin, unused;
        int ta = argmax(a, V, &margin), tb = argmax(b, V, &unused);
        if (margin > 2 * tol) {
            compared++;
            agreed += ta == tb;
            if (ta != tb) fail_msg("%s position %d: greedy token %d (f32) vs %d (f16), margin %.3g", dir, t, ta, tb,
                                   (double)margin);
        }
    }
    printf("  %s: %d positions, max |logit diff| %.3g (%.3f of the tolerance); greedy tokens equal at %d of the %d "
           "positions with a margin above 2 tol\n",
           dir, n, worst, worst_ratio, agreed, compared);
    free(f32);
    free(f16);
    free(ids);
    rg_model_free(m);
}

/* The setting itself: two names only. */
static void test_kv_type_names(void **state) {
    char **cases;
    int n = rg_find_golden_cases("tests/data/golden", &cases);
    assert_true(n >= 1);
    rg_model *m;
    if (rg_model_load(cases[0], &m)) fail_msg("%s", rg_last_error());
    const char *bad[] = {"f64", "bf16", "F16", "", NULL};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(rg_model_set_kv_type(m, bad[i]), -1);
        assert_non_null(strstr(rg_last_error(), "expected f32 or f16"));
    }
    assert_string_equal(rg_model_kv_type(m), "f32");
    assert_int_equal(rg_model_state_bytes(m), rg_state_bytes(rg_model_config(m)));
    assert_int_equal(rg_model_set_kv_type(m, "f16"), 0);
    assert_int_equal(rg_model_state_file_bytes(m) - rg_model_state_bytes(m),
                     rg_state_file_bytes(rg_model_config(m)) - rg_state_bytes(rg_model_config(m)));
    rg_model_free(m);
    for (int i = 0; i < n; i++) free(cases[i]);
    free(cases);
}

int main(void) {
    char **cases;
    int k = rg_find_all_golden_cases(&cases), n = 0;
    struct CMUnitTest *tests = malloc(sizeof *tests * (size_t)(k + 1));
    tests[n++] = (struct CMUnitTest){"kv type names", test_kv_type_names, NULL, NULL, NULL};
    for (int i = 0; i < k; i++)
        tests[n++] = (struct CMUnitTest){cases[i], test_f16_window_vs_f32, NULL, NULL, cases[i]};
    int rc = _cmocka_run_group_tests("kv16", tests, (size_t)n, NULL, NULL);
    for (int i = 0; i < k; i++) free(cases[i]);
    free(cases);
    free(tests);
    return rc;
}
