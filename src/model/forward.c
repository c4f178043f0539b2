/* The Griffin forward pass (the math token by token, in plain Python:
 * tests/reference/griffin_ref.py, Model.step), for one sequence or a batch of them.
 * A step processes up to RG_CHUNK rows, taken from one or more sequences
 * ("segments": each a run of consecutive rows of one state). Every linear
 * layer is one matrix product over all rows of the step, so each weight is
 * read once per step whatever the number of sequences; the conv, the RG-LRU
 * scan and attention run per segment over its own state. Any split of the
 * tokens into steps gives the same result as one pass. */
#include <math.h>
#include <stdlib.h>
#include "model/model.h"
#include "model/state.h"
#include "ops/ops.h"
#include "util/util.h"

/* Each chunk streams every weight once and pays once per weight for the
 * widening of bf16 tiles (and the packing of Q8_0/Q4_0 panels, for weights
 * not packed at load time: RGEMMA_PACK=0, or a set without panels); 256 tokens
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
    float *logits;                 /* [rows x V] when a step's logits belong to several sequences */
    int rows;                      /* rows of a step at most */
} workspace;

/* The workspace lives in the calling thread's scratch, kept from one call
 * to the next (a decode step would otherwise allocate and zero 15 arrays). */
static void ws_init(workspace *w, const rg_config *c, int b) {
    size_t D = (size_t)c->hidden_size, R = (size_t)c->lru_width, F = (size_t)c->mlp_width;
    size_t Q = (size_t)c->num_heads * c->head_dim, hd = (size_t)c->head_dim;
    struct {
        float **p;
        size_t width;
    } arrays[] = {{&w->x, D},  {&w->a, D},  {&w->tout, D}, {&w->y, R},   {&w->u, R},   {&w->c, R},
                  {&w->gx, R}, {&w->ga, R}, {&w->hh, R},   {&w->q, Q},   {&w->k, hd},  {&w->v, hd},
                  {&w->att, Q}, {&w->g, F}, {&w->up, F}};
    size_t n = sizeof arrays / sizeof arrays[0], bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += (sizeof(float) * b * arrays[i].width + 63) & ~(size_t)63;
    size_t jobs = sizeof(rg_matmul_job) * 2 * (size_t)c->num_heads;
    char *base = rg_scratch(RG_SCRATCH_FORWARD, bytes + jobs);
    for (size_t i = 0; i < n; i++) {
        *arrays[i].p = (float *)base;
        base += (sizeof(float) * b * arrays[i].width + 63) & ~(size_t)63;
    }
    w->jobs = (rg_matmul_job *)base;
    w->logits = NULL;
    w->rows = b;
}

/* A run of consecutive rows of the step that belong to one sequence. */
typedef struct {
    rg_state *s;
    const int32_t *tokens;
    int n, row;    /* tokens, first row in the step's matrices */
    int want;      /* rows whose logits are wanted: the last `want` of the segment */
    float *logits; /* [want x V] */
} segment;

/* Per-segment work (conv, RG-LRU scan, attention). A segment of many rows
 * is split over the threads by the op itself; segments of a few rows (decode
 * rows above all) run side by side, one per thread, since splitting one row's
 * work over the threads costs more than it saves. */
#define SIDE_BY_SIDE_ROWS 8

typedef void (*segment_fn)(const rg_model *m, const rg_layer *L, const segment *g, int layer, workspace *w);

static void for_each_segment(segment_fn fn, const rg_model *m, const rg_layer *L, const segment *seg, int nseg,
                             int layer, workspace *w) {
    int small = 0;
    for (int i = 0; i < nseg; i++) small += seg[i].n < SIDE_BY_SIDE_ROWS;
    /* A parallel construct is entered only when it runs in parallel: the
     * ops' own regions nested in an inactive one (if (0)) get a fresh team
     * from libgomp each time, whose start-up costs more than a decode row. */
    if (small > 1) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < nseg; i++)
            if (seg[i].n < SIDE_BY_SIDE_ROWS) fn(m, L, &seg[i], layer, w);
    } else {
        for (int i = 0; i < nseg; i++)
            if (seg[i].n < SIDE_BY_SIDE_ROWS) fn(m, L, &seg[i], layer, w);
    }
    for (int i = 0; i < nseg; i++)
        if (seg[i].n >= SIDE_BY_SIDE_ROWS) fn(m, L, &seg[i], layer, w);
}

