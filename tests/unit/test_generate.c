/* rg_generate on the golden models: greedy tokens exact, stops, the pending
 * token, continuing a sequence, state files (save/load/refuse). */
#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <cmocka.h>
#include "../golden/check_golden.h"
#include "model/synth.h"
#include "util/util.h"

typedef struct {
    char *dir;
    int32_t prompt[256], want[64];
    int n_prompt, n_want;
} golden;

static int read_ids(const cJSON *arr, int32_t *out, int max) {
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) if (n < max) out[n++] = (int32_t)e->valuedouble;
    return n;
}

static golden *load_golden(const char *dir) {
    char *path = rg_path_join(dir, "golden.json"), *text;
    size_t len;
    assert_int_equal(rg_read_file(path, 64u << 20, &text, &len), 0);
    cJSON *root = cJSON_Parse(text);
    const cJSON *g = cJSON_GetObjectItem(root, "greedy");
    golden *gd = calloc(1, sizeof *gd);
    gd->dir = strdup(dir);
    gd->n_prompt = read_ids(cJSON_GetObjectItem(g, "prompt"), gd->prompt, 256);
    gd->n_want = read_ids(cJSON_GetObjectItem(g, "generated"), gd->want, 64);
    cJSON_Delete(root);
    free(text);
    free(path);
    return gd;
}

typedef struct {
    int32_t ids[256];
    int n, flushes, stop_after, cancel_after;
    volatile int *cancel;
} collector;

static int collect(void *ctx, int32_t token, const char *text, size_t len) {
    collector *c = ctx;
    assert_null(text); /* no tokenizer */
    assert_int_equal(len, 0);
    if (token < 0) {
        c->flushes++;
        return 0;
    }
    c->ids[c->n++] = token;
    if (c->cancel && c->n == c->cancel_after) *c->cancel = 1;
    return c->stop_after && c->n == c->stop_after;
}

static rg_generate_params greedy(int max_tokens) {
    rg_generate_params p;
    rg_generate_params_default(&p);
    p.sampling.temperature = 0;
    p.max_tokens = max_tokens;
    p.ignore_eos = 1;
    return p;
}

static char tmp_dir[] = "/tmp/rgemma-test-generate-XXXXXX";

static void test_greedy_matches_golden(void **state) {
    golden *g = *state;
    rg_model *m;
    if (rg_model_load(g->dir, &m)) fail_msg("%s", rg_last_error());
    rg_state *s = rg_state_new(m);
    rg_generate_params p = greedy(g->n_want);
    collector c = {0};
    rg_generate_result r;
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, collect, &c, &r), 0);
    assert_int_equal(c.n, g->n_want);
    assert_memory_equal(c.ids, g->want, sizeof(int32_t) * g->n_want);
    assert_int_equal(r.stop_reason, RG_STOP_LENGTH);
    assert_int_equal(r.prompt_tokens, g->n_prompt);
    assert_int_equal(r.generated_tokens, g->n_want);
    assert_int_equal(c.flushes, 1);
    /* the last token is pending, everything before it is in the state */
    assert_int_equal(r.next_token, g->want[g->n_want - 1]);
    assert_int_equal(rg_state_pos(s), g->n_prompt + g->n_want - 1);

    /* continuing in pieces gives the same tokens: 5, then 1 more, then the rest */
    rg_state_reset(s);
    int got = 0;
    int32_t all[64], prompt[260];
    memcpy(prompt, g->prompt, sizeof(int32_t) * g->n_prompt);
    int n_prompt = g->n_prompt;
    const int piece[3] = {5, 1, g->n_want - 6};
    for (int k = 0; k < 3; k++) {
        p.max_tokens = piece[k];
        collector c2 = {0};
        assert_int_equal(rg_generate(m, NULL, s, prompt, n_prompt, &p, collect, &c2, &r), 0);
        memcpy(all + got, c2.ids, sizeof(int32_t) * c2.n);
        got += c2.n;
        prompt[0] = r.next_token;
        n_prompt = 1;
    }
    assert_int_equal(got, g->n_want);
    assert_memory_equal(all, g->want, sizeof(int32_t) * g->n_want);
    rg_state_free(s);
    rg_model_free(m);
}

