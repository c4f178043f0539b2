#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "check_golden.h"
#include "model/model.h"
#include "model/synth.h"
#include "util/util.h"

typedef struct {
    const char *dir;
    FILE *out;
    cJSON *golden;
    int runs, failures;
} checker;

/* Load <dir>/<file> as float32 and check its size against golden.json's shape. */
static float *load_bin(checker *ck, const char *key, size_t *count) {
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(ck->golden, "files");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(files, key);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "file");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(f, "shape");
    if (!cJSON_IsString(name) || !cJSON_IsArray(shape)) {
        fprintf(ck->out, "  %-24s FAIL: golden.json has no files.%s entry\n", key, key);
        return NULL;
    }
    size_t n = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) n *= (size_t)d->valuedouble;
    char *path = rg_path_join(ck->dir, name->valuestring);
    char *data;
    size_t len;
    if (rg_read_file(path, 1u << 30, &data, &len)) {
        fprintf(ck->out, "  %-24s FAIL: %s\n", key, rg_last_error());
        free(path);
        return NULL;
    }
    free(path);
    if (len != n * 4) {
        fprintf(ck->out, "  %-24s FAIL: %s has %zu bytes, shape says %zu\n", key, name->valuestring, len, n * 4);
        free(data);
        return NULL;
    }
    float *v = rg_xmalloc(len ? len : 4);
    memcpy(v, data, len);
    free(data);
    *count = n;
    return v;
}

static double tolerance(checker *ck, const char *kind) {
    const cJSON *tol = cJSON_GetObjectItemCaseSensitive(ck->golden, "tolerances");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(tol, kind);
    const cJSON *atol = cJSON_GetObjectItemCaseSensitive(t, "atol");
    return cJSON_IsNumber(atol) ? atol->valuedouble : 5e-4;
}

/* Compare got[count] with the file for key; report max |diff|. */
static void compare(checker *ck, const char *key, const char *label, const char *tol_kind, const float *got,
                    size_t count) {
    ck->runs++;
    size_t n = 0;
    float *want = load_bin(ck, key, &n);
    if (!want) {
        ck->failures++;
        return;
    }
    if (n != count) {
        fprintf(ck->out, "  %-24s FAIL: expected %zu values, engine produced %zu\n", label, n, count);
        ck->failures++;
        free(want);
        return;
    }
    double atol = tolerance(ck, tol_kind), maxd = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= maxd)) { /* also catches NaN */
            maxd = isnan(d) ? INFINITY : d;
            worst = i;
        }
    }
    int ok = maxd <= atol;
    fprintf(ck->out, "  %-24s max|diff| = %.3g (tol %.3g) at index %zu  %s\n", label, maxd, atol, worst,
            ok ? "ok" : "FAIL");
    if (!ok) ck->failures++;
    free(want);
}

static int int_list(const cJSON *a, int32_t **out) {
    int n = cJSON_GetArraySize(a);
    *out = rg_xmalloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) (*out)[i++] = (int32_t)e->valuedouble;
    return n;
}

/* Tokens [0, prefill) in one call (0 = none), then one token per call, or in
 * chunks of `chunk` tokens when chunk > 0. Returns logits [n x V]. */
static float *run_sequence(const rg_model *m, const int32_t *tok, int n, int prefill, int chunk) {
    int V = m->cfg.vocab_size;
    float *logits = rg_xmalloc(sizeof(float) * (size_t)n * V);
    rg_state *s = rg_state_new(m);
    int i = 0;
    if (prefill > 0) {
        if (rg_forward(m, s, tok, prefill, logits, 1)) goto fail;
        i = prefill;
    }
    int step = chunk > 0 ? chunk : 1;
    for (; i < n; i += step) {
        int len = n - i < step ? n - i : step;
        if (rg_forward(m, s, tok + i, len, logits + (size_t)i * V, 1)) goto fail;
    }
    rg_state_free(s);
    return logits;
fail:
    rg_state_free(s);
    free(logits);
    return NULL;
}

typedef struct {
    const rg_config *cfg;
    int seq;
    float *hidden, *temporal, *mlp, *final_norm;
} trace_buf;

static void on_trace(void *ctx, const char *what, int layer, int64_t pos0, int n, const float *data, int width) {
    trace_buf *tb = ctx;
    size_t rowbytes = sizeof(float) * (size_t)width;
    float *dst = NULL;
    if (!strcmp(what, "embed")) dst = tb->hidden;
    else if (!strcmp(what, "residual")) dst = tb->hidden + (size_t)(layer + 1) * tb->seq * width;
    else if (!strcmp(what, "temporal")) dst = tb->temporal + (size_t)layer * tb->seq * width;
    else if (!strcmp(what, "mlp")) dst = tb->mlp + (size_t)layer * tb->seq * width;
    else if (!strcmp(what, "final_norm")) dst = tb->final_norm;
    if (dst) memcpy(dst + (size_t)pos0 * width, data, rowbytes * (size_t)n);
}

