/* Generation: batched prefill of the prompt, then sample -> emit -> decode
 * one token at a time until EOS, a stop id, a stop string, the token limit,
 * the callback or a cancel flag ends it.
 *
 * It is written as a sequence object (rg_seq) that advances one step at a
 * time, so that many sequences can share each step (rg_seq_step: one
 * rg_forward_batch over all of them). rg_generate is one sequence stepped
 * to its end.
 *
 * Text goes out through the tokenizer's streaming decoder. Stop strings are
 * matched on the text not yet emitted ("held"): everything before a match
 * is emitted and the match itself never is; while the tail of the held text
 * is a proper prefix of some stop string, that tail is held back. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "model/model.h"
#include "util/util.h"

void rg_generate_params_default(rg_generate_params *p) {
    memset(p, 0, sizeof *p);
    p->max_tokens = -1;
    rg_sampling_params_default(&p->sampling);
}

typedef struct {
    char *buf;
    size_t len, cap;
} text_buf;

/* s may be NULL when n is 0 (a token that decodes to nothing, e.g. one
 * past the tokenizer's pieces in a padded vocabulary) */
static void tb_append(text_buf *b, const char *s, size_t n) {
    b->buf = rg_grow(b->buf, &b->cap, b->len + n + 1, 1);
    if (n) memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

static void tb_consume(text_buf *b, size_t n) {
    memmove(b->buf, b->buf + n, b->len - n);
    b->len -= n;
}

/* Earliest occurrence of any stop string in s[0..n), or n. */
static size_t find_stop(const char *s, size_t n, const rg_generate_params *p) {
    size_t best = n;
    for (int i = 0; i < p->n_stop; i++) {
        size_t k = strlen(p->stop[i]);
        for (size_t at = 0; at + k <= n && at < best; at++)
            if (!memcmp(s + at, p->stop[i], k)) {
                best = at;
                break;
            }
    }
    return best;
}

/* Length of the longest tail of s[0..n) that is a proper prefix of a stop string. */
static size_t stop_prefix_tail(const char *s, size_t n, const rg_generate_params *p) {
    size_t best = 0;
    for (int i = 0; i < p->n_stop; i++) {
        size_t k = strlen(p->stop[i]);
        for (size_t l = (k - 1 < n ? k - 1 : n); l > best; l--)
            if (!memcmp(s + n - l, p->stop[i], l)) {
                best = l;
                break;
            }
    }
    return best;
}

static int is_stop_id(const rg_generate_params *p, int eos, int32_t tok) {
    if (tok == eos && !p->ignore_eos) return 1;
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] == tok) return 1;
    return 0;
}

static int cancelled(const rg_generate_params *p) { return p->cancel && *p->cancel; }

struct rg_seq {
    const rg_model *m;
    const rg_tokenizer *t;
    rg_state *s;
    rg_generate_params p;
    rg_token_cb cb;
    void *ctx;
    int32_t *prompt;
    int n_prompt, prompted; /* prompt tokens, and how many the state has seen */
    int32_t pending;        /* the last sampled id, processed by the next step */
    int done, stop_asked;
    float *logits;
    rg_sampler *smp;
    rg_detok_stream *ds;
    text_buf held;
    double t0, t1;
    char error[256];
    rg_generate_result res;
};

