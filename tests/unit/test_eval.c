/* Evaluation: log-softmax numerics, perplexity windows and statistics, task
 * files (including malformed lines), answer matching, shot selection, and the
 * log-likelihoods the evaluator computes on the golden models against the same
 * math applied to the reference logits (logits_full.bin). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include "eval/eval.h"
#include "util/util.h"

#define GOLDEN "tests/data/golden/dev_4layer"

/* ------------------------------------------------------------- log softmax */

static void test_logprob_stable(void **st) {
    (void)st;
    /* huge logits would overflow a naive exp: the result only depends on differences */
    float big[3] = {1000.f, 1001.f, 999.f};
    double expect = -log(1 + exp(-1.0) + exp(-2.0));
    assert_true(fabs(rg_logprob(big, 3, 1) - expect) < 1e-12);
    float small[3] = {-1000.f, -999.f, -1001.f};
    assert_true(fabs(rg_logprob(small, 3, 1) - expect) < 1e-12);
    float flat[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    assert_true(fabs(rg_logprob(flat, 4, 2) + log(4.0)) < 1e-12);
    /* the probabilities sum to 1 */
    float x[5] = {0.1f, -3.f, 7.5f, 2.f, 2.f};
    double s = 0;
    for (int i = 0; i < 5; i++) s += exp(rg_logprob(x, 5, i));
    assert_true(fabs(s - 1) < 1e-12);
}

static void test_nll_stats(void **st) {
    (void)st;
    rg_nll_stats s = {0};
    rg_nll_add(&s, 1);
    rg_nll_add(&s, 2);
    rg_nll_add(&s, 3);
    assert_true(fabs(rg_nll_ppl(&s) - exp(2.0)) < 1e-12);
    /* var = 14/3 - 4 = 2/3; stderr = ppl * sqrt(var / (n-1)) */
    assert_true(fabs(rg_nll_ppl_stderr(&s) - exp(2.0) * sqrt(1.0 / 3)) < 1e-12);
}

/* Every token from 1 on is scored at most once; with stride < ctx exactly once. */
static void check_plan(int64_t n, int64_t ctx, int64_t stride, int expect_windows, int expect_scored) {
    rg_ppl_window *w;
    int64_t nw;
    assert_int_equal(rg_ppl_plan(n, ctx, stride, &w, &nw), 0);
    assert_int_equal(nw, expect_windows);
    int *seen = calloc((size_t)n, sizeof *seen), scored = 0;
    for (int64_t i = 0; i < nw; i++) {
        assert_true(w[i].first_scored > w[i].start);
        assert_true(w[i].start + w[i].len <= n);
        assert_true(w[i].len <= (ctx ? ctx : n));
        for (int64_t t = w[i].first_scored; t < w[i].start + w[i].len; t++) seen[t]++, scored++;
    }
    assert_int_equal(seen[0], 0);
    for (int64_t t = 1; t < n; t++) assert_true(seen[t] <= 1);
    assert_int_equal(scored, expect_scored);
    free(seen);
    free(w);
}

static void test_ppl_plan(void **st) {
    (void)st;
    check_plan(10, 4, 2, 4, 9);   /* [0,4) scores 1-3, then 2 tokens per window */
    check_plan(10, 4, 4, 3, 7);   /* non-overlapping: each window's first token unscored */
    check_plan(10, 0, 0, 1, 9);   /* one window */
    check_plan(10, 20, 5, 1, 9);  /* ctx beyond the text: one window */
    check_plan(11, 4, 3, 4, 10);  /* the last window is short */
    rg_ppl_window *w;
    int64_t nw;
    assert_int_equal(rg_ppl_plan(10, 4, 0, &w, &nw), -1);
    assert_int_equal(rg_ppl_plan(10, 4, 5, &w, &nw), -1);
    assert_int_equal(rg_ppl_plan(10, 1, 1, &w, &nw), -1);
    assert_int_equal(rg_ppl_plan(1, 4, 2, &w, &nw), -1);
}

/* ------------------------------------------------------------------ metrics */

static void test_answers(void **st) {
    (void)st;
    char *s = rg_normalize_answer("  The Eiffel\tTower!  ", 21);
    assert_string_equal(s, "eiffel tower");
    free(s);
    s = rg_normalize_answer("An apple, a day.", 16);
    assert_string_equal(s, "apple day");
    free(s);
    s = rg_extract_answer("number", "She has 1,234.00 apples; 3 more makes 1,237.");
    assert_string_equal(s, "1237");
    free(s);
    s = rg_extract_answer("number", "the change is -3.50 dollars");
    assert_string_equal(s, "-3.50");
    free(s);
    s = rg_extract_answer("number", "no digits here");
    assert_string_equal(s, "");
    free(s);
    s = rg_extract_answer("The answer is ([0-9]+)", "The answer is 4. No, The answer is 5.");
    assert_string_equal(s, "5");
    free(s);
    s = rg_extract_answer(NULL, "  Paris \n");
    assert_string_equal(s, "Paris");
    free(s);
    assert_null(rg_extract_answer("([", "x"));
    assert_non_null(strstr(rg_last_error(), "regular expression"));

    char *v1[] = {"12", "7", "12", "7"}; /* a tie goes to the first reached */
    assert_int_equal(rg_majority(v1, 4), 0);
    char *v2[] = {"7", "12", "12"};
    assert_int_equal(rg_majority(v2, 3), 1);

    double x[4] = {1, 0, 1, 1}, mean, se;
    rg_mean_stderr(x, 4, &mean, &se);
    assert_true(fabs(mean - 0.75) < 1e-12);
    assert_true(fabs(se - 0.25) < 1e-12); /* sqrt(0.75 / 3 / 4) */
    assert_int_equal(rg_utf8_chars("caf\xc3\xa9", 5), 4);
}

/* ---------------------------------------------------------------- task files */

static void expect_parse_error(const char *text, const char *needle) {
    rg_task t;
    assert_int_equal(rg_task_parse(text, strlen(text), "t.jsonl", &t), -1);
    if (!strstr(rg_last_error(), needle)) fail_msg("error \"%s\" lacks \"%s\"", rg_last_error(), needle);
}

static void test_task_parse(void **st) {
    (void)st;
    const char *good =
        "# comment\n"
        "\n"
        "{\"id\": 7, \"group\": \"s\", \"context\": \"Q: 2+2?\\nA:\", \"choices\": [\" 4\", \" 5\"], \"label\": 0}\r\n"
        "{\"contexts\": [\"The cup\", \"The jug\"], \"continuation\": \" is full.\", \"label\": 1}\n"
        "{\"prompt\": \"Capital of France?\", \"answers\": \"Paris\", \"stop\": [\"\\n\"], \"max_tokens\": 8}\n"
        "{\"context_ids\": [2, 5], \"choices_ids\": [[1], [3, 4]], \"label\": 1}";
    rg_task t;
    assert_int_equal(rg_task_parse(good, strlen(good), "t.jsonl", &t), 0);
    assert_int_equal(t.n, 4);
    assert_int_equal(t.items[0].line, 3);
    assert_string_equal(t.items[0].id, "7");
    assert_string_equal(t.items[0].group, "s");
    assert_int_equal(t.items[0].kind, RG_ITEM_MC);
    assert_true(t.items[0].shared_ctx);
    assert_string_equal(t.items[0].cont[1].text, " 5");
    assert_int_equal(t.items[1].shared_ctx, 0);
    assert_string_equal(t.items[1].ctx[1].text, "The jug");
    assert_string_equal(t.items[1].cont[1].text, " is full.");
    assert_int_equal(t.items[2].kind, RG_ITEM_GEN);
    assert_int_equal(t.items[2].n_answers, 1);
    assert_int_equal(t.items[2].max_tokens, 8);
    assert_int_equal(t.items[2].n_stop, 1);
    assert_true(t.items[3].is_ids);
    assert_int_equal(t.items[3].cont[1].n_ids, 2);
    assert_int_equal(t.items[3].line, 6);
    rg_task_free(&t);

    expect_parse_error("{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": 0}\n{\"context\": \"a\",,}", "t.jsonl:2: invalid JSON");
    expect_parse_error("\n\n{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": 2}", "t.jsonl:3: \"label\" must be an integer from 0 to 1");
    expect_parse_error("{\"context\": \"a\", \"choices\": [\"b\", \"c\"]}", "t.jsonl:1: missing \"label\"");
    expect_parse_error("{\"context\": \"a\", \"choices\": [\"b\"], \"label\": 0}", "at least 2 choices");
    expect_parse_error("{\"context\": \"a\", \"choices\": [\"b\", \"\"], \"label\": 0}", "\"choices[1]\" is empty");
    expect_parse_error("{\"context\": \"a\", \"choices_ids\": [[1], [2]], \"label\": 0}", "not a mix");
    expect_parse_error("{\"context_ids\": [1, -2], \"choices_ids\": [[1], [2]], \"label\": 0}", "\"context_ids\"[1] is not a token id");
    expect_parse_error("{\"context_ids\": [1.5], \"choices_ids\": [[1], [2]], \"label\": 0}", "is not a token id");
    expect_parse_error("{\"prompt\": \"a\", \"answers\": [\"b\"], \"choices\": [\"x\", \"y\"]}", "not both");
    expect_parse_error("{\"prompt\": \"a\"}", "needs \"choices\"");
    expect_parse_error("[1, 2]", "JSON object");
    expect_parse_error("{\"prompt\": \"a\", \"answers\": [\"b\"]} trailing", "invalid JSON");
    expect_parse_error("{\"prompt\": \"a\", \"answers\": [\"b\"], \"max_tokens\": 0}", "max_tokens");
    expect_parse_error("{\"prompt\": \"\", \"answers\": [\"b\"]}", "\"prompt\" is empty");
    expect_parse_error("# only comments\n\n", "no items");
    expect_parse_error("{\"prompt\": \"a\", \"answers\": [\"b\"]}\n{\"prompt\": \"a\0\", \"answers\": [\"b\"]}", "t.jsonl:2");
}

