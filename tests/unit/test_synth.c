/* rgemma synth: the folder it writes loads, runs, has the released tensor
 * list, the documented statistics, and is reproducible from its seed. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include "model/model.h"
#include "model/synth.h"
#include "util/util.h"

static char tmp_root[] = "/tmp/rgemma-test-synth-XXXXXX";

static int setup(void **state) {
    (void)state;
    return mkdtemp(tmp_root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

/* A small config with every feature: lru_width != hidden, a pattern
 * starting with attention, a short window. */
static rg_config small_config(void) {
    rg_config c;
    rg_synth_preset("tiny", &c);
    c.vocab_size = 300;
    c.hidden_size = 48;
    c.lru_width = 64;
    c.num_heads = 4;
    c.head_dim = 16;
    c.mlp_width = 96;
    c.num_layers = 4;
    c.window = 5;
    c.pattern_len = 2;
    c.pattern[0] = RG_LAYER_ATTENTION;
    c.pattern[1] = RG_LAYER_RECURRENT;
    c.embed_scale = 6.9375f;
    return c;
}

static char *dir_for(const char *name) { return rg_path_join(tmp_root, name); }

static uint64_t hash_file(const char *path) {
    char *data;
    size_t len;
    assert_int_equal(rg_read_file(path, 1u << 30, &data, &len), 0);
    uint64_t h = rg_fnv1a(data, len, 0);
    free(data);
    return h;
}

static void test_presets(void **state) {
    (void)state;
    /* parameter counts and tensor counts of the released checkpoints */
    struct { const char *name; uint64_t params; int tensors; } want[] = {
        {"2b", 2682862080ull, 484}, {"9b", 8579977216ull, 704}};
    for (int i = 0; i < 2; i++) {
        rg_config c;
        assert_int_equal(rg_synth_preset(want[i].name, &c), 0);
        rg_st_spec *specs;
        int n = rg_synth_specs(&c, RG_DT_BF16, &specs);
        uint64_t params = 0;
        for (int k = 0; k < n; k++) params += (uint64_t)rg_st_spec_elements(&specs[k]);
        free(specs);
        assert_int_equal(n, want[i].tensors);
        assert_true(params == want[i].params);
    }
    rg_config c;
    assert_int_equal(rg_synth_preset("tiny", &c), 0);
    assert_int_equal(c.vocab_size, 256000);
    assert_int_equal(rg_synth_preset("7b", &c), -1);
    assert_non_null(strstr(rg_last_error(), "7b"));
}

static void test_config_roundtrip(void **state) {
    (void)state;
    rg_config c = small_config(), back;
    char *path = dir_for("config.json");
    assert_int_equal(rg_config_write_json(&c, "float32", path), 0);
    assert_int_equal(rg_config_load(path, &back), 0);
    assert_true(rg_config_fingerprint(&c) == rg_config_fingerprint(&back));
    assert_int_equal(back.vocab_size, c.vocab_size);
    assert_int_equal(back.lru_width, 64);
    assert_int_equal(back.mlp_width, 96);
    assert_int_equal(back.pattern[0], RG_LAYER_ATTENTION);
    assert_true(back.embed_scale == c.embed_scale);
    assert_true(back.rms_norm_eps == c.rms_norm_eps && back.logits_soft_cap == c.logits_soft_cap);
    free(path);
}

static void test_load_and_run(void **state) {
    (void)state;
    rg_config c = small_config();
    rg_dtype dts[2] = {RG_DT_F32, RG_DT_BF16};
    for (int d = 0; d < 2; d++) {
        char *dir = dir_for(d ? "small-bf16" : "small-f32");
        /* small shards: forces several files and an index */
        rg_synth_options o = {.dtype = dts[d], .seed = 7, .max_shard_bytes = 40000};
        int shards = 0;
        assert_int_equal(rg_synth_write(&c, dir, &o, &shards), 0);
        assert_true(shards > 2);
        char *index = rg_path_join(dir, "model.safetensors.index.json");
        assert_true(rg_file_exists(index));
        free(index);
        rg_model *m;
        if (rg_model_load(dir, &m)) fail_msg("%s", rg_last_error());
        rg_state *s = rg_state_new(m);
        int32_t toks[12] = {2, 5, 17, 299, 3, 3, 3, 40, 41, 42, 0, 1};
        float *logits = malloc(sizeof(float) * 12 * c.vocab_size);
        assert_int_equal(rg_forward(m, s, toks, 12, logits, 1), 0);
        /* finite, spread out (logit std of a few units), below the soft cap */
        double sum = 0, sq = 0;
        for (int i = 0; i < 12 * c.vocab_size; i++) {
            assert_true(isfinite(logits[i]) && fabsf(logits[i]) < 30.0f);
            sum += logits[i];
            sq += (double)logits[i] * logits[i];
        }
        double n = 12.0 * c.vocab_size, sd = sqrt(sq / n - (sum / n) * (sum / n));
        assert_true(sd > 0.5 && sd < 15);
        /* rows differ: the model does not ignore its input */
        int diff_rows = 0;
        for (int t = 1; t < 12; t++)
            diff_rows += memcmp(logits, logits + (size_t)t * c.vocab_size, sizeof(float) * c.vocab_size) != 0;
        assert_int_equal(diff_rows, 11);
        free(logits);
        rg_state_free(s);
        rg_model_free(m);
        free(dir);
    }
}

