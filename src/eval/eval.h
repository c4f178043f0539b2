/* Evaluation internals: what the evaluator, perplexity and the tests share
 * beyond the public part (include/rgemma.h, "evaluation": perplexity
 * windows, task files, the evaluator).
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

/* Add one scored token's nll (-log p) to st. */
void rg_nll_add(rg_nll_stats *st, double nll);
/* rg_logprob that also says whether y is an argmax of the row (*is_max may be
 * NULL): the one routine every score here goes through. */
double rg_logprob_max(const float *logits, int n, int32_t y, int *is_max);

/* ---------------------------------------------------------------- task files */

/* The k shots for item: from the shots whose group equals the item's group
 * when there are any, else from all; chosen by a partial Fisher-Yates shuffle
 * seeded by (seed, group), so every item of one group gets the same shots
 * (and the prompt prefix they make is processed once). idx: room for k. */
int rg_choose_shots(const rg_task *shots, const rg_item *item, int k, uint64_t seed, int *idx);

/* ------------------------------------------------------------------ metrics */

/* SQuAD-style normalisation: ASCII lower case, punctuation removed, the
 * articles a/an/the dropped, whitespace runs collapsed, trimmed. malloc'd. */
char *rg_normalize_answer(const char *s, size_t len);
/* Majority vote: index of the most frequent string (the one reached first
 * on ties). */
int rg_majority(char *const *answers, int n);

/* Number of Unicode characters in UTF-8 text (the length acc_norm divides by,
 * as lm-evaluation-harness does). */
size_t rg_utf8_chars(const char *s, size_t len);

#endif
