/* The conversation state cache of rgemma serve (src/server/cache.c) on the
 * dev_4layer golden model: longest-prefix lookup, continuing from a saved
 * state gives the same logits as processing everything, superseded entries,
 * LRU eviction, and a disabled cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "server/cache.h"

#define MODEL "tests/data/golden/dev_4layer"

static int setup(void **st) {
    rg_model *m;
    if (rg_model_load(MODEL, &m)) return -1;
    *st = m;
    return 0;
}

static int teardown(void **st) {
    rg_model_free(*st);
    return 0;
}

/* a state that has processed tokens[0..n) */
static rg_state *run(const rg_model *m, const int32_t *tokens, int n) {
    rg_state *s = rg_state_new(m);
    assert_non_null(s);
    if (n > 0) assert_int_equal(rg_forward(m, s, tokens, n, NULL, 0), 0);
    return s;
}

static void test_longest_prefix(void **st) {
    const rg_model *m = *st;
    int V = rg_model_config(m)->vocab_size;
    int32_t seq[40];
    for (int i = 0; i < 40; i++) seq[i] = (int32_t)((i * 37 + 11) % V);
    rg_state_cache *c = rg_state_cache_new(m, 4);
    rg_state *s10 = run(m, seq, 10), *s25 = run(m, seq, 25), *dst = rg_state_new(m);
    assert_int_equal(rg_state_cache_store(c, seq, 10, s10), 0);
    /* a branch: same first 10 tokens, then different ones */
    int32_t other[30];
    memcpy(other, seq, sizeof other);
    other[20] = (other[20] + 1) % V;
    rg_state *so = run(m, other, 30);
    assert_int_equal(rg_state_cache_store(c, other, 30, so), 0);
    assert_int_equal(rg_state_cache_store(c, seq, 25, s25), 0); /* supersedes the 10-token entry */

    rg_state_cache_stats cs;
    rg_state_cache_get_stats(c, &cs);
    assert_int_equal(cs.entries, 2);
    assert_int_equal(cs.capacity, 4);

    /* seq[0..40): the 25-token entry; other's key is not a prefix */
    assert_int_equal(rg_state_cache_lookup(c, seq, 39, dst), 25);
    assert_int_equal(rg_state_pos(dst), 25);
    /* continuing from it equals processing all 40 tokens */
    float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(rg_forward(m, dst, seq + 25, 15, a, 0), 0);
    rg_state *full = rg_state_new(m);
    assert_int_equal(rg_forward(m, full, seq, 40, b, 0), 0);
    for (int i = 0; i < V; i++) assert_float_equal(a[i], b[i], 1e-4);
    /* max_len bounds the match: a key may not be longer than max_len */
    assert_int_equal(rg_state_cache_lookup(c, seq, 24, dst), 0);
    assert_int_equal(rg_state_cache_lookup(c, other, 30, dst), 30);
    /* no shared prefix: a miss, dst untouched */
    rg_state_reset(dst);
    int32_t none[5] = {(seq[0] + 1) % V, 1, 2, 3, 4};
    assert_int_equal(rg_state_cache_lookup(c, none, 5, dst), 0);
    assert_int_equal(rg_state_pos(dst), 0);
    rg_state_cache_get_stats(c, &cs);
    assert_int_equal(cs.hits, 2);
    assert_int_equal(cs.misses, 2);
    assert_int_equal(cs.hit_tokens, 55);
    assert_true(cs.bytes >= 2 * rg_state_bytes(rg_model_config(m)));
    free(a);
    free(b);
    rg_state_free(s10);
    rg_state_free(s25);
    rg_state_free(so);
    rg_state_free(full);
    rg_state_free(dst);
    rg_state_cache_free(c);
}

static void test_lru(void **st) {
    const rg_model *m = *st;
    rg_state_cache *c = rg_state_cache_new(m, 2);
    int32_t k[3][3] = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}};
    rg_state *s = run(m, k[0], 3), *dst = rg_state_new(m);
    assert_int_equal(rg_state_cache_store(c, k[0], 3, s), 0);
    assert_int_equal(rg_state_cache_store(c, k[1], 3, s), 0);
    assert_int_equal(rg_state_cache_lookup(c, k[0], 3, dst), 3); /* k[0] is now the most recent */
    assert_int_equal(rg_state_cache_store(c, k[2], 3, s), 0);    /* evicts k[1] */
    assert_int_equal(rg_state_cache_lookup(c, k[1], 3, dst), 0);
    assert_int_equal(rg_state_cache_lookup(c, k[0], 3, dst), 3);
    assert_int_equal(rg_state_cache_lookup(c, k[2], 3, dst), 3);
    rg_state_cache_free(c);

    /* capacity 0: nothing is kept */
    c = rg_state_cache_new(m, 0);
    assert_int_equal(rg_state_cache_store(c, k[0], 3, s), 0);
    assert_int_equal(rg_state_cache_lookup(c, k[0], 3, dst), 0);
    rg_state_cache_stats cs;
    rg_state_cache_get_stats(c, &cs);
    assert_int_equal(cs.entries, 0);
    assert_int_equal(cs.bytes, 0);
    rg_state_cache_free(c);
    rg_state_free(s);
    rg_state_free(dst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest_prefix),
        cmocka_unit_test(test_lru),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