static void test_shots(void **st) {
    (void)st;
    const char *shots_text =
        "{\"group\": \"x\", \"context\": \"x0\", \"choices\": [\" a\", \" b\"], \"label\": 0}\n"
        "{\"group\": \"x\", \"context\": \"x1\", \"choices\": [\" a\", \" b\"], \"label\": 0}\n"
        "{\"group\": \"x\", \"context\": \"x2\", \"choices\": [\" a\", \" b\"], \"label\": 0}\n"
        "{\"group\": \"y\", \"context\": \"y0\", \"choices\": [\" a\", \" b\"], \"label\": 0}\n"
        "{\"context\": \"n0\", \"choices\": [\" a\", \" b\"], \"label\": 0}\n";
    rg_task shots;
    assert_int_equal(rg_task_parse(shots_text, strlen(shots_text), "shots", &shots), 0);
    rg_item ix = {.group = "x"}, iy = {.group = "y"}, iz = {.group = "z"};
    int a[5], b[5], ref[3];
    assert_int_equal(rg_choose_shots(&shots, &ix, 3, 42, a), 0);
    memcpy(ref, a, sizeof ref);
    assert_int_equal(rg_choose_shots(&shots, &ix, 3, 42, b), 0);
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a[i], b[i]);   /* same seed, same shots */
        assert_true(a[i] >= 0 && a[i] <= 2); /* only group x */
        seen |= 1 << a[i];
    }
    assert_int_equal(seen, 7);
    assert_int_equal(rg_choose_shots(&shots, &iy, 1, 42, a), 0);
    assert_int_equal(a[0], 3);
    assert_int_equal(rg_choose_shots(&shots, &iy, 2, 42, a), -1); /* group y has one */
    assert_non_null(strstr(rg_last_error(), "group \"y\""));
    assert_int_equal(rg_choose_shots(&shots, &iz, 5, 42, a), 0);  /* unknown group: all shots */
    /* some seed picks another order */
    int differs = 0;
    for (uint64_t s = 0; s < 20 && !differs; s++) {
        assert_int_equal(rg_choose_shots(&shots, &ix, 3, s, b), 0);
        differs = memcmp(ref, b, sizeof ref) != 0;
    }
    assert_true(differs);
    rg_task_free(&shots);
}

