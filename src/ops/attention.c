/* Local multi-query attention (SPEC §6). All heads share one key/value head,
 * so the scores of a token's heads are one small matrix product (keys as
 * the rows, heads as the tokens), done by the active matmul kernel, and the
 * weighted sum of values reads each value row once for all heads. */
#include <math.h>
#include <omp.h>
#include <string.h>
#include "ops/ops.h"

void rg_rope(float *x, int heads, int hd, int m, const float *inv_freq, int64_t pos) {
    for (int i = 0; i < m; i++) {
        float phi = (float)pos * inv_freq[i];
        float c = cosf(phi), s = sinf(phi);
        for (int h = 0; h < heads; h++) {
            float *xh = x + (size_t)h * hd;
            float a = xh[i], b = xh[i + m];
            xh[i] = a * c - b * s;
            xh[i + m] = b * c + a * s;
        }
    }
}

/* The keys of one query as at most three runs of consecutive rows: the
 * ring buffer (which may wrap once) and the chunk's own rows. */
typedef struct {
    const float *k, *v;
    int count, at; /* rows, first column in the score matrix */
} key_run;

static int key_runs(const float *k, const float *v, int hd, int64_t pos0, int64_t p, int window, const float *kcache,
                    const float *vcache, key_run *runs) {
    int64_t first = p - window > 0 ? p - window : 0;
    int nr = 0, at = 0;
    for (int64_t s = first; s < pos0 && s <= p;) { /* cached positions, slot s mod W */
        int64_t slot = s % window, end = pos0 < p + 1 ? pos0 : p + 1;
        int64_t len = end - s < window - slot ? end - s : window - slot;
        runs[nr++] = (key_run){kcache + slot * hd, vcache + slot * hd, (int)len, at};
        at += (int)len;
        s += len;
    }
    int64_t s = first > pos0 ? first : pos0; /* this chunk's positions */
    runs[nr++] = (key_run){k + (s - pos0) * hd, v + (s - pos0) * hd, (int)(p - s + 1), at};
    return nr;
}

/* score(s) = (q . k_s) / sqrt(hd); p = softmax over the W+1 allowed keys
 * (float32); out = sum_s p(s) v_s. */
void rg_local_attention(const float *q, const float *k, const float *v, int n, int heads, int hd, int64_t pos0,
                        int window, const float *kcache, const float *vcache, float *out) {
    const rg_kernel_set *ks = rg_active_kernels();
    const float scale = 1.0f / sqrtf((float)hd);
    /* work items are (token, group of heads); a token's heads are split
     * only when there are fewer tokens than threads (decode) */
    int threads = omp_get_max_threads();
    int groups = n >= threads ? 1 : (threads + n - 1) / n;
    if (groups > heads) groups = heads;
#pragma omp parallel for schedule(static) if (n * groups > 1)
    for (int item = 0; item < n * groups; item++) {
        int t = item / groups;
        size_t h0, h1;
        rg_split((size_t)heads, 1, item % groups, groups, &h0, &h1);
        int nh = (int)(h1 - h0);
        int64_t p = pos0 + t;
        key_run runs[3];
        int nr = key_runs(k, v, hd, pos0, p, window, kcache, vcache, runs);
        int nk = runs[nr - 1].at + runs[nr - 1].count;
        const float *qh = q + ((size_t)t * heads + h0) * hd;
        float *oh = out + ((size_t)t * heads + h0) * hd;
        float *scores = rg_scratch(RG_SCRATCH_OP, sizeof(float) * (size_t)nh * nk);
        for (int r = 0; r < nr; r++)
            ks->matmul[RG_DT_F32]((const uint8_t *)runs[r].k, sizeof(float) * hd, runs[r].count, hd, qh, hd, nh,
                                  scores + runs[r].at, nk);
        for (int h = 0; h < nh; h++) {
            float *sh = scores + (size_t)h * nk;
            float inv = 1.0f / ks->softmax(sh, nk, scale);
            for (int j = 0; j < nk; j++) sh[j] *= inv;
        }
        memset(oh, 0, sizeof(float) * (size_t)nh * hd);
        for (int r = 0; r < nr; r++) ks->wsum(scores + runs[r].at, nk, nh, runs[r].v, runs[r].count, hd, oh, hd);
    }
}