static void check_greedy(checker *ck, const rg_model *m, const char *gkey, const char *logits_key,
                         const char *tol_kind) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(ck->golden, gkey);
    if (!g) return;
    int32_t *prompt, *expect;
    int np = int_list(cJSON_GetObjectItemCaseSensitive(g, "prompt"), &prompt);
    int ng = int_list(cJSON_GetObjectItemCaseSensitive(g, "generated"), &expect);
    int V = m->cfg.vocab_size;
    float *rows = rg_xmalloc(sizeof(float) * (size_t)(ng ? ng : 1) * V);
    int32_t *got = rg_xmalloc(sizeof(int32_t) * (size_t)(ng ? ng : 1));
    rg_state *s = rg_state_new(m);
    /* as the reference sampler: prefill prompt[:-1], then one step per token */
    int ok = np >= 1 && (np == 1 || rg_forward(m, s, prompt, np - 1, NULL, 0) == 0);
    int32_t next = np >= 1 ? prompt[np - 1] : 0;
    for (int k = 0; ok && k < ng; k++) {
        if (rg_forward(m, s, &next, 1, rows + (size_t)k * V, 0)) ok = 0;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (rows[(size_t)k * V + v] > rows[(size_t)k * V + best]) best = v;
        got[k] = next = best;
    }
    ck->runs++;
    int same = ok && !memcmp(got, expect, sizeof(int32_t) * (size_t)ng);
    fprintf(ck->out, "  %-24s %d generated tokens %s\n", gkey, ng, same ? "identical  ok" : "DIFFER  FAIL");
    if (!same) ck->failures++;
    const cJSON *lf = cJSON_GetObjectItemCaseSensitive(g, "logits_file");
    if (ok && cJSON_IsString(lf)) compare(ck, logits_key, logits_key, tol_kind, rows, (size_t)ng * V);
    rg_state_free(s);
    free(rows);
    free(got);
    free(prompt);
    free(expect);
}

int rg_is_golden_case(const char *dir) {
    char *p = rg_path_join(dir, "golden.json");
    int ok = rg_file_exists(p);
    free(p);
    return ok;
}

int rg_check_golden_case(const char *dir, FILE *out, int *runs) {
    checker ck = {dir, out, NULL, 0, 0};
    char *gpath = rg_path_join(dir, "golden.json"), *text = NULL;
    size_t len;
    rg_model *m = NULL, *mb = NULL;
    int32_t *tok = NULL;
    fprintf(out, "case %s\n", dir);
    if (rg_read_file(gpath, 16u << 20, &text, &len) || !(ck.golden = cJSON_ParseWithLength(text, len))) {
        fprintf(out, "  FAIL: cannot read golden.json: %s\n", rg_last_error());
        ck.failures++;
        goto done;
    }
    char *mpath = rg_path_join(dir, "model.safetensors");
    int rc = rg_model_load(mpath, &m);
    free(mpath);
    if (rc) {
        fprintf(out, "  FAIL: %s\n", rg_last_error());
        ck.failures++;
        goto done;
    }
    const rg_config *c = &m->cfg;
    int n = int_list(cJSON_GetObjectItemCaseSensitive(ck.golden, "tokens"), &tok);
    int V = c->vocab_size, D = c->hidden_size, Lr = c->num_layers;

    /* full pass, with per-layer activations */
    trace_buf tb = {c, n, rg_xmalloc(sizeof(float) * (size_t)(Lr + 1) * n * D),
                    rg_xmalloc(sizeof(float) * (size_t)Lr * n * D), rg_xmalloc(sizeof(float) * (size_t)Lr * n * D),
                    rg_xmalloc(sizeof(float) * (size_t)n * D)};
    float *full = rg_xmalloc(sizeof(float) * (size_t)n * V);
    rg_state *s = rg_state_new(m);
    if (rg_forward_traced(m, s, tok, n, full, 1, on_trace, &tb)) {
        fprintf(out, "  FAIL: forward: %s\n", rg_last_error());
        ck.failures++;
    } else {
        compare(&ck, "logits_full", "logits_full", "logits", full, (size_t)n * V);
        compare(&ck, "hidden_states", "hidden_states", "hidden_states", tb.hidden, (size_t)(Lr + 1) * n * D);
        compare(&ck, "temporal_out", "temporal_out", "temporal_out", tb.temporal, (size_t)Lr * n * D);
        compare(&ck, "mlp_out", "mlp_out", "mlp_out", tb.mlp, (size_t)Lr * n * D);
        compare(&ck, "final_norm_out", "final_norm_out", "final_norm_out", tb.final_norm, (size_t)n * D);
    }
    rg_state_free(s);
    free(tb.hidden);
    free(tb.temporal);
    free(tb.mlp);
    free(tb.final_norm);

    float *lg = run_sequence(m, tok, n, 0, 0);
    if (lg) compare(&ck, "logits_decode", "logits_decode", "logits", lg, (size_t)n * V);
    free(lg);
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(ck.golden, "prefill_lens"), *e;
    cJSON_ArrayForEach(e, pl) {
        int p = (int)e->valuedouble;
        char key[64];
        snprintf(key, sizeof key, "logits_prefill%d", p);
        lg = p >= 1 && p <= n ? run_sequence(m, tok, n, p, 0) : NULL;
        if (lg) compare(&ck, key, key, "logits", lg, (size_t)n * V);
        else { fprintf(out, "  %-24s FAIL: bad prefill length\n", key); ck.runs++; ck.failures++; }
        free(lg);
    }
    /* chunked prefill continuing from an existing state, chunk < W, = W, > W:
     * must equal the full pass */
    int W = c->window, chunks[] = {3, W, W + 1, 2 * W + 1};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        if (i > 0 && chunks[i] == chunks[i - 1]) continue;
        char label[64];
        snprintf(label, sizeof label, "chunks_of_%d", chunks[i]);
        lg = run_sequence(m, tok, n, 0, chunks[i]);
        if (lg) compare(&ck, "logits_full", label, "logits", lg, (size_t)n * V);
        free(lg);
    }
    check_greedy(&ck, m, "greedy", "greedy_logits", "logits");

    /* the same weights stored as bf16 */
    char *bpath = rg_path_join(dir, "model-bf16.safetensors");
    if (rg_file_exists(bpath)) {
        if (rg_model_load(bpath, &mb)) {
            fprintf(out, "  FAIL: %s\n", rg_last_error());
            ck.failures++;
        } else {
            lg = run_sequence(mb, tok, n, n, 0);
            if (lg) compare(&ck, "logits_full_bf16w", "logits_full_bf16w", "logits_bf16_weights", lg, (size_t)n * V);
            free(lg);
            check_greedy(&ck, mb, "greedy_bf16w", "greedy_logits_bf16w", "logits_bf16_weights");
        }
    }
    free(bpath);
    free(full);
