/* Gradients (src/train): the float64 backward pass against central finite
 * differences of the float64 loss, for elements of every parameter tensor
 * of tiny models whose sequences are several times the attention window,
 * and of LoRA adapters on every kind of linear layer; the reference's bound
 * on the derivative of sqrt(1 - a^2); the float32 path against the float64
 * one; recomputed activations giving the same bits; the training forward
 * against the inference forward (rg_forward); and the public layout. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include "model/model.h"
#include "train/train.h"
#include "util/util.h"

/* The RG-LRU backward itself, for the bounded-sqrt test below. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#define REAL double
#include "train/layers.inc"
#undef REAL
#pragma GCC diagnostic pop

/* Every feature: lru_width != hidden_size, 2 heads of 8 dims (4 rotate),
 * window 3 (sequences of 11 and 13 tokens), soft cap on or off, a pattern
 * starting with either layer type. */
static rg_config tiny_config(int attention_first, float cap) {
    rg_config c;
    rg_synth_preset("tiny", &c);
    c.vocab_size = 29;
    c.hidden_size = 12;
    c.lru_width = 16;
    c.num_heads = 2;
    c.head_dim = 8;
    c.mlp_width = 20;
    c.num_layers = 3;
    c.window = 3;
    c.logits_soft_cap = cap;
    c.pattern_len = 3;
    c.pattern[0] = attention_first ? RG_LAYER_ATTENTION : RG_LAYER_RECURRENT;
    c.pattern[1] = attention_first ? RG_LAYER_RECURRENT : RG_LAYER_ATTENTION;
    c.pattern[2] = RG_LAYER_RECURRENT;
    c.embed_scale = rg_bf16_to_f32(rg_f32_to_bf16(sqrtf(12.0f))); /* 3.46875 */
    return c;
}

static double uniform(uint64_t *s) { return (double)(rg_splitmix64(s) >> 11) / 9007199254740992.0; }
static double normal(uint64_t *s) {
    double u = uniform(s) + 1e-300, v = uniform(s);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Random parameters of a sensible scale: weights ~ 1/sqrt(fan in), every
 * bias and norm weight non-zero, recurrent_param such that a spans (0, 1). */
static double *random_params(const rg_grad *g, uint64_t seed) {
    double *p = rg_xmalloc(sizeof(double) * rg_grad_size(g));
    uint64_t s = seed;
    for (int i = 0; i < rg_grad_n_tensors(g); i++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, i);
        double sd = t->ndim >= 2 ? 1 / sqrt((double)t->shape[t->ndim - 1]) : 0.3;
        if (strstr(t->name, "embed_tokens")) sd = 0.5;
        if (strstr(t->name, "rg_lru.input_gate_weight") || strstr(t->name, "recurrent_gate_weight"))
            sd = 1 / sqrt((double)t->shape[1]);
        if (strstr(t->name, "conv_1d.weight")) sd = 0.5;
        for (size_t j = 0; j < t->count; j++) {
            double v = sd * normal(&s);
            if (strstr(t->name, "recurrent_param")) v = -2.5 + 3 * uniform(&s);
            p[t->offset + j] = v;
        }
    }
    return p;
}

static double loss64(const rg_grad *g, const double *p, const int32_t *tok, int n, const uint8_t *mask) {
    double nll;
    assert_int_equal(rg_train_grad_f64(g, p, NULL, tok, n, mask, 1.0, NULL, &nll, NULL), 0);
    return nll;
}

/* Central differences of the float64 loss at `per` elements of every tensor
 * (its first and last element among them), against the analytic gradient. */
