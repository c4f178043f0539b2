/* The generation loop: batched prefill of the prompt, then sample -> emit
 * -> decode one token at a time until EOS, a stop id, a stop string, the
 * token limit, the callback or a cancel flag ends it.
 *
 * Text goes out through the tokenizer's streaming decoder. Stop strings are
 * matched on the text not yet emitted ("held"): everything before a match
 * is emitted and the match itself never is; while the tail of the held text
 * is a proper prefix of some stop string, that tail is held back. */
#include <stdlib.h>
#include "model/model.h"
#include "util/util.h"

/* Prompt chunk per rg_forward call: big enough to be a real batch, small
 * enough that a cancel during a long prompt is noticed quickly. */
#define PREFILL_CHUNK 256

void rg_generate_params_default(rg_generate_params *p) {
    memset(p, 0, sizeof *p);
    p->max_tokens = -1;
    rg_sampling_params_default(&p->sampling);
}

typedef struct {
    char *buf;
    size_t len, cap;
} text_buf;

static void tb_append(text_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->buf = realloc(b->buf, b->cap);
        if (!b->buf) abort();
    }
    memcpy(b->buf + b->len, s, n);
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

int rg_generate(const rg_model *m, const rg_tokenizer *t, rg_state *s, const int32_t *prompt, int n_prompt,
                const rg_generate_params *p, rg_token_cb cb, void *ctx, rg_generate_result *res) {
    rg_generate_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    res->next_token = -1;
    res->stop_reason = RG_STOP_ERROR;
    const rg_config *c = rg_model_config(m);
    if (n_prompt < 1 || !prompt) return rg_error("generate: empty prompt (at least one token is needed)");
    if (p->n_stop > 0 && !t) return rg_error("generate: stop strings need a tokenizer");
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0]) return rg_error("generate: stop string %d is empty", i + 1);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size)
            return rg_error("generate: prompt token %d at index %d is outside the vocabulary [0, %d)", prompt[i],
                            i, c->vocab_size);
    rg_sampler *smp = rg_sampler_new(&p->sampling, c->vocab_size);
    if (!smp) return -1;
    res->seed = rg_sampler_seed(smp);
    float *logits = rg_xmalloc(sizeof(float) * (size_t)c->vocab_size);
    rg_detok_stream *ds = t ? rg_detok_stream_new(t) : NULL;
    text_buf held = {0};
    int rc = 0;
    rg_stop_reason why = RG_STOP_NONE;

    for (int i = 0; i < n_prompt; i++) rg_sampler_accept(smp, prompt[i]);
    double t0 = rg_time_s();
    for (int done = 0; done < n_prompt; done += PREFILL_CHUNK) {
        if (cancelled(p)) {
            why = RG_STOP_CALLBACK;
            break;
        }
        int n = n_prompt - done < PREFILL_CHUNK ? n_prompt - done : PREFILL_CHUNK;
        if (rg_forward(m, s, prompt + done, n, done + n == n_prompt ? logits : NULL, 0)) {
            rc = -1;
            goto out;
        }
        res->prompt_tokens = done + n;
    }
    double t1 = rg_time_s();
    res->prompt_seconds = t1 - t0;

    while (why == RG_STOP_NONE) {
        if (p->max_tokens >= 0 && res->generated_tokens >= p->max_tokens) {
            why = RG_STOP_LENGTH;
            break;
        }
        if (cancelled(p)) {
            why = RG_STOP_CALLBACK;
            break;
        }
        int32_t tok = rg_sampler_sample(smp, logits);
        rg_sampler_accept(smp, tok);
        res->generated_tokens++;
        res->next_token = tok;
        if (is_stop_id(p, c->eos_id, tok)) {
            why = RG_STOP_EOS;
            break;
        }
        const char *out = NULL;
        size_t out_len = 0;
        if (ds) {
            size_t len;
            const char *piece = rg_detok_stream_push(ds, tok, &len);
            tb_append(&held, piece, len);
            size_t at = find_stop(held.buf, held.len, p);
            if (at < held.len) {
                why = RG_STOP_STRING;
                out_len = at;
            } else {
                out_len = held.len - stop_prefix_tail(held.buf, held.len, p);
            }
            out = held.buf ? held.buf : "";
        }
        if (cb && cb(ctx, tok, out, out_len)) why = RG_STOP_CALLBACK;
        if (ds) tb_consume(&held, out_len);
        if (why != RG_STOP_NONE) break;
        if (p->max_tokens >= 0 && res->generated_tokens >= p->max_tokens) {
            why = RG_STOP_LENGTH; /* no need to process the last token */
            break;
        }
        if (rg_forward(m, s, &tok, 1, logits, 0)) {
            rc = -1;
            goto out;
        }
    }
    /* the end: what the stream and the stop-string matcher still hold */
    if (why == RG_STOP_EOS || why == RG_STOP_LENGTH || why == RG_STOP_STRING) {
        if (ds && why != RG_STOP_STRING) {
            size_t len;
            const char *rest = rg_detok_stream_flush(ds, &len);
            tb_append(&held, rest, len);
        }
        if (cb) cb(ctx, -1, ds ? (held.buf ? held.buf : "") : NULL, why == RG_STOP_STRING ? 0 : held.len);
    }
    res->generate_seconds = rg_time_s() - t1;
    res->stop_reason = why;
out:
    free(held.buf);
    rg_detok_stream_free(ds);
    free(logits);
    rg_sampler_free(smp);
    return rc;
}
