/* Checkpoint loading: config.json rules, sharded safetensors, and malformed
 * files — each must give a clear error naming what is wrong, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>
#include "model/model.h"
#include "util/util.h"

#define CASE "tests/data/golden/dev_4layer"

static char tmpdir[256];
static char *orig_file, *orig_header;
static size_t orig_len, orig_hlen;

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
    char *p = rg_path_join(dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    free(p);
}

/* A model folder <tmpdir>/<name> with the case's config.json. */
static char *make_dir(const char *name) {
    char *dir = rg_path_join(tmpdir, name);
    mkdir(dir, 0755);
    char *cfg;
    size_t len;
    assert_int_equal(rg_read_file(CASE "/config.json", 1 << 20, &cfg, &len), 0);
    write_file(dir, "config.json", cfg, len);
    free(cfg);
    return dir;
}

/* Write a safetensors file from a header text and the original data section. */
static void write_st(const char *dir, const char *name, const char *header, const uint8_t *data, size_t dlen) {
    size_t h = strlen(header), padded = (h + 7) & ~(size_t)7;
    uint8_t *buf = rg_xmalloc(8 + padded + dlen);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, ' ', padded - h);
    memcpy(buf + 8 + padded, data, dlen);
    write_file(dir, name, buf, 8 + padded + dlen);
    free(buf);
}

/* The original header with the first occurrence of `from` replaced by `to`. */
static char *edit_header(const char *from, const char *to) {
    const char *at = strstr(orig_header, from);
    assert_non_null(at);
    size_t a = (size_t)(at - orig_header), fl = strlen(from), tl = strlen(to), hl = strlen(orig_header);
    char *h = rg_xmalloc(hl - fl + tl + 1);
    memcpy(h, orig_header, a);
    memcpy(h + a, to, tl);
    memcpy(h + a + tl, at + fl, hl - a - fl + 1);
    return h;
}

static const uint8_t *orig_data(void) { return (const uint8_t *)orig_file + 8 + orig_hlen; }
static size_t orig_dlen(void) { return orig_len - 8 - orig_hlen; }

/* Load dir and expect failure with each of the given substrings in the error. */
static void expect_error(const char *path, const char *want1, const char *want2) {
    rg_model *m = (rg_model *)1;
    assert_int_equal(rg_model_load(path, &m), -1);
    assert_null(m);
    const char *err = rg_last_error();
    printf("    error: %s\n", err);
    assert_non_null(strstr(err, want1));
    if (want2) assert_non_null(strstr(err, want2));
}

static void expect_header_error(const char *name, const char *from, const char *to, const char *want1,
                                const char *want2) {
    char *dir = make_dir(name);
    char *h = edit_header(from, to);
    write_st(dir, "model.safetensors", h, orig_data(), orig_dlen());
    expect_error(dir, want1, want2);
    free(h);
    free(dir);
}

static int setup(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rgemma-test-loader-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    if (rg_read_file(CASE "/model.safetensors", 64u << 20, &orig_file, &orig_len)) return -1;
    memcpy(&orig_hlen, orig_file, 8);
    orig_header = strndup(orig_file + 8, orig_hlen);
    /* drop the trailing padding so edits can re-pad */
    size_t e = strlen(orig_header);
    while (e && orig_header[e - 1] == ' ') orig_header[--e] = 0;
    return 0;
}

static int teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) return -1;
    free(orig_file);
    free(orig_header);
    return 0;
}

static void test_unchanged_copy_loads(void **state) {
    char *dir = make_dir("ok");
    write_st(dir, "model.safetensors", orig_header, orig_data(), orig_dlen());
    rg_model *m;
    assert_int_equal(rg_model_load(dir, &m), 0);
    assert_int_equal(rg_model_config(m)->hidden_size, 64);
    rg_model_free(m);
    free(dir);
}

static void test_truncated_file(void **state) {
    char *dir = make_dir("truncated");
    write_file(dir, "model.safetensors", orig_file, orig_len * 6 / 10);
    expect_error(dir, "model.safetensors", "outside the data section");
    write_file(dir, "model.safetensors", orig_file, 5);
    expect_error(dir, "model.safetensors", "truncated");
    write_file(dir, "model.safetensors", orig_file, 100);
    expect_error(dir, "model.safetensors", "header length");
    free(dir);
}

static void test_header_length_too_big(void **state) {
    char *dir = make_dir("hlen");
    uint8_t *buf = rg_xmalloc(orig_len);
    memcpy(buf, orig_file, orig_len);
    buf[6] = 0x7f;
    write_file(dir, "model.safetensors", buf, orig_len);
    expect_error(dir, "model.safetensors", "header length");
    free(buf);
    free(dir);
}