static void check_fd(const rg_config *cfg, int n, const uint8_t *mask, uint64_t seed) {
    rg_grad *g = rg_grad_new(cfg);
    assert_non_null(g);
    double *p = random_params(g, seed), *grad = rg_xcalloc(rg_grad_size(g), sizeof(double)), nll;
    int32_t tok[64];
    uint64_t s = seed ^ 77;
    for (int t = 0; t < n; t++) tok[t] = (int32_t)(rg_splitmix64(&s) % (uint64_t)cfg->vocab_size);
    int64_t targets;
    assert_int_equal(rg_train_grad_f64(g, p, NULL, tok, n, mask, 1.0, grad, &nll, &targets), 0);
    assert_true(nll > 0 && isfinite(nll));
    const double h = 1e-5;
    int per = 5, checked = 0;
    double worst = 0;
    for (int i = 0; i < rg_grad_n_tensors(g); i++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, i);
        double tensor_max = 0;
        for (size_t j = 0; j < t->count; j++) tensor_max = fmax(tensor_max, fabs(grad[t->offset + j]));
        assert_true(tensor_max > 0); /* every tensor takes part */
        for (int k = 0; k < per; k++) {
            size_t j = k == 0 ? 0 : k == 1 ? t->count - 1 : (size_t)(rg_splitmix64(&s) % t->count);
            double *x = &p[t->offset + j], keep = *x;
            *x = keep + h;
            double up = loss64(g, p, tok, n, mask);
            *x = keep - h;
            double down = loss64(g, p, tok, n, mask);
            *x = keep;
            double fd = (up - down) / (2 * h), an = grad[t->offset + j];
            double err = fabs(fd - an), lim = 1e-6 * fmax(tensor_max, 1e-3);
            if (err > lim) fail_msg("%s[%zu]: analytic %.10g, finite difference %.10g", t->name, j, an, fd);
            worst = fmax(worst, err / lim);
            checked++;
        }
    }
    print_message("note: %d elements of %d tensors (n %d, window %d, cap %g): worst error %.2g of tolerance\n",
                  checked, rg_grad_n_tensors(g), n, cfg->window, cfg->logits_soft_cap, worst);
    free(p);
    free(grad);
    rg_grad_free(g);
}

static void test_fd_recurrent_first_capped(void **state) {
    (void)state;
    rg_config c = tiny_config(0, 3.0f);
    check_fd(&c, 11, NULL, 1);
}

/* soft cap 0 (no cap), attention first, and a mask that leaves out some
 * targets (as a chat's user turns are) */
static void test_fd_attention_first_uncapped_masked(void **state) {
    (void)state;
    rg_config c = tiny_config(1, 0.0f);
    uint8_t mask[13] = {0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1};
    check_fd(&c, 13, mask, 2);
}

/* LoRA adapters on every linear layer's weight (the base frozen: no
 * gradient buffer): the loss is that of the merged weights W + s B A, and
 * dA, dB match central differences. */
typedef struct {
    rg_lora_f64 *ad;
    int n;
    double *mem;
} adapters64;

static adapters64 make_adapters(const rg_grad *g, int rank, double scale, uint64_t seed) {
    adapters64 a = {rg_xcalloc((size_t)rg_grad_n_tensors(g), sizeof(rg_lora_f64)), 0, NULL};
    size_t total = 0;
    for (int i = 0; i < rg_grad_n_tensors(g); i++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, i);
        if (rg_lora_target(t->name)) total += 2 * (size_t)rank * (size_t)(t->shape[0] + t->shape[1]);
    }
    a.mem = rg_xcalloc(total, sizeof(double));
    double *at = a.mem;
    uint64_t s = seed;
    for (int i = 0; i < rg_grad_n_tensors(g); i++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, i);
        if (!rg_lora_target(t->name)) continue;
        size_t na = (size_t)rank * (size_t)t->shape[1], nb = (size_t)t->shape[0] * (size_t)rank;
        double *A = at, *B = at + na;
        for (size_t j = 0; j < na + nb; j++) at[j] = 0.4 * normal(&s);
        a.ad[a.n++] = (rg_lora_f64){i, rank, scale, A, B, B + nb, B + nb + na, NULL};
        at += 2 * (na + nb);
    }
    return a;
}

