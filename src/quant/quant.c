/* The precision policy: which tensors are quantised. */
#include "quant/quant.h"
#include "util/util.h"

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

rg_dtype rg_quant_choose(const char *name, const rg_tensor *t, rg_dtype want, rg_dtype embed, const char **why) {
    *why = NULL;
    int embedding = !strcmp(name, "model.embed_tokens.weight");
    if (embedding || is_matrix(name)) {
        rg_dtype dt = embedding ? embed : want;
        int64_t cols = t->shape[t->ndim - 1];
        /* a K-quant's rows are super-blocks of 256: else the 32-block type
         * of about as many bits (as llama.cpp falls back) */
        if ((dt == RG_DT_Q4_K || dt == RG_DT_Q6_K) && cols % RG_QK_BLOCK && cols % RG_QBLOCK == 0) {
            *why = "rows are not a multiple of 256";
            return dt == RG_DT_Q4_K ? RG_DT_Q4_0 : RG_DT_Q8_0;
        }
        if (cols % rg_dtype_block(dt)) {
            *why = "rows are not a multiple of 32"; /* RG_QBLOCK */
            return RG_DT_BF16;
        }
        if (embedding && embed != want) *why = "embedding type";
        return dt;
    }
    /* RG-LRU gates [H, bw, bw]: they set the decay a = exp(-8 softplus(L) sigmoid(.)),
     * which compounds over every step; bf16 is the training precision */
    if (ends_with(name, "_gate_weight")) {
        if (!rg_dtype_is_quantised(want)) return want;
        *why = "RG-LRU gate";
        return RG_DT_BF16;
    }
    /* norms, biases, conv taps, recurrent_param: < 0.2% of the bytes, widened
     * to float32 at load anyway */
    if (want != RG_DT_F32) *why = "norm, bias, conv or RG-LRU parameter";
    return RG_DT_F32;
}
