/* Token sampler with llama.cpp's semantics and default chain:
 *   penalties -> top-k -> top-p -> min-p -> temperature -> draw
 * (llama.cpp common/sampling: "penalties;top_k;top_p;min_p;temperature";
 * the filters see probabilities at temperature 1, the draw sees logits/T).
 *   repeat:    for a token seen in the last repeat_last_n accepted tokens,
 *              l = l / penalty if l > 0, else l * penalty
 *   frequency, presence: l -= count * frequency + (count > 0) * presence
 *   top-k:     keep the k largest logits (k <= 0: off)
 *   top-p:     keep the smallest prefix (by probability) whose mass >= p
 *   min-p:     keep tokens with prob >= min_p * max prob, i.e.
 *              l >= l_max + ln(min_p)
 *   temperature <= 0: greedy (argmax after the penalties)
 * Ties between equal logits go to the lower id. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "sampling/sampling.h"
#include "util/util.h"

void rg_sampling_params_default(rg_sampling_params *p) {
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->seed = RG_SEED_RANDOM;
}

struct rg_sampler {
    rg_sampling_params p;
    int vocab;
    uint64_t seed; /* the seed in use (drawn at creation when p.seed is RG_SEED_RANDOM) */
    uint64_t rng[4];
    int32_t *history; /* ring of the last `hist_cap` accepted tokens, or all when repeat_last_n < 0 */
    size_t hist_len, hist_cap, hist_next;
    int *count;       /* [vocab] scratch for the penalties, all zero between calls */
    rg_candidate *cand;
    float *weight;    /* [vocab] scratch: exp((l - max) / T) of the candidates */
};

/* ---- xoshiro256**, seeded by splitmix64 ---------------------------------- */

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t *s) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in [0, 1) with 53 random bits */
static double next_unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1p-53; }

static void seed_rng(rg_sampler *s) {
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = rg_splitmix64(&x);
}

static uint64_t random_seed(void) {
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&v, sizeof v, 1, f) != 1) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
    }
    if (f) fclose(f);
    return v & 0xffffffffu ? v & 0xffffffffu : 1; /* 32 bits, like llama.cpp seeds; never RG_SEED_RANDOM */
}

rg_sampler *rg_sampler_new(const rg_sampling_params *p, int vocab_size) {
    if (vocab_size < 1) {
        rg_error("sampler: vocabulary size %d must be positive", vocab_size);
        return NULL;
    }
    if (!(p->temperature >= 0) || !(p->top_p >= 0) || !(p->min_p >= 0) || !(p->min_p <= 1) ||
        !(p->repeat_penalty > 0) || !isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty) ||
        !isfinite(p->temperature) || p->repeat_last_n < -1) {
        rg_error("sampler: invalid parameters (temperature %g, top_p %g, min_p %g, repeat_penalty %g, "
                 "repeat_last_n %d)",
                 p->temperature, p->top_p, p->min_p, p->repeat_penalty, p->repeat_last_n);
        return NULL;
    }
    rg_sampler *s = rg_xcalloc(1, sizeof *s);
    s->p = *p;
    s->vocab = vocab_size;
    s->seed = p->seed == RG_SEED_RANDOM ? random_seed() : p->seed;
    seed_rng(s);
    s->hist_cap = p->repeat_last_n > 0 ? (size_t)p->repeat_last_n : 0;
    if (s->hist_cap) s->history = rg_xmalloc(sizeof *s->history * s->hist_cap);
    s->count = rg_xcalloc((size_t)vocab_size, sizeof *s->count);
    s->cand = rg_xmalloc(sizeof *s->cand * (size_t)vocab_size);
    s->weight = rg_xmalloc(sizeof *s->weight * (size_t)vocab_size);
    return s;
}

void rg_sampler_free(rg_sampler *s) {
    if (!s) return;
    free(s->history);
    free(s->count);
    free(s->cand);
    free(s->weight);
    free(s);
}

void rg_sampler_reset(rg_sampler *s) {
    s->hist_len = s->hist_next = 0;
    seed_rng(s);
}

uint64_t rg_sampler_seed(const rg_sampler *s) { return s->seed; }

void rg_sampler_accept(rg_sampler *s, int32_t token) {
    if (s->p.repeat_last_n == 0) return;
    if (s->p.repeat_last_n < 0) { /* unbounded history */
        if (s->hist_len == s->hist_cap) {
            s->hist_cap = s->hist_cap ? 2 * s->hist_cap : 256;
            s->history = rg_xrealloc(s->history, sizeof *s->history * s->hist_cap);
        }
        s->history[s->hist_len++] = token;
        return;
    }
    s->history[s->hist_next] = token;
    s->hist_next = (s->hist_next + 1) % s->hist_cap;
    if (s->hist_len < s->hist_cap) s->hist_len++;
}