static void test_broken_header_json(void **state) {
    expect_header_error("badjson", "\"dtype\":\"F32\"", "\"dtype\":\"F32\",,", "model.safetensors",
                        "not a valid JSON");
}

static void test_unknown_dtype(void **state) {
    expect_header_error("dtype", "\"dtype\":\"F32\"", "\"dtype\":\"I8\"", "unsupported dtype \"I8\"", NULL);
}

static void test_shape_disagrees_with_bytes(void **state) {
    expect_header_error("bytes", "\"shape\":[512,64]", "\"shape\":[512,65]", "model.embed_tokens.weight",
                        "data_offsets");
}

static void test_wrong_shape_for_model(void **state) {
    expect_header_error("shape", "\"model.final_norm.weight\":{\"dtype\":\"F32\",\"shape\":[64]",
                        "\"model.final_norm.weight\":{\"dtype\":\"F32\",\"shape\":[32,2]",
                        "\"model.final_norm.weight\" has shape [32, 2], expected [64]", NULL);
}

static void test_offset_past_end(void **state) {
    expect_header_error("offset", "\"data_offsets\":[131072,131328]", "\"data_offsets\":[131072,99999999999]",
                        "model.final_norm.weight", "outside the data section");
}

static void test_negative_offset(void **state) {
    expect_header_error("negoffset", "\"data_offsets\":[131072,131328]", "\"data_offsets\":[-256,0]",
                        "model.final_norm.weight", "data_offsets");
}

static void test_overlapping_tensors(void **state) {
    expect_header_error("overlap", "\"data_offsets\":[131072,131328]", "\"data_offsets\":[0,256]", "overlap",
                        NULL);
}

static void test_missing_tensor(void **state) {
    expect_header_error("missing", "\"model.final_norm.weight\"", "\"model.final_norm.renamed\"",
                        "missing tensor \"model.final_norm.weight\"", NULL);
}

static void test_bad_lm_head(void **state) {
    expect_header_error("lmhead", "\"model.final_norm.weight\"", "\"lm_head.weight\"", "lm_head.weight", NULL);
}

static void test_missing_files(void **state) {
    expect_error("/nonexistent/model", "no such model", NULL);
    char *dir = rg_path_join(tmpdir, "empty");
    mkdir(dir, 0755);
    expect_error(dir, "config.json", NULL);
    free(dir);
    dir = make_dir("noweights");
    expect_error(dir, "no model.safetensors", NULL);
    free(dir);
}

static void run_tokens(const rg_model *m, float *logits) {
    static const int32_t tok[] = {2, 374, 372, 240, 25, 442, 185};
    rg_state *s = rg_state_new(m);
    assert_int_equal(rg_forward(m, s, tok, 7, logits, 1), 0);
    rg_state_free(s);
}

/* Split the checkpoint into two shards + index: same logits, bit for bit. */
static void test_sharded_checkpoint(void **state) {
    rg_model *single, *sharded;
    assert_int_equal(rg_model_load(CASE, &single), 0);
    rg_safetensors *st = &single->st;
    char *dir = make_dir("sharded");
    char *shard_h[2] = {strdup("{"), strdup("{")};
    size_t shard_len[2] = {0, 0};
    uint8_t *shard_data[2] = {rg_xmalloc(orig_dlen()), rg_xmalloc(orig_dlen())};
    char *index = strdup("{\"metadata\":{},\"weight_map\":{");
    for (int i = 0; i < st->n_entries; i++) {
        int k = i % 2;
        const rg_st_entry *e = &st->entries[i];
        char shape[64] = "";
        for (int d = 0; d < e->t.ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? "," : "",
                     (long long)e->t.shape[d]);
        char item[512];
        snprintf(item, sizeof item, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                 shard_len[k] ? "," : "", e->name, shape, shard_len[k], shard_len[k] + e->t.nbytes);
        shard_h[k] = realloc(shard_h[k], strlen(shard_h[k]) + strlen(item) + 2);
        strcat(shard_h[k], item);
        memcpy(shard_data[k] + shard_len[k], e->t.data, e->t.nbytes);
        shard_len[k] += e->t.nbytes;
        snprintf(item, sizeof item, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"", i ? "," : "", e->name, k + 1);
        index = realloc(index, strlen(index) + strlen(item) + 4);
        strcat(index, item);
    }
    strcat(index, "}}");
    for (int k = 0; k < 2; k++) {
        strcat(shard_h[k], "}");
        char name[64];
        snprintf(name, sizeof name, "model-0000%d-of-00002.safetensors", k + 1);
        write_st(dir, name, shard_h[k], shard_data[k], shard_len[k]);
    }
    write_file(dir, "model.safetensors.index.json", index, strlen(index));
    assert_int_equal(rg_model_load(dir, &sharded), 0);
    int V = single->cfg.vocab_size;
    float *a = rg_xmalloc(sizeof(float) * 7 * V), *b = rg_xmalloc(sizeof(float) * 7 * V);
    run_tokens(single, a);
    run_tokens(sharded, b);
    assert_memory_equal(a, b, sizeof(float) * 7 * V);
    rg_model_free(sharded);

    /* an index naming a shard that does not exist */
    char *bad = strdup(index);
    char *at = strstr(bad, "model-00002-of-00002");
    memcpy(at, "model-00009", 11);
    write_file(dir, "model.safetensors.index.json", bad, strlen(bad));
    expect_error(dir, "model-00009-of-00002.safetensors", "cannot open");
    /* an index placing a tensor in the wrong shard */
    free(bad);
    bad = strdup(index);
    at = strstr(bad, "\"model.final_norm.weight\":\"model-0000");
    at += strlen("\"model.final_norm.weight\":\"model-0000");
    *at = *at == '1' ? '2' : '1';
    write_file(dir, "model.safetensors.index.json", bad, strlen(bad));
    expect_error(dir, "model.final_norm.weight", "is not in shard");
    free(bad);
    free(index);
    for (int k = 0; k < 2; k++) {
        free(shard_h[k]);
        free(shard_data[k]);
    }
    free(a);
    free(b);
    free(dir);
    rg_model_free(single);
}

