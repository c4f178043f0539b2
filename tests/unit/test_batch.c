/* rg_forward_batch and rg_seq_step on every golden case: B independent
 * sequences advanced together give what each gives alone.
 *
 * Each sequence has its own random ids and length (up to 3 attention
 * windows, so most pass the window), joins at its own step, brings 1..6
 * tokens a step (prefill chunks and decode rows mixed in one step) and
 * leaves when its ids run out; the logits of every one of its tokens are
 * compared with rg_forward over the whole sequence alone. Tolerance: the
 * golden atol 5e-4 for float weights (the rows meet other rows only inside
 * a matrix product, where the kernel may differ with the row count: summation
 * order, measured max 2e-6), the same for Q8_0/Q4_0 files, whose activations
 * are rounded per row either way. Run on every kernel set this CPU has, with
 * float32, float16 and (head dimensions that are a multiple of 32: a
 * synthetic case of 32 is added) Q8_0 attention windows
 * (rg_model_set_kv_type: the sequences alone then use the same windows, so
 * the same bounds hold). */
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

#define ATOL 5e-4
#define MAX_B 33

typedef struct {
    char *dir;   /* case folder */
    char *model; /* the model to load: the folder, or a quantised file */
    int q8_only; /* only Q8_0 windows (the synthetic case: the others run on the golden ones) */
} batch_case;

typedef struct {
    int32_t *ids;
    int n, join;  /* ids, step at which it joins */
    float *alone; /* [n x V] logits of rg_forward alone */
} seq_ref;

static void make_seqs(const rg_model *m, seq_ref *q, int B, uint64_t seed) {
    const rg_config *c = rg_model_config(m);
    int V = c->vocab_size, maxlen = 3 * c->window + 3;
    for (int b = 0; b < B; b++) {
        q[b].n = 1 + (int)(rg_splitmix64(&seed) % (uint64_t)maxlen);
        q[b].join = (int)(rg_splitmix64(&seed) % 6);
        q[b].ids = malloc(sizeof(int32_t) * (size_t)q[b].n);
        for (int t = 0; t < q[b].n; t++) q[b].ids[t] = (int32_t)(rg_splitmix64(&seed) % (uint64_t)V);
        q[b].ids[0] = c->bos_id;
        q[b].alone = malloc(sizeof(float) * (size_t)q[b].n * V);
        rg_state *s = rg_state_new(m);
        assert_int_equal(rg_forward(m, s, q[b].ids, q[b].n, q[b].alone, 1), 0);
        rg_state_free(s);
    }
}

static void free_seqs(seq_ref *q, int B) {
    for (int b = 0; b < B; b++) {
        free(q[b].ids);
        free(q[b].alone);
    }
}

/* KL(softmax(p) || softmax(q)) in nats over n logits. */
static double kl(const float *p, const float *q, int n) {
    double mp = -INFINITY, mq = -INFINITY, zp = 0, zq = 0, d = 0;
    for (int i = 0; i < n; i++) mp = fmax(mp, p[i]), mq = fmax(mq, q[i]);
    for (int i = 0; i < n; i++) zp += exp(p[i] - mp), zq += exp(q[i] - mq);
    for (int i = 0; i < n; i++) {
        double lp = p[i] - mp - log(zp), lq = q[i] - mq - log(zq);
        d += exp(lp) * (lp - lq);
    }
    return d;
}

/* Runs the schedule; returns the largest |batched - alone| over all logits
 * and (in *mean_kl) the mean KL(alone || batched) over the positions. */
