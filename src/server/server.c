/* The HTTP side of `rgemma serve` (see server.h), on libmicrohttpd with one
 * thread per connection: a connection's thread may block until its job has
 * text, and meanwhile it watches the socket, so a client that hangs up
 * cancels its job at once (freeing the slot, or the queue place).
 *
 * A request's life: the body is collected (at most max_body bytes, else
 * 413), parsed and checked (api.c, 4xx on any problem), turned into prompt
 * tokens here (in the connection's thread), and submitted as a job (503 when
 * the queue is full). The answer is then either one JSON object or an SSE
 * stream fed by the job's growing text.
 *
 * Lifecycle: rg_server_listen binds and answers /health (alive) and /ready
 * (503) while the model loads, everything else 503; rg_server_attach makes
 * it ready. rg_server_drain (SIGTERM) makes /health, /ready and new
 * requests answer 503 at once while the requests in flight finish. */
#define _GNU_SOURCE
#include "server/server.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "server/api.h"
#include "server/cache.h"
#include "server/metrics.h"
#include "server/sched.h"
#include "server/store.h"
#include "util/util.h"

#define WAIT_TICK_MS 50 /* how often a waiting connection checks its client */
/* How long an answer waits for its turn's state to reach the store: the
 * next turn may go to another replica, which must find it there. */
#define STORE_WAIT_S 2.0
/* How long stopping waits for queued store writes. */
#define STORE_FLUSH_S 10.0
#define RG_REQ_ID_MAX 129 /* X-Request-Id: at most 128 characters */

struct rg_server {
    struct MHD_Daemon *daemon;
    const rg_model *model;
    const rg_tokenizer *tok;
    rg_server_opts o;
    char *model_name;
    rg_state_cache *cache;
    rg_store *store;      /* NULL without --state-store */
    int32_t turn_start;   /* <start_of_turn>, where stored prefixes end, unless */
    int32_t model_role;   /* the next id opens a model turn (store.h) */
    rg_sched *sched;
    rg_metrics met;
    atomic_int ready;     /* the model is attached: requests are served */
    atomic_int draining;  /* rg_server_drain: new requests get 503 */
    atomic_int inflight;  /* completion requests accepted and not yet finished (sent or failed) */
    atomic_int stopping;
    atomic_ullong next_id;
    long started;
    int port;
};

void rg_server_opts_default(rg_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->n_slots = 1;
    o->threads = 1;
    o->queue_max = 32;
    o->timeout_s = 600;
    o->cache_states = 16;
    o->max_body = 1 << 20;
    o->max_tokens = 4096;
    o->header_timeout_s = 10;
    o->max_connections = 1024;
    o->max_conn_per_ip = 64;
    o->state_ttl_s = 3600;
}

/* ------------------------------------------------------------- requests */

typedef struct {
    rg_endpoint ep;
    int post;
    char *body;
    size_t len, cap;
    int too_large;
    rg_job *job;     /* the non-streaming job this connection waits for */
    rg_job *log_job; /* the job of a completion request (streamed or not), for the log line */
    int status;      /* the HTTP status answered (0: none: the client went away first) */
    int counted;     /* a completion counted in s->inflight */
    char req_id[RG_REQ_ID_MAX]; /* the client's X-Request-Id ("" when none or not safe to log) */
    double t0;       /* arrival */
    char method[8], url[64];
} request;

/* The status of the response the handler just queued on this thread (libmicrohttpd
 * runs a connection's handler on the connection's own thread), and the
 * request id every response of this request echoes. */
static _Thread_local int g_status;
static _Thread_local const char *g_req_id;

/* X-Request-Id (a proxy's or the client's): passed to the log line and back
 * in the response. Only short ids of safe characters: it is written to logs. */
static void read_request_id(struct MHD_Connection *c, char *out) {
    out[0] = 0;
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    if (!v) return;
    size_t n = strlen(v);
    if (n == 0 || n >= RG_REQ_ID_MAX) return;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]) && !strchr("-_.:", v[i])) return;
    memcpy(out, v, n + 1);
}