static void test_fd_lora(void **state) {
    (void)state;
    rg_config c = tiny_config(1, 3.0f);
    rg_grad *g = rg_grad_new(&c);
    int n = 11, rank = 2;
    double *p = random_params(g, 4), *merged = rg_xmalloc(sizeof(double) * rg_grad_size(g)), nll, want;
    adapters64 a = make_adapters(g, rank, 0.7, 8);
    assert_int_equal(a.n, 2 * 3 + 1 * 4 + 3 * 3); /* two recurrent layers, one attention layer, three MLPs */
    memcpy(merged, p, sizeof(double) * rg_grad_size(g));
    for (int k = 0; k < a.n; k++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, a.ad[k].tensor);
        int out = (int)t->shape[0], in = (int)t->shape[1];
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                double acc = 0;
                for (int r = 0; r < rank; r++) acc += a.ad[k].B[o * rank + r] * a.ad[k].A[r * in + i];
                merged[t->offset + (size_t)o * in + i] += 0.7 * acc;
            }
    }
    int32_t tok[11];
    uint64_t s = 21;
    for (int t = 0; t < n; t++) tok[t] = (int32_t)(rg_splitmix64(&s) % (uint64_t)c.vocab_size);
    rg_grad_opts_f64 opts = {a.ad, a.n, 0, NULL};
    assert_int_equal(rg_train_grad_f64(g, p, &opts, tok, n, NULL, 1.0, NULL, &nll, NULL), 0);
    assert_int_equal(rg_train_grad_f64(g, merged, NULL, tok, n, NULL, 1.0, NULL, &want, NULL), 0);
    assert_true(fabs(nll - want) <= 1e-12 * want);
    rg_lora_f64 *frozen = rg_xmalloc(sizeof *frozen * (size_t)a.n); /* the same adapters, no gradients */
    for (int k = 0; k < a.n; k++) frozen[k] = a.ad[k], frozen[k].dA = frozen[k].dB = NULL;
    rg_grad_opts_f64 loss_only = {frozen, a.n, 0, NULL};
    const double h = 1e-5;
    double worst = 0;
    for (int k = 0; k < a.n; k++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, a.ad[k].tensor);
        for (int which = 0; which < 2; which++) {
            double *x = (double *)(which ? a.ad[k].B : a.ad[k].A), *dx = which ? a.ad[k].dB : a.ad[k].dA;
            size_t count = (size_t)rank * (size_t)t->shape[which ? 0 : 1], top = 0;
            for (size_t j = 0; j < count; j++)
                if (fabs(dx[j]) > fabs(dx[top])) top = j;
            assert_true(dx[top] != 0); /* every adapter takes part */
            size_t picks[3] = {top, 0, count - 1};
            for (int q = 0; q < 3; q++) {
                double keep = x[picks[q]], up, down;
                x[picks[q]] = keep + h;
                assert_int_equal(rg_train_grad_f64(g, p, &loss_only, tok, n, NULL, 1.0, NULL, &up, NULL), 0);
                x[picks[q]] = keep - h;
                assert_int_equal(rg_train_grad_f64(g, p, &loss_only, tok, n, NULL, 1.0, NULL, &down, NULL), 0);
                x[picks[q]] = keep;
                double fd = (up - down) / (2 * h), an = dx[picks[q]], lim = 1e-6 * fmax(fabs(dx[top]), 1e-3);
                if (fabs(fd - an) > lim)
                    fail_msg("%s d%c[%zu]: analytic %.10g, finite difference %.10g", t->name, which ? 'B' : 'A',
                             picks[q], an, fd);
                worst = fmax(worst, fabs(fd - an) / lim);
            }
        }
    }
    print_message("note: LoRA on %d matrices: worst error %.2g of tolerance\n", a.n, worst);
    free(frozen);
    free(a.ad);
    free(a.mem);
    free(p);
    free(merged);
    rg_grad_free(g);
}

/* Where 4(1 - a^2) < 1e-6 the reference takes sqrt's derivative as 1000
 * (not 1/(2 sqrt(1 - a^2))). One channel, two steps, dL/dh = (0, 1): the
 * whole gradient of recurrent_param by hand. */
