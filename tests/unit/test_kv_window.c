/* The float16 and Q8_0 attention windows (rg_model_set_kv_type "f16",
 * "q8_0") against the float32 one: the logits of every position of a
 * sequence three windows long (so the ring wraps), processed in chunks of
 * assorted sizes. Float16 on every golden case (tests/data/golden and, when
 * present, $RGEMMA_SHARED/testdata/golden) with float weights; Q8_0, which
 * needs a head dimension that is a multiple of 32 (the golden cases have
 * 16), on synthetic models of head dimension 32 and 64, on every kernel set.
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
 * run's top-2 margin exceeds 2 tol (each of the two logits may move by tol).
 *
 * Q8_0 stores each block of 32 as d q, d = max|x| / 127, q integer: each
 * element moves by at most d / 2 = u max|x|, u = 1/254, max over its block,
 * and where the kernels multiply int8 the query is rounded the same way for
 * the scores. The argument above with that u for the keys, the values and
 * the query, and a factor 2 because the bound is the block's largest
 * magnitude rather than the element's own, gives
 * tol = 2 u * n_attention_layers * max_v |logit_v| (measured: printed). */
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
#define U_Q8 (1.0 / 254)   /* half a step of 127 over the block's largest magnitude */

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

/* The logits with windows of kv_type against float32 windows, within
 * tol = u_scale * n_attention_layers * max |logit| per position; greedy
 * tokens equal where the margin exceeds 2 tol. what: the case's name. */
static void compare_window_types(rg_model *m, const char *what, const char *kv_type, double u_scale) {
    const rg_config *c = rg_model_config(m);
    int V = c->vocab_size, n = 3 * c->window + 5, attention_layers = 0;
    for (int l = 0; l < c->num_layers; l++) attention_layers += rg_config_layer_type(c, l) == RG_LAYER_ATTENTION;
    uint64_t seed = 99;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int t = 0; t < n; t++) ids[t] = (int32_t)(rg_splitmix64(&seed) % (uint64_t)V);
    ids[0] = c->bos_id;

    assert_int_equal(rg_model_set_kv_type(m, "f32"), 0);
    float *f32 = run_logits(m, ids, n, 7);
    assert_int_equal(rg_model_set_kv_type(m, kv_type), 0);
    assert_string_equal(rg_model_kv_type(m), kv_type);
    assert_true(rg_model_state_bytes(m) < rg_state_bytes(c));
    float *other = run_logits(m, ids, n, 7);

    double worst = 0, worst_ratio = 0; /* max |diff|, and max |diff| / tol */
    int compared = 0, agreed = 0;
    for (int t = 0; t < n; t++) {
        const float *a = f32 + (size_t)t * V, *b = other + (size_t)t * V;
        double top = 0, diff = 0;
        for (int v = 0; v < V; v++) {
            top = fmax(top, fabs(a[v]));
            double d = fabs((double)a[v] - b[v]);
            if (!(d <= diff)) diff = d; /* NaN counts as worst */
        }
        double tol = u_scale * attention_layers * top;
        if (!(diff <= tol))
            fail_msg("%s, %s window, position %d: max |logit diff| %.3g > tolerance %.3g", what, kv_type, t, diff, tol);
        worst = fmax(worst, diff);
        worst_ratio = fmax(worst_ratio, diff / tol);
        float margin, unused;
        int ta = argmax(a, V, &margin), tb = argmax(b, V, &unused);
        if (margin > 2 * tol) {
            compared++;
            agreed += ta == tb;
            if (ta != tb)
                fail_msg("%s position %d: greedy token %d (f32) vs %d (%s), margin %.3g", what, t, ta, tb, kv_type,
                         (double)margin);
        }
    }
    printf("  %s, %s window: %d positions, max |logit diff| %.3g (%.3f of the tolerance); greedy tokens equal at %d "
           "of the %d positions with a margin above 2 tol\n",
           what, kv_type, n, worst, worst_ratio, agreed, compared);
    free(f32);
    free(other);
    free(ids);
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
    assert_string_equal(rg_model_kv_type(m), "f32");
    compare_window_types(m, dir, "f16", U_F16);
    rg_model_free(m);
}

static char tmp_dir[] = "/tmp/rgemma-test-kv-window-XXXXXX";

/* A synthetic float32 model of head dimension hd (rg_write_test_synth). */
static char *write_model(int hd) {
    char name[32];
    snprintf(name, sizeof name, "hd%d", hd);
    char *dir = rg_path_join(tmp_dir, name);
    if (rg_write_test_synth(dir, hd, 11 + (uint64_t)hd)) fail_msg("%s", rg_last_error());
    return dir;
}

static void test_q8_window_vs_f32(void **state) {
    (void)state;
    const char *paths[] = {"scalar", "avx2", "avx512", "amx", "neon", "neon-dotprod"}, *before = rg_kernel_path();
    const int dims[] = {32, 64};
    for (int d = 0; d < 2; d++) {
        char *dir = write_model(dims[d]);
        rg_model *m;
        if (rg_model_load(dir, &m)) fail_msg("%s", rg_last_error());
        for (int k = 0; k < (int)(sizeof paths / sizeof paths[0]); k++) {
            if (rg_set_kernel_path(paths[k])) {
                printf("  kernel set %s not available on this CPU or in this build (not run)\n", paths[k]);
                continue;
            }
            char what[64];
            snprintf(what, sizeof what, "head dim %d [%s]", dims[d], paths[k]);
            compare_window_types(m, what, "q8_0", 2 * U_Q8);
        }
        rg_set_kernel_path(before);
        rg_model_free(m);
        free(dir);
    }
}

/* The setting itself: three names only, and q8_0 only for a head dimension
 * that is a multiple of 32. */
static void test_kv_type_names(void **state) {
    char **cases;
    int n = rg_find_golden_cases("tests/data/golden", &cases);
    assert_true(n >= 1);
    rg_model *m;
    if (rg_model_load(cases[0], &m)) fail_msg("%s", rg_last_error());
    const char *bad[] = {"f64", "bf16", "F16", "q4_0", "", NULL};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(rg_model_set_kv_type(m, bad[i]), -1);
        assert_non_null(strstr(rg_last_error(), "expected f32, f16 or q8_0"));
    }
    if (rg_model_config(m)->head_dim % 32) {
        assert_int_equal(rg_model_set_kv_type(m, "q8_0"), -1);
        assert_non_null(strstr(rg_last_error(), "multiple of 32"));
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
    if (!mkdtemp(tmp_dir)) return 1;
    int k = rg_find_all_golden_cases(&cases), n = 0;
    struct CMUnitTest *tests = malloc(sizeof *tests * (size_t)(k + 2));
    tests[n++] = (struct CMUnitTest){"kv type names", test_kv_type_names, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"q8_0 window vs f32", test_q8_window_vs_f32, NULL, NULL, NULL};
    for (int i = 0; i < k; i++)
        tests[n++] = (struct CMUnitTest){cases[i], test_f16_window_vs_f32, NULL, NULL, cases[i]};
    int rc = _cmocka_run_group_tests("kv_window", tests, (size_t)n, NULL, NULL);
    for (int i = 0; i < k; i++) free(cases[i]);
    free(cases);
    free(tests);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd)) return 1;
    return rc;
}