/* F16 tensors: the same logits as F32 tensors holding the f16-rounded values
 * (both are widened to float32 before any arithmetic). */
static void test_f16_checkpoint(void **state) {
    rg_model *src;
    assert_int_equal(rg_model_load(CASE, &src), 0);
    const rg_safetensors *st = &src->st;
    char *h16 = strdup("{"), *h32 = strdup("{");
    uint8_t *d16 = rg_xmalloc(orig_dlen()), *d32 = rg_xmalloc(orig_dlen());
    size_t o16 = 0, o32 = 0;
    for (int i = 0; i < st->n_entries; i++) {
        const rg_st_entry *e = &st->entries[i];
        size_t n = e->t.nbytes / 4;
        char shape[64] = "", item[512];
        for (int d = 0; d < e->t.ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? "," : "",
                     (long long)e->t.shape[d]);
        for (size_t j = 0; j < n; j++) {
            float f;
            memcpy(&f, (const uint8_t *)e->t.data + 4 * j, 4);
            uint16_t h = rg_f32_to_f16(f);
            float back = rg_f16_to_f32(h);
            memcpy(d16 + o16 + 2 * j, &h, 2);
            memcpy(d32 + o32 + 4 * j, &back, 4);
        }
        snprintf(item, sizeof item, "%s\"%s\":{\"dtype\":\"F16\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                 i ? "," : "", e->name, shape, o16, o16 + 2 * n);
        h16 = realloc(h16, strlen(h16) + strlen(item) + 2);
        strcat(h16, item);
        snprintf(item, sizeof item, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                 i ? "," : "", e->name, shape, o32, o32 + 4 * n);
        h32 = realloc(h32, strlen(h32) + strlen(item) + 2);
        strcat(h32, item);
        o16 += 2 * n;
        o32 += 4 * n;
    }
    strcat(h16, "}");
    strcat(h32, "}");
    char *dir16 = make_dir("f16"), *dir32 = make_dir("f16as32");
    write_st(dir16, "model.safetensors", h16, d16, o16);
    write_st(dir32, "model.safetensors", h32, d32, o32);
    rg_model *m16, *m32;
    assert_int_equal(rg_model_load(dir16, &m16), 0);
    assert_int_equal(rg_model_load(dir32, &m32), 0);
    assert_int_equal(m16->embed.dtype, RG_DT_F16);
    int V = src->cfg.vocab_size;
    float *a = rg_xmalloc(sizeof(float) * 7 * V), *b = rg_xmalloc(sizeof(float) * 7 * V);
    run_tokens(m16, a);
    run_tokens(m32, b);
    for (int i = 0; i < 7 * V; i++) assert_float_equal(a[i], b[i], 1e-5);
    rg_model_free(m16);
    rg_model_free(m32);
    rg_model_free(src);
    free(a);
    free(b);
    free(h16);
    free(h32);
    free(d16);
    free(d32);
    free(dir16);
    free(dir32);
}

/* ---- config.json ---- */

static char *case_config(void) {
    char *cfg;
    size_t len;
    assert_int_equal(rg_read_file(CASE "/config.json", 1 << 20, &cfg, &len), 0);
    return cfg;
}

static char *replace(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    assert_non_null(at);
    size_t a = (size_t)(at - s);
    char *r = rg_xmalloc(strlen(s) - strlen(from) + strlen(to) + 1);
    memcpy(r, s, a);
    strcpy(r + a, to);
    strcat(r, at + strlen(from));
    return r;
}

static void expect_config(const char *from, const char *to, int ok, const char *want) {
    char *base = case_config(), *c = replace(base, from, to);
    rg_config cfg;
    int rc = rg_config_parse(c, strlen(c), "config.json", &cfg);
    if (!ok) printf("    error: %s\n", rg_last_error());
    assert_int_equal(rc, ok ? 0 : -1);
    if (want) assert_non_null(strstr(rg_last_error(), want));
    free(base);
    free(c);
}

static void test_config_values(void **state) {
    rg_config cfg;
    assert_int_equal(rg_config_load(CASE "/config.json", &cfg), 0);
    assert_int_equal(cfg.mlp_width, 192); /* intermediate_size / 2 */
    assert_int_equal(cfg.pattern_len, 3);
    assert_int_equal(rg_config_layer_type(&cfg, 2), RG_LAYER_ATTENTION);
    assert_int_equal(rg_config_layer_type(&cfg, 3), RG_LAYER_RECURRENT);
    assert_true(cfg.embed_scale == 8.0f);
    assert_int_equal(rg_config_load("tests/data/golden/dev_6layer/config.json", &cfg), 0); /* "block_types" */
    assert_int_equal(rg_config_layer_type(&cfg, 5), RG_LAYER_ATTENTION);
}

static void test_config_embed_scale_is_bf16_of_sqrt(void **state) {
    char *base = case_config();
    static const struct { const char *d; float s; } cases[] = {{"2560", 50.5f}, {"120", 10.9375f}, {"48", 6.9375f}};
    for (size_t i = 0; i < 3; i++) {
        char to[64];
        snprintf(to, sizeof to, "\"hidden_size\": %s", cases[i].d);
        char *c = replace(base, "\"hidden_size\": 64", to);
        rg_config cfg;
        assert_int_equal(rg_config_parse(c, strlen(c), "config.json", &cfg), 0);
        assert_true(cfg.embed_scale == cases[i].s);
        free(c);
    }
    free(base);
}

static void test_config_errors(void **state) {
    expect_config("\"lru_width\": 64", "\"lru_width\": null", 1, NULL);
    expect_config("\"logits_soft_cap\": 30.0", "\"logits_soft_cap\": 0.0", 1, NULL);
    expect_config("\"hidden_size\": 64,", "", 0, "missing key \"hidden_size\"");
    expect_config("\"intermediate_size\": 384", "\"intermediate_size\": 385", 0, "intermediate_size");
    expect_config("\"num_key_value_heads\": 1", "\"num_key_value_heads\": 4", 0, "num_key_value_heads");
    expect_config("\"lru_width\": 64", "\"lru_width\": 66", 0, "lru_width");
    expect_config("\"num_attention_heads\": 4", "\"num_attention_heads\": \"4\"", 0, "num_attention_heads");
    expect_config("\"recurrent\",\n    \"recurrent\"", "\"recurrent\",\n    \"mamba\"", 0, "\"mamba\"");
    expect_config("\"_block_types\"", "\"block_typos\"", 0, "block_types");
    expect_config("\"model_type\": \"recurrent_gemma\"", "\"model_type\": \"gemma\"", 0, "model_type");
    expect_config("\"vocab_size\": 512", "\"vocab_size\": -5", 0, "vocab_size");
    expect_config("{", "{{", 0, "invalid JSON");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unchanged_copy_loads),
        cmocka_unit_test(test_truncated_file),
        cmocka_unit_test(test_header_length_too_big),
        cmocka_unit_test(test_broken_header_json),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_shape_disagrees_with_bytes),
        cmocka_unit_test(test_wrong_shape_for_model),
        cmocka_unit_test(test_offset_past_end),
        cmocka_unit_test(test_negative_offset),
        cmocka_unit_test(test_overlapping_tensors),
        cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_bad_lm_head),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_sharded_checkpoint),
        cmocka_unit_test(test_f16_checkpoint),
        cmocka_unit_test(test_config_values),
        cmocka_unit_test(test_config_embed_scale_is_bf16_of_sqrt),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests_name("loader", tests, setup, teardown);
}