static void test_stops(void **state) {
    golden *g = *state;
    rg_model *m;
    assert_int_equal(rg_model_load(g->dir, &m), 0);
    rg_state *s = rg_state_new(m);
    rg_generate_result r;

    /* max_tokens 0: the prompt only */
    rg_generate_params p = greedy(0);
    collector c = {0};
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, collect, &c, &r), 0);
    assert_int_equal(r.stop_reason, RG_STOP_LENGTH);
    assert_int_equal(c.n, 0);
    assert_int_equal(r.next_token, -1);
    assert_int_equal(rg_state_pos(s), g->n_prompt);

    /* a stop id: the golden token 3 ends it, and is not passed to the callback */
    int32_t stop = g->want[3];
    int first = 0;
    while (g->want[first] != stop) first++;
    p = greedy(-1);
    p.stop_ids = &stop;
    p.n_stop_ids = 1;
    rg_state_reset(s);
    memset(&c, 0, sizeof c);
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, collect, &c, &r), 0);
    assert_int_equal(r.stop_reason, RG_STOP_EOS);
    assert_int_equal(c.n, first);
    assert_int_equal(r.generated_tokens, first + 1);
    assert_int_equal(r.next_token, stop);

    /* the callback asks to stop */
    p = greedy(-1);
    rg_state_reset(s);
    memset(&c, 0, sizeof c);
    c.stop_after = 2;
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, collect, &c, &r), 0);
    assert_int_equal(r.stop_reason, RG_STOP_CALLBACK);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.flushes, 0);

    /* the cancel flag (as a signal handler sets it) */
    volatile int cancel = 0;
    p.cancel = &cancel;
    rg_state_reset(s);
    memset(&c, 0, sizeof c);
    c.cancel = &cancel;
    c.cancel_after = 3;
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, collect, &c, &r), 0);
    assert_int_equal(r.stop_reason, RG_STOP_CALLBACK);
    assert_int_equal(c.n, 3);
    assert_memory_equal(c.ids, g->want, 3 * sizeof(int32_t));
    /* already cancelled: not even the prompt is processed */
    rg_state_reset(s);
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, NULL, NULL, &r), 0);
    assert_int_equal(r.stop_reason, RG_STOP_CALLBACK);
    assert_int_equal(rg_state_pos(s), 0);

    /* errors */
    p = greedy(4);
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, 0, &p, NULL, NULL, &r), -1);
    assert_non_null(strstr(rg_last_error(), "empty prompt"));
    int32_t bad[2] = {2, 1 << 20};
    assert_int_equal(rg_generate(m, NULL, s, bad, 2, &p, NULL, NULL, &r), -1);
    assert_non_null(strstr(rg_last_error(), "outside the vocabulary"));
    const char *stops[1] = {"x"};
    p.stop = stops;
    p.n_stop = 1;
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, 1, &p, NULL, NULL, &r), -1);
    assert_non_null(strstr(rg_last_error(), "tokenizer"));
    p = greedy(4);
    p.sampling.temperature = -1;
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, 1, &p, NULL, NULL, &r), -1);
    rg_state_free(s);
    rg_model_free(m);
}

static void test_sampling_reproducible(void **state) {
    golden *g = *state;
    rg_model *m;
    assert_int_equal(rg_model_load(g->dir, &m), 0);
    rg_state *s = rg_state_new(m);
    rg_generate_params p;
    rg_generate_params_default(&p);
    p.max_tokens = 24;
    p.ignore_eos = 1;
    p.sampling.temperature = 1.5f;
    p.sampling.seed = 99;
    collector a = {0}, b = {0}, c = {0};
    rg_generate_result r;
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, collect, &a, &r), 0);
    assert_true(r.seed == 99);
    rg_state_reset(s);
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, collect, &b, &r), 0);
    p.sampling.seed = 100;
    rg_state_reset(s);
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, collect, &c, &r), 0);
    assert_int_equal(a.n, 24);
    assert_memory_equal(a.ids, b.ids, sizeof(int32_t) * 24);
    assert_memory_not_equal(a.ids, c.ids, sizeof(int32_t) * 24);
    rg_state_free(s);
    rg_model_free(m);
}