/* ------------------------------------------------------ golden log-likelihoods */

typedef struct {
    rg_model *m;
    int32_t *tokens;
    int n, V;
    float *logits; /* [n x V] logits_full.bin */
} golden;

static void golden_load(golden *g) {
    char *text, *bin;
    size_t len, blen;
    assert_int_equal(rg_model_load(GOLDEN, &g->m), 0);
    g->V = rg_model_config(g->m)->vocab_size;
    assert_int_equal(rg_read_file(GOLDEN "/golden.json", 1 << 24, &text, &len), 0);
    cJSON *j = cJSON_Parse(text);
    const cJSON *tok = cJSON_GetObjectItem(j, "tokens");
    g->n = cJSON_GetArraySize(tok);
    g->tokens = malloc(sizeof(int32_t) * (size_t)g->n);
    for (int i = 0; i < g->n; i++) g->tokens[i] = (int32_t)cJSON_GetArrayItem(tok, i)->valuedouble;
    cJSON_Delete(j);
    free(text);
    assert_int_equal(rg_read_file(GOLDEN "/logits_full.bin", 1 << 26, &bin, &blen), 0);
    assert_int_equal(blen, sizeof(float) * (size_t)g->n * g->V);
    g->logits = (float *)bin;
}

static void golden_free(golden *g) {
    rg_model_free(g->m);
    free(g->tokens);
    free(g->logits);
}