/* c = conv1d(u) over the segment's rows, continuing its state */
static void segment_conv(const rg_model *m, const rg_layer *L, const segment *g, int layer, workspace *w) {
    const rg_config *c = &m->cfg;
    size_t at = (size_t)g->row * c->lru_width;
    rg_conv1d(w->u + at, g->n, c->lru_width, c->conv_width, L->conv_w, L->conv_b, rg_state_conv(g->s, layer),
              w->c + at);
}

/* h = RG-LRU(c) over the segment's rows, continuing its state */
static void segment_scan(const rg_model *m, const rg_layer *L, const segment *g, int layer, workspace *w) {
    size_t at = (size_t)g->row * m->cfg.lru_width;
    rg_rglru_scan(w->c + at, w->gx + at, w->ga + at, L->softplus_a, g->n, m->cfg.lru_width, g->s->pos,
                  rg_state_h(g->s, layer), w->hh + at);
}

/* y = gelu_tanh(a W_y + b_y); u = a W_x + b_x; c = conv1d(u);
 * h = RG-LRU(c); out = (h * y) W_out + b_out */
static void recurrent_block(const rg_model *m, const rg_layer *L, const segment *seg, int nseg, int layer,
                            workspace *w, int n) {
    const rg_config *c = &m->cfg;
    int D = c->hidden_size, R = c->lru_width, H = c->num_heads, bw = R / H;
    rg_matmul_job in[2] = {{&L->linear_y, 0, R, w->a, D, w->y, R, L->linear_y_b},
                           {&L->linear_x, 0, R, w->a, D, w->u, R, L->linear_x_b}};
    rg_matmul_jobs(in, 2, n);
    for_each_segment(segment_conv, m, L, seg, nseg, layer, w);
    /* block-diagonal gates: block h maps c[h*bw..] to g[h*bw..] */
    rg_matmul_job *gates = w->jobs;
    for (int h = 0; h < H; h++) {
        gates[2 * h] = (rg_matmul_job){&L->input_gate, (int64_t)h * bw, bw, w->c + h * bw, R, w->gx + h * bw, R,
                                       L->input_gate_b + h * bw};
        gates[2 * h + 1] = (rg_matmul_job){&L->a_gate, (int64_t)h * bw, bw, w->c + h * bw, R, w->ga + h * bw, R,
                                           L->a_gate_b + h * bw};
    }
    rg_matmul_jobs(gates, 2 * H, n);
    for_each_segment(segment_scan, m, L, seg, nseg, layer, w);
    rg_gelu_mul(w->y, w->hh, (size_t)n * R); /* y = gelu(y) * h */
    rg_matmul(&L->linear_out, 0, D, w->y, R, n, w->tout, D, L->linear_out_b);
}

/* RoPE on the segment's queries and keys (the keys and values then rounded
 * to the window's type), attention over its window, then its keys and values
 * enter the window (only after attention: the window still holds the keys
 * the first rows need) */
static void segment_attention(const rg_model *m, const rg_layer *L, const segment *g, int layer, workspace *w) {
    const rg_config *c = &m->cfg;
    int H = c->num_heads, hd = c->head_dim, Q = H * hd;
    rg_state *s = g->s;
    float *q = w->q + (size_t)g->row * Q, *k = w->k + (size_t)g->row * hd, *v = w->v + (size_t)g->row * hd;
    for (int t = 0; t < g->n; t++) {
        rg_rope(q + (size_t)t * Q, H, hd, m->rope_pairs, m->rope_inv_freq, s->pos + t);
        rg_rope(k + (size_t)t * hd, 1, hd, m->rope_pairs, m->rope_inv_freq, s->pos + t);
    }
    rg_kv_window cache = rg_state_window(s, layer);
    rg_local_attention(q, k, v, g->n, H, hd, s->pos, &cache, w->att + (size_t)g->row * Q);
    rg_kv_window_write(&cache, s->pos, k, v, g->n);
}

