/* The shared state store on Redis (see store.h). Lookups run on the HTTP
 * connection threads with connections from a small pool; writes go through
 * a FIFO to one writer thread, so tickets complete in order. */
#include "server/store.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>

#include "model/model.h"
#include "model/state.h"
#include "util/hash.h"
#include "util/util.h"

#define CONNECT_TIMEOUT_MS 250
#define COMMAND_TIMEOUT_MS 2000 /* per socket read or write: a 32 MiB state at ~1 Gbit/s takes ~0.3 s */
#define BACKOFF_MIN_S 0.25
#define BACKOFF_MAX_S 5.0
#define POOL_MAX 8        /* idle connections kept for lookups */
#define MAX_CANDIDATES 64 /* turn boundaries looked up, longest first */
#define QUEUE_MAX 64      /* writes waiting; beyond that new ones are dropped */

typedef struct write_req {
    char key[RG_STORE_KEY_MAX];
    char old[RG_STORE_KEY_MAX]; /* the superseded state's key ("": none) */
    uint8_t *blob;
    size_t len;
    uint64_t ticket;
    struct write_req *next;
} write_req;

struct rg_store {
    char host[256], url[320];
    int port, db, ttl_s;
    char prefix[64]; /* "rgemma:<version>:<model fingerprint>:", then "f16:" or "q8_0:" for those windows */
    const rg_config *cfg;
    rg_dtype kv_type; /* the model's window type: its states' and the blobs' */
    size_t max_blob;  /* the largest blob of this model */

    pthread_mutex_t mu; /* everything below */
    redisContext *pool[POOL_MAX];
    int n_pool;
    double down_until, backoff;
    int up, was_down;
    rg_store_stats st;

    pthread_cond_t cv, done_cv; /* the writer's queue / finished tickets */
    write_req *head, *tail;
    int queued, stopping;
    uint64_t next_ticket, done_ticket;
    double flush_deadline;
    pthread_t writer;
    redisContext *wconn; /* the writer's own connection */
};

int rg_store_parse_url(const char *url, char *host, size_t host_size, int *port, int *db) {
    const char *p = url;
    if (strncmp(p, "redis://", 8)) return rg_error("serve: --state-store '%s': expected redis://HOST:PORT[/DB]", url);
    p += 8;
    const char *h0 = p, *h1;
    if (*p == '[') {
        h0 = ++p;
        while (*p && *p != ']') p++;
        if (*p != ']') return rg_error("serve: --state-store '%s': unclosed [ in the host", url);
        h1 = p++;
    } else {
        while (*p && *p != ':' && *p != '/') p++;
        h1 = p;
    }
    if (h1 == h0 || (size_t)(h1 - h0) >= host_size)
        return rg_error("serve: --state-store '%s': no host, or a host too long", url);
    for (const char *c = h0; c < h1; c++)
        if (!isalnum((unsigned char)*c) && !strchr(".-_:", *c))
            return rg_error("serve: --state-store '%s': bad character in the host", url);
    memcpy(host, h0, (size_t)(h1 - h0));
    host[h1 - h0] = 0;
    if (*p != ':') return rg_error("serve: --state-store '%s': no port (redis://HOST:PORT)", url);
    long v = 0;
    int digits = 0;
    for (p++; isdigit((unsigned char)*p) && digits < 6; p++, digits++) v = v * 10 + (*p - '0');
    if (!digits || v < 1 || v > 65535) return rg_error("serve: --state-store '%s': the port must be 1..65535", url);
    *port = (int)v;
    *db = 0;
    if (*p == '/') {
        v = 0;
        digits = 0;
        for (p++; isdigit((unsigned char)*p) && digits < 6; p++, digits++) v = v * 10 + (*p - '0');
        if (!digits || v > 100000) return rg_error("serve: --state-store '%s': the database must be a number", url);
        *db = (int)v;
    }
    if (*p) return rg_error("serve: --state-store '%s': unexpected '%s' after the port or database", url, p);
    return 0;
}

/* ------------------------------------------------------------ keys */

static void hex(const uint8_t *b, int n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = 0;
}

