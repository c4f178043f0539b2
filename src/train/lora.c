/* Which tensors LoRA adapts (see train.h); its math is in layers.inc
 * (training) and model/lora.c (merging). */
#include <string.h>
#include "train/train.h"

int rg_lora_target(const char *name) {
    static const char *const ends[] = {"_proj.weight", ".linear_x.weight", ".linear_y.weight", ".linear_out.weight"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        size_t k = strlen(ends[i]);
        if (n > k && !strcmp(name + n - k, ends[i]) && !strncmp(name, "model.layers.", 13)) return 1;
    }
    return 0;
}