static void add_request_id(struct MHD_Response *r) {
    if (g_req_id && *g_req_id) MHD_add_response_header(r, "X-Request-Id", g_req_id);
}

static rg_endpoint route(const char *url, int *want_post) {
    static const struct {
        const char *url;
        rg_endpoint ep;
        int post;
    } routes[] = {
        {"/v1/chat/completions", RG_EP_CHAT, 1}, {"/v1/completions", RG_EP_COMPLETIONS, 1},
        {"/v1/models", RG_EP_MODELS, 0},         {"/health", RG_EP_HEALTH, 0},
        {"/tokenize", RG_EP_TOKENIZE, 1},        {"/detokenize", RG_EP_DETOKENIZE, 1},
        {"/metrics", RG_EP_METRICS, 0},         {"/ready", RG_EP_READY, 0},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].url)) {
            *want_post = routes[i].post;
            return routes[i].ep;
        }
    *want_post = 0;
    return RG_EP_OTHER;
}

/* With --cors, every response names the allowed origin (a browser page on
 * another origin may then read it). */
static void add_cors(const rg_server *s, struct MHD_Response *r) {
    if (!s->o.cors_origin) return;
    MHD_add_response_header(r, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, s->o.cors_origin);
    if (strcmp(s->o.cors_origin, "*")) MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Origin");
}

/* The answer to a browser's preflight (OPTIONS) before a cross-origin
 * POST with a JSON body: 204, the methods and headers it may use. */
static enum MHD_Result send_preflight(rg_server *s, struct MHD_Connection *c) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    add_cors(s, r);
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type, Authorization");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, r);
    MHD_destroy_response(r);
    rg_metrics_response(&s->met, MHD_HTTP_NO_CONTENT);
    g_status = MHD_HTTP_NO_CONTENT;
    return rc;
}

static enum MHD_Result send_body(rg_server *s, struct MHD_Connection *c, int status, char *body, const char *type) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    add_cors(s, r);
    add_request_id(r);
    if (status == 503) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, s->o.cors_origin ? "GET, POST, OPTIONS" : "GET, POST");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    rg_metrics_response(&s->met, status);
    g_status = status;
    return rc;
}

static enum MHD_Result send_json(rg_server *s, struct MHD_Connection *c, int status, char *json) {
    return send_body(s, c, status, json, "application/json");
}

static enum MHD_Result send_error(rg_server *s, struct MHD_Connection *c, const rg_api_error *e) {
    return send_json(s, c, e->status, rg_api_error_json(e));
}

static enum MHD_Result fail(rg_server *s, struct MHD_Connection *c, int status, const char *code, const char *fmt,
                            ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result fail(rg_server *s, struct MHD_Connection *c, int status, const char *code, const char *fmt,
                            ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rg_api_error e;
    rg_api_fail(&e, status, code, NULL, "%s", msg);
    return send_error(s, c, &e);
}

/* Whether the client closed its side: poll for hang-up without reading. */
static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 1;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static void timed_wait(rg_job *j) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += WAIT_TICK_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&j->cv, &j->mu, &ts);
}

typedef enum { WAIT_READY, WAIT_GONE, WAIT_TIMEOUT } wait_result;

/* Wait (j->mu held) until the job is done or, when seen is not NULL, its
 * text grew past *seen bytes, checking every tick whether the client left,
 * the server stops, or the job outstays its deadline in the queue. On
 * GONE/TIMEOUT the job is cancelled. */
static wait_result wait_job(rg_server *s, struct MHD_Connection *c, rg_job *j, const size_t *seen) {
    while (j->phase != RG_JOB_DONE && !(seen && j->len != *seen)) {
        timed_wait(j);
        if (j->phase == RG_JOB_DONE || (seen && j->len != *seen)) break;
        int queued_late = j->phase == RG_JOB_QUEUED && rg_time_s() > j->deadline;
        pthread_mutex_unlock(&j->mu);
        wait_result w = WAIT_READY;
        if (atomic_load(&s->stopping)) {
            w = WAIT_GONE;
        } else if (client_gone(c)) {
            w = WAIT_GONE; /* counted once, by the caller (or stream_free) */
        } else if (queued_late) {
            atomic_fetch_add(&s->met.timeouts, 1);
            w = WAIT_TIMEOUT;
        }
        if (w != WAIT_READY) rg_sched_cancel(s->sched, j);
        pthread_mutex_lock(&j->mu);
        if (w != WAIT_READY) return w;
    }
    return WAIT_READY;
}

