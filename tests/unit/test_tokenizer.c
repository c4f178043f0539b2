/* Tokenizer tests on the small SentencePiece BPE model (tests/data/tokenizer):
 * every golden line, decoding, invalid UTF-8, streaming, the settings that
 * change encoding (checked against SentencePiece 0.1.97), the tokenizer.model
 * writer, tokenizer.json loading, and clear errors for bad files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <cmocka.h>
#include "tokenizer_golden.h"

#define SMALL TOKDATA "small_bpe.model"

static rg_tokenizer *load_small(void) {
    rg_tokenizer *t = NULL;
    if (rg_tokenizer_load(SMALL, &t)) fail_msg("%s", rg_last_error());
    return t;
}

static void test_small_golden(void **state) {
    rg_tokenizer *t = load_small();
    int lines = 0;
    assert_int_equal(golden_check_encode(t, TOKDATA "small_bpe.golden.jsonl", "ids", &lines), 0);
    assert_int_equal(lines, 222);
    assert_int_equal(golden_check_decode(t, TOKDATA "small_bpe.decode.jsonl", &lines), 0);
    assert_int_equal(lines, 39);
    assert_int_equal(golden_check_invalid_utf8(t, "small_bpe_ids", &lines), 0);
    assert_int_equal(lines, 15);
    rg_tokenizer_free(t);
}

static void test_small_basics(void **state) {
    rg_tokenizer *t = load_small();
    assert_int_equal(rg_tokenizer_vocab_size(t), 1000);
    assert_int_equal(rg_tokenizer_bos(t), 2);
    assert_int_equal(rg_tokenizer_eos(t), 1);
    assert_int_equal(rg_tokenizer_piece_id(t, "<start_of_turn>"), 4);
    assert_int_equal(rg_tokenizer_piece_id(t, "\xe2\x96\x81the"), 272);
    assert_int_equal(rg_tokenizer_piece_id(t, "no such piece"), -1);
    assert_string_equal(rg_tokenizer_piece(t, 6 + 0x41), "<0x41>");
    assert_null(rg_tokenizer_piece(t, 1000));
    assert_null(rg_tokenizer_piece(t, -1));
    int32_t *ids;
    size_t n;
    /* BOS/EOS options; control pieces never come from text */
    assert_int_equal(rg_tokenize(t, "<bos> the", 9, 1, 1, &ids, &n), 0);
    assert_true(n > 3);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[n - 1], 1);
    for (size_t i = 1; i + 1 < n; i++) assert_true(ids[i] > 3);
    free(ids);
    /* user-defined pieces are matched whole, even glued to other text */
    assert_int_equal(rg_tokenize(t, "x<start_of_turn><end_of_turn>y", 30, 0, 0, &ids, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(ids[1], 4);
    assert_int_equal(ids[2], 5);
    free(ids);
    /* NUL is text like any other byte (byte fallback <0x00>) */
    assert_int_equal(rg_tokenize(t, "a\0b", 3, 0, 0, &ids, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 6);
    free(ids);
    assert_int_equal(rg_tokenize(t, "", 0, 0, 0, &ids, &n), 0);
    assert_int_equal(n, 0);
    free(ids);
    int32_t bad[] = {272, 1000};
    char *text;
    size_t len;
    assert_int_equal(rg_detokenize(t, bad, 2, &text, &len), -1);
    assert_non_null(strstr(rg_last_error(), "1000 is out of range"));
    rg_tokenizer_free(t);
}

/* A character split across byte pieces comes out whole, once complete. */
static void test_stream_multibyte(void **state) {
    rg_tokenizer *t = load_small();
    rg_detok_stream *s = rg_detok_stream_new(t);
    size_t l;
    const char *p;
    /* U+1F600 = F0 9F 98 80 as four byte pieces, between words */
    int32_t ids[] = {272, 6 + 0xf0, 6 + 0x9f, 6 + 0x98, 6 + 0x80, 272};
    const char *want[] = {" the", "", "", "", "\xf0\x9f\x98\x80", " the"};
    for (int i = 0; i < 6; i++) {
        p = rg_detok_stream_push(s, ids[i], &l);
        assert_non_null(p);
        assert_int_equal(l, strlen(want[i]));
        assert_memory_equal(p, want[i], l);
    }
    /* an incomplete character ended by a normal piece: one U+FFFD per byte */
    p = rg_detok_stream_push(s, 6 + 0xe2, &l);
    assert_int_equal(l, 0);
    p = rg_detok_stream_push(s, 6 + 0x82, &l);
    assert_int_equal(l, 0);
    p = rg_detok_stream_push(s, 272, &l);
    assert_int_equal(l, 10);
    assert_memory_equal(p, "\xef\xbf\xbd\xef\xbf\xbd the", 10);
    /* a byte that cannot start a character is replaced at once */
    p = rg_detok_stream_push(s, 6 + 0xff, &l);
    assert_int_equal(l, 3);
    /* control pieces end a byte run too; flush ends the last one */
    p = rg_detok_stream_push(s, 6 + 0xc3, &l);
    assert_int_equal(l, 0);
    p = rg_detok_stream_push(s, 2, &l);
    assert_int_equal(l, 3);
    p = rg_detok_stream_push(s, 6 + 0xc3, &l);
    assert_int_equal(l, 0);
    p = rg_detok_stream_flush(s, &l);
    assert_int_equal(l, 3);
    assert_memory_equal(p, "\xef\xbf\xbd", 3);
    assert_null(rg_detok_stream_push(s, 5000, &l));
    rg_detok_stream_free(s);
    rg_tokenizer_free(t);
}

static char *tmp_path(const char *suffix) {
    char *p = rg_xmalloc(64);
    snprintf(p, 64, "/tmp/rgemma-tok-%d-%s", (int)getpid(), suffix);
    return p;
}

/* Load small_bpe, change settings in memory, write it as tokenizer.model and
 * load that: the writer and the reader must agree. */
static rg_tokenizer *small_variant(int dummy_prefix, int remove_ws, int suffix) {
    rg_tokenizer *t = load_small();
    t->add_dummy_prefix = dummy_prefix;
    t->remove_extra_whitespaces = remove_ws;
    t->treat_whitespace_as_suffix = suffix;
    char *path = tmp_path("variant.model");
    assert_int_equal(rg_tokenizer_save_model(t, path), 0);
    rg_tokenizer_free(t);
    t = NULL;
    if (rg_tokenizer_load(path, &t)) fail_msg("%s", rg_last_error());
    unlink(path);
    free(path);
    return t;
}

static void expect_encode(const rg_tokenizer *t, const char *text, const int32_t *want, size_t n_want) {
    int32_t *ids;
    size_t n;
    assert_int_equal(rg_tokenize(t, text, strlen(text), 0, 0, &ids, &n), 0);
    if (!ids_equal("encode", text, ids, n, want, n_want)) fail();
    free(ids);
}

static void expect_decode(const rg_tokenizer *t, const int32_t *ids, size_t n, const char *want) {
    char *text;
    size_t len;
    assert_int_equal(rg_detokenize(t, ids, n, &text, &len), 0);
    assert_string_equal(text, want);
    assert_true(stream_ok(t, ids, n, text, len, want));
    free(text);
}

#define ENC(t, s, ...)                                                                                              \
    do {                                                                                                           \
        const int32_t w_[] = {__VA_ARGS__};                                                                        \
        expect_encode(t, s, w_, sizeof w_ / sizeof w_[0]);                                                         \
    } while (0)
#define DEC(t, want, ...)                                                                                           \
    do {                                                                                                           \
        const int32_t i_[] = {__VA_ARGS__};                                                                        \
        expect_decode(t, i_, sizeof i_ / sizeof i_[0], want);                                                      \
    } while (0)

/* Expected ids and texts from python3-sentencepiece 0.1.97 on small_bpe.model
 * with add_dummy_prefix / remove_extra_whitespaces / treat_whitespace_as_suffix
 * switched on. */
static void test_settings_variants(void **state) {
    rg_tokenizer *t = small_variant(1, 0, 0);
    ENC(t, "  hello   world  ", 263, 380, 502, 337, 263, 287, 268, 599, 263);
    ENC(t, " a", 263, 920);
    ENC(t, "   ", 284);
    ENC(t, "x ", 914, 959, 914);
    ENC(t, " \xe2\x96\x81 a", 284, 920);
    DEC(t, " the", 914, 272);
    DEC(t, "the", 2, 272);
    DEC(t, " the", 2, 914, 272);
    DEC(t, "the the", 272, 272);
    DEC(t, "A the", 71, 272);
    DEC(t, "  the", 914, 914, 272);
    rg_tokenizer_free(t);

    t = small_variant(0, 1, 0);
    ENC(t, "  hello   world  ", 925, 502, 337, 287, 268, 599);
    ENC(t, " a", 920);
    ENC(t, "x ", 959);
    ENC(t, " \xe2\x96\x81 a", 263, 920);
    DEC(t, "the", 914, 272);
    DEC(t, "the", 2, 914, 272);
    DEC(t, "A the", 71, 272);
    DEC(t, "the", 914, 914, 272);
    int32_t *ids;
    size_t n;
    assert_int_equal(rg_tokenize(t, "   ", 3, 0, 0, &ids, &n), 0);
    assert_int_equal(n, 0);
    free(ids);
    rg_tokenizer_free(t);

    t = small_variant(1, 1, 0);
    ENC(t, "  hello   world  ", 380, 502, 337, 287, 268, 599);
    ENC(t, " a", 264);
    ENC(t, "x ", 914, 959);
    ENC(t, " \xe2\x96\x81 a", 263, 264);
    rg_tokenizer_free(t);

    /* treat_whitespace_as_suffix: the dummy U+2581 goes last; decoding is as before */
    t = small_variant(1, 0, 1);
    ENC(t, "  hello   world  ", 263, 925, 502, 337, 263, 287, 268, 599, 668);
    ENC(t, " a", 264, 914);
    ENC(t, "x ", 959, 263);
    ENC(t, "the end", 585, 914, 524, 914);
    DEC(t, " the", 914, 272);
    DEC(t, "the ", 272, 914, 2);
    DEC(t, "", 914);
    rg_tokenizer_free(t);
    t = small_variant(1, 1, 1);
    ENC(t, "  hello   world  ", 925, 502, 337, 287, 268, 599, 914);
    ENC(t, " a", 920, 914);
    ENC(t, "x ", 959, 914);
    DEC(t, "the", 914, 272);
    DEC(t, "the  ", 272, 914, 914);
    rg_tokenizer_free(t);
}

/* Without byte fallback (small_bpe less its BYTE pieces), unknown characters
 * become <unk>, one per run (SentencePiece 0.1.97's ids). */
static void test_no_byte_fallback(void **state) {
    rg_tokenizer *small = load_small(), *t = rg_xmalloc(sizeof *t);
    rg_tok_init(t);
    for (int32_t i = 0; i < small->n; i++)
        if (small->type[i] != RG_PIECE_BYTE)
            rg_tok_add_piece(t, rg_tok_text(small, i), rg_tok_len(small, i), small->score[i], small->type[i]);
    t->add_dummy_prefix = t->remove_extra_whitespaces = 0;
    for (int i = 0; i < 4; i++) t->special_piece[i] = strdup(small->special_piece[i]);
    rg_tokenizer_free(small);
    if (rg_tok_finish(t, "no-byte")) fail_msg("%s", rg_last_error());
    ENC(t, "a\xe2\x82\xac\xe2\x82\xac" "b", 664, 3, 677);
    ENC(t, "\xe2\x82\xac x", 3, 658, 703);
    ENC(t, "the \xe4\xb8\xad\xe6\x96\x87 end", 329, 658, 3, 658, 268);
    ENC(t, "\t\t", 3);
    ENC(t, "a\xff" "b", 664, 3, 677);
    DEC(t, "a \xe2\x81\x87 b", 664, 3, 677);
    rg_tokenizer_free(t);
}

/* Many user-defined pieces sharing prefixes (the trie grows several times):
 * each is matched whole, and the longest one wins. */
static void test_many_user_defined(void **state) {
    rg_tokenizer *small = load_small(), *t = rg_xmalloc(sizeof *t);
    rg_tok_init(t);
    for (int32_t i = 0; i < small->n; i++)
        rg_tok_add_piece(t, rg_tok_text(small, i), rg_tok_len(small, i), small->score[i], small->type[i]);
    char piece[80];
    for (int k = 1; k <= 60; k++) { /* runs of 1..60 U+0001: ids 1000..1059 */
        memset(piece, 1, (size_t)k);
        rg_tok_add_piece(t, piece, (size_t)k, 0, RG_PIECE_USER_DEFINED);
    }
    for (int k = 0; k < 500; k++) { /* <u0> .. <u499>: ids 1060..1559 */
        snprintf(piece, sizeof piece, "<u%d>", k);
        rg_tok_add_piece(t, piece, strlen(piece), 0, RG_PIECE_USER_DEFINED);
    }
    t->byte_fallback = small->byte_fallback;
    t->add_dummy_prefix = t->remove_extra_whitespaces = 0;
    rg_tokenizer_free(small);
    if (rg_tok_finish(t, "many-user-defined")) fail_msg("%s", rg_last_error());
    char text[160];
    int32_t *ids;
    size_t n;
    for (int k = 1; k <= 130; k++) { /* k U+0001 = runs of 60, then the rest */
        memset(text, 1, (size_t)k);
        assert_int_equal(rg_tokenize(t, text, (size_t)k, 0, 0, &ids, &n), 0);
        assert_int_equal(n, (size_t)((k + 59) / 60));
        for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], 1000 + (i + 1 < n ? 59 : (k - 1) % 60));
        free(ids);
    }
    for (int k = 0; k < 500; k++) {
        snprintf(text, sizeof text, "x<u%d>y", k);
        assert_int_equal(rg_tokenize(t, text, strlen(text), 0, 0, &ids, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(ids[1], 1060 + k);
        free(ids);
    }
    rg_tokenizer_free(t);
}

/* The writer keeps every piece, score and type. */
static void test_writer_roundtrip(void **state) {
    rg_tokenizer *a = load_small(), *b = NULL;
    char *path = tmp_path("rt.model");
    assert_int_equal(rg_tokenizer_save_model(a, path), 0);
    if (rg_tokenizer_load(path, &b)) fail_msg("%s", rg_last_error());
    assert_int_equal(a->n, b->n);
    for (int32_t i = 0; i < a->n; i++) {
        assert_string_equal(rg_tok_text(a, i), rg_tok_text(b, i));
        assert_true(a->score[i] == b->score[i]);
        assert_int_equal(a->type[i], b->type[i]);
    }
    assert_int_equal(b->bos_id, 2);
    assert_int_equal(b->eos_id, 1);
    assert_int_equal(b->pad_id, 0);
    assert_int_equal(b->unk_id, 3);
    assert_int_equal(golden_check_encode(b, TOKDATA "small_bpe.golden.jsonl", "ids", NULL), 0);
    unlink(path);
    free(path);
    rg_tokenizer_free(a);
    rg_tokenizer_free(b);
}

/* ---- tokenizer.json: write small_bpe the way the HF converter lays it out
 * (ids kept; merges = every split of a piece into two pieces, in score
 * order; specials as added tokens) and check it encodes the same. */

static void write_json_string(FILE *f, const char *s) { rg_json_write_string(f, s, strlen(s)); }

static void write_small_json(const rg_tokenizer *t, const char *path, const char *normalizer, const char *model_type,
                             int shuffle_merges) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"version\": \"1.0\", \"added_tokens\": [");
    for (int i = 0; i < 4; i++)
        fprintf(f, "%s{\"id\": %d, \"content\": \"%s\", \"special\": true}", i ? ", " : "", i, rg_tok_text(t, i));
    fprintf(f, "], \"normalizer\": %s, \"pre_tokenizer\": null, \"model\": {\"type\": \"%s\", \"dropout\": null, "
               "\"unk_token\": \"<unk>\", \"byte_fallback\": true, \"vocab\": {", normalizer, model_type);
    for (int32_t i = 0; i < t->n; i++) {
        fprintf(f, i ? ", " : "");
        write_json_string(f, rg_tok_text(t, i));
        fprintf(f, ": %d", i);
    }
    fprintf(f, "}, \"merges\": [");
    int first = 1;
    for (int32_t i = 262; i < t->n; i++) { /* the NORMAL pieces, in score order */
        int32_t id = shuffle_merges && i == 263 ? 300 : shuffle_merges && i == 300 ? 263 : i;
        const char *s = rg_tok_text(t, id);
        size_t len = rg_tok_len(t, id);
        for (size_t k = 1; k < len; k++) {
            if ((s[k] & 0xc0) == 0x80) continue;
            if (rg_tok_lookup(t, s, k) < 0 || rg_tok_lookup(t, s + k, len - k) < 0) continue;
            char left[64], right[64];
            snprintf(left, sizeof left, "%.*s", (int)k, s);
            snprintf(right, sizeof right, "%s", s + k);
            fprintf(f, first ? "[" : ", [");
            write_json_string(f, left);
            fprintf(f, ", ");
            write_json_string(f, right);
            fprintf(f, "]");
            first = 0;
        }
    }
    fprintf(f, "]}}\n");
    fclose(f);
}