static double run_schedule(const rg_model *m, seq_ref *q, int B, uint64_t seed, int *max_rows, double *mean_kl) {
    const rg_config *c = rg_model_config(m);
    int V = c->vocab_size;
    rg_state *st[MAX_B];
    int done[MAX_B] = {0};
    for (int b = 0; b < B; b++) st[b] = rg_state_new(m);
    rg_batch_seq batch[MAX_B];
    float *out[MAX_B];
    for (int b = 0; b < B; b++) out[b] = malloc(sizeof(float) * 6 * (size_t)V);
    double worst = 0, kl_sum = 0;
    long positions = 0;
    *max_rows = 0;
    for (int step = 0;; step++) {
        int nb = 0, who[MAX_B], rows = 0;
        for (int b = 0; b < B; b++) {
            if (step < q[b].join || done[b] == q[b].n) continue;
            int take = 1 + (int)(rg_splitmix64(&seed) % 6);
            if (take > q[b].n - done[b]) take = q[b].n - done[b];
            int all = (int)(rg_splitmix64(&seed) & 1);
            batch[nb] = (rg_batch_seq){st[b], q[b].ids + done[b], take, out[b], all};
            who[nb++] = b;
            rows += take;
        }
        if (nb == 0) {
            int left = 0;
            for (int b = 0; b < B; b++) left |= done[b] < q[b].n;
            if (!left) break;
            continue;
        }
        if (rows > *max_rows) *max_rows = rows;
        if (rg_forward_batch(m, batch, nb)) fail_msg("rg_forward_batch: %s", rg_last_error());
        for (int i = 0; i < nb; i++) {
            int b = who[i], n = batch[i].n_tokens;
            assert_int_equal(rg_state_pos(st[b]), done[b] + n);
            int first = batch[i].all_logits ? 0 : n - 1;
            for (int t = first; t < n; t++) {
                const float *got = out[b] + (size_t)(batch[i].all_logits ? t : 0) * V;
                const float *want = q[b].alone + (size_t)(done[b] + t) * V;
                for (int v = 0; v < V; v++) {
                    double d = fabs((double)got[v] - want[v]);
                    if (!(d <= worst)) worst = d; /* NaN counts as worst */
                }
                kl_sum += kl(want, got, V);
                positions++;
            }
            done[b] += n;
        }
    }
    for (int b = 0; b < B; b++) {
        rg_state_free(st[b]);
        free(out[b]);
    }
    *mean_kl = kl_sum / (double)positions;
    return worst;
}

/* With Q8_0/Q4_0 weights a row's logits depend on how many rows share its
 * matrix product: the avx2 kernels round the activations to int8 for one
 * row (decode) only, and on avx512 the panel kernel (from 10 rows) and the
 * tile kernel round differently (measured max |diff| 0.2, mean KL 4e-4).
 * Those are differences of the activation rounding, which the quantisation
 * tests bound (mean KL to the float model <= 1.2e-3 for Q8_0, 0.14 for
 * Q4_0: tests/unit/test_gguf.c), so quantised files are held to that bound;
 * float weights to the golden atol. */
static void test_batch_equals_alone(void **state) {
    batch_case *bc = *state;
    rg_model *m;
    if (rg_model_load(bc->model, &m)) fail_msg("%s", rg_last_error());
    int quantised = strstr(bc->model, ".gguf") != NULL, q4 = strstr(bc->model, "q4_0") != NULL;
    static const int sizes[] = {1, 2, 3, 7, 16, 33};
    const char *paths[] = {"scalar", "avx2", "avx512", "amx", "neon", "neon-dotprod"}, *kv_types[] = {"f32", "f16", "q8_0"};
    const char *before = rg_kernel_path();
    for (int kv = bc->q8_only ? 2 : 0; kv < 3; kv++)
        for (int k = 0; k < (int)(sizeof paths / sizeof paths[0]); k++) {
            if (rg_model_set_kv_type(m, kv_types[kv])) {
                printf("  %s: %s windows refused (%s): not run\n", bc->model, kv_types[kv], rg_last_error());
                break;
            }
            if (rg_set_kernel_path(paths[k])) {
                if (kv == 0)
                    printf("  %s: kernel set %s not available on this CPU or in this build (not run)\n", bc->model,
                           paths[k]);
                continue;
            }
            for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
                int B = sizes[i], rows;
                /* fewer sizes where it is slow (scalar), the bound is loose
                 * (quantised) or the sizes were run with float32 windows */
                if ((k == 0 || quantised || kv > 0) && B != 2 && B != 7 && B != 33) continue;
                seq_ref q[MAX_B];
                double mean_kl;
                make_seqs(m, q, B, 1000 + (uint64_t)B);
                double d = run_schedule(m, q, B, 77 + (uint64_t)B, &rows, &mean_kl);
                printf("  %s [%s, %s window] B=%d (up to %d rows a step): max|diff| = %.2e, mean KL %.2e\n",
                       bc->model, paths[k], kv_types[kv], B, rows, d, mean_kl);
                if (quantised)
                    assert_true(mean_kl <= (q4 ? 0.14 : 1.2e-3));
                else
                    assert_true(d <= ATOL);
                free_seqs(q, B);
            }
        }
    rg_set_kernel_path(before);
    rg_model_free(m);
}

