/* Distance between two models' next-token distributions over the same
 * tokens: the quality cost of a quantised file against its source. */
#include <math.h>
#include <stdlib.h>
#include "model/model.h"
#include "util/util.h"

#define CHUNK 32 /* tokens per forward call: bounds the logits buffers to CHUNK x V */

/* log-softmax of x[V] into out (double, so KL of nearly equal rows is exact enough) */
static void log_softmax(const float *x, int v, double *out) {
    double mx = x[0], s = 0;
    for (int i = 1; i < v; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < v; i++) s += exp((double)x[i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < v; i++) out[i] = (double)x[i] - lse;
}

static int argmax(const float *x, int v) {
    int b = 0;
    for (int i = 1; i < v; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int rg_model_divergence(const rg_model *ref, const rg_model *m, const int32_t *tokens, int n_tokens, int seq_len,
                        rg_divergence *out) {
    memset(out, 0, sizeof *out);
    int V = ref->cfg.vocab_size;
    if (m->cfg.vocab_size != V)
        return rg_error("the models have different vocabularies (%d and %d)", V, m->cfg.vocab_size);
    if (n_tokens < 1 || seq_len < 1)
        return rg_error("nothing to compare (%d tokens, sequences of %d)", n_tokens, seq_len);
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= V) return rg_error("token %d = %d is outside the vocabulary", i, tokens[i]);
    float *la = rg_xmalloc(sizeof(float) * (size_t)CHUNK * V), *lb = rg_xmalloc(sizeof(float) * (size_t)CHUNK * V);
    rg_state *sa = rg_state_new(ref), *sb = rg_state_new(m);
    double sum_kl = 0, max_kl = 0, max_diff = 0;
    int64_t agree = 0;
    int rc = 0;
    for (int start = 0; start < n_tokens && !rc; start += seq_len) {
        int len = n_tokens - start < seq_len ? n_tokens - start : seq_len;
        rg_state_reset(sa);
        rg_state_reset(sb);
        for (int c = 0; c < len && !rc; c += CHUNK) {
            int k = len - c < CHUNK ? len - c : CHUNK;
            const int32_t *t = tokens + start + c;
            if (rg_forward(ref, sa, t, k, la, 1) || rg_forward(m, sb, t, k, lb, 1)) {
                rc = -1;
                break;
            }
#pragma omp parallel for reduction(+ : sum_kl, agree) reduction(max : max_kl, max_diff)
            for (int r = 0; r < k; r++) {
                const float *a = la + (size_t)r * V, *b = lb + (size_t)r * V;
                double *pa = rg_xmalloc(sizeof(double) * 2 * (size_t)V), *pb = pa + V;
                log_softmax(a, V, pa);
                log_softmax(b, V, pb);
                double kl = 0, d = 0;
                for (int i = 0; i < V; i++) {
                    kl += exp(pa[i]) * (pa[i] - pb[i]);
                    d = fmax(d, fabs((double)a[i] - (double)b[i]));
                }
                free(pa);
                kl = fmax(kl, 0); /* >= 0 in exact arithmetic */
                sum_kl += kl;
                max_kl = fmax(max_kl, kl);
                max_diff = fmax(max_diff, d);
                agree += argmax(a, V) == argmax(b, V);
            }
            out->positions += k;
        }
    }
    rg_state_free(sa);
    rg_state_free(sb);
    free(la);
    free(lb);
    if (rc) return -1;
    out->mean_kl = sum_kl / (double)out->positions;
    out->max_kl = max_kl;
    out->top1_agreement = (double)agree / (double)out->positions;
    out->max_abs_logit_diff = max_diff;
    return 0;
}