#define SPACE_NORMALIZER "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}"

static void test_hf_json(void **state) {
    rg_tokenizer *small = load_small(), *t = NULL;
    char *path = tmp_path("tokenizer.json");
    write_small_json(small, path, SPACE_NORMALIZER, "BPE", 0);
    if (rg_tokenizer_load(path, &t)) fail_msg("%s", rg_last_error());
    for (int32_t i = 0; i < small->n; i++) {
        assert_int_equal(t->type[i], small->type[i]);
        assert_true(t->score[i] == small->score[i] || small->type[i] != RG_PIECE_NORMAL);
    }
    assert_int_equal(golden_check_encode(t, TOKDATA "small_bpe.golden.jsonl", "ids", NULL), 0);
    assert_int_equal(golden_check_invalid_utf8(t, "small_bpe_ids", NULL), 0);
    assert_int_equal(t->bos_id, 2);
    rg_tokenizer_free(t);

    /* refused: merges out of score order, another model type, another normalizer */
    write_small_json(small, path, SPACE_NORMALIZER, "BPE", 1);
    assert_int_equal(rg_tokenizer_load(path, &t), -1);
    assert_non_null(strstr(rg_last_error(), "not in SentencePiece score order"));
    write_small_json(small, path, SPACE_NORMALIZER, "Unigram", 0);
    assert_int_equal(rg_tokenizer_load(path, &t), -1);
    assert_non_null(strstr(rg_last_error(), "model type Unigram is not supported"));
    write_small_json(small, path, "{\"type\": \"NFKC\"}", "BPE", 0);
    assert_int_equal(rg_tokenizer_load(path, &t), -1);
    assert_non_null(strstr(rg_last_error(), "normalizer NFKC is not supported"));
    unlink(path);
    free(path);
    rg_tokenizer_free(small);
}

