/* The state object: fixed size, copies that continue exactly like the
 * original (snapshots for eval and the server's conversation cache). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "model/model.h"
#include "model/state.h"
#include "util/util.h"

#define CASE "tests/data/golden/dev_4layer"

static void run(const rg_model *m, rg_state *s, const int32_t *tok, int n, float *logits) {
    assert_int_equal(rg_forward(m, s, tok, n, logits, 1), 0);
}

/* A copy taken at position p into a state that held another, longer
 * sequence (its ring buffers full of other keys) continues bit for bit like
 * the original, for p below, at and above the window. */
static void test_copy_continues_exactly(void **state) {
    rg_model *m;
    assert_int_equal(rg_model_load(CASE, &m), 0);
    int V = m->cfg.vocab_size, W = m->cfg.window;
    int32_t tok[64], other[64];
    for (int i = 0; i < 64; i++) {
        tok[i] = (int32_t)((i * 37 + 11) % V);
        other[i] = (int32_t)((i * 101 + 5) % V);
    }
    float *a = rg_xmalloc(sizeof(float) * 64 * V), *b = rg_xmalloc(sizeof(float) * 64 * V);
    int points[] = {1, 5, W - 1, W, W + 3, 2 * W + 1};
    for (size_t k = 0; k < sizeof points / sizeof points[0]; k++) {
        int p = points[k];
        rg_state *orig = rg_state_new(m), *copy = rg_state_new(m);
        run(m, copy, other, 3 * W, a); /* dirty the destination */
        run(m, orig, tok, p, a);
        assert_int_equal(rg_state_copy(copy, orig), 0);
        assert_int_equal(rg_state_pos(copy), p);
        run(m, orig, tok + p, 30, a);
        run(m, copy, tok + p, 30, b);
        assert_memory_equal(a, b, sizeof(float) * 30 * V);
        rg_state_free(orig);
        rg_state_free(copy);
    }
    free(a);
    free(b);
    rg_model_free(m);
}

static void test_size_is_fixed_by_config(void **state) {
    rg_model *m;
    assert_int_equal(rg_model_load(CASE, &m), 0);
    const rg_config *c = &m->cfg;
    /* 3 recurrent layers: conv (K-1) x R + h R; 1 attention layer: 2 W hd */
    size_t want = (3 * (size_t)c->conv_width * c->lru_width + 2 * (size_t)c->window * c->head_dim) * 4;
    assert_int_equal(rg_state_bytes(c), want);
    rg_state *s = rg_state_new(m);
    int32_t t = 7;
    for (int i = 0; i < 100; i++) assert_int_equal(rg_forward(m, s, &t, 1, NULL, 0), 0);
    assert_int_equal(s->floats * 4, want);
    rg_state_free(s);
    rg_model_free(m);
}

static void test_copy_between_configs_refused(void **state) {
    rg_model *a, *b;
    assert_int_equal(rg_model_load(CASE, &a), 0);
    assert_int_equal(rg_model_load("tests/data/golden/dev_6layer", &b), 0);
    rg_state *sa = rg_state_new(a), *sb = rg_state_new(b);
    assert_int_equal(rg_state_copy(sa, sb), -1);
    assert_non_null(strstr(rg_last_error(), "different model"));
    int32_t t = 7;
    assert_int_equal(rg_forward(a, sb, &t, 1, NULL, 0), -1);
    rg_state_free(sa);
    rg_state_free(sb);
    rg_model_free(a);
    rg_model_free(b);
}

/* A state blob (the shared store's format) holds only the attention rows in
 * use, and a state read back from one continues bit for bit; a blob of
 * another model, a damaged one (the checksum) or a truncated one is refused
 * and leaves the state as it was. */
static void test_blob_round_trip_and_refusals(void **state) {
    rg_model *m, *other;
    assert_int_equal(rg_model_load(CASE, &m), 0);
    assert_int_equal(rg_model_load("tests/data/golden/dev_6layer", &other), 0);
    int V = m->cfg.vocab_size, W = m->cfg.window;
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (int32_t)((i * 37 + 11) % V);
    float *a = rg_xmalloc(sizeof(float) * 64 * V), *b = rg_xmalloc(sizeof(float) * 64 * V);
    int points[] = {1, 5, W, 2 * W + 1};
    size_t prev = 0;
    for (size_t k = 0; k < sizeof points / sizeof points[0]; k++) {
        int p = points[k];
        rg_state *orig = rg_state_new(m), *back = rg_state_new(m), *wrong = rg_state_new(other);
        run(m, back, tok, 40, a); /* dirty the destination */
        run(m, orig, tok, p, a);
        size_t n = rg_state_blob_bytes(orig);
        assert_true(n >= prev && n <= rg_state_file_bytes(&m->cfg)); /* grows with p up to the window */
        if (p >= W) assert_int_equal(n, rg_state_file_bytes(&m->cfg));
        prev = n;
        uint8_t *blob = rg_xmalloc(n);
        rg_state_blob_write(orig, blob);
        rg_state_blob_seal(blob, n);
        assert_int_equal(rg_state_blob_check(&m->cfg, RG_DT_F32, blob, n, "blob"), 0);
        assert_int_equal(rg_state_blob_check(&other->cfg, RG_DT_F32, blob, n, "blob"), -1);
        assert_non_null(strstr(rg_last_error(), "another model configuration"));
        assert_int_equal(rg_state_blob_read(wrong, blob, n, "blob"), -1);
        assert_int_equal(rg_state_blob_check(&m->cfg, RG_DT_F32, blob, n - 1, "blob"), -1);
        assert_int_equal(rg_state_blob_read(back, blob, n - 1, "blob"), -1);
        blob[n / 2] ^= 1;
        assert_int_equal(rg_state_blob_check(&m->cfg, RG_DT_F32, blob, n, "blob"), -1);
        assert_non_null(strstr(rg_last_error(), "corrupt"));
        blob[47] ^= 0x40; /* the position: out of range */
        assert_int_equal(rg_state_blob_read(back, blob, n, "blob"), -1);
        assert_int_equal(rg_state_pos(back), 40);
        blob[47] ^= 0x40;
        blob[n / 2] ^= 1;
        assert_int_equal(rg_state_blob_read(back, blob, n, "blob"), 0);
        assert_int_equal(rg_state_pos(back), p);
        run(m, orig, tok + 10, 30, a);
        run(m, back, tok + 10, 30, b);
        assert_memory_equal(a, b, sizeof(float) * 30 * V);
        free(blob);
        rg_state_free(orig);
        rg_state_free(back);
        rg_state_free(wrong);
    }
    assert_int_not_equal(rg_model_fingerprint(m), rg_model_fingerprint(other));
    free(a);
    free(b);
    rg_model_free(m);
    rg_model_free(other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_continues_exactly),
        cmocka_unit_test(test_size_is_fixed_by_config),
        cmocka_unit_test(test_copy_between_configs_refused),
        cmocka_unit_test(test_blob_round_trip_and_refusals),
    };
    return cmocka_run_group_tests_name("state", tests, NULL, NULL);
}
