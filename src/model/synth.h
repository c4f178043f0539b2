/* Synthetic checkpoints: random weights of exactly the shapes, tensor names
 * and config keys of the released Hugging Face checkpoints. The public part
 * is rg_synth* in include/rgemma.h; this is what the library and its tests
 * share beyond it. */
#ifndef RG_SYNTH_H
#define RG_SYNTH_H

#include "formats/st_write.h"
#include "rgemma.h"

/* config.json with every key of the released file; torch_dtype
 * names the stored weight type ("float32", "bfloat16", "float16"). */
int rg_config_write_json(const rg_config *cfg, const char *torch_dtype, const char *path);

/* The checkpoint's tensors (Hugging Face names and shapes, as rg_model_load
 * binds them), in file order.
 * Returns the count; *specs is malloc'd. */
int rg_synth_specs(const rg_config *cfg, rg_dtype dtype, rg_st_spec **specs);

typedef struct {
    rg_dtype dtype;             /* F32, BF16 or F16 */
    uint64_t seed;              /* same seed -> same bytes, whatever the thread count */
    uint64_t max_shard_bytes;   /* 0: 2 GB */
    rg_st_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} rg_synth_options;

/* The values rg_synth_write writes for tensor `name` (all count of its
 * elements, as float32) with this seed: a training run from scratch starts
 * from them. -1 when cfg has no such tensor or count is not its size. */
int rg_synth_tensor_values(const rg_config *cfg, uint64_t seed, const char *name, float *out, int64_t count);
/* The same for the training initialisation (see synth.c): what a training
 * run from scratch starts from. */
int rg_synth_training_values(const rg_config *cfg, uint64_t seed, const char *name, float *out, int64_t count);

/* Create dir (if needed) and write config.json, the weights (sharded like
 * the released checkpoints) and a README.md saying the weights are random. */
int rg_synth_write(const rg_config *cfg, const char *dir, const rg_synth_options *o, int *n_shards);

#endif
