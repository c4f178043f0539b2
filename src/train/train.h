/* Training internals (layer 6, above model/): the parameter layout shared by
 * the float32 and float64 builds of the forward-with-tape and the backward
 * pass (grad_f32.c, grad_f64.c instantiate backward.inc). */
#ifndef RG_TRAIN_H
#define RG_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "rgemma.h"

/* Where each tensor of one layer starts in the flat parameter buffer (in
 * elements). Fields of the other layer type are unused. */
typedef struct {
    rg_layer_type type;
    size_t temporal_norm, channel_norm;                         /* [D] */
    size_t gate_w, gate_b, up_w, up_b, down_w, down_b;           /* [F,D] [F] [F,D] [F] [D,F] [D] */
    size_t x_w, x_b, y_w, y_b, out_w, out_b;                     /* [R,D] [R] [R,D] [R] [D,R] [D] */
    size_t conv_w, conv_b;                                       /* [R,1,K] [R] */
    size_t a_param, in_gate_w, in_gate_b, a_gate_w, a_gate_b;    /* [R] [H,bw,bw] [H,bw] ... */
    size_t q_w, k_w, v_w, o_w, o_b;                              /* [H*hd,D] [hd,D] [hd,D] [D,H*hd] [D] */
} rg_layer_offsets;

/* Buffers kept from one gradient call to the next (pool.c). A call that
 * acquires the pool (it is free: calls on one layout may run at once, the
 * others then allocate plainly) gets blocks from it (zeroed, or as the
 * last call left them when the caller writes them whole), puts them back
 * when done with them, and releases it at its end, which frees the blocks
 * it did not use. */
typedef struct rg_buffer_pool rg_buffer_pool;
rg_buffer_pool *rg_pool_new(void);
void rg_pool_free(rg_buffer_pool *pool);
int rg_pool_acquire(rg_buffer_pool *pool); /* 1: the caller now owns it */
void *rg_pool_get(rg_buffer_pool *pool, size_t bytes, int zero);
void rg_pool_put(rg_buffer_pool *pool, void *p);
void rg_pool_release(rg_buffer_pool *pool);

struct rg_grad {
    rg_config cfg;
    rg_buffer_pool *pool;     /* the gradient calls' buffers */
    size_t embed, final_norm; /* [V,D], [D] */
    rg_layer_offsets *layers;
    rg_grad_tensor *tensors;  /* in buffer order */
    int n_tensors;
    size_t total;             /* elements of a parameter (or gradient) buffer */
};

/* LoRA adapters and options of the gradient engine, in float32 and float64.
 * An adapter of the matrix W [out, in] (tensor index `tensor` of the
 * layout: a linear layer's weight, see rg_lora_target) makes the layer
 *   Y = X W^T + b + s (X A^T) B^T,   A [rank, in], B [out, rank];
 * its backward adds dB += s dY^T (X A^T), dA += s (dY B)^T X (NULL: not
 * wanted) and s (dY B) A to dX. */
#define RG_TRAIN_TYPES(real, sfx)                                                                               \
    typedef struct {                                                                                            \
        int tensor, rank;                                                                                       \
        real scale;                                                                                             \
        const real *A, *B;                                                                                      \
        real *dA, *dB;                                                                                          \
        const uint16_t *W16; /* W in bf16 (the checkpoint's own values: half the memory), NULL: in params */ \
    } rg_lora_##sfx;                                                                                            \
    typedef struct {                                                                                            \
        const rg_lora_##sfx *lora; /* at most one per matrix */                                                 \
        int n_lora;                                                                                             \
        int recompute; /* keep each layer's input only, and recompute its tape in the backward pass */         \
        const uint16_t *embed16; /* the tied embedding in bf16, frozen; NULL: in params */                    \
    } rg_grad_opts_##sfx
RG_TRAIN_TYPES(float, f32);
RG_TRAIN_TYPES(double, f64);

/* The loss and gradient of one sequence (see rg_grad_compute), in float32
 * or float64 throughout. grad (the whole layout) may be NULL: then the
 * base tensors are frozen (no dW products), and the backward pass runs
 * only for adapters with dA or dB. opts may be NULL (no adapters). */
int rg_train_grad_f32(const rg_grad *g, const float *params, const rg_grad_opts_f32 *opts, const int32_t *tokens,
                      int n, const uint8_t *mask, double grad_scale, float *grad, double *nll_sum, int64_t *n_targets);
int rg_train_grad_f64(const rg_grad *g, const double *params, const rg_grad_opts_f64 *opts, const int32_t *tokens,
                      int n, const uint8_t *mask, double grad_scale, double *grad, double *nll_sum,
                      int64_t *n_targets);

/* rg_grad_params_from_model, leaving the tensors k with skip[k] set as
 * they are (skip may be NULL). */
int rg_train_params_from_model(const rg_grad *g, const rg_model *m, float *params, const uint8_t *skip);

/* 1 when the layout's tensor of that name is a linear layer's weight, the
 * matrices LoRA adapts (q/k/v/o_proj, linear_x/y/out, gate/up/down_proj). */
int rg_lora_target(const char *name);

/* Training data (data.c): token ids one after another, and per id whether
 * the loss counts it as a target (the id before it predicts it). */
typedef struct {
    int32_t *ids;
    uint8_t *counts;
    size_t n, cap;
    int n_docs;       /* documents and chats */
} rg_train_stream;

/* Append a file: ".jsonl" = one {"text"} document or {"messages"} chat a
 * line (blank lines skipped; errors name FILE:LINE), else one plain-text
 * document. Documents are BOS text EOS; chats BOS and Gemma turns, the
 * model's turns counted only. */
int rg_train_stream_add_file(rg_train_stream *s, const rg_tokenizer *t, const char *path);
void rg_train_stream_free(rg_train_stream *s);

#endif