static void new_id(rg_server *s, char *out, size_t size, int chat) {
    unsigned long long n = atomic_fetch_add(&s->next_id, 1);
    snprintf(out, size, "%s-%08lx%012llx", chat ? "chatcmpl" : "cmpl", (unsigned long)s->started, n);
}

/* ---------------------------------------------------------- SSE streams */

typedef struct {
    rg_server *s;
    struct MHD_Connection *conn;
    rg_job *job;
    int chat, include_usage;
    char id[48];
    long created;
    int started;   /* the first chunk (chat: the role) went out */
    int finished;  /* data: [DONE] is queued */
    int stored;    /* the finished turn's store write was waited for */
    size_t sent;   /* bytes of the job's text already sent */
    char *buf;     /* bytes ready to go */
    size_t blen, boff, bcap;
} stream;

static void stream_put(stream *st, const char *a, size_t n) {
    st->buf = rg_grow(st->buf, &st->bcap, st->blen + n, 1);
    memcpy(st->buf + st->blen, a, n);
    st->blen += n;
}

/* one SSE event holding json (freed) */
static void stream_event(stream *st, char *json) {
    stream_put(st, "data: ", 6);
    stream_put(st, json, strlen(json));
    stream_put(st, "\n\n", 2);
    free(json);
}

static void result_of(const rg_job *j, rg_api_result *r) {
    memset(r, 0, sizeof *r);
    r->text = j->text;
    r->len = j->len;
    r->finish = j->finish ? j->finish : "stop";
    r->prompt_tokens = j->n_tokens;
    r->cached_tokens = j->cached_tokens;
    r->completion_tokens = j->completion_tokens;
    r->prompt_ms = j->prompt_s * 1e3;
    r->predicted_ms = j->generate_s * 1e3;
}

static void stream_error(stream *st, int status, const char *code, const char *msg) {
    rg_api_error e;
    rg_api_fail(&e, status, code, NULL, "%s", msg);
    stream_event(st, rg_api_error_json(&e));
}

