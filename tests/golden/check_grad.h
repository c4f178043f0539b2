/* Checks the gradients of one golden case folder (grad.safetensors and
 * grad.json beside golden.json, see tests/data/golden/README.md): the loss
 * and every parameter's gradient from rg_grad_compute against the
 * reference's, with the tolerances grad.json states. */
#ifndef RG_CHECK_GRAD_H
#define RG_CHECK_GRAD_H

#include <stdio.h>

/* Prints one line per tensor to out. Returns the number of failed checks
 * (a missing or malformed file counts as one). *checks gets the number of
 * checks made (the loss and each tensor). */
int rg_check_grad_case(const char *dir, FILE *out, int *checks);
/* Is dir a gradient case (has grad.safetensors)? */
int rg_is_grad_case(const char *dir);
/* Sorted list of gradient case folders directly under root (malloc'd strings). */
int rg_find_grad_cases(const char *root, char ***cases);

#endif