rg_seq *rg_seq_new(const rg_model *m, const rg_tokenizer *t, rg_state *s, const int32_t *prompt, int n_prompt,
                   const rg_generate_params *p, rg_token_cb cb, void *ctx) {
    const rg_config *c = rg_model_config(m);
    if (n_prompt < 1 || !prompt) {
        rg_error("generate: empty prompt (at least one token is needed)");
        return NULL;
    }
    if (p->n_stop > 0 && !t) {
        rg_error("generate: stop strings need a tokenizer");
        return NULL;
    }
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0]) {
            rg_error("generate: stop string %d is empty", i + 1);
            return NULL;
        }
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size) {
            rg_error("generate: prompt token %d at index %d is outside the vocabulary [0, %d)", prompt[i], i,
                     c->vocab_size);
            return NULL;
        }
    if (p->n_history < 0 || (p->n_history > 0 && !p->history)) {
        rg_error("generate: bad history (%d ids)", p->n_history);
        return NULL;
    }
    for (int i = 0; i < p->n_history; i++)
        if (p->history[i] < 0 || p->history[i] >= c->vocab_size) {
            rg_error("generate: history token %d at index %d is outside the vocabulary [0, %d)", p->history[i], i,
                     c->vocab_size);
            return NULL;
        }
    rg_sampler *smp = rg_sampler_new(&p->sampling, c->vocab_size);
    if (!smp) return NULL;
    rg_seq *q = rg_xcalloc(1, sizeof *q);
    q->m = m;
    q->t = t;
    q->s = s;
    q->p = *p;
    q->cb = cb;
    q->ctx = ctx;
    q->prompt = rg_xmalloc(sizeof *prompt * (size_t)n_prompt);
    memcpy(q->prompt, prompt, sizeof *prompt * (size_t)n_prompt);
    q->n_prompt = n_prompt;
    q->pending = -1;
    q->smp = smp;
    q->logits = rg_xmalloc(sizeof(float) * (size_t)c->vocab_size);
    q->ds = t ? rg_detok_stream_new(t) : NULL;
    q->res.next_token = -1;
    q->res.stop_reason = RG_STOP_NONE;
    q->res.seed = rg_sampler_seed(smp);
    for (int i = 0; i < p->n_history; i++) rg_sampler_accept(smp, p->history[i]);
    for (int i = 0; i < n_prompt; i++) rg_sampler_accept(smp, prompt[i]);
    q->t0 = rg_time_s();
    return q;
}

void rg_seq_free(rg_seq *q) {
    if (!q) return;
    free(q->prompt);
    free(q->held.buf);
    rg_detok_stream_free(q->ds);
    free(q->logits);
    rg_sampler_free(q->smp);
    free(q);
}

int rg_seq_done(const rg_seq *q) { return q->done; }
void rg_seq_stop(rg_seq *q) { q->stop_asked = 1; }
const rg_generate_result *rg_seq_result(const rg_seq *q) { return &q->res; }
const char *rg_seq_error(const rg_seq *q) { return q->error; }

/* The end: the callback gets what the stream and the stop-string matcher
 * still hold (not after a stop by callback, cancel or error). */
static void finish(rg_seq *q, rg_stop_reason why) {
    q->done = 1;
    q->res.stop_reason = why;
    q->res.generate_seconds = q->t1 > 0 ? rg_time_s() - q->t1 : 0;
    if (why == RG_STOP_EOS || why == RG_STOP_LENGTH || why == RG_STOP_STRING) {
        if (q->ds && why != RG_STOP_STRING) {
            size_t len;
            const char *rest = rg_detok_stream_flush(q->ds, &len);
            tb_append(&q->held, rest, len);
        }
        if (q->cb)
            q->cb(q->ctx, -1, q->ds ? (q->held.buf ? q->held.buf : "") : NULL,
                  why == RG_STOP_STRING ? 0 : q->held.len);
    }
}

static void fail(rg_seq *q, const char *msg) {
    snprintf(q->error, sizeof q->error, "%s", msg);
    q->done = 1;
    q->res.stop_reason = RG_STOP_ERROR;
}

/* The logits of the state's last position are in q->logits: sample, emit,
 * and either stop or keep the token for the next step. */
