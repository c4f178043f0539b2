/* Synthetic checkpoints: random weights of exactly the released shapes
 * (SPEC §10-12), written as a Hugging Face folder. For benchmarks and for
 * trying the program end to end without downloading gated weights; the
 * text such a model writes is meaningless. */
#ifndef RG_SYNTH_H
#define RG_SYNTH_H

#include "model/st_write.h"
#include "rgemma.h"

/* config.json with every key of the released file (SPEC §10); torch_dtype
 * names the stored weight type ("float32", "bfloat16", "float16"). */
int rg_config_write_json(const rg_config *cfg, const char *torch_dtype, const char *path);

/* The checkpoint's tensors (HF names and shapes, SPEC §12), in file order.
 * Returns the count; *specs is malloc'd. */
int rg_synth_specs(const rg_config *cfg, rg_dtype dtype, rg_st_spec **specs);

typedef struct {
    rg_dtype dtype;             /* F32, BF16 or F16 */
    uint64_t seed;              /* same seed -> same bytes, whatever the thread count */
    uint64_t max_shard_bytes;   /* 0: 2 GB */
    rg_st_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} rg_synth_options;

/* Create dir (if needed) and write config.json, the weights (sharded like
 * the released checkpoints) and a README.md saying the weights are random. */
int rg_synth_write(const rg_config *cfg, const char *dir, const rg_synth_options *o, int *n_shards);

#endif