/* N samples of one prompt, as `rgemma generate --parallel` runs them: the
 * prompt but its last token processed once, the state copied, then N
 * sequences stepped together, each starting from the last token with the
 * rest of the prompt as history for the penalties. Sample i equals
 * rg_generate on the whole prompt with seed + i. */
static void test_shared_prefix_samples(void **state) {
    golden *g = *state;
    enum { N = 3, LEN = 16 };
    rg_model *m;
    assert_int_equal(rg_model_load(g->dir, &m), 0);
    rg_generate_params p;
    rg_generate_params_default(&p);
    p.max_tokens = LEN;
    p.ignore_eos = 1;
    p.sampling.temperature = 1.5f;
    p.sampling.repeat_penalty = 1.5f;
    p.sampling.repeat_last_n = -1;
    p.sampling.presence_penalty = 0.5f;
    collector want[N], got[N];
    memset(want, 0, sizeof want);
    memset(got, 0, sizeof got);
    rg_state *s = rg_state_new(m);
    for (int i = 0; i < N; i++) {
        p.sampling.seed = 7 + i;
        rg_state_reset(s);
        assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, collect, &want[i], NULL), 0);
    }
    rg_state_reset(s);
    int np = g->n_prompt;
    if (np > 1) assert_int_equal(rg_forward(m, s, g->prompt, np - 1, NULL, 0), 0);
    rg_state *st[N];
    rg_seq *q[N];
    rg_generate_params pp[N];
    for (int i = 0; i < N; i++) {
        st[i] = rg_state_new(m);
        assert_int_equal(rg_state_copy(st[i], s), 0);
        pp[i] = p;
        pp[i].sampling.seed = 7 + i;
        pp[i].history = g->prompt;
        pp[i].n_history = np - 1;
        q[i] = rg_seq_new(m, NULL, st[i], g->prompt + np - 1, 1, &pp[i], collect, &got[i]);
        assert_non_null(q[i]);
    }
    int steps = 0;
    for (;;) {
        int live = 0;
        for (int i = 0; i < N; i++) live += !rg_seq_done(q[i]);
        if (!live) break;
        assert_int_equal(rg_seq_step(q, N, 0), 0);
        steps++;
    }
    assert_int_equal(steps, LEN); /* the last sampled token is never processed: LEN steps */
    for (int i = 0; i < N; i++) {
        assert_int_equal(got[i].n, LEN);
        assert_int_equal(want[i].n, LEN);
        assert_memory_equal(got[i].ids, want[i].ids, sizeof(int32_t) * LEN);
        assert_true(rg_seq_result(q[i])->seed == (uint64_t)(7 + i));
        rg_seq_free(q[i]);
        rg_state_free(st[i]);
    }
    /* a history id outside the vocabulary is refused */
    int32_t bad = rg_model_config(m)->vocab_size;
    pp[0].history = &bad;
    pp[0].n_history = 1;
    assert_null(rg_seq_new(m, NULL, s, g->prompt, 1, &pp[0], NULL, NULL));
    assert_non_null(strstr(rg_last_error(), "history"));
    rg_state_free(s);
    rg_model_free(m);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) ? -1 : (long)st.st_size;
}

static void flip_byte(const char *path, long at) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, at, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(ch ^ 0x5a, f);
    fclose(f);
}