static void sample_next(rg_seq *q) {
    const rg_generate_params *p = &q->p;
    const rg_config *c = rg_model_config(q->m);
    if (p->max_tokens >= 0 && q->res.generated_tokens >= p->max_tokens) return finish(q, RG_STOP_LENGTH);
    if (cancelled(p) || q->stop_asked) return finish(q, RG_STOP_CALLBACK);
    /* NaN/Inf weights would otherwise pass as a token */
    if (rg_logits_check(q->logits, c->vocab_size, rg_state_pos(q->s) - 1)) {
        rg_error_prefix("generate");
        return fail(q, rg_last_error());
    }
    int32_t tok = rg_sampler_sample(q->smp, q->logits);
    rg_sampler_accept(q->smp, tok);
    q->res.generated_tokens++;
    q->res.next_token = tok;
    if (is_stop_id(p, c->eos_id, tok)) return finish(q, RG_STOP_EOS);
    rg_stop_reason why = RG_STOP_NONE;
    const char *out = NULL;
    size_t out_len = 0;
    if (q->ds) {
        size_t len;
        const char *piece = rg_detok_stream_push(q->ds, tok, &len);
        tb_append(&q->held, piece, len);
        size_t at = find_stop(q->held.buf, q->held.len, p);
        if (at < q->held.len) {
            why = RG_STOP_STRING;
            out_len = at;
        } else {
            out_len = q->held.len - stop_prefix_tail(q->held.buf, q->held.len, p);
        }
        out = q->held.buf ? q->held.buf : "";
    }
    if (q->cb && q->cb(q->ctx, tok, out, out_len)) why = RG_STOP_CALLBACK;
    if (q->ds) tb_consume(&q->held, out_len);
    if (why != RG_STOP_NONE) return finish(q, why);
    /* the last token need not be processed */
    if (p->max_tokens >= 0 && q->res.generated_tokens >= p->max_tokens) return finish(q, RG_STOP_LENGTH);
    q->pending = tok;
}

int rg_seq_step(rg_seq *const *seqs, int n, int prompt_budget) {
    rg_batch_seq *batch = rg_xmalloc(sizeof *batch * (size_t)(n > 0 ? n : 1));
    rg_seq **in = rg_xmalloc(sizeof *in * (size_t)(n > 0 ? n : 1));
    int nb = 0, budget = prompt_budget > 0 ? prompt_budget : INT_MAX;
    const rg_model *m = NULL;
    for (int i = 0; i < n; i++) {
        rg_seq *q = seqs[i];
        if (q->done) continue;
        if (cancelled(&q->p) || q->stop_asked) {
            if (q->prompted < q->n_prompt) q->res.prompt_seconds = rg_time_s() - q->t0;
            finish(q, RG_STOP_CALLBACK);
            continue;
        }
        if (m && q->m != m) {
            free(batch);
            free(in);
            return rg_error("generate: the sequences of one step must share one model");
        }
        m = q->m;
        rg_batch_seq *b = &batch[nb];
        if (q->prompted < q->n_prompt) {
            int take = q->n_prompt - q->prompted < budget ? q->n_prompt - q->prompted : budget;
            if (take == 0) continue;
            budget -= take;
            *b = (rg_batch_seq){q->s, q->prompt + q->prompted, take,
                                q->prompted + take == q->n_prompt ? q->logits : NULL, 0};
        } else {
            *b = (rg_batch_seq){q->s, &q->pending, 1, q->logits, 0};
        }
        in[nb++] = q;
    }
    int rc = 0;
    if (nb > 0 && rg_forward_batch(m, batch, nb)) {
        rc = -1;
        for (int i = 0; i < nb; i++) fail(in[i], rg_last_error());
    }
    for (int i = 0; i < nb && rc == 0; i++) {
        rg_seq *q = in[i];
        if (q->prompted < q->n_prompt) {
            q->prompted += batch[i].n_tokens;
            q->res.prompt_tokens = q->prompted;
            if (q->prompted < q->n_prompt) continue;
            q->t1 = rg_time_s();
            q->res.prompt_seconds = q->t1 - q->t0;
        }
        sample_next(q);
    }
    free(batch);
    free(in);
    return rc;
}

/* Prompt tokens per step of a single sequence: a real batch, yet short
 * enough that a cancel during a long prompt is noticed quickly. */
#define PREFILL_CHUNK 256

int rg_generate(const rg_model *m, const rg_tokenizer *t, rg_state *s, const int32_t *prompt, int n_prompt,
                const rg_generate_params *p, rg_token_cb cb, void *ctx, rg_generate_result *res) {
    rg_generate_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    res->next_token = -1;
    res->stop_reason = RG_STOP_ERROR;
    rg_seq *q = rg_seq_new(m, t, s, prompt, n_prompt, p, cb, ctx);
    if (!q) return -1;
    while (!q->done) rg_seq_step(&q, 1, PREFILL_CHUNK);
    *res = q->res;
    int rc = 0;
    if (q->res.stop_reason == RG_STOP_ERROR) rc = rg_error("%s", q->error);
    rg_seq_free(q);
    return rc;
}
