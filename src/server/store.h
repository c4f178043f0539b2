/* The shared conversation-state store of `rgemma serve --state-store
 * redis://HOST:PORT[/DB]`: the second level below the local state cache
 * (cache.h), shared by every replica that uses the same Redis, so that any
 * replica continues any conversation without processing its history again.
 *
 * A state is kept as a state blob (model/state.h: the state file's header
 * and only the attention rows in use) under
 *   rgemma:<version>:<model fingerprint>:<SHA-256 of the token prefix>
 * with a TTL. Saves happen after each chat turn (the same key as the local
 * cache's), on a writer thread, so the engine never waits for Redis.
 *
 * Finding the longest stored prefix: states are only ever saved at turn
 * boundaries (the conversation up to a closed model turn), and the next turn
 * of a conversation starts with <start_of_turn>user. So the candidates are
 * the prefixes that end just before a <start_of_turn> of the prompt that does
 * not open a model turn; their keys are hashed in one pass, asked with EXISTS
 * in one pipelined round trip, and the longest present one is fetched with
 * GET: two round trips, no index to keep consistent with the keys' TTLs. A
 * turn whose conversation the local cache holds up to its last reply has no
 * candidate beyond it and costs no round trip.
 *
 * Redis slow or down never fails a request: every command has a timeout, a
 * failure makes the store skip Redis for a backoff (0.25 s doubling up to
 * 5 s) before it connects again, and a lookup that fails is a miss. Replies
 * are untrusted: their types and sizes are checked here, and a state's
 * header, size, checksum and model configuration (rg_state_blob_check) before
 * the lookup returns it. */
#ifndef RG_SERVER_STORE_H
#define RG_SERVER_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "rgemma.h"

typedef struct rg_store rg_store;

typedef struct {
    int up;                          /* the last command succeeded */
    uint64_t hits, misses;           /* lookups that found a state / found none */
    uint64_t hit_tokens;             /* prompt tokens whose state came from the store */
    uint64_t errors;                 /* failed connects and commands, bad replies, refused states */
    uint64_t skipped;                /* operations not tried while Redis was held down (backoff) */
    uint64_t writes, dropped;        /* states written; states not written (queue full, stopping) */
    uint64_t read_bytes, write_bytes;
    double lookup_s, write_s;        /* time spent in lookups (all round trips) and writes */
    uint64_t lookups;                /* lookups that went to Redis (lookup_s's count) */
} rg_store_stats;

/* Parse redis://HOST:PORT[/DB] (HOST a name, an IPv4 address or [IPv6]).
 * Returns -1 with a message on anything else. */
int rg_store_parse_url(const char *url, char *host, size_t host_size, int *port, int *db);

/* A store for model m's states, kept ttl_s seconds. No connection is made
 * here: Redis may start later. NULL on a bad URL. */
rg_store *rg_store_new(const char *url, const rg_model *m, int ttl_s);
/* Write what is queued (for at most flush_s seconds), then close. */
void rg_store_free(rg_store *st, double flush_s);

/* The longest stored state of a prefix tokens[0..p) with min_len < p <
 * max_len, tokens[p] == boundary (the id that starts a turn) and
 * tokens[p + 1] != not_next (the first id of a model turn's role). Returns p
 * and the blob (malloc'd, *blob_len bytes, checked: read it with
 * rg_state_blob_read), or 0 when there is none, Redis fails or the value is
 * not a state of this model. Thread-safe. */
int rg_store_lookup(rg_store *st, const int32_t *tokens, int max_len, int min_len, int32_t boundary, int32_t not_next,
                    uint8_t **blob, size_t *blob_len);
/* What became of a looked-up blob: read into a slot (n prompt tokens not
 * processed), or refused by rg_state_blob_read (an error and a miss). */
void rg_store_hit(rg_store *st, int n);
void rg_store_refused(rg_store *st);

/* Queue a copy of state under tokens[0..n). from > 0: the turn continued
 * the state of tokens[0..from), now superseded: its key is set to expire
 * soon (RG_STORE_SUPERSEDED_S, in the same round trip), so that Redis holds
 * about one state per conversation, not one per turn within the TTL.
 * Returns a ticket for rg_store_wait (0: nothing was queued). Never blocks
 * on Redis. */
#define RG_STORE_SUPERSEDED_S 30 /* a retried or regenerated turn still finds its start */
uint64_t rg_store_put(rg_store *st, const int32_t *tokens, int n, int from, const rg_state *state);
/* Wait until the write of ticket was done (or failed), at most timeout_s. */
void rg_store_wait(rg_store *st, uint64_t ticket, double timeout_s);

void rg_store_get_stats(rg_store *st, rg_store_stats *out);

/* The key of tokens[0..n) (for tests): at most RG_STORE_KEY_MAX bytes with the NUL. */
#define RG_STORE_KEY_MAX 96
void rg_store_key(const rg_store *st, const int32_t *tokens, int n, char *key);

#endif