/* The reference's log p(tokens[t+1] | tokens[0..t]) from its logits row t. */
static double ref_lp(const golden *g, int t, int32_t y) {
    return rg_logprob(g->logits + (size_t)t * g->V, g->V, y);
}

/* Logits within atol 5e-4 of the reference (as check-golden demands) move a
 * log-probability by at most 1e-3; the engine is ~1e-5 away. */
#define LP_TOL 1e-3

static void test_golden_continuation(void **st) {
    (void)st;
    golden g;
    golden_load(&g);
    rg_state *s = rg_state_new(g.m);
    float *last = malloc(sizeof(float) * (size_t)g.V);
    int ks[] = {1, 5, 16, 17, 30};
    for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
        int k = ks[c], n = g.n - k;
        rg_state_reset(s);
        assert_int_equal(rg_forward(g.m, s, g.tokens, k, last, 0), 0);
        double total, *lps = malloc(sizeof(double) * (size_t)n), ref_total = 0;
        int greedy;
        assert_int_equal(rg_score_continuation(g.m, s, last, g.tokens + k, n, &total, &greedy, lps), 0);
        for (int i = 0; i < n; i++) {
            double r = ref_lp(&g, k - 1 + i, g.tokens[k + i]);
            ref_total += r;
            if (fabs(lps[i] - r) > LP_TOL) fail_msg("k=%d token %d: %.6f vs reference %.6f", k, i, lps[i], r);
        }
        assert_true(fabs(total - ref_total) < LP_TOL * n);
        assert_int_equal(greedy, 0); /* the golden tokens are random, not the model's choices */
        assert_int_equal(rg_state_pos(s), g.n - 1);
        free(lps);
    }
    /* a continuation token outside the vocabulary is an error, not a read out of bounds */
    int32_t bad = g.V;
    double total;
    assert_int_equal(rg_score_continuation(g.m, s, last, &bad, 1, &total, NULL, NULL), -1);
    free(last);
    rg_state_free(s);
    golden_free(&g);
}

static void test_golden_perplexity(void **st) {
    (void)st;
    golden g;
    golden_load(&g);
    rg_state *s = rg_state_new(g.m);
    /* the whole sequence as one window equals the reference's mean nll */
    rg_ppl_window w = {0, g.n, 1};
    rg_nll_stats got = {0}, ref = {0};
    assert_int_equal(rg_ppl_run_window(g.m, s, g.tokens, &w, -1, &got), 0);
    for (int t = 0; t + 1 < g.n; t++) rg_nll_add(&ref, -ref_lp(&g, t, g.tokens[t + 1]));
    assert_int_equal(got.n, g.n - 1);
    assert_true(fabs(got.sum - ref.sum) / got.n < LP_TOL);
    assert_true(fabs(log(rg_nll_ppl(&got)) - log(rg_nll_ppl(&ref))) < LP_TOL);
    /* the first window of a plan sees the same tokens as the reference's first rows */
    rg_ppl_window *plan;
    int64_t nw;
    assert_int_equal(rg_ppl_plan(g.n, 16, 8, &plan, &nw), 0);
    rg_nll_stats first = {0}, ref_first = {0};
    assert_int_equal(rg_ppl_run_window(g.m, s, g.tokens, &plan[0], 2, &first), 0);
    for (int t = 0; t < 15; t++) rg_nll_add(&ref_first, -ref_lp(&g, t, g.tokens[t + 1]));
    assert_int_equal(first.n, 15);
    assert_true(fabs(first.sum - ref_first.sum) / 15 < LP_TOL);
    free(plan);
    rg_state_free(s);
    golden_free(&g);
}

