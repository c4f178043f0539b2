/* Log-likelihoods of token sequences: continuations for tasks, windows for
 * perplexity. Both read logits rows through logprob_row, so a score computed
 * here equals one computed from a logits file with rg_logprob. */
#include <math.h>
#include <stdlib.h>
#include "eval/eval.h"
#include "util/util.h"

/* rows of logits computed per rg_forward call: bounds memory at EVAL_CHUNK*V
 * floats (64 MB for the 256k Gemma vocabulary) */
#define EVAL_CHUNK 64

/* log softmax(x)[y] = x_y - m - log sum_i exp(x_i - m), m = max x. */
static double logprob_row(const float *x, int n, int32_t y, int *is_max) {
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    if (is_max) *is_max = x[y] == mx;
    return (double)x[y] - mx - log(sum);
}

int rg_logits_check(const float *logits, int n, int64_t pos) {
    int bad = 0;
    for (int i = 0; i < n; i++) bad |= !isfinite(logits[i]);
    if (!bad) return 0;
    int i = 0;
    while (isfinite(logits[i])) i++;
    return rg_error("the logits at position %lld are not finite (token id %d: %s): the model's weights or "
                    "activations hold NaN or overflowed", (long long)pos, i, isnan(logits[i]) ? "nan" : "inf");
}

double rg_logprob(const float *logits, int n, int32_t y) {
    return logprob_row(logits, n, y, NULL);
}

double rg_logprob_max(const float *logits, int n, int32_t y, int *is_max) {
    return logprob_row(logits, n, y, is_max);
}

static int check_ids(const int32_t *ids, int64_t n, int V, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return rg_error("%s: token id %d at index %lld is outside the vocabulary [0, %d)", what, ids[i],
                            (long long)i, V);
    return 0;
}

int rg_score_continuation(const rg_model *m, rg_state *s, const float *last_logits, const int32_t *cont, int n,
                          double *logprob, int *greedy, double *token_logprobs) {
    int V = rg_model_config(m)->vocab_size;
    if (n < 1) return rg_error("score: empty continuation");
    if (check_ids(cont, n, V, "score") < 0) return -1;
    int all_max = 1, is_max;
    int64_t pos = rg_state_pos(s); /* of the next token fed; last_logits came from the one before */
    if (rg_logits_check(last_logits, V, pos - 1)) return rg_error_prefix("score");
    double lp = logprob_row(last_logits, V, cont[0], &is_max);
    all_max &= is_max;
    if (token_logprobs) token_logprobs[0] = lp;
    double total = lp;
    if (n > 1) {
        int rows = n - 1 < EVAL_CHUNK ? n - 1 : EVAL_CHUNK;
        float *buf = malloc(sizeof(float) * (size_t)rows * V);
        if (!buf) return rg_error("score: out of memory for %d rows of logits", rows);
        /* row j of the chunk fed from cont[c] predicts cont[c + j + 1] */
        for (int c = 0; c < n - 1; c += rows) {
            int len = n - 1 - c < rows ? n - 1 - c : rows;
            if (rg_forward(m, s, cont + c, len, buf, 1) < 0) {
                free(buf);
                return -1;
            }
            for (int j = 0; j < len; j++) {
                if (rg_logits_check(buf + (size_t)j * V, V, pos + c + j)) {
                    free(buf);
                    return rg_error_prefix("score");
                }
                lp = logprob_row(buf + (size_t)j * V, V, cont[c + j + 1], &is_max);
                all_max &= is_max;
                if (token_logprobs) token_logprobs[c + j + 1] = lp;
                total += lp;
            }
        }
        free(buf);
    }
    *logprob = total;
    if (greedy) *greedy = all_max;
    return 0;
}

/* ---------------------------------------------------------------- perplexity */

void rg_nll_add(rg_nll_stats *st, double nll) {
    st->sum += nll;
    st->sum2 += nll * nll;
    st->n++;
}

double rg_nll_ppl(const rg_nll_stats *st) {
    return st->n ? exp(st->sum / st->n) : NAN;
}

