/* The conversation state cache of `rgemma serve`: saved rg_states keyed by
 * the tokens they hold, least recently used evicted first. A RecurrentGemma
 * state is fixed-size whatever the history's length, so a whole conversation
 * fits in one entry and a follow-up request processes only its new tokens. */
#ifndef RG_SERVER_CACHE_H
#define RG_SERVER_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "rgemma.h"

typedef struct rg_state_cache rg_state_cache;

typedef struct {
    int entries, capacity;
    size_t bytes;             /* memory held by the saved states */
    uint64_t hits, misses;    /* lookups that found a prefix / found none */
    uint64_t hit_tokens;      /* prompt tokens not processed thanks to hits */
} rg_state_cache_stats;

/* capacity 0 disables the cache (lookups miss, stores do nothing). */
rg_state_cache *rg_state_cache_new(const rg_model *m, int capacity);
void rg_state_cache_free(rg_state_cache *c);

/* Find the longest saved key that is a prefix of tokens[0..max_len) and copy
 * its state into dst. Returns the key's length, 0 when none matches (dst is
 * then untouched). Thread-safe. */
int rg_state_cache_lookup(rg_state_cache *c, const int32_t *tokens, int max_len, rg_state *dst);

/* The length of the longest saved key that is a prefix of tokens[0..max_len)
 * (0: none), copying nothing and counting nothing. Thread-safe. */
int rg_state_cache_peek(rg_state_cache *c, const int32_t *tokens, int max_len);

/* Save a copy of src under the key tokens[0..n). Entries whose keys are
 * prefixes of this one are replaced (the conversation moved on); when full,
 * the least recently used entry goes. Thread-safe. */
int rg_state_cache_store(rg_state_cache *c, const int32_t *tokens, int n, const rg_state *src);

void rg_state_cache_get_stats(rg_state_cache *c, rg_state_cache_stats *st);

#endif