/* Multi-query local attention with RoPE on the first half of each head. */
static void attention_block(const rg_model *m, const rg_layer *L, const segment *seg, int nseg, int layer,
                            workspace *w, int n) {
    const rg_config *c = &m->cfg;
    int D = c->hidden_size, hd = c->head_dim, Q = c->num_heads * hd;
    rg_matmul_job qkv[3] = {{&L->q, 0, Q, w->a, D, w->q, Q, NULL},
                            {&L->k, 0, hd, w->a, D, w->k, hd, NULL},
                            {&L->v, 0, hd, w->a, D, w->v, hd, NULL}};
    rg_matmul_jobs(qkv, 3, n);
    for_each_segment(segment_attention, m, L, seg, nseg, layer, w);
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

/* The final norm and the logits of the rows the segments want. One
 * segment's rows go straight to its buffer; rows of several segments are
 * normed side by side (the embedding is then read once for all of them)
 * into w->logits and copied out. */
static void step_logits(const rg_model *m, const segment *seg, int nseg, workspace *w) {
    const rg_config *c = &m->cfg;
    int D = c->hidden_size, V = c->vocab_size, rows = 0, owners = 0;
    for (int i = 0; i < nseg; i++) {
        if (seg[i].want == 0) continue;
        int first = seg[i].row + seg[i].n - seg[i].want;
        rg_rmsnorm(w->x + (size_t)first * D, m->final_norm, seg[i].want, D, c->rms_norm_eps,
                   w->a + (size_t)rows * D);
        rows += seg[i].want;
        owners++;
    }
    if (owners == 0) return;
    if (owners == 1) {
        for (int i = 0; i < nseg; i++)
            if (seg[i].want) output_logits(m, w->a, rows, seg[i].logits);
        return;
    }
    w->logits = rg_scratch(RG_SCRATCH_LOGITS, sizeof(float) * (size_t)rows * V);
    output_logits(m, w->a, rows, w->logits);
    rows = 0;
    for (int i = 0; i < nseg; i++) {
        if (seg[i].want == 0) continue;
        memcpy(seg[i].logits, w->logits + (size_t)rows * V, sizeof(float) * (size_t)seg[i].want * V);
        rows += seg[i].want;
    }
}

/* One step over the segments' n rows in all. Tracing (single segment only)
 * reports every sub-block's output and the final norm of every row. */
static void process_step(const rg_model *m, const segment *seg, int nseg, int n, workspace *w, rg_trace_fn trace,
                         void *tctx) {
    const rg_config *c = &m->cfg;
    int D = c->hidden_size;
    size_t count = (size_t)n * D;
    int64_t pos0 = seg[0].s->pos; /* for the trace */
    for (int i = 0; i < nseg; i++)
        for (int t = 0; t < seg[i].n; t++) {
            float *xr = w->x + (size_t)(seg[i].row + t) * D;
            rg_weight_row(&m->embed, seg[i].tokens[t], xr);
            for (int j = 0; j < D; j++) xr[j] *= c->embed_scale;
        }
    if (trace) trace(tctx, "embed", -1, pos0, n, w->x, D);
    for (int l = 0; l < c->num_layers; l++) {
        const rg_layer *L = &m->layers[l];
        rg_rmsnorm(w->x, L->temporal_norm, n, D, c->rms_norm_eps, w->a);
        if (L->type == RG_LAYER_RECURRENT)
            recurrent_block(m, L, seg, nseg, l, w, n);
        else
            attention_block(m, L, seg, nseg, l, w, n);
        if (trace) trace(tctx, "temporal", l, pos0, n, w->tout, D);
        add_rows(w->x, w->tout, count);
        rg_rmsnorm(w->x, L->channel_norm, n, D, c->rms_norm_eps, w->a);
        mlp_block(L, c, w, n);
        if (trace) trace(tctx, "mlp", l, pos0, n, w->tout, D);
        add_rows(w->x, w->tout, count);
        if (trace) trace(tctx, "residual", l, pos0, n, w->x, D);
    }
    if (trace) {
        rg_rmsnorm(w->x, m->final_norm, n, D, c->rms_norm_eps, w->a);
        trace(tctx, "final_norm", -1, pos0, n, w->a, D);
    }
    step_logits(m, seg, nseg, w);
    for (int i = 0; i < nseg; i++) seg[i].s->pos += seg[i].n;
}

static int check_seqs(const rg_model *m, const rg_batch_seq *seqs, int nseq, size_t *total) {
    const rg_config *c = &m->cfg;
    if (nseq < 1 || !seqs) return rg_error("forward: no sequences to process");
    *total = 0;
    for (int i = 0; i < nseq; i++) {
        const rg_batch_seq *q = &seqs[i];
        if (!q->state) return rg_error("forward: sequence %d has no state", i);
        if (q->n_tokens < 1 || !q->tokens) return rg_error("forward: sequence %d has no tokens to process", i);
        if (rg_config_fingerprint(&q->state->cfg) != rg_config_fingerprint(c))
            return rg_error("forward: the state of sequence %d belongs to a different model configuration", i);
        for (int j = 0; j < i; j++)
            if (seqs[j].state == q->state)
                return rg_error("forward: sequences %d and %d pass the same state (each state at most once a step)",
                                j, i);
        for (int t = 0; t < q->n_tokens; t++) {
            if (q->tokens[t] >= 0 && q->tokens[t] < c->vocab_size) continue;
            if (nseq == 1)
                return rg_error("forward: token id %d at index %d is outside the vocabulary [0, %d)", q->tokens[t],
                                t, c->vocab_size);
            return rg_error("forward: token id %d at index %d of sequence %d is outside the vocabulary [0, %d)",
                            q->tokens[t], t, i, c->vocab_size);
        }
        *total += (size_t)q->n_tokens;
    }
    return 0;
}

/* Steps of up to RG_CHUNK rows: the sequences' tokens in order, each step
 * taking what is left of each sequence until it is full. */
static int forward_batch(const rg_model *m, const rg_batch_seq *seqs, int nseq, rg_trace_fn trace, void *tctx) {
    const rg_config *c = &m->cfg;
    size_t total = 0;
    if (check_seqs(m, seqs, nseq, &total)) return -1;
    int V = c->vocab_size;
    workspace w;
    ws_init(&w, c, total < RG_CHUNK ? (int)total : RG_CHUNK);
    segment *seg = rg_xmalloc(sizeof *seg * (size_t)(nseq < RG_CHUNK ? nseq : RG_CHUNK));
    int *done = rg_xcalloc((size_t)nseq, sizeof *done);
    for (int next = 0; next < nseq;) {
        int nseg = 0, rows = 0;
        for (int i = next; i < nseq && rows < w.rows; i++) {
            const rg_batch_seq *q = &seqs[i];
            int left = q->n_tokens - done[i];
            if (left == 0) continue;
            int take = left < w.rows - rows ? left : w.rows - rows;
            int last = take == left;
            segment *g = &seg[nseg++];
            *g = (segment){q->state, q->tokens + done[i], take, rows, 0, NULL};
            if (q->logits && q->all_logits) {
                g->want = take;
                g->logits = q->logits + (size_t)done[i] * V;
            } else if (q->logits && last) {
                g->want = 1;
                g->logits = q->logits;
            }
            rows += take;
            done[i] += take;
        }
        process_step(m, seg, nseg, rows, &w, trace, tctx);
        while (next < nseq && done[next] == seqs[next].n_tokens) next++;
    }
    free(done);
    free(seg);
    return 0;
}

int rg_forward_batch(const rg_model *m, const rg_batch_seq *seqs, int n_seqs) {
    return forward_batch(m, seqs, n_seqs, NULL, NULL);
}

int rg_forward_traced(const rg_model *m, rg_state *s, const int32_t *tokens, int n, float *logits, int all_logits,
                      rg_trace_fn trace, void *tctx) {
    rg_batch_seq q = {s, tokens, n, logits, all_logits};
    return forward_batch(m, &q, 1, trace, tctx);
}

int rg_forward(const rg_model *m, rg_state *s, const int32_t *tokens, int n, float *logits, int all_logits) {
    return rg_forward_traced(m, s, tokens, n, logits, all_logits, NULL, NULL);
}