/* Fill st->buf with what the job has for the client; (j->mu held) */
static void stream_fill(stream *st, rg_job *j) {
    rg_api_meta meta = {st->id, st->created, st->s->model_name};
    if (j->len > st->sent) {
        stream_event(st, rg_api_chunk_json(st->chat, &meta, j->text + st->sent, j->len - st->sent, 0, NULL, NULL, 0));
        st->sent = j->len;
    }
    if (j->phase != RG_JOB_DONE) return;
    if (j->error_status) {
        stream_error(st, j->error_status, j->error_code, j->error);
    } else {
        rg_api_result r;
        result_of(j, &r);
        /* usage goes in its own chunk when asked as OpenAI does it, else in
         * the last chunk as llama-server does it */
        stream_event(st, rg_api_chunk_json(st->chat, &meta, "", 0, 0, r.finish, st->include_usage ? NULL : &r, 0));
        if (st->include_usage) stream_event(st, rg_api_chunk_json(st->chat, &meta, NULL, 0, 0, NULL, &r, 1));
    }
    stream_put(st, "data: [DONE]\n\n", 14);
    st->finished = 1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    stream *st = cls;
    rg_job *j = st->job;
    while (st->boff == st->blen) {
        st->blen = st->boff = 0;
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!st->started) {
            st->started = 1;
            if (st->chat) {
                rg_api_meta meta = {st->id, st->created, st->s->model_name};
                stream_event(st, rg_api_chunk_json(1, &meta, "", 0, 1, NULL, NULL, 0));
                continue;
            }
        }
        pthread_mutex_lock(&j->mu);
        wait_result w = wait_job(st->s, st->conn, j, &st->sent);
        if (w == WAIT_READY && j->phase == RG_JOB_DONE && !st->stored) {
            st->stored = 1;
            pthread_mutex_unlock(&j->mu);
            rg_store_wait(st->s->store, j->store_ticket, STORE_WAIT_S);
            pthread_mutex_lock(&j->mu);
        }
        if (w == WAIT_GONE) {
            pthread_mutex_unlock(&j->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (w == WAIT_TIMEOUT) {
            stream_error(st, 503, "timeout", "the request timed out while waiting for a free slot");
            stream_put(st, "data: [DONE]\n\n", 14);
            st->finished = 1;
        } else {
            stream_fill(st, j);
        }
        pthread_mutex_unlock(&j->mu);
    }
    size_t n = st->blen - st->boff < max ? st->blen - st->boff : max;
    if (n) memcpy(out, st->buf + st->boff, n); /* buf is NULL until the first event */
    st->boff += n;
    return (ssize_t)n;
}

/* The response is gone (sent, or the connection failed): a job still
 * running has no one to go to any more. */
static void stream_free(void *cls) {
    stream *st = cls;
    if (!st->finished) { /* the only place a streamed request's hang-up is counted */
        if (!atomic_load(&st->s->stopping)) atomic_fetch_add(&st->s->met.disconnects, 1);
        rg_sched_cancel(st->s->sched, st->job);
    }
    rg_job_unref(st->job);
    free(st->buf);
    free(st);
}

/* ------------------------------------------------------------ endpoints */

static enum MHD_Result completion(rg_server *s, struct MHD_Connection *c, request *rq, int chat) {
    double arrival = rg_time_s();
    if (atomic_load(&s->draining))
        return fail(s, c, 503, "shutting_down", "the server is draining before it stops; retry on another replica");
    rg_api_limits lim = {s->model_name, s->o.max_tokens, rg_model_config(s->model)->vocab_size};
    rg_api_request r;
    rg_api_error e;
    if (rg_api_parse_request(rq->body ? rq->body : "", rq->len, chat, &lim, &r, &e)) return send_error(s, c, &e);
    int32_t *ids = NULL;
    int n = 0, rc, cache_prefix = -1;
    if (chat) {
        /* a conversation that asks for a new model turn may be continued later:
         * its state is saved under the closed turns plus the reply */
        rc = rg_chat_tokens_ex(s->tok, r.turns, r.n_turns, r.open_model_turn, r.parse_special, &ids, &n);
        if (rc == 0 && !r.open_model_turn) {
            cache_prefix = n;
            rc = rg_chat_append_reply_start(s->tok, &ids, &n);
        }
    } else if (r.prompt_ids) {
        ids = r.prompt_ids;
        n = r.n_prompt_ids;
        r.prompt_ids = NULL;
        rc = 0;
    } else {
        ids = rg_xmalloc(sizeof *ids);
        ids[n++] = rg_tokenizer_bos(s->tok);
        rc = rg_tokens_append_ex(s->tok, r.prompt, r.prompt_len, r.parse_special, &ids, &n);
    }
    if (rc) {
        rg_api_request_free(&r);
        free(ids);
        return fail(s, c, 400, "invalid_prompt", "cannot tokenize the prompt: %s", rg_last_error());
    }
    rg_job *j = rg_job_new(ids, n, cache_prefix, &r, arrival + s->o.timeout_s);
    /* a longer prefix in the shared store than in the local cache: fetched
     * here, on the connection's thread, so that Redis never holds up the engine */
    if (s->store && chat && n > 1) {
        int local = rg_state_cache_peek(s->cache, ids, n - 1);
        j->store_prefix = rg_store_lookup(s->store, ids, n - 1, local, s->turn_start, s->model_role,
                                          &j->store_blob, &j->store_blob_len);
    }
    free(ids);
    int stream_mode = r.stream, include_usage = r.include_usage;
    rg_api_request_free(&r);
    /* from here on the client waits for the answer: the connection's
     * timeout is the request's, not the short one for headers and body */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)(s->o.timeout_s + 30));
    atomic_fetch_add(&s->inflight, 1); /* until on_completed: a drain waits for it */
    rq->counted = 1;
    if (rg_sched_submit(s->sched, j)) {
        rg_job_unref(j);
        atomic_fetch_add(&s->met.rejected, 1);
        return fail(s, c, 503, "overloaded",
                    "the server is busy (all %d slots and the %d queue places are taken); retry later",
                    s->o.n_slots, s->o.queue_max);
    }
    if (stream_mode) {
        stream *st = rg_xcalloc(1, sizeof *st);
        st->s = s;
        st->conn = c;
        st->job = j;
        st->chat = chat;
        st->include_usage = include_usage;
        st->created = (long)time(NULL);
        new_id(s, st->id, sizeof st->id, chat);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st,
                                                                       stream_free);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        /* nginx: pass the stream through unbuffered whatever its proxy_buffering */
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        add_cors(s, resp);
        add_request_id(resp);
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        rg_metrics_response(&s->met, 200);
        g_status = 200;
        rg_job_ref(j);
        rq->log_job = j;
        return ok;
    }
    rq->job = j;
    rg_job_ref(j);
    rq->log_job = j;
    pthread_mutex_lock(&j->mu);
    wait_result w = wait_job(s, c, j, NULL);
    pthread_mutex_unlock(&j->mu);
    if (w == WAIT_GONE) {
        if (!atomic_load(&s->stopping)) atomic_fetch_add(&s->met.disconnects, 1);
        return MHD_NO; /* closes the connection */
    }
    if (w == WAIT_TIMEOUT)
        return fail(s, c, 503, "timeout", "the request timed out while waiting for a free slot");
    if (j->error_status) return fail(s, c, j->error_status, j->error_code, "%s", j->error);
    rg_store_wait(s->store, j->store_ticket, STORE_WAIT_S);
    rg_api_result res;
    result_of(j, &res);
    char id[48];
    new_id(s, id, sizeof id, chat);
    rg_api_meta meta = {id, (long)time(NULL), s->model_name};
    return send_json(s, c, 200, rg_api_completion_json(chat, &meta, &res));
}

