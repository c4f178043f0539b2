/* Hugging Face hub downloads into huggingface_hub's cache (rg_hub_pull in
 * rgemma.h). The checks below are what keeps server-supplied names out of
 * the file system; they are here for the unit tests (tests/unit/test_hub.c). */
#ifndef RG_HUB_H
#define RG_HUB_H

#include <stddef.h>

/* "ORG/NAME": two parts of [A-Za-z0-9._-], 1..96 characters each, not
 * starting with '.' or '-', no ".." or "--" (the cache folder's separator). */
int rg_hub_valid_repo(const char *repo);
/* a revision: a branch or tag name of [A-Za-z0-9._-] (1..128, no "..", not
 * starting with '.' or '-') or a commit hash */
int rg_hub_valid_rev(const char *rev);
/* exactly n lower-case hex digits */
int rg_hub_valid_hex(const char *s, size_t n);
/* a weight shard named by an index: a plain file name (no '/', no "..", not
 * starting with '.'), of [A-Za-z0-9._-], ending in ".safetensors" */
int rg_hub_valid_weight_name(const char *name);
/* An ETag header's value (quoted, maybe weak: W/"...") to its digest: 40 or
 * 64 lower-case hex digits into out. -1 when it is not one. */
int rg_hub_parse_etag(const char *value, char out[65]);
/* The cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (malloc'd;
 * NULL with the error set when none can be formed). */
char *rg_hub_cache_dir(void);

#endif