/* A state passed twice, an id out of range or no tokens: refused, and no
 * state moves. */
static void test_batch_refusals(void **state) {
    batch_case *bc = *state;
    rg_model *m;
    if (rg_model_load(bc->model, &m)) fail_msg("%s", rg_last_error());
    rg_state *a = rg_state_new(m), *b = rg_state_new(m);
    int32_t ids[2] = {2, 5}, bad[2] = {2, rg_model_config(m)->vocab_size};
    rg_batch_seq twice[3] = {{a, ids, 2, NULL, 0}, {b, ids, 1, NULL, 0}, {a, ids, 1, NULL, 0}};
    assert_int_equal(rg_forward_batch(m, twice, 3), -1);
    printf("  refused: %s\n", rg_last_error());
    assert_non_null(strstr(rg_last_error(), "same state"));
    rg_batch_seq oob[2] = {{a, ids, 2, NULL, 0}, {b, bad, 2, NULL, 0}};
    assert_int_equal(rg_forward_batch(m, oob, 2), -1);
    assert_non_null(strstr(rg_last_error(), "outside the vocabulary"));
    rg_batch_seq none[1] = {{a, ids, 0, NULL, 0}};
    assert_int_equal(rg_forward_batch(m, none, 1), -1);
    assert_int_equal(rg_forward_batch(m, NULL, 0), -1);
    assert_int_equal(rg_state_pos(a), 0);
    assert_int_equal(rg_state_pos(b), 0);
    rg_state_free(a);
    rg_state_free(b);
    rg_model_free(m);
}

typedef struct {
    int32_t ids[64];
    int n, finals;
} collected;

static int collect(void *ctx, int32_t token, const char *text, size_t len) {
    collected *c = ctx;
    if (token < 0)
        c->finals++;
    else if (c->n < 64)
        c->ids[c->n++] = token;
    return 0;
}

/* Greedy generation of B sequences stepped together (joining and leaving
 * at different steps, prompts prefilled a few tokens a step beside the
 * others' decode rows) gives exactly the tokens each gives alone. */
static void test_seq_step_greedy(void **state) {
    batch_case *bc = *state;
    rg_model *m;
    if (rg_model_load(bc->model, &m)) fail_msg("%s", rg_last_error());
    const rg_config *c = rg_model_config(m);
    enum { B = 9 };
    uint64_t seed = 4242;
    int32_t prompts[B][40];
    int np[B], maxt[B];
    rg_generate_params p[B];
    collected alone[B], together[B];
    memset(together, 0, sizeof together);
    for (int b = 0; b < B; b++) {
        np[b] = 1 + (int)(rg_splitmix64(&seed) % 40);
        for (int t = 0; t < np[b]; t++) prompts[b][t] = (int32_t)(rg_splitmix64(&seed) % (uint64_t)c->vocab_size);
        prompts[b][0] = c->bos_id;
        maxt[b] = 1 + (int)(rg_splitmix64(&seed) % 30);
        rg_generate_params_default(&p[b]);
        p[b].sampling.temperature = 0;
        p[b].max_tokens = maxt[b];
        p[b].ignore_eos = 1;
        rg_state *s = rg_state_new(m);
        memset(&alone[b], 0, sizeof alone[b]);
        rg_generate_result r;
        assert_int_equal(rg_generate(m, NULL, s, prompts[b], np[b], &p[b], collect, &alone[b], &r), 0);
        assert_int_equal(alone[b].n, maxt[b]);
        rg_state_free(s);
    }
    rg_state *st[B];
    rg_seq *q[B];
    int joined = 0;
    for (int step = 0;; step++) {
        if (joined < B && step % 2 == 0) { /* one joins every other step */
            st[joined] = rg_state_new(m);
            q[joined] = rg_seq_new(m, NULL, st[joined], prompts[joined], np[joined], &p[joined], collect,
                                   &together[joined]);
            assert_non_null(q[joined]);
            joined++;
        }
        int active = 0;
        for (int b = 0; b < joined; b++) active += !rg_seq_done(q[b]);
        if (!active && joined == B) break;
        assert_int_equal(rg_seq_step(q, joined, 7), 0);
    }
    for (int b = 0; b < B; b++) {
        const rg_generate_result *r = rg_seq_result(q[b]);
        assert_int_equal(r->stop_reason, RG_STOP_LENGTH);
        assert_int_equal(r->prompt_tokens, np[b]);
        assert_int_equal(together[b].n, alone[b].n);
        assert_memory_equal(together[b].ids, alone[b].ids, sizeof(int32_t) * (size_t)alone[b].n);
        assert_int_equal(together[b].finals, 1);
        rg_seq_free(q[b]);
        rg_state_free(st[b]);
    }
    rg_model_free(m);
}

