/* The forward-with-tape and backward pass in float32: what rg_grad_compute runs. */
#define REAL float
#define GRAD_FN rg_train_grad_f32
#define LORA rg_lora_f32
#define OPTS rg_grad_opts_f32
#define GRAD_SIMD /* the kernel sets' GEMM, tanh and exp (layers.inc) */
#include "train/backward.inc"