/* token ids as little-endian bytes, whatever the host */
static void sha_tokens(rg_sha256_ctx *c, const int32_t *t, int n) {
    uint8_t buf[1024];
    while (n > 0) {
        int k = n < 256 ? n : 256;
        for (int i = 0; i < k; i++) {
            uint32_t v = (uint32_t)t[i];
            for (int b = 0; b < 4; b++) buf[4 * i + b] = (uint8_t)(v >> (8 * b));
        }
        rg_sha256_update(c, buf, (size_t)k * 4);
        t += k;
        n -= k;
    }
}

/* 128 bits of SHA-256: a collision would hand one conversation another's state */
static void key_of(const rg_store *st, rg_sha256_ctx c, char *key) {
    uint8_t d[32];
    char h[33];
    rg_sha256_final(&c, d);
    hex(d, 16, h);
    snprintf(key, RG_STORE_KEY_MAX, "%s%s", st->prefix, h);
}

void rg_store_key(const rg_store *st, const int32_t *tokens, int n, char *key) {
    rg_sha256_ctx c;
    rg_sha256_init(&c);
    sha_tokens(&c, tokens, n);
    key_of(st, c, key);
}

/* ------------------------------------------------------ connections */

/* Under mu: Redis failed; skip it for a while. */
static void went_down(rg_store *st, const char *what, const char *why) {
    st->st.errors++;
    double now = rg_time_s();
    if (st->up || st->down_until < now)
        fprintf(stderr, "rgemma: serve: state store %s: %s: %s (retrying in %.2f s; requests fall back to the local cache)\n",
                st->url, what, why, st->backoff);
    st->up = 0;
    st->was_down = 1;
    st->down_until = now + st->backoff;
    st->backoff = st->backoff * 2 < BACKOFF_MAX_S ? st->backoff * 2 : BACKOFF_MAX_S;
}

/* Small replies (status, integer, error) are far below this; a GET's is
 * at most a blob of the model plus its header line. */
enum { SMALL_REPLY_MAX = 4096 };

/* redisGetReply with a bound on the bytes a reply may buffer. hiredis 0.14
 * buffers a bulk reply of whatever length the peer announces, so a peer
 * that is not the Redis we expect could make us allocate without end; past
 * `limit` unparsed bytes the connection fails (the caller drops it). */
static int get_reply(redisContext *c, size_t limit, redisReply **reply) {
    void *r = NULL;
    if (redisGetReplyFromReader(c, &r) != REDIS_OK) return REDIS_ERR;
    for (int sent = r != NULL; !sent;) /* the commands appended so far go out first */
        if (redisBufferWrite(c, &sent) != REDIS_OK) return REDIS_ERR;
    while (!r) {
        if (redisBufferRead(c) != REDIS_OK) return REDIS_ERR;
        if (c->reader->len - c->reader->pos > limit) {
            c->err = REDIS_ERR_PROTOCOL;
            snprintf(c->errstr, sizeof c->errstr, "a reply longer than %zu bytes", limit);
            return REDIS_ERR;
        }
        if (redisGetReplyFromReader(c, &r) != REDIS_OK) return REDIS_ERR;
    }
    *reply = r;
    return REDIS_OK;
}

/* Under mu: a command succeeded. */
static void went_up(rg_store *st) {
    if (st->was_down) fprintf(stderr, "rgemma: serve: state store %s: connected again\n", st->url);
    st->up = 1;
    st->was_down = 0;
    st->backoff = BACKOFF_MIN_S;
    st->down_until = 0;
}