static char tmp_dir[] = "/tmp/rgemma-test-batch-XXXXXX";

int main(void) {
    if (!mkdtemp(tmp_dir)) return 1;
    char **cases;
    int n = rg_find_golden_cases("tests/data/golden", &cases);
    if (n < 1) {
        fprintf(stderr, "no golden cases under tests/data/golden\n");
        return 1;
    }
    /* per case: the float model, and its Q8_0 and Q4_0 files when its rows
     * are a multiple of 32 (else the quantiser keeps them in bf16) */
    batch_case *bc = calloc((size_t)n * 3 + 1, sizeof *bc);
    struct CMUnitTest *tests = calloc((size_t)n * 5 + 1, sizeof *tests);
    int nb = 0, nt = 0;
    for (int i = 0; i < n; i++) {
        bc[nb] = (batch_case){cases[i], strdup(cases[i]), 0};
        tests[nt++] = (struct CMUnitTest){"batch == alone", test_batch_equals_alone, NULL, NULL, &bc[nb]};
        tests[nt++] = (struct CMUnitTest){"refusals", test_batch_refusals, NULL, NULL, &bc[nb]};
        tests[nt++] = (struct CMUnitTest){"seq_step greedy", test_seq_step_greedy, NULL, NULL, &bc[nb]};
        nb++;
        const char *types[] = {"q8_0", "q4_0"};
        for (int k = 0; k < 2; k++) {
            char name[64];
            snprintf(name, sizeof name, "case%d-%s.gguf", i, types[k]);
            char *out = rg_path_join(tmp_dir, name);
            rg_quantize_params qp;
            rg_quantize_params_default(&qp);
            qp.type = types[k];
            if (rg_quantize(cases[i], out, &qp)) {
                fprintf(stderr, "rg_quantize %s: %s\n", cases[i], rg_last_error());
                return 1;
            }
            bc[nb] = (batch_case){cases[i], out, 0};
            tests[nt++] = (struct CMUnitTest){"batch == alone (quantised)", test_batch_equals_alone, NULL, NULL,
                                              &bc[nb]};
            nb++;
        }
    }
    /* a float case whose head dimension (32) admits Q8_0 windows */
    char *synth = rg_path_join(tmp_dir, "hd32");
    if (rg_write_test_synth(synth, 32, 5)) {
        fprintf(stderr, "rg_synth_write: %s\n", rg_last_error());
        return 1;
    }
    bc[nb] = (batch_case){synth, strdup(synth), 1};
    tests[nt++] = (struct CMUnitTest){"batch == alone (head dim 32)", test_batch_equals_alone, NULL, NULL, &bc[nb]};
    nb++;
    int rc = _cmocka_run_group_tests("batch", tests, (size_t)nt, NULL, NULL);
    for (int i = 0; i < nb; i++) free(bc[i].model);
    free(synth);
    for (int i = 0; i < n; i++) free(cases[i]);
    free(cases);
    free(bc);
    free(tests);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd)) return 1;
    return rc;
}
