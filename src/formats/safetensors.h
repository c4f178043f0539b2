/* safetensors reader: header validation and lookup over one or more shards. */
#ifndef RG_SAFETENSORS_H
#define RG_SAFETENSORS_H

#include "core/tensor.h"
#include "util/util.h"

typedef struct {
    char *name;
    int file; /* index into files */
    rg_tensor t;
} rg_st_entry;

typedef struct {
    rg_mapped_file *files;
    int n_files;
    rg_st_entry *entries;
    int n_entries;
} rg_safetensors;

/* Map one safetensors file and add its tensors (validating the header). */
int rg_st_add_file(rg_safetensors *st, const char *path);
/* Open a checkpoint: a .safetensors file, or a folder with model.safetensors
 * or model.safetensors.index.json and its shards. */
int rg_st_open(rg_safetensors *st, const char *path);
const rg_st_entry *rg_st_find(const rg_safetensors *st, const char *name);
void rg_st_close(rg_safetensors *st);

#endif
