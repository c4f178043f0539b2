/* Evaluation: log-likelihoods of continuations, perplexity, benchmark task
 * files (JSONL, schema in README "Evaluation"), and their metrics.
 *
 * Log-likelihood math (the same for perplexity and tasks): the log-probability
 * of token y under logits x is log softmax(x)_y = x_y - m - log sum_i exp(x_i - m)
 * with m = max_i x_i, accumulated in double (rg_logprob). */
#ifndef RG_EVAL_H
#define RG_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include "rgemma.h"

/* ------------------------------------------------------------ log-likelihood */

/* Sum of -log p over scored tokens, for perplexity and its uncertainty. */
typedef struct {
    double sum, sum2; /* sum of nll and of nll^2 */
    int64_t n;
} rg_nll_stats;

void rg_nll_add(rg_nll_stats *st, double nll);
/* PPL = exp(mean nll). */
double rg_nll_ppl(const rg_nll_stats *st);
/* Standard error of PPL by the delta method, as llama.cpp reports it:
 * PPL * sqrt(var(nll) / (n - 1)), var(nll) = mean(nll^2) - mean(nll)^2. */
double rg_nll_ppl_stderr(const rg_nll_stats *st);

/* rg_logprob that also says whether y is an argmax of the row (*is_max may be
 * NULL): the one routine every score here goes through. */
double rg_logprob_max(const float *logits, int n, int32_t y, int *is_max);

/* One perplexity window: tokens[start, start+len) are fed from an empty state
 * and the tokens at indices [first_scored, start+len) are scored (each by the
 * row before it, so first_scored > start). */
typedef struct {
    int64_t start, len, first_scored;
} rg_ppl_window;

/* Windows of ctx tokens starting every stride tokens over n tokens; the first
 * window scores tokens 1.., every later one its last stride tokens (never its
 * own first token), so each token from 1 on is scored exactly once when
 * stride < ctx. ctx == 0: one window over everything. *out is malloc'd. */
int rg_ppl_plan(int64_t n, int64_t ctx, int64_t stride, rg_ppl_window **out, int64_t *n_windows);

/* Run one window from an empty state (s is reset) and add its tokens' nll to st.
 * bos >= 0: the window's first token is replaced by bos (as llama.cpp does, so
 * every window starts like a document). */
int rg_ppl_run_window(const rg_model *m, rg_state *s, const int32_t *tokens, const rg_ppl_window *w, int32_t bos,
                      rg_nll_stats *st);

/* ---------------------------------------------------------------- task files */

/* A piece of input: text, or token ids used exactly as given. */
typedef struct {
    char *text; /* NULL when the piece is ids */
    size_t len;
    int32_t *ids;
    int n_ids;
} rg_piece;

typedef enum { RG_ITEM_MC = 0, RG_ITEM_GEN = 1 } rg_item_kind;

typedef struct {
    int line;       /* 1-based line in the task file */
    rg_item_kind kind;
    int is_ids;     /* every piece is ids */
    char *id, *group, *description; /* optional (NULL) */
    /* multiple choice: choice i is the continuation cont[i] of context ctx[i];
     * shared_ctx: every ctx[i] is ctx[0] (a "context" field), else "contexts"
     * with one shared continuation (WinoGrande's partial scoring) */
    int n_choices, label, shared_ctx;
    rg_piece *ctx, *cont; /* n_choices each (ctx[i] aliases ctx[0] when shared) */
    /* generation */
    rg_piece prompt;
    rg_piece *answers;
    int n_answers;
    char *target;   /* how the answer is written when the item is a shot */
    char **stop;    /* NULL: the run's default stop strings */
    int n_stop;
    int max_tokens; /* -1: the run's default */
} rg_item;

typedef struct {
    rg_item *items;
    int n;
} rg_task;

/* Parse a JSONL task file (blank lines and lines starting with '#' are
 * skipped). A malformed line fails with "FILE:LINE: what is wrong". */
int rg_task_load(const char *path, rg_task *task);
int rg_task_parse(const char *text, size_t len, const char *name, rg_task *task);
void rg_task_free(rg_task *task);

