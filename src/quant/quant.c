/* Row quantisers in ggml's block layouts, and the precision policy. */
#include <math.h>
#include <strings.h>
#include "quant/quant.h"
#include "util/util.h"

/* Q8_0 block of 32: d = max|x| / 127 stored as float16, q = round(x / d)
 * with the float16-rounded d (the value the kernels will multiply by), so
 * |x - d q| <= d/2 up to the f16 rounding of d. */
static void block_q8_0(const float *x, uint8_t *out) {
    float amax = 0;
    for (int j = 0; j < RG_QBLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
    uint16_t d16 = rg_f32_to_f16(amax / 127.0f);
    float d = rg_f16_to_f32(d16), id = d > 0 ? 1.0f / d : 0.0f;
    memcpy(out, &d16, 2);
    for (int j = 0; j < RG_QBLOCK; j++) {
        float q = roundf(x[j] * id);
        out[2 + j] = (uint8_t)(int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
    }
}

/* Q4_0 block of 32: value = d (q - 8) with q in 0..15; element j is the low
 * nibble of byte j, element j+16 the high nibble. ggml's reference maps the
 * element m of largest magnitude to -8 (d = m / -8). Here that scale is one
 * of 19 candidates d = m / -(8 + 0.1 k), k = -9..9: for each, q is rounded,
 * then d is refitted by least squares (d = sum x q / sum q^2, which gives the
 * error sum x^2 - (sum x q)^2 / sum q^2), and the q with the smallest error
 * wins. Same format, same speed, lower error (see README). */
static int q4_code(float x, float id) {
    float v = x * id + 8.5f; /* floor(v) = round(x / d) + 8 */
    int q = v > 0 ? (int)v : 0; /* truncation is floor for v > 0 (and no libm call) */
    return q > 15 ? 15 : q;
}

static void block_q4_0(const float *x, uint8_t *out) {
    float amax = 0, m = 0;
    for (int j = 0; j < RG_QBLOCK; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            m = x[j];
        }
    float best_d = m / -8.0f;
    double best_gain = -1;
    for (int k = -9; k <= 9 && amax > 0; k++) {
        float id = -(8.0f + 0.1f * (float)k) / m;
        double sxq = 0, sqq = 0;
        for (int j = 0; j < RG_QBLOCK; j++) {
            int q = q4_code(x[j], id) - 8;
            sxq += (double)x[j] * q;
            sqq += (double)q * q;
        }
        /* the error is sum x^2 - sxq^2 / sqq: maximise sxq^2 / sqq */
        if (sqq > 0 && sxq * sxq / sqq > best_gain) {
            best_gain = sxq * sxq / sqq;
            best_d = (float)(sxq / sqq);
        }
    }
    uint16_t d16 = rg_f32_to_f16(best_d);
    float d = rg_f16_to_f32(d16), id = d != 0 ? 1.0f / d : 0.0f;
    memcpy(out, &d16, 2);
    for (int j = 0; j < 16; j++) out[2 + j] = (uint8_t)(q4_code(x[j], id) | q4_code(x[j + 16], id) << 4);
}

int rg_quantize_row(rg_dtype dt, const float *x, int64_t n, uint8_t *out) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return rg_error("element %lld is not finite (%g)", (long long)i, (double)x[i]);
    switch (dt) {
    case RG_DT_F32:
        memcpy(out, x, sizeof(float) * (size_t)n);
        return 0;
    case RG_DT_F16:
    case RG_DT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = dt == RG_DT_F16 ? rg_f32_to_f16(x[i]) : rg_f32_to_bf16(x[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        return 0;
    case RG_DT_Q8_0:
    case RG_DT_Q4_0: {
        size_t bb = rg_dtype_row_bytes(dt, RG_QBLOCK);
        for (int64_t b = 0; b < n / RG_QBLOCK; b++) {
            (dt == RG_DT_Q8_0 ? block_q8_0 : block_q4_0)(x + b * RG_QBLOCK, out + b * bb);
            uint16_t d16;
            memcpy(&d16, out + b * bb, 2);
            if (!isfinite(rg_f16_to_f32(d16)))
                return rg_error("block %lld: values too large for a float16 block scale", (long long)b);
        }
        return 0;
    }
    default: return rg_error("cannot store type %s", rg_dtype_name(dt));
    }
}

int rg_dtype_parse(const char *s, rg_dtype *out) {
    for (int d = 0; d < RG_DT_COUNT; d++)
        if (!strcasecmp(s, rg_dtype_name((rg_dtype)d))) {
            *out = (rg_dtype)d;
            return 0;
        }
    return rg_error("unknown weight type \"%s\" (expected f32, f16, bf16, q8_0 or q4_0)", s);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* The projection matrices: the bulk of the bytes, read once per token. */
static int is_matrix(const char *name) {
    static const char *const suffixes[] = {".q_proj.weight",    ".k_proj.weight",    ".v_proj.weight",
                                           ".o_proj.weight",    ".gate_proj.weight", ".up_proj.weight",
                                           ".down_proj.weight", ".linear_x.weight",  ".linear_y.weight",
                                           ".linear_out.weight"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
        if (ends_with(name, suffixes[i])) return 1;
    return 0;
}

static int is_quantised(rg_dtype t) { return t == RG_DT_Q8_0 || t == RG_DT_Q4_0; }

rg_dtype rg_quant_choose(const char *name, const rg_tensor *t, rg_dtype want, rg_dtype embed, const char **why) {
    *why = NULL;
    int embedding = !strcmp(name, "model.embed_tokens.weight");
    if (embedding || is_matrix(name)) {
        rg_dtype dt = embedding ? embed : want;
        if (is_quantised(dt) && t->shape[t->ndim - 1] % RG_QBLOCK) {
            *why = "rows are not a multiple of 32";
            return RG_DT_BF16;
        }
        if (embedding && embed != want) *why = "embedding type";
        return dt;
    }
    /* RG-LRU gates [H, bw, bw]: they set the decay a = exp(-8 softplus(L) sigmoid(.)),
     * which compounds over every step; bf16 is the training precision */
    if (ends_with(name, "_gate_weight")) {
        if (!is_quantised(want)) return want;
        *why = "RG-LRU gate";
        return RG_DT_BF16;
    }
    /* norms, biases, conv taps, recurrent_param: < 0.2% of the bytes, widened
     * to float32 at load anyway */
    if (want != RG_DT_F32) *why = "norm, bias, conv or RG-LRU parameter";
    return RG_DT_F32;
}