static void test_sqrt_derivative_bound(void **state) {
    (void)state;
    const double lambdas[] = {-30.0, 0.5}; /* bound engaged / not */
    for (int k = 0; k < 2; k++) {
        double L = lambdas[k], x[2] = {0.7, -1.3}, gxp[2] = {0.2, 0.4}, gap[2] = {-0.3, 0.6};
        double gx[2], ga[2], hs[2], dH[2] = {0, 1}, dX[2] = {0, 0}, dGX[2], dGA[2], dL = 0;
        memcpy(gx, gxp, sizeof gx);
        memcpy(ga, gap, sizeof ga);
        rglru(x, gx, ga, &L, 2, 1, hs);
        rglru_back(x, gx, ga, &L, hs, 2, 1, dH, dX, dGX, dGA, &dL);
        double sp = L > 20 ? L : log1p(exp(L)), log_a = -8 * ga[1] * sp, a = exp(log_a), a2 = exp(2 * log_a);
        double slope = 4 * (1 - a2) < 1e-6 ? 1000 : 1 / (2 * sqrt(1 - a2));
        double dlog_a = hs[0] * a - x[1] * gx[1] * slope * 2 * a2;
        double want = dlog_a * (-8 * ga[1]) / (1 + exp(-L));
        assert_true(fabs(dL - want) <= 1e-12 * fabs(want) + 1e-300);
        if (k == 0) { /* the bound is engaged, and it matters */
            assert_true(slope == 1000 && 1 / (2 * sqrt(1 - a2)) > 1e5);
            assert_true(isfinite(dL) && fabs(dGA[1]) < 1e-3);
        }
    }
}

/* The float32 path (rg_grad_compute) is the float64 one rounded. */
static void f32_matches_f64(int vocab) {
    rg_config c = tiny_config(0, 3.0f);
    c.vocab_size = vocab;
    rg_grad *g = rg_grad_new(&c);
    size_t total = rg_grad_size(g);
    double *p = random_params(g, 5), *g64 = rg_xcalloc(total, sizeof(double)), nll64, nll32;
    float *p32 = rg_xmalloc(sizeof(float) * total), *g32 = rg_xcalloc(total, sizeof(float));
    for (size_t i = 0; i < total; i++) p32[i] = (float)p[i];
    for (size_t i = 0; i < total; i++) p[i] = p32[i];
    int32_t tok[20];
    for (int t = 0; t < 20; t++) tok[t] = (int32_t)((t * 7 + 3) % c.vocab_size);
    int64_t n32, n64;
    assert_int_equal(rg_grad_compute(g, p32, tok, 20, NULL, 1.0 / 19, g32, &nll32, &n32), 0);
    assert_int_equal(rg_train_grad_f64(g, p, NULL, tok, 20, NULL, 1.0 / 19, g64, &nll64, &n64), 0);
    assert_int_equal(n32, 19);
    assert_int_equal(n64, 19);
    assert_true(fabs(nll32 - nll64) <= 1e-5 * nll64);
    for (int i = 0; i < rg_grad_n_tensors(g); i++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, i);
        double mx = 0, err = 0;
        for (size_t j = 0; j < t->count; j++) {
            mx = fmax(mx, fabs(g64[t->offset + j]));
            err = fmax(err, fabs(g64[t->offset + j] - g32[t->offset + j]));
        }
        if (err > 1e-4 * mx) fail_msg("%s: float32 off by %.3g (max |g| %.3g)", t->name, err, mx);
    }
    /* grad accumulates; NULL grad gives the same loss */
    double again;
    assert_int_equal(rg_grad_compute(g, p32, tok, 20, NULL, 1.0 / 19, g32, &again, NULL), 0);
    assert_true(again == nll32);
    for (size_t i = 0; i < total; i++) assert_true(fabsf(g32[i] - 2 * (float)g64[i]) <= 1e-4f + 1e-3f * fabsf(g32[i]));
    assert_int_equal(rg_grad_compute(g, p32, tok, 20, NULL, 1.0, NULL, &again, NULL), 0);
    assert_true(again == nll32);
    free(p);
    free(g64);
    free(p32);
    free(g32);
    rg_grad_free(g);
}

/* float32 against float64, with a vocabulary within one block of the
 * logits' embedding rows and one over two blocks (backward.inc EMBED_ROWS) */
static void test_f32_matches_f64(void **state) {
    (void)state;
    f32_matches_f64(29);
    f32_matches_f64(2 * 4096 + 123);
}