static enum MHD_Result tokenize(rg_server *s, struct MHD_Connection *c, request *rq) {
    rg_api_tokenize_req r;
    rg_api_error e;
    if (rg_api_parse_tokenize(rq->body ? rq->body : "", rq->len, &r, &e)) return send_error(s, c, &e);
    int32_t *ids;
    size_t n;
    if (rg_tokenize_ex(s->tok, r.content, r.len, r.add_special, 0, r.parse_special, &ids, &n)) {
        free(r.content);
        return fail(s, c, 400, "invalid_prompt", "cannot tokenize: %s", rg_last_error());
    }
    free(r.content);
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "tokens");
    for (size_t i = 0; i < n; i++) {
        if (r.with_pieces) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "id", ids[i]);
            const char *p = rg_tokenizer_piece(s->tok, ids[i]);
            cJSON_AddStringToObject(o, "piece", p ? p : "");
            cJSON_AddItemToArray(arr, o);
        } else {
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
        }
    }
    free(ids);
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return send_json(s, c, 200, json);
}

static enum MHD_Result detokenize(rg_server *s, struct MHD_Connection *c, request *rq) {
    int32_t *ids = NULL;
    int n = 0;
    rg_api_error e;
    if (rg_api_parse_detokenize(rq->body ? rq->body : "", rq->len, rg_tokenizer_vocab_size(s->tok), &ids, &n, &e))
        return send_error(s, c, &e);
    char *text;
    size_t len;
    int rc = rg_detokenize(s->tok, ids, (size_t)n, &text, &len);
    free(ids);
    if (rc) return fail(s, c, 400, "invalid_value", "cannot detokenize: %s", rg_last_error());
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "content", text);
    free(text);
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return send_json(s, c, 200, json);
}

