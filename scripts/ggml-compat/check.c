/* The engine's quantised blocks against ggml's own code (a llama.cpp
 * build's libggml-base): the same bytes must mean the same weights to both,
 * whichever side wrote them, and a GGUF file written by `rgemma quantize`
 * must parse in ggml's GGUF reader with the same tensors. Built and run by
 * scripts/check-ggml-compat.sh; not part of `make test` (it needs a
 * llama.cpp build).
 *
 *   check                 blocks: per type, random rows quantised by each
 *                         side and widened by both; prints each side's RMSE
 *   check FILE.gguf ...   files: every tensor of each file widened by both */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "gguf.h"
#include "core/tensor.h"
#include "formats/gguf.h"

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static double gauss(void) { /* Box-Muller over xorshift64 */
    double u[2];
    for (int i = 0; i < 2; i++) {
        g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
        u[i] = ((g_rng >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* largest |a - b| relative to the row's largest |a| */
static double rel_diff(const float *a, const float *b, int64_t n) {
    double d = 0, m = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)a[i]));
    }
    return d / m;
}

static double rmse(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

/* Both widenings may differ by the last bit (ggml's build may fuse a
 * multiply-add), nothing more. */
#define SAME 1e-6

static int check_blocks(void) {
    const rg_dtype types[] = {RG_DT_Q8_0, RG_DT_Q4_0, RG_DT_Q4_K, RG_DT_Q6_K};
    const int64_t n = 256 * 64;
    float *x = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    uint8_t *q = malloc((size_t)n * 2);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) x[i] = (float)(gauss() + (i / 256 % 4 == 1 ? 0.7 : 0)); /* some blocks off-centre */
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        const rg_dtype_traits *tr = rg_dtype_info(types[t]);
        const struct ggml_type_traits *gt = ggml_get_type_traits((enum ggml_type)tr->ggml_type);
        if ((int64_t)gt->blck_size != tr->block || gt->type_size != (size_t)tr->block_bytes) {
            printf("%s: ggml's block is %lld elements in %zu bytes, ours %d in %d\n", tr->name,
                   (long long)gt->blck_size, gt->type_size, tr->block, tr->block_bytes);
            bad++;
            continue;
        }
        /* ours written, both read */
        if (rg_quantize_row(types[t], x, n, q)) return 1;
        tr->to_float(q, n, a);
        gt->to_float(q, b, n);
        double ours_rmse = rmse(x, a, n), d1 = rel_diff(a, b, n);
        /* ggml's reference quantiser written, both read */
        gt->from_float_ref(x, q, n);
        tr->to_float(q, n, a);
        gt->to_float(q, b, n);
        double ggml_rmse = rmse(x, b, n), d2 = rel_diff(a, b, n);
        printf("%-5s read alike: ours written %.1e, ggml's written %.1e; RMSE on N(0,1): ours %.5f, ggml ref %.5f\n",
               tr->name, d1, d2, ours_rmse, ggml_rmse);
        bad += !(d1 <= SAME && d2 <= SAME);
    }
    free(x), free(a), free(b), free(q);
    return bad;
}

static int check_file(const char *path) {
    struct gguf_init_params params = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *gg = gguf_init_from_file(path, params);
    rg_gguf *g;
    if (!gg) return printf("%s: ggml's GGUF reader refused the file\n", path), 1;
    if (rg_gguf_open(&g, path)) return printf("%s: rgemma refused the file\n", path), 1;
    int bad = 0, checked = 0;
    if (gguf_get_n_tensors(gg) != (int64_t)g->n_tensors) {
        printf("%s: ggml reads %lld tensors, rgemma %llu\n", path, (long long)gguf_get_n_tensors(gg),
               (unsigned long long)g->n_tensors);
        bad++;
    }
    for (uint64_t i = 0; i < g->n_tensors && !bad; i++) {
        const rg_gguf_tensor *rt = &g->tensors[i];
        int64_t id = gguf_find_tensor(gg, rt->name);
        if (id < 0 || (int)gguf_get_tensor_type(gg, id) != rt->ggml_type ||
            gguf_get_data_offset(gg) + gguf_get_tensor_offset(gg, id) != g->data_offset + rt->offset ||
            gguf_get_tensor_size(gg, id) != rt->t.nbytes) {
            printf("%s: tensor %s: ggml reads another type, place or size\n", path, rt->name);
            bad++;
            break;
        }
        int64_t cols = rt->t.shape[rt->t.ndim - 1], rows = (int64_t)(rt->t.nbytes / rg_tensor_row_bytes(&rt->t));
        const struct ggml_type_traits *gt = ggml_get_type_traits((enum ggml_type)rt->ggml_type);
        float *a = malloc(sizeof(float) * cols), *b = malloc(sizeof(float) * cols);
        size_t rb = rg_tensor_row_bytes(&rt->t);
        for (int64_t r = 0; r < rows && !bad; r += rows > 64 ? rows / 64 : 1) { /* 64 rows spread over the tensor */
            rg_tensor flat = rt->t;
            flat.ndim = 2, flat.shape[0] = rows, flat.shape[1] = cols;
            rg_dequant_row(&flat, r, a);
            const uint8_t *row = (const uint8_t *)rt->t.data + (size_t)r * rb;
            if (gt->to_float) gt->to_float(row, b, cols);
            else memcpy(b, row, sizeof(float) * (size_t)cols); /* F32: ggml has no conversion */
            if (!(rel_diff(a, b, cols) <= SAME)) {
                printf("%s: tensor %s row %lld: ggml widens it to other values\n", path, rt->name, (long long)r);
                bad++;
            }
        }
        checked += rg_dtype_is_quantised(rt->t.dtype);
        free(a), free(b);
    }
    if (!bad) printf("%s: %llu tensors read alike by ggml and rgemma (%d quantised)\n", path,
                     (unsigned long long)g->n_tensors, checked);
    rg_gguf_close(g);
    gguf_free(gg);
    return bad;
}

int main(int argc, char **argv) {
    int bad = 0;
    if (argc == 1) bad = check_blocks();
    for (int i = 1; i < argc; i++) bad += check_file(argv[i]);
    printf("%s\n", bad ? "FAIL" : "ok");
    return bad != 0;
}