/* The same numbers on 1 thread and on several. */
static void test_thread_count_independent(void **state) {
    (void)state;
    rg_config c = tiny_config(1, 3.0f);
    rg_grad *g = rg_grad_new(&c);
    size_t total = rg_grad_size(g);
    double *p = random_params(g, 9);
    float *p32 = rg_xmalloc(sizeof(float) * total), *a = rg_xcalloc(total, sizeof(float)),
          *b = rg_xcalloc(total, sizeof(float));
    for (size_t i = 0; i < total; i++) p32[i] = (float)p[i];
    int32_t tok[17];
    for (int t = 0; t < 17; t++) tok[t] = (int32_t)((t * 5 + 1) % c.vocab_size);
    int threads = rg_get_threads();
    double la, lb;
    rg_set_threads(1);
    assert_int_equal(rg_grad_compute(g, p32, tok, 17, NULL, 1.0, a, &la, NULL), 0);
    rg_set_threads(3);
    assert_int_equal(rg_grad_compute(g, p32, tok, 17, NULL, 1.0, b, &lb, NULL), 0);
    rg_set_threads(threads);
    assert_true(la == lb);
    assert_memory_equal(a, b, sizeof(float) * total);
    free(p);
    free(p32);
    free(a);
    free(b);
    rg_grad_free(g);
}

/* The buffers a layout keeps between calls (train/pool.c) change no bit:
 * after calls on other tokens and another length, and while another call
 * holds the pool (this one then allocates its own), a gradient equals a
 * fresh layout's. */
static void test_pool_reuse_same_bits(void **state) {
    (void)state;
    rg_config c = tiny_config(0, 3.0f);
    rg_grad *used = rg_grad_new(&c), *fresh = rg_grad_new(&c);
    size_t total = rg_grad_size(used);
    double *p = random_params(used, 21);
    float *p32 = rg_xmalloc(sizeof(float) * total), *want = rg_xcalloc(total, sizeof(float)),
          *got = rg_xcalloc(total, sizeof(float)), *junk = rg_xcalloc(total, sizeof(float));
    for (size_t i = 0; i < total; i++) p32[i] = (float)p[i];
    int32_t tok[17], other[17];
    for (int t = 0; t < 17; t++) {
        tok[t] = (int32_t)((t * 7 + 3) % c.vocab_size);
        other[t] = (int32_t)((t * 11 + 5) % c.vocab_size);
    }
    double lw, lg, lj;
    assert_int_equal(rg_grad_compute(fresh, p32, tok, 17, NULL, 1.0, want, &lw, NULL), 0);
    assert_int_equal(rg_grad_compute(used, p32, other, 17, NULL, 1.0, junk, &lj, NULL), 0);
    assert_int_equal(rg_grad_compute(used, p32, other, 13, NULL, 1.0, junk, &lj, NULL), 0);
    assert_int_equal(rg_grad_compute(used, p32, other, 17, NULL, 1.0, junk, &lj, NULL), 0);
    assert_int_equal(rg_grad_compute(used, p32, tok, 17, NULL, 1.0, got, &lg, NULL), 0);
    assert_true(lw == lg);
    assert_memory_equal(want, got, sizeof(float) * total);
    assert_true(rg_pool_acquire(used->pool)); /* as if another call ran */
    memset(got, 0, sizeof(float) * total);
    assert_int_equal(rg_grad_compute(used, p32, tok, 17, NULL, 1.0, got, &lg, NULL), 0);
    assert_memory_equal(want, got, sizeof(float) * total);
    rg_pool_release(used->pool);
    free(p);
    free(p32);
    free(want);
    free(got);
    free(junk);
    rg_grad_free(used);
    rg_grad_free(fresh);
}

/* The training forward is the inference forward: a float32 model written
 * by rg_synth, read back through rg_grad_params_from_model, gives the loss
 * rg_forward's logits give. */
static void test_loss_equals_inference(void **state) {
    (void)state;
    char dir[] = "/tmp/rgemma-test-grad-XXXXXX";
    assert_non_null(mkdtemp(dir));
    rg_config c = tiny_config(0, 30.0f);
    rg_synth_params sp;
    rg_synth_params_default(&sp);
    sp.dtype = "f32";
    assert_int_equal(rg_synth(&c, dir, &sp, NULL), 0);
    rg_model *m;
    assert_int_equal(rg_model_load(dir, &m), 0);
    rg_grad *g = rg_grad_new(rg_model_config(m));
    float *p = rg_xmalloc(sizeof(float) * rg_grad_size(g));
    assert_int_equal(rg_grad_params_from_model(g, m, p), 0);
    int n = 14, V = c.vocab_size;
    int32_t tok[14];
    for (int t = 0; t < n; t++) tok[t] = (int32_t)((t * 11 + 2) % V);
    float *logits = rg_xmalloc(sizeof(float) * (size_t)n * V);
    rg_state *s = rg_state_new(m);
    assert_int_equal(rg_forward(m, s, tok, n, logits, 1), 0);
    double want = 0, got;
    for (int t = 0; t + 1 < n; t++) want -= rg_logprob(logits + (size_t)t * V, V, tok[t + 1]);
    assert_int_equal(rg_grad_compute(g, p, tok, n, NULL, 1.0, NULL, &got, NULL), 0);
    assert_true(fabs(got - want) <= 1e-4 * fabs(want));
    rg_state_free(s);
    free(logits);
    free(p);
    rg_grad_free(g);
    rg_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Recomputing each layer's tape in the backward pass (activation
 * checkpointing) gives the same bits: the loss, the full gradient, and
 * with the base frozen the adapters' gradients (on 1 thread and on 3, and
 * with the adapted matrices read from bf16 copies). */
