/* The Griffin forward pass (SPEC §1-7). Tokens are processed in chunks of
 * up to RG_CHUNK rows: every linear layer is a matrix product over the
 * chunk, the conv and RG-LRU scan over its rows, and attention over the
 * window. Any chunking gives the same result as one pass. */
#include <math.h>
#include <stdlib.h>
#include "model/model.h"
#include "model/state.h"
#include "ops/ops.h"
#include "util/util.h"

/* Each chunk streams every weight once and pays once per weight for the
 * widening of bf16 tiles and the repacking of Q8_0/Q4_0 panels; 256 tokens
 * amortise that while a k block of the chunk's activations (256 x 512
 * floats, 512 KiB) still fits in L2. Measured on the 2B shape (2 threads,
 * AVX-512): pp512 Q8_0 111 -> 129 t/s and BF16 44 -> 46 t/s from 128 to 256;
 * 512 gains nothing more. */
#define RG_CHUNK 256

typedef struct {
    float *x, *a, *tout;           /* [B x D] residual, normed input, sub-block output */
    float *y, *u, *c, *gx, *ga, *hh; /* [B x R] recurrent block */
    float *q, *k, *v, *att;        /* attention block */
    float *g, *up;                 /* [B x F] MLP */
    rg_matmul_job *jobs;           /* [2H] the RG-LRU gates' blocks */
} workspace;

static void ws_init(workspace *w, const rg_config *c, int b) {
    size_t D = (size_t)c->hidden_size, R = (size_t)c->lru_width, F = (size_t)c->mlp_width;
    size_t Q = (size_t)c->num_heads * c->head_dim, hd = (size_t)c->head_dim;
    w->x = rg_aligned_alloc(sizeof(float) * b * D);
    w->a = rg_aligned_alloc(sizeof(float) * b * D);
    w->tout = rg_aligned_alloc(sizeof(float) * b * D);
    w->y = rg_aligned_alloc(sizeof(float) * b * R);
    w->u = rg_aligned_alloc(sizeof(float) * b * R);
    w->c = rg_aligned_alloc(sizeof(float) * b * R);
    w->gx = rg_aligned_alloc(sizeof(float) * b * R);
    w->ga = rg_aligned_alloc(sizeof(float) * b * R);
    w->hh = rg_aligned_alloc(sizeof(float) * b * R);
    w->q = rg_aligned_alloc(sizeof(float) * b * Q);
    w->k = rg_aligned_alloc(sizeof(float) * b * hd);
    w->v = rg_aligned_alloc(sizeof(float) * b * hd);
    w->att = rg_aligned_alloc(sizeof(float) * b * Q);
    w->g = rg_aligned_alloc(sizeof(float) * b * F);
    w->up = rg_aligned_alloc(sizeof(float) * b * F);
    w->jobs = rg_xmalloc(sizeof(rg_matmul_job) * 2 * (size_t)c->num_heads);
}

static void ws_free(workspace *w) {
    float *all[] = {w->x, w->a, w->tout, w->y, w->u, w->c, w->gx, w->ga, w->hh,
                    w->q, w->k, w->v, w->att, w->g, w->up};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    free(w->jobs);
}

/* y = gelu_tanh(a W_y + b_y); u = a W_x + b_x; c = conv1d(u);
 * h = RG-LRU(c); out = (h * y) W_out + b_out */
static void recurrent_block(const rg_model *m, const rg_layer *L, rg_state *s, int layer, workspace *w, int n) {
    const rg_config *c = &m->cfg;
    int D = c->hidden_size, R = c->lru_width, H = c->num_heads, bw = R / H;
    rg_matmul_job in[2] = {{&L->linear_y, 0, R, w->a, D, w->y, R, L->linear_y_b},
                           {&L->linear_x, 0, R, w->a, D, w->u, R, L->linear_x_b}};
    rg_matmul_jobs(in, 2, n);
    rg_conv1d(w->u, n, R, c->conv_width, L->conv_w, L->conv_b, rg_state_conv(s, layer), w->c);
    /* block-diagonal gates: block h maps c[h*bw..] to g[h*bw..] */
    rg_matmul_job *gates = w->jobs;
    for (int h = 0; h < H; h++) {
        gates[2 * h] = (rg_matmul_job){&L->input_gate, (int64_t)h * bw, bw, w->c + h * bw, R, w->gx + h * bw, R,
                                       L->input_gate_b + h * bw};
        gates[2 * h + 1] = (rg_matmul_job){&L->a_gate, (int64_t)h * bw, bw, w->c + h * bw, R, w->ga + h * bw, R,
                                           L->a_gate_b + h * bw};
    }
    rg_matmul_jobs(gates, 2 * H, n);
    rg_rglru_scan(w->c, w->gx, w->ga, L->softplus_a, n, R, s->pos, rg_state_h(s, layer), w->hh);
    rg_gelu_mul(w->y, w->hh, (size_t)n * R); /* y = gelu(y) * h */
    rg_matmul(&L->linear_out, 0, D, w->y, R, n, w->tout, D, L->linear_out_b);
}