static void test_state_files(void **state) {
    golden *g = *state;
    rg_model *m;
    assert_int_equal(rg_model_load(g->dir, &m), 0);
    const rg_config *cfg = rg_model_config(m);
    rg_state *s = rg_state_new(m), *s2 = rg_state_new(m);
    rg_generate_params p = greedy(6);
    rg_generate_result r;
    assert_int_equal(rg_generate(m, NULL, s, g->prompt, g->n_prompt, &p, NULL, NULL, &r), 0);
    char *path = rg_path_join(tmp_dir, "a.state"), *path2 = rg_path_join(tmp_dir, "b.state");
    assert_int_equal(rg_state_save_pending(s, &r.next_token, 1, path), 0);
    assert_int_equal(file_size(path), (long)rg_state_file_bytes(cfg));

    /* load -> continue == the uninterrupted run */
    int32_t pending[RG_STATE_MAX_PENDING];
    int np = 0;
    assert_int_equal(rg_state_load_pending(s2, path, pending, &np), 0);
    assert_int_equal(np, 1);
    assert_int_equal(pending[0], g->want[5]);
    assert_int_equal(rg_state_pos(s2), rg_state_pos(s));
    p = greedy(g->n_want - 6);
    collector c = {0};
    assert_int_equal(rg_generate(m, NULL, s2, pending, np, &p, collect, &c, &r), 0);
    assert_memory_equal(c.ids, g->want + 6, sizeof(int32_t) * (g->n_want - 6));

    /* the size does not depend on the position */
    assert_int_equal(rg_state_save(s2, path2), 0);
    assert_int_equal(file_size(path2), file_size(path));
    assert_int_equal(rg_state_load(s2, path2), 0);

    /* refusals leave the state as it was */
    int64_t pos = rg_state_pos(s2);
    char cmd[512];
    flip_byte(path2, 200); /* data */
    assert_int_equal(rg_state_load(s2, path2), -1);
    assert_non_null(strstr(rg_last_error(), "checksum"));
    assert_int_equal(rg_state_pos(s2), pos);
    assert_int_equal(rg_state_save(s2, path2), 0);
    flip_byte(path2, 40); /* position field */
    assert_int_equal(rg_state_load(s2, path2), -1);
    assert_int_equal(rg_state_save(s2, path2), 0);
    flip_byte(path2, 8); /* version */
    assert_int_equal(rg_state_load(s2, path2), -1);
    assert_non_null(strstr(rg_last_error(), "version"));
    assert_int_equal(rg_state_save(s2, path2), 0);
    flip_byte(path2, 0);
    assert_int_equal(rg_state_load(s2, path2), -1);
    assert_non_null(strstr(rg_last_error(), "not an rgemma state file"));
    assert_int_equal(rg_state_save(s2, path2), 0);
    snprintf(cmd, sizeof cmd, "truncate -s -4 '%s'", path2);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(rg_state_load(s2, path2), -1);
    assert_non_null(strstr(rg_last_error(), "truncated"));
    assert_int_equal(rg_state_load(s2, "/nonexistent/x.state"), -1);
    assert_int_equal(rg_state_pos(s2), pos);

    /* another model's state */
    char **cases;
    int n = rg_find_golden_cases("tests/data/golden", &cases);
    for (int i = 0; i < n; i++) {
        rg_model *o;
        assert_int_equal(rg_model_load(cases[i], &o), 0);
        rg_state *so = rg_state_new(o);
        int same = rg_config_fingerprint(rg_model_config(o)) == rg_config_fingerprint(cfg);
        assert_int_equal(rg_state_load(so, path), same ? 0 : -1);
        if (!same) assert_non_null(strstr(rg_last_error(), "another model configuration"));
        rg_state_free(so);
        rg_model_free(o);
        free(cases[i]);
    }
    free(cases);
    free(path);
    free(path2);
    rg_state_free(s);
    rg_state_free(s2);
    rg_model_free(m);
}


/* ---- text: stop strings and hold-back, with a real tokenizer ------------ */

typedef struct {
    char text[4096];
    size_t len;
    int calls, max_piece_ends[256], n_ends;
} text_sink;

