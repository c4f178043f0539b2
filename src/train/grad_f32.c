/* The forward-with-tape and backward pass in float32: what rg_grad_compute runs. */
#define REAL float
#define GRAD_FN rg_train_grad_f32
#define LINEAR_GEMM
#include "train/backward.inc"