static void test_recompute_same_bits(void **state) {
    (void)state;
    rg_config c = tiny_config(0, 3.0f);
    rg_grad *g = rg_grad_new(&c);
    size_t total = rg_grad_size(g);
    double *p = random_params(g, 12);
    float *p32 = rg_xmalloc(sizeof(float) * total), *ga = rg_xcalloc(total, sizeof(float)),
          *gb = rg_xcalloc(total, sizeof(float));
    for (size_t i = 0; i < total; i++) p32[i] = (float)p[i];
    int32_t tok[17];
    for (int t = 0; t < 17; t++) tok[t] = (int32_t)((t * 5 + 2) % c.vocab_size);
    rg_grad_opts_f32 plain = {NULL, 0, 0, NULL}, again = {NULL, 0, 1, NULL};
    double la, lb;
    assert_int_equal(rg_train_grad_f32(g, p32, &plain, tok, 17, NULL, 1.0, ga, &la, NULL), 0);
    assert_int_equal(rg_train_grad_f32(g, p32, &again, tok, 17, NULL, 1.0, gb, &lb, NULL), 0);
    assert_true(la == lb);
    assert_memory_equal(ga, gb, sizeof(float) * total);
    /* LoRA on every linear layer, the base frozen */
    adapters64 a = make_adapters(g, 3, 0.5, 13);
    size_t mem = 0;
    for (int k = 0; k < a.n; k++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, a.ad[k].tensor);
        mem += 2 * 3 * (size_t)(t->shape[0] + t->shape[1]);
    }
    float *m32 = rg_xmalloc(sizeof(float) * mem), *dm = rg_xcalloc(2 * mem, sizeof(float));
    for (size_t i = 0; i < mem; i++) m32[i] = (float)a.mem[i];
    rg_lora_f32 *l32 = rg_xmalloc(sizeof *l32 * (size_t)a.n), *l32b = rg_xmalloc(sizeof *l32b * (size_t)a.n);
    /* the adapted matrices made bf16 values: the run below reads them from a bf16 copy instead */
    float *p16 = rg_xmalloc(sizeof(float) * total);
    uint16_t *w16 = rg_xmalloc(sizeof(uint16_t) * total);
    memcpy(p16, p32, sizeof(float) * total);
    for (int k = 0; k < a.n; k++) {
        size_t at = (size_t)(a.ad[k].A - a.mem), na = (size_t)(a.ad[k].B - a.ad[k].A);
        const rg_grad_tensor *t = rg_grad_tensor_at(g, a.ad[k].tensor);
        for (size_t i = t->offset; i < t->offset + t->count; i++) {
            w16[i] = rg_f32_to_bf16(p32[i]);
            p32[i] = rg_bf16_to_f32(w16[i]);
            p16[i] = NAN; /* unread */
        }
        l32[k] = (rg_lora_f32){a.ad[k].tensor, 3, 0.5f, m32 + at, m32 + at + na, dm + at, dm + at + na, NULL};
        l32b[k] = (rg_lora_f32){a.ad[k].tensor, 3, 0.5f, m32 + at, m32 + at + na, dm + mem + at, dm + mem + at + na,
                                w16 + t->offset};
    }
    /* and the embedding too, as LoRA keeps it (frozen) */
    const rg_grad_tensor *emb = rg_grad_tensor_at(g, rg_grad_find(g, "model.embed_tokens.weight"));
    for (size_t i = emb->offset; i < emb->offset + emb->count; i++) {
        w16[i] = rg_f32_to_bf16(p32[i]);
        p32[i] = rg_bf16_to_f32(w16[i]);
        p16[i] = NAN;
    }
    rg_grad_opts_f32 lora = {l32, a.n, 0, NULL}, lora_again = {l32b, a.n, 1, w16 + emb->offset};
    int threads = rg_get_threads(); /* and on 1 thread and on 3 */
    rg_set_threads(1);
    assert_int_equal(rg_train_grad_f32(g, p32, &lora, tok, 17, NULL, 1.0, NULL, &la, NULL), 0);
    rg_set_threads(3);
    assert_int_equal(rg_train_grad_f32(g, p16, &lora_again, tok, 17, NULL, 1.0, NULL, &lb, NULL), 0);
    rg_set_threads(threads);
    assert_true(la == lb);
    assert_memory_equal(dm, dm + mem, sizeof(float) * mem);
    double norm = 0;
    for (size_t i = 0; i < mem; i++) norm += (double)dm[i] * dm[i];
    assert_true(norm > 0);
    free(l32), free(l32b), free(m32), free(dm), free(a.ad), free(a.mem), free(p16), free(w16);
    free(p), free(p32), free(ga), free(gb);
    rg_grad_free(g);
}

