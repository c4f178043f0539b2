/* The state object: fixed size, copies that continue exactly like the
 * original (snapshots for eval and the server's conversation cache), state
 * files and blobs; each with float32 and with float16 attention windows
 * (the test's prestate: the model's window type). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>
#include "model/model.h"
#include "model/state.h"
#include "util/util.h"

#define CASE "tests/data/golden/dev_4layer"

static void run(const rg_model *m, rg_state *s, const int32_t *tok, int n, float *logits) {
    assert_int_equal(rg_forward(m, s, tok, n, logits, 1), 0);
}

/* The test case's model with the window type of the test's prestate. */
static rg_model *load(const char *path, void **state) {
    rg_model *m;
    assert_int_equal(rg_model_load(path, &m), 0);
    assert_int_equal(rg_model_set_kv_type(m, *state), 0);
    return m;
}

/* A copy taken at position p into a state that held another, longer
 * sequence (its ring buffers full of other keys) continues bit for bit like
 * the original, for p below, at and above the window. */
static void test_copy_continues_exactly(void **state) {
    rg_model *m = load(CASE, state);
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
    rg_model *m = load(CASE, state);
    const rg_config *c = &m->cfg;
    /* 3 recurrent layers: conv (K-1) x R + h R, float32; 1 attention layer:
     * 2 W hd of 4 or 2 bytes */
    size_t window = 2 * (size_t)c->window * c->head_dim, kv_bytes = m->kv_type == RG_DT_F16 ? 2 : 4;
    size_t want = 3 * (size_t)c->conv_width * c->lru_width * 4 + window * kv_bytes;
    assert_int_equal(rg_state_bytes(c), want + window * (4 - kv_bytes)); /* float32 windows */
    assert_int_equal(rg_model_state_bytes(m), want);
    rg_state *s = rg_state_new(m);
    int32_t t = 7;
    for (int i = 0; i < 100; i++) assert_int_equal(rg_forward(m, s, &t, 1, NULL, 0), 0);
    assert_int_equal(s->floats * 4, want);
    rg_state_free(s);
    rg_model_free(m);
}