static enum MHD_Result models(rg_server *s, struct MHD_Connection *c) {
    const rg_config *cfg = rg_model_config(s->model);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "data"), m);
    cJSON_AddStringToObject(m, "id", s->model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)s->started);
    cJSON_AddStringToObject(m, "owned_by", "rgemma");
    cJSON *meta = cJSON_AddObjectToObject(m, "meta");
    cJSON_AddNumberToObject(meta, "vocab_size", cfg->vocab_size);
    cJSON_AddNumberToObject(meta, "hidden_size", cfg->hidden_size);
    cJSON_AddNumberToObject(meta, "num_layers", cfg->num_layers);
    cJSON_AddNumberToObject(meta, "attention_window", cfg->window);
    cJSON_AddNumberToObject(meta, "state_bytes", (double)rg_model_state_bytes(s->model));
    cJSON_AddStringToObject(meta, "kv_type", rg_model_kv_type(s->model));
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return send_json(s, c, 200, json);
}

/* /health (liveness, and what a load balancer checks): 200 while the model
 * loads ("loading") and while serving ("ok"), 503 once draining. /ready
 * (readiness): 200 only while serving. */
static enum MHD_Result health(rg_server *s, struct MHD_Connection *c, int readiness) {
    int ready = atomic_load(&s->ready), draining = atomic_load(&s->draining);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", draining ? "draining" : ready ? "ok" : "loading");
    if (ready) {
        int busy, queued;
        rg_sched_load(s->sched, &busy, &queued);
        cJSON_AddNumberToObject(root, "slots_idle", s->o.n_slots - busy);
        cJSON_AddNumberToObject(root, "slots_processing", busy);
        cJSON_AddNumberToObject(root, "queue_depth", queued);
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return send_json(s, c, draining || (readiness && !ready) ? 503 : 200, json);
}

static enum MHD_Result metrics(rg_server *s, struct MHD_Connection *c) {
    rg_metrics_gauges g = {0};
    rg_sched_load(s->sched, &g.slots_busy, &g.queue_depth);
    g.slots = s->o.n_slots;
    g.queue_capacity = s->o.queue_max;
    g.state_bytes = rg_model_state_bytes(s->model);
    rg_state_cache_stats cs;
    rg_state_cache_get_stats(s->cache, &cs);
    g.cache_entries = cs.entries;
    g.cache_capacity = cs.capacity;
    g.cache_bytes = cs.bytes;
    g.cache_hits = cs.hits;
    g.cache_misses = cs.misses;
    if (s->store) {
        g.store_on = 1;
        rg_store_get_stats(s->store, &g.store);
    }
    return send_body(s, c, 200, rg_metrics_text(&s->met, &g), "text/plain; version=0.0.4");
}

static enum MHD_Result handle(rg_server *s, struct MHD_Connection *c, const char *url, const char *method,
                             const char *upload, size_t *upload_size, request *rq, int first) {
    if (first) {
        int want_post;
        rq->ep = route(url, &want_post);
        rq->post = !strcmp(method, MHD_HTTP_METHOD_POST);
        atomic_fetch_add(&s->met.requests[rq->ep], 1);
        if (rq->ep == RG_EP_OTHER) return fail(s, c, 404, "not_found", "unknown endpoint %.200s", url);
        if (s->o.cors_origin && !strcmp(method, MHD_HTTP_METHOD_OPTIONS)) return send_preflight(s, c);
        if (rq->post != want_post || (!rq->post && strcmp(method, MHD_HTTP_METHOD_GET)))
            return fail(s, c, 405, "method_not_allowed", "%s is not allowed on this endpoint", method);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) rq->too_large = 1;
        if (rq->too_large)
            return fail(s, c, 413, "request_too_large", "the request body is larger than %zu bytes", s->o.max_body);
        return MHD_YES;
    }
    if (*upload_size) {
        if (!rq->too_large && rq->len + *upload_size <= s->o.max_body) {
            rq->body = rg_grow(rq->body, &rq->cap, rq->len + *upload_size + 1, 1);
            memcpy(rq->body + rq->len, upload, *upload_size);
            rq->len += *upload_size;
            rq->body[rq->len] = 0;
        } else {
            rq->too_large = 1;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->too_large)
        return fail(s, c, 413, "request_too_large", "the request body is larger than %zu bytes", s->o.max_body);
    if (rq->ep == RG_EP_HEALTH || rq->ep == RG_EP_READY) return health(s, c, rq->ep == RG_EP_READY);
    if (!atomic_load(&s->ready)) return fail(s, c, 503, "loading", "the model is still loading; retry later");
    switch (rq->ep) {
    case RG_EP_CHAT: return completion(s, c, rq, 1);
    case RG_EP_COMPLETIONS: return completion(s, c, rq, 0);
    case RG_EP_TOKENIZE: return tokenize(s, c, rq);
    case RG_EP_DETOKENIZE: return detokenize(s, c, rq);
    case RG_EP_MODELS: return models(s, c);
    case RG_EP_METRICS: return metrics(s, c);
    default: return MHD_NO;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    rg_server *s = cls;
    request *rq = *con_cls;
    int first = !rq;
    if (first) {
        rq = rg_xcalloc(1, sizeof *rq);
        *con_cls = rq;
        rq->t0 = rg_time_s();
        snprintf(rq->method, sizeof rq->method, "%s", method);
        snprintf(rq->url, sizeof rq->url, "%s", url);
        read_request_id(c, rq->req_id);
    }
    g_status = 0;
    g_req_id = rq->req_id;
    enum MHD_Result r = handle(s, c, url, method, upload, upload_size, rq, first);
    if (g_status && !rq->status) rq->status = g_status;
    return r;
}

/* serve -v: one line per request, whatever became of it */
static void log_request(rg_server *s, const request *rq, enum MHD_RequestTerminationCode code) {
    if (!s->o.verbose) return;
    char status[16], what[400] = "";
    if (rq->status) snprintf(status, sizeof status, "%d", rq->status);
    else snprintf(status, sizeof status, "-");
    const char *end = code == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" :
                      code == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? ", connection timed out" :
                      code == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? ", server stopping" : ", client hung up";
    if (rq->log_job) {
        rg_job *j = rq->log_job;
        pthread_mutex_lock(&j->mu);
        snprintf(what, sizeof what, ", prompt %d tokens (%d cached), generated %d tokens, finish %s%s%.200s", j->n_tokens,
                 j->cached_tokens, j->completion_tokens,
                 j->phase != RG_JOB_DONE ? "-" : j->finish ? j->finish : "-", j->error_status ? ", error: " : "",
                 j->error_status ? j->error : "");
        pthread_mutex_unlock(&j->mu);
    }
    fprintf(stderr, "%s %s %s %.1f ms%s%s%s%s\n", rq->method, rq->url, status, (rg_time_s() - rq->t0) * 1e3, what, end,
            rq->req_id[0] ? ", request id " : "", rq->req_id);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code) {
    rg_server *s = cls;
    request *rq = *con_cls;
    if (!rq) return;
    log_request(s, rq, code);
    if (rq->log_job) rg_job_unref(rq->log_job);
    /* back to the short timeout while the connection idles before its next request */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)s->o.header_timeout_s);
    if (rq->job) {
        rg_sched_cancel(s->sched, rq->job); /* no-op when it is done */
        rg_job_unref(rq->job);
    }
    if (rq->counted) atomic_fetch_sub(&s->inflight, 1);
    free(rq->body);
    free(rq);
    *con_cls = NULL;
}

