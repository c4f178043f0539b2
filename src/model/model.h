/* The loaded model: config plus per-layer weight views (internal). */
#ifndef RG_MODEL_H
#define RG_MODEL_H

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "core/tensor.h"
#include "rgemma.h"

typedef struct {
    rg_layer_type type;
    const float *temporal_norm, *channel_norm; /* [D] */
    /* gated MLP */
    rg_tensor gate, up, down; /* [F, D], [F, D], [D, F] */
    const float *gate_b, *up_b, *down_b;
    /* recurrent block */
    rg_tensor linear_x, linear_y, linear_out; /* [R, D], [R, D], [D, R] */
    const float *linear_x_b, *linear_y_b, *linear_out_b;
    const float *conv_w, *conv_b;  /* [K][R] (taps by position), [R] */
    const float *softplus_a;       /* softplus(recurrent_param) [R] */
    rg_tensor input_gate, a_gate;  /* block-diagonal gates, transposed to [H*bw (out), bw (in)] */
    const float *input_gate_b, *a_gate_b; /* [R] */
    /* attention block */
    rg_tensor q, k, v, o; /* [H*hd, D], [hd, D], [hd, D], [D, H*hd] */
    const float *o_b;
} rg_layer;

/* Where the tensors come from: a name -> tensor lookup over the opened file(s). */
typedef const rg_tensor *(*rg_tensor_lookup)(void *ctx, const char *name);

struct rg_model {
    rg_config cfg;
    rg_layer *layers;
    rg_tensor embed;          /* [V, D], also the output projection (tied) */
    const float *final_norm;  /* [D] */
    float *rope_inv_freq;     /* [rot/4]... see model.c */
    int rope_pairs;           /* m: dims (i, i+m) rotate, i < m */
    rg_safetensors st;        /* safetensors source (if any) */
    void *gguf;               /* GGUF source (if any) */
    void (*gguf_close)(void *);
    void **owned;             /* buffers made at load time (conversions) */
    int n_owned;
    uint64_t adapters;        /* hash of the LoRA adapters merged in (rg_model_apply_lora), 0 if none */
    rg_dtype kv_type;         /* element type of the windows of new states: RG_DT_F32 (0), RG_DT_F16 or RG_DT_Q8_0 */
};

/* Bind every tensor the config requires through lookup (checks shapes and
 * dtypes), build derived tables. Used by each file-format loader. */
int rg_model_bind(rg_model *m, rg_tensor_lookup lookup, void *ctx, const char *source);
/* Range and consistency checks of a config from any source (model/config.c). */
int rg_config_check(const rg_config *cfg, const char *source);
/* Load from a GGUF file (model/gguf_config.c). */
int rg_model_load_gguf(rg_model *m, const char *path);
/* The model config as metadata under the "recurrentgemma." prefix (with the
 * token ids under tokenizer.ggml.*), and back (checked like config.json). */
int rg_gguf_read_config(const rg_gguf *g, rg_config *cfg);
void rg_gguf_w_config(rg_gguf_writer *w, const rg_config *cfg);

/* The stored tensor of that Hugging Face name as the file holds it (any
 * dtype, the file's shape), or NULL: for readers of the raw weights (the
 * trainer's float32 copy), not the forward pass. */
const rg_tensor *rg_model_tensor(const rg_model *m, const char *name);

/* A 64-bit identity of the weights (a sample of them, the config and any
 * adapters applied): two models that may give different states differ here
 * (the server's shared state store keys states with it). */
uint64_t rg_model_fingerprint(const rg_model *m);

/* A buffer the model frees (rg_model_free). */
void *rg_model_own(rg_model *m, size_t bytes);

/* LoRA's merge of the elements first..first+count of W [out, in] (row-major):
 * out[e] = base[e] + s * sum_k B[o][k] A[k][i], the sum in order of k.
 * The trainer's merged checkpoint and rg_model_apply_lora both use it, so
 * they give the same bits. */
void rg_lora_merge_range(const float *A, const float *B, int64_t in, int r, float s, int64_t first, int64_t count,
                         const float *base, float *out);

/* Optional per-layer observer for tests and debugging (forward.c). what is
 * "embed" (layer -1), "temporal", "mlp", "residual" (per layer) or
 * "final_norm" (layer -1); data is [n x width] for positions pos0.. */
typedef void (*rg_trace_fn)(void *ctx, const char *what, int layer, int64_t pos0, int n, const float *data,
                            int width);
int rg_forward_traced(const rg_model *m, rg_state *s, const int32_t *tokens, int n, float *logits, int all_logits,
                      rg_trace_fn trace, void *trace_ctx);

#endif
