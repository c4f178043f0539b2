/* Sampler internals, exposed for tests (the public API is in rgemma.h). */
#ifndef RG_SAMPLING_H
#define RG_SAMPLING_H

#include "rgemma.h"

typedef struct {
    int32_t id;
    float logit;
} rg_candidate;

/* Apply the repeat/frequency/presence penalties of the accepted history to logits. */
void rg_sampler_apply_penalties(rg_sampler *s, float *logits);
/* The tokens that survive top-k, top-p and min-p, best first (logits
 * before temperature); with all three off, every token in id order.
 * *out points into the sampler; returns the count. */
int rg_sampler_candidates(rg_sampler *s, const float *logits, rg_candidate **out);

#endif
