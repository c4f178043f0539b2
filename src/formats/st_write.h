/* safetensors writer: one file, or a Hugging Face checkpoint folder split
 * into shards with model.safetensors.index.json. Tensor data comes from a
 * fill callback, chunk by chunk, in parallel, and goes straight to the file
 * (no whole-model buffer). */
#ifndef RG_ST_WRITE_H
#define RG_ST_WRITE_H

#include "core/tensor.h"

typedef struct {
    char name[128];
    rg_dtype dtype; /* F32, BF16 or F16 */
    int ndim;
    int64_t shape[4];
} rg_st_spec;

/* Writes count float32 values of tensor `index` (row-major) starting at
 * element `first`. Called concurrently from several threads, for any chunk:
 * the values must depend on (index, element) only. */
typedef void (*rg_st_fill_fn)(void *ctx, int index, int64_t first, int64_t count, float *out);
/* Bytes written so far of total (called from one thread at a time). */
typedef void (*rg_st_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct {
    rg_st_fill_fn fill;
    void *fill_ctx;
    rg_st_progress_fn progress; /* may be NULL */
    void *progress_ctx;
    const char *metadata;       /* extra "__metadata__" note (may be NULL) */
} rg_st_source;

int64_t rg_st_spec_elements(const rg_st_spec *s);
uint64_t rg_st_spec_bytes(const rg_st_spec *s);

/* Write specs[0..n) into the one file `path` (written as path.tmp, then renamed). */
int rg_st_write_file(const char *path, const rg_st_spec *specs, int n, const rg_st_source *src);

/* Write the folder's weights: specs in order, packed into shards of at most
 * max_shard_bytes of tensor data (a bigger tensor gets a shard of its own).
 * One shard is written as model.safetensors, several as
 * model-0000k-of-0000n.safetensors plus model.safetensors.index.json.
 * *n_shards (may be NULL) gets the number of files. */
int rg_st_write_checkpoint(const char *dir, const rg_st_spec *specs, int n, uint64_t max_shard_bytes,
                           const rg_st_source *src, int *n_shards);

#endif