/* The layout: Hugging Face names and shapes, no gaps, no lm_head; bad input refused. */
static void test_layout(void **state) {
    (void)state;
    rg_config c = tiny_config(0, 3.0f);
    rg_grad *g = rg_grad_new(&c);
    assert_non_null(g);
    assert_int_equal(rg_grad_n_tensors(g), 2 + 3 * 8 + 2 * 13 + 5);
    size_t at = 0;
    for (int i = 0; i < rg_grad_n_tensors(g); i++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, i);
        assert_int_equal(t->offset, at);
        at += t->count;
        assert_int_equal(rg_grad_find(g, t->name), i);
    }
    assert_int_equal(at, rg_grad_size(g));
    assert_null(rg_grad_tensor_at(g, -1));
    assert_null(rg_grad_tensor_at(g, rg_grad_n_tensors(g)));
    assert_int_equal(rg_grad_find(g, "lm_head.weight"), -1);
    const rg_grad_tensor *conv = rg_grad_tensor_at(g, rg_grad_find(g, "model.layers.0.temporal_block.conv_1d.weight"));
    assert_int_equal(conv->ndim, 3);
    assert_int_equal(conv->shape[0], 16);
    assert_int_equal(conv->shape[1], 1);
    assert_int_equal(conv->shape[2], 4);
    const rg_grad_tensor *gate =
        rg_grad_tensor_at(g, rg_grad_find(g, "model.layers.2.temporal_block.rg_lru.input_gate_weight"));
    assert_int_equal(gate->shape[0], 2);
    assert_int_equal(gate->shape[1], 8);
    assert_int_equal(gate->shape[2], 8);
    assert_true(rg_grad_find(g, "model.layers.1.temporal_block.k_proj.weight") >= 0);
    float *p = rg_xcalloc(rg_grad_size(g), sizeof(float));
    double nll;
    int32_t bad[3] = {1, 29, 2};
    assert_int_equal(rg_grad_compute(g, p, bad, 3, NULL, 1.0, NULL, &nll, NULL), -1);
    assert_non_null(strstr(rg_last_error(), "outside the vocabulary"));
    assert_int_equal(rg_grad_compute(g, p, bad, 1, NULL, 1.0, NULL, &nll, NULL), -1);
    free(p);
    rg_grad_free(g);
    c.lru_width = 15; /* not a multiple of the heads */
    assert_null(rg_grad_new(&c));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_recurrent_first_capped),
        cmocka_unit_test(test_fd_attention_first_uncapped_masked),
        cmocka_unit_test(test_fd_lora),
        cmocka_unit_test(test_sqrt_derivative_bound),
        cmocka_unit_test(test_f32_matches_f64),
        cmocka_unit_test(test_thread_count_independent),
        cmocka_unit_test(test_pool_reuse_same_bits),
        cmocka_unit_test(test_recompute_same_bits),
        cmocka_unit_test(test_loss_equals_inference),
        cmocka_unit_test(test_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