static int sink(void *ctx, int32_t token, const char *text, size_t len) {
    text_sink *t = ctx;
    assert_non_null(text);
    assert_true(t->len + len < sizeof t->text);
    memcpy(t->text + t->len, text, len);
    t->len += len;
    t->text[t->len] = 0;
    if (token >= 0 && t->n_ends < 256) t->max_piece_ends[t->n_ends++] = (int)t->len;
    t->calls++;
    return 0;
}

static void test_stop_strings(void **state) {
    (void)state;
    rg_config c;
    rg_synth_preset("tiny", &c);
    c.vocab_size = 1000; /* tests/data/tokenizer/small_bpe.model */
    c.hidden_size = c.lru_width = 64;
    c.num_heads = 4;
    c.head_dim = 16;
    c.mlp_width = 128;
    c.window = 32;
    char *dir = rg_path_join(tmp_dir, "text-model");
    rg_synth_options o = {.dtype = RG_DT_F32, .seed = 3};
    assert_int_equal(rg_synth_write(&c, dir, &o, NULL), 0);
    rg_model *m;
    rg_tokenizer *tok;
    assert_int_equal(rg_model_load(dir, &m), 0);
    assert_int_equal(rg_tokenizer_load("tests/data/tokenizer/small_bpe.model", &tok), 0);
    rg_state *s = rg_state_new(m);
    int32_t *prompt;
    size_t np;
    assert_int_equal(rg_tokenize(tok, "The license", 11, 1, 0, &prompt, &np), 0);

    rg_generate_params p = greedy(40);
    text_sink full = {0};
    rg_generate_result r;
    assert_int_equal(rg_generate(m, tok, s, prompt, (int)np, &p, sink, &full, &r), 0);
    assert_true(full.len > 20);

    /* stop strings cut from the text: the output is the text before its
     * first occurrence, and nothing of the stop string is ever emitted, even
     * when it spans several tokens (then its start was held back) */
    int spanning = 0;
    for (size_t at = 1; at + 6 < full.len; at += 5) {
        for (size_t k = 2; k <= 6; k += 2) {
            char stop[8];
            memcpy(stop, full.text + at, k);
            stop[k] = 0;
            if (strlen(stop) != k) continue;
            const char *first = strstr(full.text, stop);
            size_t want = (size_t)(first - full.text);
            for (int e = 0; e < full.n_ends; e++)
                spanning += full.max_piece_ends[e] > (int)want && full.max_piece_ends[e] < (int)(want + k);
            const char *stops[2] = {"\x01never", stop};
            p.stop = stops;
            p.n_stop = 2;
            rg_state_reset(s);
            text_sink got = {0};
            assert_int_equal(rg_generate(m, tok, s, prompt, (int)np, &p, sink, &got, &r), 0);
            assert_int_equal(r.stop_reason, RG_STOP_STRING);
            assert_int_equal(got.len, want);
            assert_memory_equal(got.text, full.text, want);
        }
    }
    assert_true(spanning > 0);

    /* a stop string whose start appears but never completes: held back while
     * it could, then flushed, so the text is whole */
    char tail[16];
    snprintf(tail, sizeof tail, "%c%c\x02", full.text[full.len - 2], full.text[full.len - 1]);
    const char *stops[1] = {tail};
    p.stop = stops;
    p.n_stop = 1;
    rg_state_reset(s);
    text_sink got = {0};
    assert_int_equal(rg_generate(m, tok, s, prompt, (int)np, &p, sink, &got, &r), 0);
    assert_int_equal(r.stop_reason, RG_STOP_LENGTH);
    assert_int_equal(got.len, full.len);
    assert_memory_equal(got.text, full.text, full.len);
    free(prompt);
    free(dir);
    rg_state_free(s);
    rg_tokenizer_free(tok);
    rg_model_free(m);
}