/* Multi-query local attention with RoPE on the first half of each head. */
static void attention_block(const rg_model *m, const rg_layer *L, rg_state *s, int layer, workspace *w, int n) {
    const rg_config *c = &m->cfg;
    int D = c->hidden_size, H = c->num_heads, hd = c->head_dim, Q = H * hd, W = c->window;
    rg_matmul_job qkv[3] = {{&L->q, 0, Q, w->a, D, w->q, Q, NULL},
                            {&L->k, 0, hd, w->a, D, w->k, hd, NULL},
                            {&L->v, 0, hd, w->a, D, w->v, hd, NULL}};
    rg_matmul_jobs(qkv, 3, n);
    for (int t = 0; t < n; t++) {
        rg_rope(w->q + (size_t)t * Q, H, hd, m->rope_pairs, m->rope_inv_freq, s->pos + t);
        rg_rope(w->k + (size_t)t * hd, 1, hd, m->rope_pairs, m->rope_inv_freq, s->pos + t);
    }
    float *kc = rg_state_k(s, layer), *vc = rg_state_v(s, layer);
    rg_local_attention(w->q, w->k, w->v, n, H, hd, s->pos, W, kc, vc, w->att);
    /* only now does the chunk enter the ring: its last min(n, W) keys */
    for (int t = n > W ? n - W : 0; t < n; t++) {
        size_t slot = (size_t)((s->pos + t) % W);
        memcpy(kc + slot * hd, w->k + (size_t)t * hd, sizeof(float) * hd);
        memcpy(vc + slot * hd, w->v + (size_t)t * hd, sizeof(float) * hd);
    }
    rg_matmul(&L->o, 0, D, w->att, Q, n, w->tout, D, L->o_b);
}

/* g = gelu_tanh(b W_gate + b_gate) * (b W_up + b_up); out = g W_down + b_down */
static void mlp_block(const rg_layer *L, const rg_config *c, workspace *w, int n) {
    int D = c->hidden_size, F = c->mlp_width;
    rg_matmul_job in[2] = {{&L->gate, 0, F, w->a, D, w->g, F, L->gate_b}, {&L->up, 0, F, w->a, D, w->up, F, L->up_b}};
    rg_matmul_jobs(in, 2, n);
    rg_gelu_mul(w->g, w->up, (size_t)n * F);
    rg_matmul(&L->down, 0, D, w->g, F, n, w->tout, D, L->down_b);
}

static void add_rows(float *x, const float *y, size_t count) {
    for (size_t i = 0; i < count; i++) x[i] += y[i];
}

/* logits = cap * tanh((h E^T) / cap), or h E^T when cap == 0 */
static void output_logits(const rg_model *m, const float *normed, int n, float *logits) {
    const rg_config *c = &m->cfg;
    int V = c->vocab_size;
    rg_matmul(&m->embed, 0, V, normed, c->hidden_size, n, logits, V, NULL);
    if (c->logits_soft_cap > 0) rg_softcap(logits, (size_t)n * V, c->logits_soft_cap);
}

static void process_chunk(const rg_model *m, rg_state *s, const int32_t *tokens, int n, float *logits,
                          int want_rows, workspace *w, rg_trace_fn trace, void *tctx) {
    const rg_config *c = &m->cfg;
    int D = c->hidden_size;
    size_t count = (size_t)n * D;
    for (int t = 0; t < n; t++) {
        float *xr = w->x + (size_t)t * D;
        rg_dequant_row(&m->embed, tokens[t], xr);
        for (int i = 0; i < D; i++) xr[i] *= c->embed_scale;
    }
    if (trace) trace(tctx, "embed", -1, s->pos, n, w->x, D);
    for (int l = 0; l < c->num_layers; l++) {
        const rg_layer *L = &m->layers[l];
        rg_rmsnorm(w->x, L->temporal_norm, n, D, c->rms_norm_eps, w->a);
        if (L->type == RG_LAYER_RECURRENT)
            recurrent_block(m, L, s, l, w, n);
        else
            attention_block(m, L, s, l, w, n);
        if (trace) trace(tctx, "temporal", l, s->pos, n, w->tout, D);
        add_rows(w->x, w->tout, count);
        rg_rmsnorm(w->x, L->channel_norm, n, D, c->rms_norm_eps, w->a);
        mlp_block(L, c, w, n);
        if (trace) trace(tctx, "mlp", l, s->pos, n, w->tout, D);
        add_rows(w->x, w->tout, count);
        if (trace) trace(tctx, "residual", l, s->pos, n, w->x, D);
    }
    /* final norm and logits for the last want_rows rows (all rows when tracing) */
    int first = trace ? 0 : n - want_rows;
    if (want_rows > 0 || trace) {
        rg_rmsnorm(w->x + (size_t)first * D, m->final_norm, n - first, D, c->rms_norm_eps, w->a);
        if (trace) trace(tctx, "final_norm", -1, s->pos, n, w->a, D);
        if (want_rows > 0) output_logits(m, w->a + (size_t)(n - want_rows - first) * D, want_rows, logits);
    }
    s->pos += n;
}

int rg_forward_traced(const rg_model *m, rg_state *s, const int32_t *tokens, int n, float *logits, int all_logits,
                      rg_trace_fn trace, void *tctx) {
    const rg_config *c = &m->cfg;
    if (n < 1) return rg_error("forward: no tokens to process");
    if (rg_config_fingerprint(&s->cfg) != rg_config_fingerprint(c))
        return rg_error("forward: the state belongs to a different model configuration");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return rg_error("forward: token id %d at index %d is outside the vocabulary [0, %d)", tokens[i], i,
                            c->vocab_size);
    workspace w;
    int b = n < RG_CHUNK ? n : RG_CHUNK;
    ws_init(&w, c, b);
    for (int start = 0; start < n; start += b) {
        int len = n - start < b ? n - start : b;
        int last = start + len == n;
        int want = logits ? (all_logits ? len : (last ? 1 : 0)) : 0;
        float *out = logits ? (all_logits ? logits + (size_t)start * c->vocab_size : logits) : NULL;
        process_chunk(m, s, tokens + start, len, out, want, &w, trace, tctx);
    }
    ws_free(&w);
    return 0;
}

int rg_forward(const rg_model *m, rg_state *s, const int32_t *tokens, int n, float *logits, int all_logits) {
    return rg_forward_traced(m, s, tokens, n, logits, all_logits, NULL, NULL);
}