static double mean_of(const rg_st_entry *e, double *sd, float *lo, float *hi) {
    int64_t n = e->t.nbytes / 4;
    const float *v = e->t.data;
    double s = 0, q = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        s += v[i];
        q += (double)v[i] * v[i];
        if (v[i] < *lo) *lo = v[i];
        if (v[i] > *hi) *hi = v[i];
    }
    *sd = sqrt(q / n - (s / n) * (s / n));
    return s / n;
}

static void test_statistics(void **state) {
    (void)state;
    rg_config c = small_config();
    c.hidden_size = c.lru_width = 256; /* enough values per vector for the moments */
    c.head_dim = 64;
    char *dir = dir_for("stats");
    rg_synth_options o = {.dtype = RG_DT_F32, .seed = 3};
    assert_int_equal(rg_synth_write(&c, dir, &o, NULL), 0);
    rg_safetensors st;
    assert_int_equal(rg_st_open(&st, dir), 0);
    double sd;
    float lo, hi;
    const rg_st_entry *e = rg_st_find(&st, "model.embed_tokens.weight");
    assert_non_null(e);
    assert_true(fabs(mean_of(e, &sd, &lo, &hi)) < 0.01 && fabs(sd - 4.0 / 16.0) < 0.01);
    e = rg_st_find(&st, "model.final_norm.weight");
    assert_true(fabs(mean_of(e, &sd, &lo, &hi) + 1.0) < 0.25 && fabs(sd - 1.0) < 0.2);
    e = rg_st_find(&st, "model.layers.1.mlp_block.up_proj.weight");
    assert_true(fabs(mean_of(e, &sd, &lo, &hi)) < 0.01 && fabs(sd - 1.0 / 16.0) < 0.003);
    e = rg_st_find(&st, "model.layers.1.mlp_block.gate_proj.bias");
    mean_of(e, &sd, &lo, &hi);
    assert_true(fabs(sd - 0.2) < 0.05 && lo < 0 && hi > 0);
    /* Λ = ln(1/r - 1) with r in [0.7, 0.999]: Λ in [ln(1/0.999-1), ln(1/0.7-1)] */
    e = rg_st_find(&st, "model.layers.1.temporal_block.rg_lru.recurrent_param");
    mean_of(e, &sd, &lo, &hi);
    assert_true(lo >= logf(1.0f / 0.999f - 1.0f) - 1e-3f && hi <= logf(1.0f / 0.7f - 1.0f) + 1e-3f);
    assert_true(hi - lo > 3.0f);
    rg_st_close(&st);
    free(dir);
}

static void test_reproducible(void **state) {
    (void)state;
    rg_config c = small_config();
    char *a = dir_for("seed-a"), *b = dir_for("seed-b"), *d = dir_for("seed-d");
    rg_synth_options o = {.dtype = RG_DT_BF16, .seed = 11};
    int saved = rg_get_threads();
    rg_set_threads(1);
    assert_int_equal(rg_synth_write(&c, a, &o, NULL), 0);
    rg_set_threads(saved);
    assert_int_equal(rg_synth_write(&c, b, &o, NULL), 0);
    o.seed = 12;
    assert_int_equal(rg_synth_write(&c, d, &o, NULL), 0);
    char *fa = rg_path_join(a, "model.safetensors"), *fb = rg_path_join(b, "model.safetensors"),
         *fd = rg_path_join(d, "model.safetensors");
    assert_true(hash_file(fa) == hash_file(fb));
    assert_true(hash_file(fa) != hash_file(fd));
    free(fa), free(fb), free(fd), free(a), free(b), free(d);
}

static void test_tiny_preset_runs(void **state) {
    (void)state;
    rg_config c;
    assert_int_equal(rg_synth_preset("tiny", &c), 0);
    char *dir = dir_for("tiny");
    rg_synth_options o = {.dtype = RG_DT_BF16, .seed = 1};
    assert_int_equal(rg_synth_write(&c, dir, &o, NULL), 0);
    rg_model *m;
    if (rg_model_load(dir, &m)) fail_msg("%s", rg_last_error());
    rg_state *s = rg_state_new(m);
    int32_t toks[4] = {2, 651, 6037, 576};
    float *logits = malloc(sizeof(float) * c.vocab_size);
    assert_int_equal(rg_forward(m, s, toks, 4, logits, 0), 0);
    for (int i = 0; i < c.vocab_size; i++) assert_true(isfinite(logits[i]));
    free(logits);
    rg_state_free(s);
    rg_model_free(m);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),     cmocka_unit_test(test_config_roundtrip),
        cmocka_unit_test(test_load_and_run), cmocka_unit_test(test_statistics),
        cmocka_unit_test(test_reproducible), cmocka_unit_test(test_tiny_preset_runs),
    };
    return cmocka_run_group_tests_name("synth", tests, setup, teardown);
}