void rg_sampler_apply_penalties(rg_sampler *s, float *logits) {
    const rg_sampling_params *p = &s->p;
    if (s->hist_len == 0 || (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f))
        return;
    for (size_t i = 0; i < s->hist_len; i++) {
        int32_t t = s->history[i];
        if (t >= 0 && t < s->vocab) s->count[t]++;
    }
    for (size_t i = 0; i < s->hist_len; i++) {
        int32_t t = s->history[i];
        if (t < 0 || t >= s->vocab || s->count[t] == 0) continue; /* out of range, or done already */
        int c = s->count[t];
        float l = logits[t];
        l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
        logits[t] = l - (float)c * p->frequency_penalty - p->presence_penalty;
        s->count[t] = 0;
    }
}

static int cmp_desc(const void *a, const void *b) {
    const rg_candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* "a ranks before b": larger logit, then lower id */
static inline int before(const rg_candidate *a, const rg_candidate *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* The k best of logits[0..n), sorted best first, into out (a min-heap on
 * the way: O(n log k)). */
static int select_top(const float *logits, int n, int k, rg_candidate *out) {
    int size = 0;
    for (int i = 0; i < n; i++) {
        rg_candidate c = {i, logits[i]};
        if (size == k && !before(&c, &out[0])) continue;
        int j;
        if (size < k) { /* sift up */
            j = size++;
            while (j > 0 && before(&out[(j - 1) / 2], &c)) {
                out[j] = out[(j - 1) / 2];
                j = (j - 1) / 2;
            }
        } else { /* replace the worst, sift down */
            j = 0;
            for (;;) {
                int l = 2 * j + 1, r = l + 1, w = j;
                const rg_candidate *wc = &c;
                if (l < size && before(wc, &out[l])) w = l, wc = &out[l];
                if (r < size && before(wc, &out[r])) w = r;
                if (w == j) break;
                out[j] = out[w];
                j = w;
            }
        }
        out[j] = c;
    }
    qsort(out, (size_t)size, sizeof *out, cmp_desc);
    return size;
}

int rg_sampler_candidates(rg_sampler *s, const float *logits, rg_candidate **out) {
    const rg_sampling_params *p = &s->p;
    int V = s->vocab, n;
    int top_p = p->top_p < 1.0f, min_p = p->min_p > 0.0f;
    rg_candidate *c = s->cand;
    *out = c;
    double z = 0; /* softmax normaliser (T = 1) of the candidates, relative to the best logit */
    if (p->top_k > 0 && p->top_k < V) {
        n = select_top(logits, V, p->top_k, c);
        for (int i = 0; i < n; i++) z += exp((double)c[i].logit - c[0].logit);
    } else if (!top_p && !min_p) {
        for (int i = 0; i < V; i++) c[i] = (rg_candidate){i, logits[i]};
        return V; /* no filter: every token, in id order */
    } else {
        /* Top-p and min-p each keep a prefix of the sorted vocabulary; select
         * a growing top set until it holds one of them rather than sorting
         * all V logits. */
        float mx = logits[0];
        for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
        for (int i = 0; i < V; i++) z += exp((double)logits[i] - mx);
        float floor_l = min_p ? mx + logf(p->min_p) : -INFINITY;
        for (int k = 256;; k *= 8) {
            n = select_top(logits, V, k < V ? k : V, c);
            int done = n == V || c[n - 1].logit < floor_l;
            if (!done && top_p) {
                double cum = 0;
                for (int i = 0; i < n; i++) cum += exp((double)c[i].logit - mx);
                done = cum / z >= p->top_p;
            }
            if (done) break;
        }
    }
    if (top_p && n > 1) { /* the smallest prefix whose probability reaches top_p */
        double cum = 0;
        for (int i = 0; i < n; i++) {
            cum += exp((double)c[i].logit - c[0].logit) / z;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (min_p && n > 1) { /* p_i >= min_p * p_max */
        float floor_l = c[0].logit + logf(p->min_p);
        int keep = 1;
        while (keep < n && c[keep].logit >= floor_l) keep++;
        n = keep;
    }
    return n;
}

static int32_t argmax(const float *logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int32_t rg_sampler_sample(rg_sampler *s, float *logits) {
    rg_sampler_apply_penalties(s, logits);
    if (s->p.temperature <= 0.0f) return argmax(logits, s->vocab);
    rg_candidate *c;
    int n = rg_sampler_candidates(s, logits, &c);
    /* softmax(l / T) over the survivors, then one draw */
    float mx = c[0].logit;
    for (int i = 1; i < n; i++) mx = c[i].logit > mx ? c[i].logit : mx;
    float inv_t = 1.0f / s->p.temperature;
    double z = 0;
    for (int i = 0; i < n; i++) z += s->weight[i] = expf((c[i].logit - mx) * inv_t);
    double r = next_unit(s->rng) * z, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += s->weight[i];
        if (r < cum) return c[i].id;
    }
    return c[n - 1].id;
}