/* The hand-checked task file: the evaluator's log-likelihoods equal the
 * reference's (every choice there is a single token or the golden tokens that
 * follow the context), and with reuse on and off they agree. */
static void test_golden_task(void **st) {
    (void)st;
    golden g;
    golden_load(&g);
    rg_task task;
    assert_int_equal(rg_task_load("tests/data/eval/dev4_mc.jsonl", &task), 0);
    assert_int_equal(task.n, 4);
    rg_eval_opts o = {.model = g.m, .reuse = 1};
    rg_evaluator *reuse = rg_evaluator_new(&o);
    o.reuse = 0;
    rg_evaluator *fresh = rg_evaluator_new(&o);
    int acc = 0, acc_norm = 0;
    for (int i = 0; i < task.n; i++) {
        const rg_item *it = &task.items[i];
        rg_item_result a, b;
        assert_int_equal(rg_eval_item(reuse, it, i, &a), 0);
        assert_int_equal(rg_eval_item(fresh, it, i, &b), 0);
        int k = it->ctx[0].n_ids;
        for (int c = 0; c < it->n_choices; c++) {
            const rg_piece *p = &it->cont[c];
            double ref = 0;
            if (p->n_ids == 1) {
                ref = ref_lp(&g, k - 1, p->ids[0]);
            } else {
                for (int j = 0; j < p->n_ids; j++) {
                    assert_int_equal(p->ids[j], g.tokens[k + j]);
                    ref += ref_lp(&g, k - 1 + j, p->ids[j]);
                }
            }
            if (fabs(a.ll[c] - ref) > LP_TOL * p->n_ids)
                fail_msg("line %d choice %d: %.6f vs reference %.6f", it->line, c, a.ll[c], ref);
            assert_true(fabs(a.ll[c] - b.ll[c]) < 1e-6);
            assert_int_equal(a.n_tokens[c], p->n_ids);
        }
        assert_int_equal(a.pred, b.pred);
        assert_true(b.tokens > a.tokens); /* re-processing costs more */
        acc += (int)a.acc;
        acc_norm += (int)a.acc_norm;
        rg_item_result_free(&a);
        rg_item_result_free(&b);
    }
    assert_int_equal(acc, 2);      /* hand-checked in the file's header */
    assert_int_equal(acc_norm, 3);
    rg_evaluator_free(reuse);
    rg_evaluator_free(fresh);
    rg_task_free(&task);
    golden_free(&g);
}

/* Per-choice contexts (WinoGrande form) and ids shots: the evaluator's number
 * equals one full pass over [shots][context][continuation] scored row by row. */
static void test_contexts_and_shots(void **st) {
    (void)st;
    golden g;
    golden_load(&g);
    const char *text =
        "{\"contexts_ids\": [[2, 10, 11], [2, 12]], \"continuation_ids\": [7, 8, 9], \"label\": 1}\n";
    const char *shots_text = "{\"context_ids\": [2, 40], \"choices_ids\": [[41, 42], [43]], \"label\": 0}\n";
    rg_task task, shots;
    assert_int_equal(rg_task_parse(text, strlen(text), "t", &task), 0);
    assert_int_equal(rg_task_parse(shots_text, strlen(shots_text), "s", &shots), 0);
    rg_eval_opts o = {.model = g.m, .reuse = 1, .shots = &shots, .k_shots = 1};
    rg_evaluator *ev = rg_evaluator_new(&o);
    rg_item_result r;
    assert_int_equal(rg_eval_item(ev, &task.items[0], 0, &r), 0);
    /* reference: one pass over the whole sequence, rows scored directly */
    const int32_t seq0[] = {2, 40, 41, 42, 2, 10, 11, 7, 8, 9}, seq1[] = {2, 40, 41, 42, 2, 12, 7, 8, 9};
    const int32_t *seqs[2] = {seq0, seq1};
    int lens[2] = {10, 9};
    for (int c = 0; c < 2; c++) {
        const int32_t *seq = seqs[c];
        int n = lens[c];
        float *lg = malloc(sizeof(float) * (size_t)n * g.V);
        rg_state *s = rg_state_new(g.m);
        assert_int_equal(rg_forward(g.m, s, seq, n, lg, 1), 0);
        double ref = 0;
        for (int t = n - 4; t < n - 1; t++) ref += rg_logprob(lg + (size_t)t * g.V, g.V, seq[t + 1]);
        if (fabs(r.ll[c] - ref) > 1e-6) fail_msg("choice %d: %.8f vs one pass %.8f", c, r.ll[c], ref);
        rg_state_free(s);
        free(lg);
    }
    rg_item_result_free(&r);
    /* a text item cannot run without a tokenizer, and says which line it is */
    const char *t2 = "\n{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"label\": 0}";
    rg_task task2;
    assert_int_equal(rg_task_parse(t2, strlen(t2), "t", &task2), 0);
    assert_int_equal(rg_eval_item(ev, &task2.items[0], 0, &r), -1);
    assert_non_null(strstr(rg_last_error(), "line 2"));
    rg_item_result_free(&r);
    /* an id outside the vocabulary is reported, not read */
    char t3[128];
    snprintf(t3, sizeof t3, "{\"context_ids\": [2], \"choices_ids\": [[%d], [3]], \"label\": 0}", g.V);
    rg_task task3;
    assert_int_equal(rg_task_parse(t3, strlen(t3), "t", &task3), 0);
    assert_int_equal(rg_eval_item(ev, &task3.items[0], 0, &r), -1);
    assert_non_null(strstr(rg_last_error(), "outside the vocabulary"));
    rg_item_result_free(&r);
    rg_task_free(&task3);
    rg_task_free(&task2);
    rg_evaluator_free(ev);
    rg_task_free(&task);
    rg_task_free(&shots);
    golden_free(&g);
}

