/* Conversation state cache (see cache.h). A few dozen entries at most, so
 * lookups scan them all; one mutex guards the table and the state copies. */
#include "server/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

typedef struct {
    int32_t *key;
    int n;            /* key length; 0 = free slot */
    rg_state *state;
    uint64_t used;    /* LRU clock value of the last lookup hit or store */
} entry;

struct rg_state_cache {
    pthread_mutex_t mu;
    const rg_model *model;
    entry *e;
    int cap;
    uint64_t clock;
    uint64_t hits, misses, hit_tokens;
};

rg_state_cache *rg_state_cache_new(const rg_model *m, int capacity) {
    rg_state_cache *c = rg_xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->model = m;
    c->cap = capacity > 0 ? capacity : 0;
    c->e = rg_xcalloc((size_t)c->cap + 1, sizeof *c->e);
    return c;
}

void rg_state_cache_free(rg_state_cache *c) {
    if (!c) return;
    for (int i = 0; i < c->cap; i++) {
        free(c->e[i].key);
        rg_state_free(c->e[i].state);
    }
    free(c->e);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static int is_prefix(const int32_t *key, int n, const int32_t *tokens, int len) {
    return n <= len && !memcmp(key, tokens, sizeof *key * (size_t)n);
}

int rg_state_cache_lookup(rg_state_cache *c, const int32_t *tokens, int max_len, rg_state *dst) {
    pthread_mutex_lock(&c->mu);
    entry *best = NULL;
    for (int i = 0; i < c->cap; i++) {
        entry *x = &c->e[i];
        if (x->n > 0 && (!best || x->n > best->n) && is_prefix(x->key, x->n, tokens, max_len)) best = x;
    }
    int n = 0;
    if (best && rg_state_copy(dst, best->state) == 0) {
        best->used = ++c->clock;
        n = best->n;
        c->hits++;
        c->hit_tokens += (uint64_t)n;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

int rg_state_cache_peek(rg_state_cache *c, const int32_t *tokens, int max_len) {
    pthread_mutex_lock(&c->mu);
    int n = 0;
    for (int i = 0; i < c->cap; i++)
        if (c->e[i].n > n && is_prefix(c->e[i].key, c->e[i].n, tokens, max_len)) n = c->e[i].n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void drop(entry *x) {
    free(x->key);
    x->key = NULL;
    x->n = 0;
}

int rg_state_cache_store(rg_state_cache *c, const int32_t *tokens, int n, const rg_state *src) {
    if (c->cap == 0 || n <= 0) return 0;
    pthread_mutex_lock(&c->mu);
    /* superseded entries (prefixes of the new key, the same key included) */
    for (int i = 0; i < c->cap; i++)
        if (c->e[i].n > 0 && is_prefix(c->e[i].key, c->e[i].n, tokens, n)) drop(&c->e[i]);
    entry *slot = NULL;
    for (int i = 0; i < c->cap && !slot; i++)
        if (c->e[i].n == 0) slot = &c->e[i];
    if (!slot) {
        slot = &c->e[0];
        for (int i = 1; i < c->cap; i++)
            if (c->e[i].used < slot->used) slot = &c->e[i];
        drop(slot);
    }
    int rc = -1;
    if (!slot->state) slot->state = rg_state_new(c->model);
    if (slot->state && rg_state_copy(slot->state, src) == 0) {
        slot->key = rg_xmalloc(sizeof *tokens * (size_t)n);
        memcpy(slot->key, tokens, sizeof *tokens * (size_t)n);
        slot->n = n;
        slot->used = ++c->clock;
        rc = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void rg_state_cache_get_stats(rg_state_cache *c, rg_state_cache_stats *st) {
    pthread_mutex_lock(&c->mu);
    memset(st, 0, sizeof *st);
    st->capacity = c->cap;
    for (int i = 0; i < c->cap; i++) {
        if (c->e[i].n > 0) st->entries++;
        if (c->e[i].state) st->bytes += rg_model_state_bytes(c->model);
    }
    st->hits = c->hits;
    st->misses = c->misses;
    st->hit_tokens = c->hit_tokens;
    pthread_mutex_unlock(&c->mu);
}