double rg_nll_ppl_stderr(const rg_nll_stats *st) {
    if (st->n < 2) return NAN;
    double mean = st->sum / st->n;
    double var = st->sum2 / st->n - mean * mean;
    if (var < 0) var = 0; /* rounding */
    return exp(mean) * sqrt(var / (st->n - 1));
}

int rg_ppl_plan(int64_t n, int64_t ctx, int64_t stride, rg_ppl_window **out, int64_t *n_windows) {
    *out = NULL;
    *n_windows = 0;
    if (n < 2) return rg_error("perplexity: need at least 2 tokens, got %lld", (long long)n);
    if (ctx == 0 || ctx >= n) {
        ctx = n;
        stride = n;
    }
    if (ctx < 2) return rg_error("perplexity: the context must be at least 2 tokens (got %lld)", (long long)ctx);
    if (stride < 1 || stride > ctx)
        return rg_error("perplexity: the stride must be between 1 and the context %lld (got %lld)", (long long)ctx,
                        (long long)stride);
    int64_t cap = (n - ctx + stride - 1) / stride + 1;
    rg_ppl_window *w = rg_xcalloc((size_t)cap, sizeof *w);
    int64_t k = 0, scored_to = 1; /* tokens [1, scored_to) are scored */
    for (int64_t a = 0; scored_to < n; a += stride) {
        int64_t len = a + ctx <= n ? ctx : n - a;
        int64_t first = a ? a + ctx - stride : 1; /* after the first window: its last stride tokens */
        if (first < scored_to) first = scored_to;
        if (first < a + 1) first = a + 1;
        w[k++] = (rg_ppl_window){a, len, first};
        scored_to = a + len;
    }
    *out = w;
    *n_windows = k;
    return 0;
}

int rg_ppl_run_window(const rg_model *m, rg_state *s, const int32_t *tokens, const rg_ppl_window *w, int32_t bos,
                      rg_nll_stats *st) {
    int V = rg_model_config(m)->vocab_size;
    if (w->len < 2 || w->first_scored <= w->start || w->first_scored > w->start + w->len)
        return rg_error("perplexity: invalid window [%lld, +%lld) scoring from %lld", (long long)w->start,
                        (long long)w->len, (long long)w->first_scored);
    if (check_ids(tokens + w->start, w->len, V, "perplexity") < 0) return -1;
    if (bos >= V) return rg_error("perplexity: BOS id %d is outside the vocabulary [0, %d)", bos, V);
    rg_state_reset(s);
    float *buf = malloc(sizeof(float) * (size_t)EVAL_CHUNK * V);
    if (!buf) return rg_error("perplexity: out of memory for %d rows of logits", EVAL_CHUNK);
    const int32_t *win = tokens + w->start;
    int32_t head[EVAL_CHUNK]; /* the first chunk, its first token maybe replaced by BOS */
    int rc = 0;
    /* row j of the window (input win[j]) predicts win[j + 1]; the last input
     * token is never fed since nothing in the window follows it */
    int64_t feed = w->len - 1;
    for (int64_t c = 0; c < feed && rc == 0; c += EVAL_CHUNK) {
        int len = (int)(feed - c < EVAL_CHUNK ? feed - c : EVAL_CHUNK);
        /* rows before the first scored one only build the state: no logits */
        int64_t want_from = w->first_scored - w->start - 1;
        int need = c + len > want_from;
        const int32_t *in = win + c;
        if (c == 0 && bos >= 0) {
            memcpy(head, win, sizeof(int32_t) * (size_t)len);
            head[0] = bos;
            in = head;
        }
        rc = rg_forward(m, s, in, len, need ? buf : NULL, 1);
        if (rc < 0 || !need) continue;
        for (int j = 0; j < len; j++) {
            int64_t target = c + j + 1; /* index within the window */
            if (w->start + target < w->first_scored) continue;
            if (rg_logits_check(buf + (size_t)j * V, V, w->start + c + j)) {
                rc = rg_error_prefix("perplexity");
                break;
            }
            rg_nll_add(st, -logprob_row(buf + (size_t)j * V, V, win[target], NULL));
        }
    }
    free(buf);
    return rc;
}
