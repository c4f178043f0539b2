#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "check_golden.h"
#include "check_grad.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "util/util.h"

/* grad.json's tolerance, with the README's values as defaults: the loss
 * within loss_atol; per tensor max|g - golden| <= rtol * max(max|golden|, floor). */
typedef struct {
    double loss_atol, rtol, floor;
} tolerances;

static double number(const cJSON *obj, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static cJSON *read_json(const char *dir, const char *name, FILE *out) {
    char *path = rg_path_join(dir, name), *text = NULL;
    size_t len;
    cJSON *j = NULL;
    if (rg_read_file(path, 64u << 20, &text, &len) == 0) j = cJSON_ParseWithLength(text, len);
    if (!j) fprintf(out, "  FAIL: cannot read %s: %s\n", name, text ? "not valid JSON" : rg_last_error());
    free(text);
    free(path);
    return j;
}

int rg_is_grad_case(const char *dir) {
    char *p = rg_path_join(dir, "grad.safetensors");
    int ok = rg_file_exists(p);
    free(p);
    return ok;
}

int rg_check_grad_case(const char *dir, FILE *out, int *checks) {
    int failures = 0, n_checks = 0;
    cJSON *golden = NULL, *gj = NULL;
    rg_model *m = NULL;
    rg_grad *g = NULL;
    float *params = NULL, *grad = NULL, *want = NULL;
    int32_t *tok = NULL;
    uint8_t *seen = NULL;
    rg_safetensors st = {0};
    char *gpath = rg_path_join(dir, "grad.safetensors");
    fprintf(out, "case %s\n", dir);
#define FAIL(...) do { fprintf(out, "  FAIL: " __VA_ARGS__); fputc('\n', out); failures++; goto done; } while (0)
    if (!(golden = read_json(dir, "golden.json", out)) || !(gj = read_json(dir, "grad.json", out))) {
        failures++;
        goto done;
    }
    const cJSON *tarr = cJSON_GetObjectItemCaseSensitive(golden, "tokens"), *e;
    int n = cJSON_GetArraySize(tarr), i = 0;
    if (!cJSON_IsArray(tarr) || n < 2) FAIL("golden.json has no token list of 2 or more");
    tok = rg_xmalloc(sizeof *tok * (size_t)n);
    cJSON_ArrayForEach(e, tarr) tok[i++] = (int32_t)e->valuedouble;
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(gj, "tolerance");
    tolerances tol = {number(tj, "loss_atol", 1e-4), 1e-3, 1e-3};
    /* the per-tensor rule is stated in words:
     * "per tensor: max|g - golden| <= RTOL * max(max|golden|, FLOOR)" */
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(tj, "grad");
    if (cJSON_IsString(rule)) {
        const char *at = strstr(rule->valuestring, "<=");
        double r, f;
        if (at && sscanf(at, "<= %lf * max(max|golden|, %lf)", &r, &f) == 2 && r > 0 && f >= 0)
            tol.rtol = r, tol.floor = f;
        else
            fprintf(out, "  note: grad.json's tolerance \"%s\" not understood; using 1e-3 * max(max|golden|, 1e-3)\n",
                    rule->valuestring);
    }
    const cJSON *lj = cJSON_GetObjectItemCaseSensitive(gj, "loss");
    if (!cJSON_IsNumber(lj)) FAIL("grad.json has no loss");

    if (rg_model_load(dir, &m)) FAIL("%s", rg_last_error());
    if (!(g = rg_grad_new(rg_model_config(m)))) FAIL("%s", rg_last_error());
    size_t total = rg_grad_size(g);
    params = rg_xmalloc(sizeof(float) * total);
    grad = rg_xcalloc(total, sizeof(float));
    if (rg_grad_params_from_model(g, m, params)) FAIL("%s", rg_last_error());
    double nll, t0 = rg_time_s();
    int64_t targets;
    /* the reference's loss: the mean over all n-1 next-token targets */
    if (rg_grad_compute(g, params, tok, n, NULL, 1.0 / (n - 1), grad, &nll, &targets))
        FAIL("gradient: %s", rg_last_error());
    double secs = rg_time_s() - t0, loss = nll / (double)targets, dl = fabs(loss - lj->valuedouble);
    n_checks++;
    int ok = dl <= tol.loss_atol;
    failures += !ok;
    fprintf(out, "  %-64s %.8f vs %.8f: |diff| = %.3g (tol %.3g)  %s\n", "loss", loss, lj->valuedouble, dl,
            tol.loss_atol, ok ? "ok" : "FAIL");

    if (rg_st_open(&st, gpath)) FAIL("%s", rg_last_error());
    seen = rg_xcalloc((size_t)rg_grad_n_tensors(g), 1);
    double worst = 0; /* the largest error as a fraction of its tolerance */
    for (int k = 0; k < st.n_entries; k++) {
        const rg_st_entry *en = &st.entries[k];
        const rg_tensor *w = &en->t;
        int idx = rg_grad_find(g, en->name);
        n_checks++;
        if (idx < 0) {
            fprintf(out, "  %-64s FAIL: not a parameter of the model\n", en->name);
            failures++;
            continue;
        }
        const rg_grad_tensor *t = rg_grad_tensor_at(g, idx);
        seen[idx] = 1;
        int same = w->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = w->shape[d] == t->shape[d];
        if (!same) {
            fprintf(out, "  %-64s FAIL: shape differs from the model's\n", en->name);
            failures++;
            continue;
        }
        int64_t cols = w->shape[w->ndim - 1];
        want = rg_xrealloc(want, sizeof(float) * t->count);
        for (size_t r = 0; r < t->count / (size_t)cols; r++) rg_dequant_row(w, (int64_t)r, want + r * cols);
        double maxg = 0, maxd = 0;
        for (size_t j = 0; j < t->count; j++) {
            double d = fabs((double)grad[t->offset + j] - (double)want[j]);
            if (!(d <= maxd)) maxd = isnan(d) ? INFINITY : d; /* also catches NaN */
            if (fabs(want[j]) > maxg) maxg = fabs(want[j]);
        }
        double lim = tol.rtol * (maxg > tol.floor ? maxg : tol.floor);
        ok = maxd <= lim;
        failures += !ok;
        if (maxd / lim > worst) worst = maxd / lim;
        fprintf(out, "  %-64s max|diff| = %.3g (tol %.3g, max|g| %.3g)  %s\n", en->name, maxd, lim, maxg,
                ok ? "ok" : "FAIL");
    }
    for (int k = 0; k < rg_grad_n_tensors(g); k++)
        if (!seen[k]) {
            fprintf(out, "  %-64s FAIL: no gradient for it in grad.safetensors\n", rg_grad_tensor_at(g, k)->name);
            failures++;
            n_checks++;
        }
    fprintf(out, "  gradient of %d tokens in %.3f s; worst tensor at %.3g of its tolerance\n", n, secs, worst);
#undef FAIL
done:
    rg_st_close(&st);
    rg_grad_free(g);
    rg_model_free(m);
    cJSON_Delete(golden);
    cJSON_Delete(gj);
    free(params);
    free(grad);
    free(want);
    free(tok);
    free(seen);
    free(gpath);
    fprintf(out, "  %s: %d checks, %d failed\n", dir, n_checks, failures);
    if (checks) *checks = n_checks;
    return failures;
}

int rg_find_grad_cases(const char *root, char ***cases) { return rg_find_case_dirs(root, rg_is_grad_case, cases); }
