/* The state object: fixed size, copies that continue exactly like the
 * original (snapshots for eval and the server's conversation cache), state
 * files and blobs; each with float32, float16 and Q8_0 attention windows
 * (the test's prestate: the window type and the models: golden cases for
 * float32 and float16, synthetic models of the same layer pattern with a
 * head dimension of 32 for Q8_0). */
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
#include "model/synth.h"
#include "util/util.h"

typedef struct {
    const char *kv_type;
    const char *model; /* 3 recurrent layers and 1 attention layer */
    const char *other; /* another configuration */
} variant;

static char tmp_dir[] = "/tmp/rgemma-test-state-XXXXXX";
static char q8_model[128], q8_other[128];
static variant variants[] = {{"f32", "tests/data/golden/dev_4layer", "tests/data/golden/dev_6layer"},
                             {"f16", "tests/data/golden/dev_4layer", "tests/data/golden/dev_6layer"},
                             {"q8_0", q8_model, q8_other}};

static void run(const rg_model *m, rg_state *s, const int32_t *tok, int n, float *logits) {
    assert_int_equal(rg_forward(m, s, tok, n, logits, 1), 0);
}

/* The variant's model (or with other, its other one) with its window type. */
static rg_model *load(void **state, int other) {
    const variant *v = *state;
    rg_model *m;
    assert_int_equal(rg_model_load(other ? v->other : v->model, &m), 0);
    assert_int_equal(rg_model_set_kv_type(m, v->kv_type), 0);
    return m;
}

/* A copy taken at position p into a state that held another, longer
 * sequence (its ring buffers full of other keys) continues bit for bit like
 * the original, for p below, at and above the window. */
static void test_copy_continues_exactly(void **state) {
    rg_model *m = load(state, 0);
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
    rg_model *m = load(state, 0);
    const rg_config *c = &m->cfg;
    /* 3 recurrent layers: conv (K-1) x R + h R, float32; 1 attention layer:
     * 2 W rows of hd elements: 4 or 2 bytes each, or for Q8_0 34 bytes a 32 */
    size_t rows = 2 * (size_t)c->window, f32_row = 4 * (size_t)c->head_dim;
    size_t row = m->kv_type == RG_DT_F32   ? f32_row
                 : m->kv_type == RG_DT_F16 ? 2 * (size_t)c->head_dim
                                           : (size_t)c->head_dim / 32 * 34;
    size_t want = 3 * (size_t)c->conv_width * c->lru_width * 4 + rows * row;
    assert_int_equal(rg_state_bytes(c), want + rows * (f32_row - row)); /* float32 windows */
    assert_int_equal(rg_model_state_bytes(m), want);
    rg_state *s = rg_state_new(m);
    int32_t t = 7;
    for (int i = 0; i < 100; i++) assert_int_equal(rg_forward(m, s, &t, 1, NULL, 0), 0);
    assert_int_equal(s->floats * 4, want);
    rg_state_free(s);
    rg_model_free(m);
}