/* ---- bad files: each must fail with a message naming the problem */

static void expect_load_error(const void *data, size_t len, const char *want) {
    char *path = tmp_path("bad.model");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    rg_tokenizer *t = NULL;
    int rc = rg_tokenizer_load(path, &t);
    unlink(path);
    free(path);
    if (rc == 0) {
        rg_tokenizer_free(t);
        fail_msg("loaded a bad file; expected an error with \"%s\"", want);
    }
    if (!strstr(rg_last_error(), want)) fail_msg("error \"%s\" lacks \"%s\"", rg_last_error(), want);
}

/* small_bpe.model with extra bytes appended: protobuf merges a repeated
 * message field into the earlier one, so this overrides settings. */
static void expect_appended_error(const char *extra, size_t extra_len, const char *want) {
    char *data;
    size_t len;
    assert_int_equal(rg_read_file(SMALL, 1 << 20, &data, &len), 0);
    data = realloc(data, len + extra_len);
    memcpy(data + len, extra, extra_len);
    expect_load_error(data, len + extra_len, want);
    free(data);
}

static void test_bad_files(void **state) {
    char *data;
    size_t len;
    assert_int_equal(rg_read_file(SMALL, 1 << 20, &data, &len), 0);
    /* truncated anywhere: inside a piece, inside the specs, at a field boundary */
    expect_load_error(data, 1, "truncated");
    expect_load_error(data, 5, "truncated");
    expect_load_error(data, len / 2, "truncated");
    expect_load_error(data, len - 1, "truncated");
    for (size_t cut = 7; cut < len; cut += 97) {
        char *path = tmp_path("cut.model");
        FILE *f = fopen(path, "wb");
        fwrite(data, 1, cut, f);
        fclose(f);
        rg_tokenizer *t = NULL;
        assert_int_equal(rg_tokenizer_load(path, &t), -1);
        unlink(path);
        free(path);
    }
    free(data);
    expect_load_error("", 0, "empty");
    expect_load_error("\x0a\xff\xff\xff\xff\x0f", 6, "remain");
    expect_load_error("hello", 5, "");
    /* wrong field types: score as a varint, piece text as a varint, specs as a varint */
    expect_appended_error("\x0a\x05\x0a\x01q\x10\x01", 7, "field 2 has wire type 0, expected 5");
    expect_appended_error("\x0a\x02\x08\x01", 4, "field 1 has wire type 0, expected 2");
    expect_appended_error("\x10\x01", 2, "ModelProto field 2 has wire type 0, expected 2");
    expect_appended_error("\x0a\x04\x0a\x02qq\x0b", 7, "unsupported wire type 3");
    /* unsupported: unigram, a non-identity normaliser, UNUSED pieces, unknown types */
    expect_appended_error("\x12\x02\x18\x01", 4, "model type UNIGRAM is not supported");
    expect_appended_error("\x1a\x0e\x0a\x08nmt_nfkc\x12\x02\x01\x02", 16, "normalizer 'nmt_nfkc' is not supported");
    expect_appended_error("\x0a\x07\x0a\x03zzq\x18\x05", 9, "UNUSED");
    expect_appended_error("\x0a\x07\x0a\x03zzq\x18\x09", 9, "unknown type 9");
    /* out-of-range ids, duplicates, missing pieces */
    expect_appended_error("\x12\x04\xc8\x02\xa0\x0d", 6, "trainer_spec.bos_id = 1696 is out of range");
    expect_appended_error("\x0a\x09\x0a\x05<eos>\x18\x01", 11, "'<eos>' appears twice (ids 1 and 1000)");
    expect_appended_error("\x0a\x08\x0a\x04<u2>\x18\x02", 10, "two pieces of type UNKNOWN");
    expect_appended_error("\x0a\x07\x0a\x03<0x\x18\x06", 9, "not <0xNN>");
    expect_appended_error("\x12\x03\x98\x02\x00", 5, "BYTE pieces but byte_fallback is off");
    /* JSON: not JSON, no model, vocab ids out of range */
    expect_load_error("{\"model\": ", 10, "not valid JSON");
    expect_load_error("{}", 2, "no \"model\" object");
    const char *j = "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0, \"a\": 5}, "
                    "\"merges\": []}, \"normalizer\": " SPACE_NORMALIZER "}";
    expect_load_error(j, strlen(j), "model.vocab[\"a\"] = 5 is out of range");
    j = "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0, \"a\": \"x\"}}, "
        "\"normalizer\": " SPACE_NORMALIZER "}";
    expect_load_error(j, strlen(j), "is not an integer id");
    j = "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0, \"a\": 1}, "
        "\"merges\": [\"a a\"]}, \"normalizer\": " SPACE_NORMALIZER "}";
    expect_load_error(j, strlen(j), "merges[0] does not make a piece");
    rg_tokenizer *t;
    assert_int_equal(rg_tokenizer_load("tests/data/tokenizer/no-such-file.model", &t), -1);
    assert_int_equal(rg_tokenizer_load("tests/unit", &t), -1);
    assert_non_null(strstr(rg_last_error(), "neither tokenizer.model nor tokenizer.json"));
}