/* The k shots for item: from the shots whose group equals the item's group
 * when there are any, else from all; chosen by a partial Fisher-Yates shuffle
 * seeded by (seed, group), so every item of one group gets the same shots
 * (and the prompt prefix they make is processed once). idx: room for k. */
int rg_choose_shots(const rg_task *shots, const rg_item *item, int k, uint64_t seed, int *idx);

/* ------------------------------------------------------------------ metrics */

/* SQuAD-style normalisation: ASCII lower case, punctuation removed, the
 * articles a/an/the dropped, whitespace runs collapsed, trimmed. malloc'd. */
char *rg_normalize_answer(const char *s, size_t len);
/* Extract the answer from generated text. mode: NULL or "text" (all of it,
 * trimmed), "number" (the last number, commas removed, a trailing '.' or ".0…"
 * fraction of zeros dropped), or a POSIX extended regex (its last match;
 * the first group when it has one). Returns malloc'd text ("" when nothing
 * matched) or NULL with an error for a bad regex. */
char *rg_extract_answer(const char *mode, const char *text);
/* Majority vote: index of the most frequent string (the one reached first
 * on ties). */
int rg_majority(char *const *answers, int n);

/* Mean and standard error of per-item scores: sqrt(sum (x - mean)^2 / (n-1) / n). */
void rg_mean_stderr(const double *x, int n, double *mean, double *stderr_out);

/* Number of Unicode characters in UTF-8 text (the length acc_norm divides by,
 * as lm-evaluation-harness does). */
size_t rg_utf8_chars(const char *s, size_t len);

/* ------------------------------------------------------------------- runner */

typedef struct {
    const rg_model *model;
    const rg_tokenizer *tok; /* NULL: only ids items can run */
    const rg_task *shots;    /* NULL: zero-shot */
    int k_shots;
    uint64_t seed;
    const char *shot_sep;    /* written after each shot (default "\n\n") */
    int reuse;               /* 1: score choices from a snapshot and cache the shot prefix; 0: re-process all */
    int batch;               /* rg_eval_items with reuse: sequences (states) advanced together in one
                                batched step; <= 1: one at a time, as rg_eval_item */
    /* generation */
    int samples;             /* k of maj@k (>= 1) */
    rg_sampling_params sampling;
    int max_tokens;
    const char *const *stop; /* default stop strings */
    int n_stop;
    const char *extract;     /* see rg_extract_answer */
} rg_eval_opts;

typedef struct {
    /* multiple choice */
    double *ll;      /* [n_choices] sum of log p over the continuation */
    int *n_tokens;   /* [n_choices] continuation tokens */
    int *greedy;     /* [n_choices] 1 when every continuation token was the argmax */
    int pred, pred_norm;
    /* generation: samples outputs and their extracted answers */
    char **outputs, **extracted;
    int n_outputs;
    int vote;        /* index of the majority answer */
    /* both */
    double acc, acc_norm, em, nm, maj; /* 0/1 */
    int64_t tokens;  /* tokens run through the model for this item */
} rg_item_result;

typedef struct rg_evaluator rg_evaluator;

rg_evaluator *rg_evaluator_new(const rg_eval_opts *opts);
void rg_evaluator_free(rg_evaluator *ev);
/* Score one item (index: its position, for seeds). On failure the message
 * names the item's line. */
int rg_eval_item(rg_evaluator *ev, const rg_item *item, int index, rg_item_result *res);
void rg_item_result_free(rg_item_result *r);
/* Score items[0..n) (their indices index0..index0+n-1) with the same results
 * as rg_eval_item on each in turn (up to the float rounding of the batched
 * matrix kernels), but with opts.batch > 1 and reuse on, the contexts of
 * the multiple-choice items, then their choices, go through the model
 * together (rg_forward_batch): up to opts.batch sequences per step and at
 * most about 2 x opts.batch states alive; generation items run one at a
 * time. res: room for n results (each to be freed, also on failure). */
int rg_eval_items(rg_evaluator *ev, const rg_item *items, int n, int index0, rg_item_result *res);

#endif
