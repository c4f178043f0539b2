/* The same forward-with-tape and backward pass in float64, for the
 * finite-difference test (tests/unit/test_grad.c). */
#define REAL double
#define GRAD_FN rg_train_grad_f64
#define LORA rg_lora_f64
#define OPTS rg_grad_opts_f64
#include "train/backward.inc"