/* ------------------------------------------------------------ lifecycle */

int rg_server_listen(const rg_server_opts *o, rg_server **out) {
    *out = NULL;
    if (o->n_slots < 1 || o->threads < 1 || o->prefill_chunk < 0 || o->queue_max < 0 || o->timeout_s <= 0 ||
        o->cache_states < 0 || o->max_tokens < 1 || o->max_body < 16 || o->port < 0 || o->port > 65535 ||
        o->header_timeout_s < 1 || o->max_connections < 1 || o->max_conn_per_ip < 0 || o->state_ttl_s < 1)
        return rg_error("serve: invalid options");
    char host[256];
    int store_port, store_db; /* a bad --state-store fails now, not after the model loads */
    if (o->state_store && rg_store_parse_url(o->state_store, host, sizeof host, &store_port, &store_db)) return -1;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(o->host, port, &hints, &ai);
    if (gai) return rg_error("serve: cannot resolve host '%s': %s", o->host, gai_strerror(gai));

    rg_server *s = rg_xcalloc(1, sizeof *s);
    s->o = *o;
    s->model_name = o->model_name ? strdup(o->model_name) : strdup("rgemma");
    s->started = (long)time(NULL);
    rg_metrics_init(&s->met);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    /* Connections: a global limit well above the slots and the queue, a
     * per-address limit so that one client cannot take them all, and a short
     * timeout for a request's headers and body (and for idling between
     * requests), so that idle or slow clients do not hold connections: a
     * request being answered gets --timeout instead (completion()). One
     * thread per connection, with a small stack (the handlers use little). */
    unsigned limit = (unsigned)o->max_connections;
    if (limit < (unsigned)(o->n_slots + o->queue_max) * 2 + 64) limit = (unsigned)(o->n_slots + o->queue_max) * 2 + 64;
    s->daemon = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                                 ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                 (unsigned)o->max_conn_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)o->header_timeout_s, MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1u << 20),
                                 MHD_OPTION_END);
    int err = errno;
    freeaddrinfo(ai);
    if (!s->daemon) {
        rg_server_stop(s);
        return rg_error("serve: cannot listen on %s:%d (%s)", o->host, o->port, strerror(err));
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    *out = s;
    return 0;
}