static redisContext *connect_one(rg_store *st, char *why, size_t why_size) {
    struct timeval ct = {0, CONNECT_TIMEOUT_MS * 1000};
    struct timeval io = {COMMAND_TIMEOUT_MS / 1000, (COMMAND_TIMEOUT_MS % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(st->host, st->port, ct);
    if (!c || c->err) {
        snprintf(why, why_size, "cannot connect: %s", c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, io) != REDIS_OK) {
        snprintf(why, why_size, "cannot set the timeout: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    if (st->db) {
        redisReply *r = NULL;
        redisAppendCommand(c, "SELECT %d", st->db);
        int ok = get_reply(c, SMALL_REPLY_MAX, &r) == REDIS_OK && r->type == REDIS_REPLY_STATUS;
        snprintf(why, why_size, "SELECT %d failed: %s", st->db, r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
        if (r) freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* A connection for one lookup (*pooled: an idle one, which Redis may have
 * closed since), or NULL: Redis held down, or it failed now. */
static redisContext *conn_get(rg_store *st, int *pooled) {
    pthread_mutex_lock(&st->mu);
    if (rg_time_s() < st->down_until) {
        st->st.skipped++;
        pthread_mutex_unlock(&st->mu);
        return NULL;
    }
    redisContext *c = st->n_pool ? st->pool[--st->n_pool] : NULL;
    pthread_mutex_unlock(&st->mu);
    *pooled = c != NULL;
    if (c) return c;
    char why[300];
    c = connect_one(st, why, sizeof why);
    if (!c) {
        pthread_mutex_lock(&st->mu);
        went_down(st, "connect", why);
        pthread_mutex_unlock(&st->mu);
    }
    return c;
}

/* Give a connection back; one that failed is closed (why: the failure). */
static void conn_put(rg_store *st, redisContext *c, const char *why) {
    pthread_mutex_lock(&st->mu);
    if (why) {
        went_down(st, "lookup", why);
        redisFree(c);
    } else {
        went_up(st);
        if (st->n_pool < POOL_MAX) st->pool[st->n_pool++] = c;
        else redisFree(c);
    }
    pthread_mutex_unlock(&st->mu);
}

/* ------------------------------------------------------------ lookup */

/* One lookup's round trips on c: EXISTS for every key (pipelined), GET of
 * the first present. Returns its index (-1: none); *why is set when the
 * connection failed, *bad when Redis held a value that cannot be a state. */
static int ask(rg_store *st, redisContext *c, char (*keys)[RG_STORE_KEY_MAX], int nc, uint8_t **blob,
               size_t *blob_len, const char **why, int *bad) {
    int found = -1;
    for (int i = 0; i < nc; i++) redisAppendCommand(c, "EXISTS %s", keys[i]);
    for (int i = 0; i < nc; i++) {
        redisReply *r = NULL;
        if (get_reply(c, SMALL_REPLY_MAX, &r) != REDIS_OK) {
            *why = c->errstr[0] ? c->errstr : "no reply";
            return -1; /* the rest of the pipeline is lost with the connection */
        }
        if (r->type != REDIS_REPLY_INTEGER) *bad = 1;
        else if (r->integer == 1 && found < 0) found = i;
        freeReplyObject(r);
    }
    if (found < 0) return -1;
    redisReply *r = NULL;
    redisAppendCommand(c, "GET %s", keys[found]);
    if (get_reply(c, st->max_blob + SMALL_REPLY_MAX, &r) != REDIS_OK) {
        *why = c->errstr[0] ? c->errstr : "no reply";
        return -1;
    }
    if (r->type == REDIS_REPLY_NIL) { /* expired between the two commands */
        found = -1;
    } else if (r->type != REDIS_REPLY_STRING || r->len <= 0 || (size_t)r->len > st->max_blob) {
        *bad = 1; /* rg_state_blob_check checks the rest */
        found = -1;
    } else {
        *blob = rg_xmalloc((size_t)r->len);
        memcpy(*blob, r->str, (size_t)r->len);
        *blob_len = (size_t)r->len;
    }
    freeReplyObject(r);
    return found;
}

int rg_store_lookup(rg_store *st, const int32_t *tokens, int max_len, int min_len, int32_t boundary, int32_t not_next,
                    uint8_t **blob, size_t *blob_len) {
    *blob = NULL;
    *blob_len = 0;
    /* the candidates, longest first, with their keys from one pass of the hash */
    int cand[MAX_CANDIDATES], nc = 0;
    for (int p = max_len - 1; p > min_len && p > 0 && nc < MAX_CANDIDATES; p--)
        if (tokens[p] == boundary && tokens[p + 1] != not_next) cand[nc++] = p;
    if (nc == 0) return 0;
    char(*keys)[RG_STORE_KEY_MAX] = rg_xmalloc(sizeof *keys * (size_t)nc);
    rg_sha256_ctx c;
    rg_sha256_init(&c);
    int done = 0;
    for (int i = nc - 1; i >= 0; i--) {
        sha_tokens(&c, tokens + done, cand[i] - done);
        done = cand[i];
        key_of(st, c, keys[i]);
    }
    double t0 = rg_time_s();
    int pooled, found = -1, bad = 0;
    const char *why = NULL;
    char cwhy[300];
    redisContext *rc = conn_get(st, &pooled);
    if (rc) found = ask(st, rc, keys, nc, blob, blob_len, &why, &bad);
    if (rc && why && pooled) { /* an idle connection Redis closed (a restart): once more on a new one */
        redisFree(rc);
        why = NULL;
        if ((rc = connect_one(st, cwhy, sizeof cwhy))) found = ask(st, rc, keys, nc, blob, blob_len, &why, &bad);
        else why = cwhy;
    }
    free(keys);
    double dt = rg_time_s() - t0;
    /* the checksum pass here, on the connection's thread, not on the engine's */
    if (*blob && rg_state_blob_check(st->cfg, st->kv_type, *blob, *blob_len, "state store")) {
        fprintf(stderr, "rgemma: serve: %s\n", rg_last_error());
        free(*blob);
        *blob = NULL;
        found = -1;
        bad = 1;
    }
    int hit = rc && !why && found >= 0;
    pthread_mutex_lock(&st->mu);
    if (!rc && why) went_down(st, "connect", why);
    if (rc) {
        st->st.lookups++;
        st->st.lookup_s += dt;
        st->st.read_bytes += *blob_len;
        if (!*blob) *blob_len = 0;
        st->st.errors += (uint64_t)bad;
    }
    if (!hit) st->st.misses++; /* a hit counts once its state is read (rg_store_hit) */
    pthread_mutex_unlock(&st->mu);
    if (rc) conn_put(st, rc, why);
    return hit ? cand[found] : 0;
}

void rg_store_refused(rg_store *st) {
    pthread_mutex_lock(&st->mu);
    st->st.errors++;
    st->st.misses++;
    pthread_mutex_unlock(&st->mu);
}

void rg_store_hit(rg_store *st, int n) {
    pthread_mutex_lock(&st->mu);
    st->st.hits++;
    st->st.hit_tokens += (uint64_t)n;
    pthread_mutex_unlock(&st->mu);
}

/* ------------------------------------------------------------ writes */

uint64_t rg_store_put(rg_store *st, const int32_t *tokens, int n, int from, const rg_state *state) {
    write_req *w = rg_xcalloc(1, sizeof *w);
    rg_store_key(st, tokens, n, w->key);
    if (from > 0 && from < n) rg_store_key(st, tokens, from, w->old);
    w->len = rg_state_blob_bytes(state);
    w->blob = rg_xmalloc(w->len);
    rg_state_blob_write(state, w->blob);
    pthread_mutex_lock(&st->mu);
    if (st->stopping || st->queued >= QUEUE_MAX) {
        st->st.dropped++;
        pthread_mutex_unlock(&st->mu);
        free(w->blob);
        free(w);
        return 0;
    }
    uint64_t ticket = w->ticket = ++st->next_ticket; /* w is the writer's once unlocked */
    if (st->tail) st->tail->next = w;
    else st->head = w;
    st->tail = w;
    st->queued++;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    return ticket;
}

/* Under mu, the writer: one write, mu released around Redis. */
static void write_one(rg_store *st, write_req *w) {
    if (rg_time_s() < st->down_until) {
        st->st.skipped++;
        return;
    }
    pthread_mutex_unlock(&st->mu);
    rg_state_blob_seal(w->blob, w->len); /* the checksum pass here, not on the engine's thread */
    char why[300] = "";
    double t0 = rg_time_s();
    int ok = 0;
    /* a kept connection that fails may just be stale (Redis restarted): once more on a new one */
    for (int attempt = 0; attempt < 2 && !ok; attempt++) {
        int fresh = !st->wconn;
        if (fresh && !(st->wconn = connect_one(st, why, sizeof why))) break;
        redisAppendCommand(st->wconn, "SET %s %b EX %d", w->key, w->blob, w->len, st->ttl_s);
        if (w->old[0]) /* only shortens a TTL (GT is Redis 7: not relied on) */
            redisAppendCommand(st->wconn, "EXPIRE %s %d", w->old,
                               st->ttl_s < RG_STORE_SUPERSEDED_S ? st->ttl_s : RG_STORE_SUPERSEDED_S);
        redisReply *r = NULL;
        ok = get_reply(st->wconn, SMALL_REPLY_MAX, &r) == REDIS_OK && r->type == REDIS_REPLY_STATUS;
        if (!ok)
            snprintf(why, sizeof why, "SET: %s",
                     r && r->type == REDIS_REPLY_ERROR ? r->str : st->wconn->errstr[0] ? st->wconn->errstr : "no reply");
        if (r) freeReplyObject(r);
        r = NULL;
        /* the EXPIRE's answer (an integer) matters little; a lost connection does */
        if (ok && w->old[0] && get_reply(st->wconn, SMALL_REPLY_MAX, &r) != REDIS_OK) {
            ok = 0;
            snprintf(why, sizeof why, "EXPIRE: %s", st->wconn->errstr[0] ? st->wconn->errstr : "no reply");
        }
        if (r) freeReplyObject(r);
        if (!ok) {
            redisFree(st->wconn);
            st->wconn = NULL;
            if (fresh) break;
        }
    }
    double dt = rg_time_s() - t0;
    pthread_mutex_lock(&st->mu);
    if (ok) {
        went_up(st);
        st->st.writes++;
        st->st.write_bytes += w->len;
        st->st.write_s += dt;
    } else {
        went_down(st, "write", why);
    }
}

static void *writer_main(void *arg) {
    rg_store *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->head && !st->stopping) pthread_cond_wait(&st->cv, &st->mu);
        if (!st->head) break;
        write_req *w = st->head;
        st->head = w->next;
        if (!st->head) st->tail = NULL;
        st->queued--;
        if (st->stopping && rg_time_s() > st->flush_deadline) st->st.dropped++;
        else write_one(st, w);
        st->done_ticket = w->ticket;
        pthread_cond_broadcast(&st->done_cv);
        free(w->blob);
        free(w);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

void rg_store_wait(rg_store *st, uint64_t ticket, double timeout_s) {
    if (!st || !ticket) return;
    double end = rg_time_s() + timeout_s;
    pthread_mutex_lock(&st->mu);
    while (st->done_ticket < ticket) {
        double left = end - rg_time_s();
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = ts.tv_sec + ts.tv_nsec / 1e9 + (left < 0.05 ? left : 0.05);
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&st->done_cv, &st->mu, &ts);
    }
    pthread_mutex_unlock(&st->mu);
}

/* ------------------------------------------------------------ life */

rg_store *rg_store_new(const char *url, const rg_model *m, int ttl_s) {
    rg_store *st = rg_xcalloc(1, sizeof *st);
    if (rg_store_parse_url(url, st->host, sizeof st->host, &st->port, &st->db)) {
        free(st);
        return NULL;
    }
    if (ttl_s < 1) {
        free(st);
        rg_error("serve: --state-ttl must be at least 1 second");
        return NULL;
    }
    snprintf(st->url, sizeof st->url, "%s", url);
    st->ttl_s = ttl_s;
    /* the version too: another build may lay states out otherwise, or compute them otherwise */
    /* and the window type, so that replicas of other types do not fetch blobs they would refuse */
    st->kv_type = m->kv_type;
    const char *kv = st->kv_type == RG_DT_F32 ? "" : rg_model_kv_type(m); /* "f16", "q8_0"; f32 keys unchanged */
    snprintf(st->prefix, sizeof st->prefix, "rgemma:%s:%016llx:%s%s", RG_VERSION,
             (unsigned long long)rg_model_fingerprint(m), kv, *kv ? ":" : "");
    st->cfg = rg_model_config(m);
    st->max_blob = rg_model_state_file_bytes(m);
    st->backoff = BACKOFF_MIN_S;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    pthread_cond_init(&st->done_cv, NULL);
    if (pthread_create(&st->writer, NULL, writer_main, st)) {
        rg_error("serve: cannot start the state store's writer thread");
        pthread_mutex_destroy(&st->mu);
        pthread_cond_destroy(&st->cv);
        pthread_cond_destroy(&st->done_cv);
        free(st);
        return NULL;
    }
    return st;
}

void rg_store_free(rg_store *st, double flush_s) {
    if (!st) return;
    pthread_mutex_lock(&st->mu);
    st->stopping = 1;
    st->flush_deadline = rg_time_s() + flush_s;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->writer, NULL);
    if (st->wconn) redisFree(st->wconn);
    for (int i = 0; i < st->n_pool; i++) redisFree(st->pool[i]);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    pthread_cond_destroy(&st->done_cv);
    free(st);
}

void rg_store_get_stats(rg_store *st, rg_store_stats *out) {
    pthread_mutex_lock(&st->mu);
    *out = st->st;
    out->up = st->up;
    pthread_mutex_unlock(&st->mu);
}