/* Batched scoring (rg_eval_items with opts.batch > 1) gives what scoring the
 * items one by one gives: the same predictions, greedy flags and token counts,
 * and log-likelihoods within BATCH_TOL per token. The batched pass feeds the
 * same tokens to the same states; only the matrix kernels see other rows
 * beside each row, so the logits differ by float rounding (measured: below
 * 1e-6 on these models), and a log-softmax term moves by at most twice the
 * largest logit change. 1e-4 per token is far above that rounding and far
 * below any difference that would mean a token was fed wrongly. Items: the
 * hand-checked file, per-choice contexts, shots from two groups (the prefix
 * cache switches inside a wave), multi-token choices, generation items in
 * between, and a wave size that splits items' choices. */
#define BATCH_TOL 1e-4

static void test_batched_equals_sequential(void **st) {
    (void)st;
    golden g;
    golden_load(&g);
    char *mc, *gen;
    size_t mlen, glen;
    assert_int_equal(rg_read_file("tests/data/eval/dev4_mc.jsonl", 1 << 20, &mc, &mlen), 0);
    assert_int_equal(rg_read_file("tests/data/eval/dev4_gen.jsonl", 1 << 20, &gen, &glen), 0);
    const char *extra =
        "{\"group\": \"g2\", \"contexts_ids\": [[2, 10, 11], [2, 12], [2, 13, 14, 15]], "
        "\"continuation_ids\": [7, 8, 9], \"label\": 1}\n"
        "{\"group\": \"g1\", \"context_ids\": [2, 30, 31, 32, 33], \"choices_ids\": [[5, 6, 7, 8, 9, 10, 11], "
        "[12], [13, 14]], \"label\": 2}\n"
        "{\"group\": \"g2\", \"context_ids\": [2, 44], \"choices_ids\": [[45, 46], [47, 48, 49]], \"label\": 0}\n";
    size_t n = mlen + glen + 2 * strlen(extra) + 4;
    char *text = malloc(n);
    snprintf(text, n, "%s\n%s\n%s%s", mc, extra, gen, extra);
    rg_task task, shots;
    if (rg_task_parse(text, strlen(text), "t", &task)) fail_msg("%s", rg_last_error());
    const char *shots_text = "{\"group\": \"g1\", \"context_ids\": [2, 40], \"choices_ids\": [[41, 42], [43]], \"label\": 0}\n"
                             "{\"group\": \"g2\", \"context_ids\": [2, 50, 51], \"choices_ids\": [[52], [53]], \"label\": 1}\n";
    assert_int_equal(rg_task_parse(shots_text, strlen(shots_text), "s", &shots), 0);
    for (int with_shots = 0; with_shots < 2; with_shots++) {
        rg_eval_opts o = {.model = g.m, .reuse = 1, .samples = 2, .max_tokens = 6, .seed = 9};
        rg_sampling_params_default(&o.sampling);
        o.sampling.temperature = 0;
        if (with_shots) o.shots = &shots, o.k_shots = 1;
        rg_evaluator *seq = rg_evaluator_new(&o);
        rg_item_result *a = calloc((size_t)task.n, sizeof *a), *b = calloc((size_t)task.n, sizeof *b);
        for (int i = 0; i < task.n; i++)
            if (rg_eval_item(seq, &task.items[i], i, &a[i])) fail_msg("%s", rg_last_error());
        int batches[] = {2, 3, 8, 33};
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            o.batch = batches[bi];
            rg_evaluator *bat = rg_evaluator_new(&o);
            /* the CLI's way: chunks of the batch size; and everything in one call */
            int chunk = bi % 2 ? task.n : o.batch;
            for (int i0 = 0; i0 < task.n; i0 += chunk) {
                int cn = task.n - i0 < chunk ? task.n - i0 : chunk;
                assert_int_equal(rg_eval_items(bat, &task.items[i0], cn, i0, &b[i0]), 0);
            }
            for (int i = 0; i < task.n; i++) {
                const rg_item *it = &task.items[i];
                assert_int_equal(a[i].tokens, b[i].tokens);
                if (it->kind != RG_ITEM_MC) {
                    assert_int_equal(a[i].n_outputs, b[i].n_outputs);
                    for (int k = 0; k < a[i].n_outputs; k++) assert_string_equal(a[i].outputs[k], b[i].outputs[k]);
                    assert_true(a[i].em == b[i].em && a[i].nm == b[i].nm && a[i].maj == b[i].maj);
                    rg_item_result_free(&b[i]);
                    continue;
                }
                for (int c = 0; c < it->n_choices; c++) {
                    if (fabs(a[i].ll[c] - b[i].ll[c]) > BATCH_TOL * a[i].n_tokens[c])
                        fail_msg("batch %d shots %d line %d choice %d: %.9f batched vs %.9f", o.batch, with_shots,
                                 it->line, c, b[i].ll[c], a[i].ll[c]);
                    assert_int_equal(a[i].n_tokens[c], b[i].n_tokens[c]);
                    assert_int_equal(a[i].greedy[c], b[i].greedy[c]);
                }
                assert_int_equal(a[i].pred, b[i].pred);
                assert_int_equal(a[i].pred_norm, b[i].pred_norm);
                assert_true(a[i].acc == b[i].acc && a[i].acc_norm == b[i].acc_norm);
                rg_item_result_free(&b[i]);
            }
            rg_evaluator_free(bat);
        }
        for (int i = 0; i < task.n; i++) rg_item_result_free(&a[i]);
        free(a);
        free(b);
        rg_evaluator_free(seq);
    }
    /* a bad item in a wave fails with its own line */
    const char *t3 = "{\"context_ids\": [2], \"choices_ids\": [[4], [5]], \"label\": 0}\n"
                     "{\"context_ids\": [2], \"choices_ids\": [[4, 999999], [3]], \"label\": 0}\n";
    rg_task task3;
    assert_int_equal(rg_task_parse(t3, strlen(t3), "t", &task3), 0);
    rg_eval_opts o = {.model = g.m, .reuse = 1, .batch = 4};
    rg_evaluator *ev = rg_evaluator_new(&o);
    rg_item_result r[2];
    assert_int_equal(rg_eval_items(ev, task3.items, 2, 0, r), -1);
    assert_non_null(strstr(rg_last_error(), "line 2"));
    assert_non_null(strstr(rg_last_error(), "outside the vocabulary"));
    rg_item_result_free(&r[0]);
    rg_item_result_free(&r[1]);
    rg_evaluator_free(ev);
    rg_task_free(&task3);
    rg_task_free(&task);
    rg_task_free(&shots);
    free(text);
    free(mc);
    free(gen);
    golden_free(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logprob_stable),      cmocka_unit_test(test_nll_stats),
        cmocka_unit_test(test_ppl_plan),            cmocka_unit_test(test_answers),
        cmocka_unit_test(test_task_parse),          cmocka_unit_test(test_shots),
        cmocka_unit_test(test_golden_continuation), cmocka_unit_test(test_golden_perplexity),
        cmocka_unit_test(test_golden_task),         cmocka_unit_test(test_contexts_and_shots),
        cmocka_unit_test(test_batched_equals_sequential),
    };
    return cmocka_run_group_tests_name("eval", tests, NULL, NULL);
}