static void test_chat_turns(void **state) {
    (void)state;
    rg_tokenizer *tok;
    assert_int_equal(rg_tokenizer_load("tests/data/tokenizer/small_bpe.model", &tok), 0);
    int32_t sot = rg_tokenizer_piece_id(tok, "<start_of_turn>"), eot = rg_tokenizer_piece_id(tok, "<end_of_turn>");
    assert_true(sot >= 0 && eot >= 0);
    int32_t *ids, *want;
    size_t n, nw;
    /* first turn = the whole template tokenized (user-defined pieces match as single ids) */
    const char *tmpl = "<start_of_turn>user\nSys.\n\nHi there<end_of_turn>\n<start_of_turn>model\n";
    assert_int_equal(rg_tokenize(tok, tmpl, strlen(tmpl), 1, 0, &want, &nw), 0);
    assert_int_equal(rg_chat_turn(tok, "Sys.", "Hi there", 1, -1, &ids, &n), 0);
    assert_int_equal(n, nw);
    assert_memory_equal(ids, want, n * sizeof *ids);
    assert_int_equal(ids[0], rg_tokenizer_bos(tok));
    assert_int_equal(ids[1], sot);
    free(ids), free(want);
    /* later turn after a reply that ended with <end_of_turn>: pending first, no BOS, no system */
    tmpl = "<end_of_turn>\n<start_of_turn>user\nMore<end_of_turn>\n<start_of_turn>model\n";
    assert_int_equal(rg_tokenize(tok, tmpl, strlen(tmpl), 0, 0, &want, &nw), 0);
    assert_int_equal(rg_chat_turn(tok, "Sys.", "More", 0, eot, &ids, &n), 0);
    assert_int_equal(n, nw);
    assert_memory_equal(ids, want, n * sizeof *ids);
    free(ids);
    /* after a reply cut off at token 300: 300, then <end_of_turn> closes it */
    assert_int_equal(rg_chat_turn(tok, NULL, "More", 0, 300, &ids, &n), 0);
    assert_int_equal(n, nw + 1);
    assert_int_equal(ids[0], 300);
    assert_memory_equal(ids + 1, want, nw * sizeof *ids);
    free(ids), free(want);
    rg_tokenizer_free(tok);
}

int main(void) {
    if (!mkdtemp(tmp_dir)) return 1;
    char **cases;
    int n = rg_find_golden_cases("tests/data/golden", &cases);
    if (n < 1) {
        fprintf(stderr, "no golden cases under tests/data/golden\n");
        return 1;
    }
    struct CMUnitTest *tests = calloc((size_t)n * 5, sizeof *tests);
    golden **g = calloc((size_t)n, sizeof *g);
    for (int i = 0; i < n; i++) {
        g[i] = load_golden(cases[i]);
        tests[5 * i + 0] = (struct CMUnitTest){"greedy", test_greedy_matches_golden, NULL, NULL, g[i]};
        tests[5 * i + 1] = (struct CMUnitTest){"stops", test_stops, NULL, NULL, g[i]};
        tests[5 * i + 2] = (struct CMUnitTest){"sampling", test_sampling_reproducible, NULL, NULL, g[i]};
        tests[5 * i + 3] = (struct CMUnitTest){"state files", test_state_files, NULL, NULL, g[i]};
        tests[5 * i + 4] = (struct CMUnitTest){"shared prefix samples", test_shared_prefix_samples, NULL, NULL, g[i]};
    }
    int rc = _cmocka_run_group_tests("generate", tests, (size_t)n * 5, NULL, NULL);
    const struct CMUnitTest text_tests[] = {cmocka_unit_test(test_stop_strings), cmocka_unit_test(test_chat_turns)};
    rc |= cmocka_run_group_tests_name("generate text", text_tests, NULL, NULL);
    for (int i = 0; i < n; i++) {
        free(g[i]->dir);
        free(g[i]);
        free(cases[i]);
    }
    free(g);
    free(cases);
    free(tests);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd)) return 1;
    return rc;
}