int rg_server_attach(rg_server *s, const rg_model *m, const rg_tokenizer *t) {
    if (atomic_load(&s->ready)) return rg_error("serve: a model is attached already");
    if (rg_tokenizer_check_vocab(t, rg_model_config(m)->vocab_size)) return -1;
    s->model = m;
    s->tok = t;
    s->cache = rg_state_cache_new(m, s->o.cache_states);
    s->turn_start = rg_tokenizer_piece_id(t, "<start_of_turn>");
    int32_t *reply = NULL;
    int n_reply = 0; /* "<start_of_turn>model\n": the id after the first is the model role's */
    s->model_role = rg_chat_append_reply_start(t, &reply, &n_reply) == 0 && n_reply > 1 ? reply[1] : -1;
    free(reply);
    if (!s->o.state_store || (s->store = rg_store_new(s->o.state_store, m, s->o.state_ttl_s)))
        s->sched = rg_sched_new(m, t, s->o.n_slots, s->o.threads, s->o.queue_max, s->o.prefill_chunk, s->cache,
                                s->store, &s->met);
    if (!s->sched) { /* as before: another attach may follow */
        rg_store_free(s->store, 0);
        rg_state_cache_free(s->cache);
        s->store = NULL;
        s->cache = NULL;
        return -1;
    }
    atomic_store(&s->ready, 1); /* after everything above: the handlers read it first */
    return 0;
}

int rg_server_start(const rg_model *m, const rg_tokenizer *t, const rg_server_opts *o, rg_server **out) {
    if (rg_server_listen(o, out)) return -1;
    if (rg_server_attach(*out, m, t)) {
        rg_server_stop(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

void rg_server_drain(rg_server *s) { atomic_store(&s->draining, 1); }

int rg_server_active(rg_server *s) { return atomic_load(&s->inflight); }

int rg_server_port(const rg_server *s) { return s->port; }

void rg_server_stop(rg_server *s) {
    if (!s) return;
    atomic_store(&s->stopping, 1);
    if (s->daemon) MHD_stop_daemon(s->daemon); /* joins the connection threads; they see `stopping` */
    rg_sched_free(s->sched);
    rg_store_free(s->store, STORE_FLUSH_S); /* after the engine: the last turns' writes are queued */
    rg_state_cache_free(s->cache);
    rg_metrics_destroy(&s->met);
    free(s->model_name);
    free(s);
}