done:
    rg_model_free(m);
    rg_model_free(mb);
    cJSON_Delete(ck.golden);
    free(text);
    free(gpath);
    free(tok);
    fprintf(out, "  %s: %d runs, %d failed\n", dir, ck.runs, ck.failures);
    if (runs) *runs = ck.runs;
    return ck.failures;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int rg_find_case_dirs(const char *root, int (*is_case)(const char *dir), char ***cases) {
    *cases = NULL;
    DIR *d = opendir(root);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = rg_path_join(root, e->d_name);
        if (rg_is_dir(p) && is_case(p)) {
            *cases = rg_xrealloc(*cases, sizeof **cases * (size_t)(n + 1));
            (*cases)[n++] = p;
        } else {
            free(p);
        }
    }
    closedir(d);
    if (n) qsort(*cases, (size_t)n, sizeof **cases, cmp_str);
    return n;
}

int rg_find_golden_cases(const char *root, char ***cases) { return rg_find_case_dirs(root, rg_is_golden_case, cases); }

int rg_find_all_golden_cases(char ***cases) {
    int n = rg_find_golden_cases("tests/data/golden", cases);
    const char *sh = getenv("RGEMMA_SHARED");
    if (!sh || !*sh) return n;
    char *shared = rg_path_join(sh, "testdata/golden"), **more;
    if (!rg_is_dir(shared)) {
        printf("note: %s not found; checking the project's copy of the golden cases only\n", shared);
        free(shared);
        return n;
    }
    int k = rg_find_golden_cases(shared, &more);
    free(shared);
    *cases = rg_xrealloc(*cases, sizeof **cases * (size_t)(n + k + 1));
    memcpy(*cases + n, more, sizeof *more * (size_t)k);
    free(more);
    return n + k;
}

int rg_write_test_synth(const char *dir, int head_dim, uint64_t seed) {
    rg_config c;
    if (rg_synth_preset("tiny", &c)) return -1;
    c.vocab_size = 512;
    c.num_heads = 2;
    c.head_dim = head_dim;
    c.hidden_size = c.lru_width = 2 * head_dim;
    c.mlp_width = 3 * c.hidden_size;
    c.num_layers = 6;
    c.window = 16;
    rg_synth_options o = {.dtype = RG_DT_F32, .seed = seed};
    return rg_synth_write(&c, dir, &o, NULL);
}