static void test_copy_between_configs_refused(void **state) {
    rg_model *a = load(state, 0), *b = load(state, 1);
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
 * types, and the receiving state stays as it was. The prestate: the model,
 * the type of the state that runs (from) and of the one that refuses (to). */
typedef struct {
    const char *model, *from, *to;
} type_pair;

static void test_other_window_type_refused(void **state) {
    const type_pair *tp = *state;
    rg_model *m;
    assert_int_equal(rg_model_load(tp->model, &m), 0);
    assert_int_equal(rg_model_set_kv_type(m, tp->to), 0);
    rg_state *to = rg_state_new(m);
    rg_dtype to_type = m->kv_type;
    assert_int_equal(rg_model_set_kv_type(m, tp->from), 0);
    rg_state *from = rg_state_new(m);
    int32_t tok[5] = {2, 7, 9, 11, 13};
    run(m, from, tok, 5, NULL);
    char want[160];
    snprintf(want, sizeof want, "source's attention window is %s, the destination's %s", tp->from, tp->to);
    assert_int_equal(rg_state_copy(to, from), -1);
    assert_non_null(strstr(rg_last_error(), want));
    assert_int_equal(rg_state_copy(from, to), -1);
    char path[] = "/tmp/rgemma-test-state-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(rg_state_save(from, path), 0);
    assert_int_equal(rg_state_load(to, path), -1);
    printf("  refused: %s\n", rg_last_error());
    assert_non_null(strstr(rg_last_error(), path));
    snprintf(want, sizeof want, "attention window is %s, this model's states are %s", tp->from, tp->to);
    assert_non_null(strstr(rg_last_error(), want));
    assert_int_equal(rg_state_pos(to), 0);
    assert_int_equal(rg_state_save(to, path), 0);
    assert_int_equal(rg_state_load(from, path), -1);
    snprintf(want, sizeof want, "attention window is %s, this model's states are %s", tp->to, tp->from);
    assert_non_null(strstr(rg_last_error(), want));
    assert_int_equal(rg_state_pos(from), 5);
    size_t n = rg_state_blob_bytes(from);
    uint8_t *blob = rg_xmalloc(n);
    rg_state_blob_write(from, blob);
    rg_state_blob_seal(blob, n);
    assert_int_equal(rg_state_blob_check(&m->cfg, to_type, blob, n, "blob"), -1);
    snprintf(want, sizeof want, "blob: the state's attention window is %s, this model's states are %s", tp->from,
             tp->to);
    assert_non_null(strstr(rg_last_error(), want));
    assert_int_equal(rg_state_blob_read(to, blob, n, "blob"), -1);
    assert_int_equal(rg_state_pos(to), 0);
    free(blob);
    remove(path);
    rg_state_free(to);
    rg_state_free(from);
    rg_model_free(m);
}

/* A state file written and read back gives the same state bit for bit (the
 * window as stored), which continues exactly; a float32 window's file keeps
 * version 1 (older builds read it), a float16 one is version 3, Q8_0 5. */
static void test_file_round_trip(void **state) {
    rg_model *m = load(state, 0);
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
        assert_int_equal(header[8], m->kv_type == RG_DT_F16 ? 3 : m->kv_type == RG_DT_Q8_0 ? 5 : 1);
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
    rg_model *m = load(state, 0), *other = load(state, 1);
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

/* A synthetic float32 model in tmp_dir/name: the golden case's layer
 * pattern and window (config of dir) with head dimension 32. */
static int write_q8_model(const char *like, const char *name, char *out, size_t size) {
    rg_model *g;
    if (rg_model_load(like, &g)) return -1;
    rg_config c = *rg_model_config(g);
    rg_model_free(g);
    c.head_dim = 32;
    c.hidden_size = c.lru_width = c.num_heads * 32;
    c.mlp_width = 3 * c.hidden_size;
    snprintf(out, size, "%s/%s", tmp_dir, name);
    rg_synth_options o = {.dtype = RG_DT_F32, .seed = 21};
    return rg_synth_write(&c, out, &o, NULL);
}

int main(void) {
    if (!mkdtemp(tmp_dir) || write_q8_model(variants[0].model, "q8", q8_model, sizeof q8_model) ||
        write_q8_model(variants[0].other, "q8-other", q8_other, sizeof q8_other)) {
        fprintf(stderr, "test_state: cannot write the synthetic models: %s\n", rg_last_error());
        return 1;
    }
    /* float16 against float32, and Q8_0 against float16 (files of versions 3, 1 and 5) */
    type_pair pairs[] = {{variants[0].model, "f16", "f32"}, {q8_model, "q8_0", "f16"}};
#define ALL_TYPES(f)                                                                                          \
    cmocka_unit_test_prestate(f, &variants[0]), cmocka_unit_test_prestate(f, &variants[1]),                   \
        cmocka_unit_test_prestate(f, &variants[2])
    const struct CMUnitTest tests[] = {
        ALL_TYPES(test_copy_continues_exactly),
        ALL_TYPES(test_size_is_fixed_by_config),
        ALL_TYPES(test_copy_between_configs_refused),
        ALL_TYPES(test_blob_round_trip_and_refusals),
        ALL_TYPES(test_file_round_trip),
        cmocka_unit_test_prestate(test_other_window_type_refused, &pairs[0]),
        cmocka_unit_test_prestate(test_other_window_type_refused, &pairs[1]),
    };
    int rc = cmocka_run_group_tests_name("state", tests, NULL, NULL);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    return system(cmd) ? 1 : rc;
}