static void test_copy_between_configs_refused(void **state) {
    rg_model *a = load(CASE, state), *b = load("tests/data/golden/dev_6layer", state);
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

/* Between window types: a copy, a file and a blob are refused, naming both
 * types, and the receiving state stays as it was. */
static void test_other_window_type_refused(void **state) {
    rg_model *m;
    assert_int_equal(rg_model_load(CASE, &m), 0);
    rg_state *f32 = rg_state_new(m);
    assert_int_equal(rg_model_set_kv_type(m, "f16"), 0);
    rg_state *f16 = rg_state_new(m);
    int32_t tok[5] = {2, 7, 9, 11, 13};
    run(m, f16, tok, 5, NULL);
    assert_int_equal(rg_state_copy(f32, f16), -1);
    assert_non_null(strstr(rg_last_error(), "source's attention window is f16, the destination's f32"));
    assert_int_equal(rg_state_copy(f16, f32), -1);
    char path[] = "/tmp/rgemma-test-state-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(rg_state_save(f16, path), 0);
    assert_int_equal(rg_state_load(f32, path), -1);
    printf("  refused: %s\n", rg_last_error());
    assert_non_null(strstr(rg_last_error(), path));
    assert_non_null(strstr(rg_last_error(), "attention window is f16, this model's states are f32"));
    assert_int_equal(rg_state_pos(f32), 0);
    assert_int_equal(rg_state_save(f32, path), 0);
    assert_int_equal(rg_state_load(f16, path), -1);
    assert_non_null(strstr(rg_last_error(), "attention window is f32, this model's states are f16"));
    assert_int_equal(rg_state_pos(f16), 5);
    size_t n = rg_state_blob_bytes(f16);
    uint8_t *blob = rg_xmalloc(n);
    rg_state_blob_write(f16, blob);
    rg_state_blob_seal(blob, n);
    assert_int_equal(rg_state_blob_check(&m->cfg, RG_DT_F32, blob, n, "blob"), -1);
    assert_non_null(strstr(rg_last_error(), "blob: the state's attention window is f16, this model's states are f32"));
    assert_int_equal(rg_state_blob_read(f32, blob, n, "blob"), -1);
    assert_int_equal(rg_state_pos(f32), 0);
    free(blob);
    remove(path);
    rg_state_free(f32);
    rg_state_free(f16);
    rg_model_free(m);
}

/* A state file written and read back gives the same state bit for bit (the
 * window as stored), which continues exactly; a float32 window's file keeps
 * version 1 (older builds read it), a float16 one is version 3. */
static void test_file_round_trip(void **state) {
    rg_model *m = load(CASE, state);
    int V = m->cfg.vocab_size, W = m->cfg.window;
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (int32_t)((i * 37 + 11) % V);
    float *a = rg_xmalloc(sizeof(float) * 64 * V), *b = rg_xmalloc(sizeof(float) * 64 * V);
    char path[] = "/tmp/rgemma-test-state-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    int points[] = {3, W + 2};
    for (size_t k = 0; k < sizeof points / sizeof points[0]; k++) {
        rg_state *orig = rg_state_new(m), *back = rg_state_new(m);
        run(m, back, tok + 20, 40, a); /* dirty the destination */
        run(m, orig, tok, points[k], a);
        assert_int_equal(rg_state_save(orig, path), 0);
        FILE *f = fopen(path, "rb");
        uint8_t header[12];
        assert_int_equal(fread(header, 1, sizeof header, f), sizeof header);
        fseek(f, 0, SEEK_END);
        assert_int_equal(ftell(f), (long)rg_model_state_file_bytes(m));
        fclose(f);
        assert_int_equal(header[8], m->kv_type == RG_DT_F16 ? 3 : 1);
        assert_int_equal(rg_state_load(back, path), 0);
        assert_int_equal(rg_state_pos(back), points[k]);
        assert_memory_equal(back->data, orig->data, orig->floats * sizeof(float));
        run(m, orig, tok + 30, 30, a);
        run(m, back, tok + 30, 30, b);
        assert_memory_equal(a, b, sizeof(float) * 30 * V);
        rg_state_free(orig);
        rg_state_free(back);
    }
    remove(path);
    free(a);
    free(b);
    rg_model_free(m);
}

/* A state blob (the shared store's format) holds only the attention rows in
 * use, and a state read back from one continues bit for bit; a blob of
 * another model, a damaged one (the checksum) or a truncated one is refused
 * and leaves the state as it was. */
static void test_blob_round_trip_and_refusals(void **state) {
    rg_model *m = load(CASE, state), *other = load("tests/data/golden/dev_6layer", state);
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
        assert_true(n >= prev && n <= rg_model_state_file_bytes(m)); /* grows with p up to the window */
        if (p >= W) assert_int_equal(n, rg_model_state_file_bytes(m));
        prev = n;
        uint8_t *blob = rg_xmalloc(n);
        rg_state_blob_write(orig, blob);
        rg_state_blob_seal(blob, n);
        assert_int_equal(rg_state_blob_check(&m->cfg, m->kv_type, blob, n, "blob"), 0);
        assert_int_equal(rg_state_blob_check(&other->cfg, other->kv_type, blob, n, "blob"), -1);
        assert_non_null(strstr(rg_last_error(), "another model configuration"));
        assert_int_equal(rg_state_blob_read(wrong, blob, n, "blob"), -1);
        assert_int_equal(rg_state_blob_check(&m->cfg, m->kv_type, blob, n - 1, "blob"), -1);
        assert_int_equal(rg_state_blob_read(back, blob, n - 1, "blob"), -1);
        blob[n / 2] ^= 1;
        assert_int_equal(rg_state_blob_check(&m->cfg, m->kv_type, blob, n, "blob"), -1);
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
        assert_memory_equal(back->data, orig->data, orig->floats * sizeof(float));
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
#define BOTH_TYPES(f) cmocka_unit_test_prestate(f, "f32"), cmocka_unit_test_prestate(f, "f16")
    const struct CMUnitTest tests[] = {
        BOTH_TYPES(test_copy_continues_exactly),
        BOTH_TYPES(test_size_is_fixed_by_config),
        BOTH_TYPES(test_copy_between_configs_refused),
        BOTH_TYPES(test_blob_round_trip_and_refusals),
        BOTH_TYPES(test_file_round_trip),
        cmocka_unit_test(test_other_window_type_refused),
    };
    return cmocka_run_group_tests_name("state", tests, NULL, NULL);
}
