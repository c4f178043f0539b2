/* Local multi-query attention: token t attends to positions t-W..t with
 * softmax(q.k / sqrt(hd)), q and k rotated by RoPE on their first half
 * (tests/reference/griffin_ref.py). All heads share one key/value head,
 * so the scores of a token's heads are one small matrix product (keys as
 * the rows, heads as the tokens), done by the active matmul kernel of the
 * keys' type, and the weighted sum of values reads each value row once for
 * all heads. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops.h"
#include "util/util.h"

#define MAX_PARTS 64

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
 * window's ring (which may wrap once; rows of the window's type) and the
 * chunk's own rows (own: in the window's type). */
typedef struct {
    rg_kv_span rows;
    int at; /* first column in the score matrix */
} key_run;

static int key_runs(const rg_kv_span *own, int64_t pos0, int64_t p, const rg_kv_window *cache, key_run *runs) {
    int64_t first = p - cache->window > 0 ? p - cache->window : 0, end = pos0 < p + 1 ? pos0 : p + 1;
    int nr = 0, at = 0;
    for (int64_t s = first; s < end;) { /* cached positions */
        key_run *r = &runs[nr++];
        r->rows = rg_kv_window_span(cache, s, end);
        r->at = at;
        at += r->rows.count;
        s += r->rows.count;
    }
    int64_t s = first > pos0 ? first : pos0; /* this chunk's positions */
    size_t skip = (size_t)(s - pos0) * own->row_bytes;
    runs[nr++] = (key_run){{(const char *)own->k + skip, (const char *)own->v + skip, own->type, own->row_bytes,
                            (int)(p - s + 1)},
                           at};
    return nr;
}

/* score(s) = (q . k_s) / sqrt(hd); p = softmax over the W+1 allowed keys
 * (float32); out = sum_s p(s) v_s.
 * Work items are (token, part of its keys). A token's keys are split only
 * when there are fewer tokens than threads (decode): each part then reads
 * its share of the cache once for all heads, and the parts are merged as in
 * flash attention: with m_j, s_j, o_j the max, sum and unnormalised output of
 * part j and M = max_j m_j, out = sum_j e^(m_j - M) o_j / sum_j e^(m_j - M) s_j. */
void rg_local_attention(const float *q, const float *k, const float *v, int n, int heads, int hd, int64_t pos0,
                        const rg_kv_window *cache, float *out) {
    const rg_kernel_set *ks = rg_active_kernels();
    const float scale = 1.0f / sqrtf((float)hd);
    /* inside a parallel region (decode rows side by side) the team is busy */
    int threads = omp_in_parallel() ? 1 : omp_get_max_threads(), parts = n >= threads ? 1 : (threads + n - 1) / n;
    if (parts > MAX_PARTS) parts = MAX_PARTS;
    size_t Q = (size_t)heads * hd, stride = Q + 2 * (size_t)heads; /* a part: o [Q], m [H], s [H] */
    float *partial = parts > 1 ? rg_xmalloc(sizeof(float) * stride * (size_t)n * parts) : NULL;
    /* The chunk's own keys and values as the window stores them (float16,
     * Q8_0: rg_kv_rows_store), so that a key gives the same score whether it
     * is read from the window or from its chunk; a Q8_0 window's keys are
     * scored by the Q8_0 matmul (int8 dot products where the set has them,
     * the queries rounded to Q8_0). */
    rg_kv_span own = {k, v, RG_DT_F32, sizeof(float) * (size_t)hd, n};
    uint8_t *own_rows = NULL;
    if (cache->type != RG_DT_F32) {
        size_t rb = rg_kv_row_bytes(cache->type, hd);
        own_rows = rg_xmalloc(2 * rb * (size_t)n);
        rg_kv_rows_store(cache->type, k, n, hd, own_rows);
        rg_kv_rows_store(cache->type, v, n, hd, own_rows + rb * (size_t)n);
        own = (rg_kv_span){own_rows, own_rows + rb * (size_t)n, cache->type, rb, n};
    }
#pragma omp parallel for schedule(static) if (n * parts > 1)
    for (int item = 0; item < n * parts; item++) {
        int t = item / parts;
        key_run runs[3];
        int nr = key_runs(&own, pos0, pos0 + t, cache, runs);
        size_t a, b; /* this part's keys, as columns of the token's score row */
        rg_split((size_t)(runs[nr - 1].at + runs[nr - 1].rows.count), 1, item % parts, parts, &a, &b);
        int len = (int)(b - a);
        float *o = parts > 1 ? partial + stride * (size_t)item : out + Q * (size_t)t;
        float *mx = o + Q, *sum = mx + heads;
        memset(o, 0, sizeof(float) * Q);
        if (len == 0) {
            for (int h = 0; h < heads; h++) mx[h] = -INFINITY, sum[h] = 0;
            continue;
        }
        float *scores = rg_scratch(RG_SCRATCH_OP, sizeof(float) * (size_t)heads * len);
        for (int r = 0; r < nr; r++) {
            const rg_kv_span *rows = &runs[r].rows;
            int lo = runs[r].at > (int)a ? runs[r].at : (int)a;
            int hi = runs[r].at + rows->count < (int)b ? runs[r].at + rows->count : (int)b;
            /* keys as the weight rows, as stored */
            rg_matmul_fn scores_of = ks->matmul[rows->type] ? ks->matmul[rows->type]
                                                            : rg_kernels_scalar.matmul[rows->type];
            if (lo < hi)
                scores_of((const uint8_t *)rows->k + (size_t)(lo - runs[r].at) * rows->row_bytes, rows->row_bytes,
                          hi - lo, hd, q + Q * (size_t)t, hd, heads, scores + (lo - (int)a), len);
        }
        for (int h = 0; h < heads; h++) {
            float *sh = scores + (size_t)h * len, m, s = ks->softmax(sh, len, scale, &m);
            if (parts > 1) {
                mx[h] = m;
                sum[h] = s;
            } else {
                for (int j = 0; j < len; j++) sh[j] *= 1.0f / s;
            }
        }
        for (int r = 0; r < nr; r++) {
            const rg_kv_span *rows = &runs[r].rows;
            int lo = runs[r].at > (int)a ? runs[r].at : (int)a;
            int hi = runs[r].at + rows->count < (int)b ? runs[r].at + rows->count : (int)b;
            if (lo < hi)
                ks->wsum(scores + (lo - (int)a), len, heads, rows->type,
                         (const uint8_t *)rows->v + (size_t)(lo - runs[r].at) * rows->row_bytes, hi - lo, hd, o, hd);
        }
    }
    for (int t = 0; t < n && partial; t++)
        for (int h = 0; h < heads; h++) {
            const float *part0 = partial + stride * (size_t)t * parts;
            float top = -INFINITY, total = 0, wj[MAX_PARTS];
            for (int j = 0; j < parts; j++) top = fmaxf(top, part0[stride * j + Q + h]);
            for (int j = 0; j < parts; j++) {
                wj[j] = expf(part0[stride * j + Q + h] - top);
                total += wj[j] * part0[stride * j + Q + heads + h];
            }
            float *oh = out + Q * (size_t)t + (size_t)h * hd;
            for (int i = 0; i < hd; i++) {
                float acc = 0;
                for (int j = 0; j < parts; j++) acc += wj[j] * part0[stride * j + (size_t)h * hd + i];
                oh[i] = acc / total;
            }
        }
    free(partial);
    free(own_rows);
}