/* rg_tokenizer_find: the tokenizer of a model folder, or of the folder of a
 * model file; -2 when there is none, -1 when the one there is broken. */
static void test_find(void **state) {
    (void)state;
    char dir[] = "/tmp/rgemma-find.XXXXXX", path[256], cmd[512];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "cp %s %s/tokenizer.model", SMALL, dir);
    assert_int_equal(system(cmd), 0);
    rg_tokenizer *t = NULL;
    assert_int_equal(rg_tokenizer_find(dir, &t), 0);
    assert_int_equal(rg_tokenizer_vocab_size(t), 1000);
    rg_tokenizer_free(t);
    snprintf(path, sizeof path, "%s/model.safetensors", dir); /* a model file: its folder */
    assert_int_equal(rg_tokenizer_find(path, &t), 0);
    rg_tokenizer_free(t);
    t = (rg_tokenizer *)1;
    assert_int_equal(rg_tokenizer_find("tests/unit", &t), -2);
    assert_null(t);
    assert_non_null(strstr(rg_last_error(), "tests/unit has no tokenizer.model or tokenizer.json"));
    snprintf(cmd, sizeof cmd, "printf 'not a model' >%s/tokenizer.model", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(rg_tokenizer_find(dir, &t), -1);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) { /* xorshift64*, fixed seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 33) % n;
}

/* Random strings of words, spaces, newlines, tabs, CJK, emoji, user-defined
 * pieces and stray bytes: valid UTF-8 without U+2581 must decode back to
 * itself; anything must stream-decode like the one-go decoder. */
static void test_random_roundtrip(void **state) {
    static const char *parts[] = {"the", " ", "  ", "\n", "\t", "Hello", ",", "0123", "\xc3\xa9", "\xe4\xb8\xad",
                                  "\xf0\x9f\x98\x80", "<start_of_turn>", "<end_of_turn>", "<bos>", "<0x41>",
                                  "\x00", "\xff", "\xe2\x82", "\xed\xa0\x80", "license", "\r\n", "~"};
    const int n_parts = (int)(sizeof parts / sizeof parts[0]), first_invalid = 16;
    rg_tokenizer *t = load_small();
    for (int iter = 0; iter < 400; iter++) {
        char text[512];
        size_t len = 0;
        int valid = 1, k = (int)rnd(24);
        for (int j = 0; j < k; j++) {
            int p = (int)rnd((uint32_t)n_parts);
            size_t pl = p == 15 ? 1 : strlen(parts[p]);
            memcpy(text + len, parts[p], pl);
            len += pl;
            if (p >= first_invalid && p <= 18) valid = 0;
        }
        int32_t *ids;
        size_t n;
        assert_int_equal(rg_tokenize(t, text, len, 0, 0, &ids, &n), 0);
        char *back;
        size_t back_len;
        assert_int_equal(rg_detokenize(t, ids, n, &back, &back_len), 0);
        if (valid && (back_len != len || memcmp(back, text, len))) fail_msg("round trip %d differs", iter);
        assert_true(stream_ok(t, ids, n, back, back_len, "random"));
        free(ids);
        free(back);
    }
    rg_tokenizer_free(t);
}

/* Damaged model files (random bytes overwritten) load cleanly or fail with a
 * message; never crash (run under ASan by make asan). */
static void test_mutated_model(void **state) {
    char *data;
    size_t len;
    assert_int_equal(rg_read_file(SMALL, 1 << 20, &data, &len), 0);
    char *path = tmp_path("mut.model");
    int loaded = 0;
    for (int iter = 0; iter < 300; iter++) {
        char *m = rg_xmalloc(len);
        memcpy(m, data, len);
        for (int j = 0, flips = 1 + (int)rnd(4); j < flips; j++) m[rnd((uint32_t)len)] = (char)rnd(256);
        size_t mlen = rnd(8) ? len : rnd((uint32_t)len);
        FILE *f = fopen(path, "wb");
        fwrite(m, 1, mlen, f);
        fclose(f);
        free(m);
        rg_tokenizer *t = NULL;
        if (rg_tokenizer_load(path, &t) == 0) {
            loaded++;
            int32_t *ids;
            size_t n;
            char *back;
            size_t back_len;
            const char *text = "Hello <start_of_turn> w\xc3\xb6rld \xff";
            assert_int_equal(rg_tokenize(t, text, strlen(text), rg_tokenizer_bos(t) >= 0, 0, &ids, &n), 0);
            assert_int_equal(rg_detokenize(t, ids, n, &back, &back_len), 0);
            free(ids);
            free(back);
            rg_tokenizer_free(t);
        } else {
            assert_true(strlen(rg_last_error()) > 0);
        }
    }
    printf("mutated models: %d of 300 still loaded\n", loaded);
    unlink(path);
    free(path);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_golden),     cmocka_unit_test(test_small_basics),
        cmocka_unit_test(test_stream_multibyte), cmocka_unit_test(test_settings_variants),
        cmocka_unit_test(test_writer_roundtrip), cmocka_unit_test(test_hf_json),
        cmocka_unit_test(test_bad_files),        cmocka_unit_test(test_no_byte_fallback),
        cmocka_unit_test(test_random_roundtrip), cmocka_unit_test(test_mutated_model),
        cmocka_unit_test(test_many_user_defined), cmocka_unit_test(test_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
