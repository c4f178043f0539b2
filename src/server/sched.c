/* Slots, queue and continuous batching (see sched.h).
 *
 * One engine thread advances every busy slot together: each step is one
 * rg_seq_step, so the weights are read once per step for all slots. Between
 * steps it
 *   1. moves queued jobs into free slots: the state cache gives the state of
 *      the longest saved prefix of the prompt (at most all tokens but the
 *      last: the last one must run to give logits), else the state starts
 *      empty, and the rest of the prompt becomes the slot's rg_seq;
 *   2. stops the slots whose client left, whose deadline passed, or all of
 *      them when the server stops;
 *   3. ends the slots whose sequence is done.
 * Prompts are prefilled inside the same steps as the other slots' decode
 * rows, a few tokens a step (the prompt budget), so a long prompt never
 * holds the others up for more than one step of bounded size.
 * For chat, a finished turn's state is brought to the end of the closed model
 * turn and saved under the ids the client's next request will start with: the
 * conversation so far and the model turn holding the reply as the client
 * sees it. (The state itself saw the generated ids; the key has the ids of
 * their text. The two differ only where the text would tokenize otherwise.) */
#include "server/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/state.h"
#include "util/util.h"

/* Prompt tokens per step while no slot is decoding: a full chunk. */
#define IDLE_PREFILL 256
/* While slots decode, prompts get max(MIN_PREFILL, decoding slots) tokens a
 * step: a step's cost grows with its rows once the weights are streamed, so
 * this at most about doubles the decoding slots' step (their gap between
 * tokens) while a prompt is prefilled. */
#define MIN_PREFILL 16

rg_job *rg_job_new(const int32_t *tokens, int n_tokens, int cache_prefix, const rg_api_request *r, double deadline) {
    rg_job *j = rg_xcalloc(1, sizeof *j);
    j->tokens = rg_xmalloc(sizeof *tokens * (size_t)n_tokens);
    memcpy(j->tokens, tokens, sizeof *tokens * (size_t)n_tokens);
    j->n_tokens = n_tokens;
    j->cache_prefix = cache_prefix;
    rg_generate_params_default(&j->gen);
    j->gen.max_tokens = r->max_tokens;
    j->gen.sampling = r->sampling;
    j->gen.ignore_eos = r->ignore_eos;
    for (int i = 0; i < r->n_stop; i++) j->stop[i] = strdup(r->stop[i]);
    j->gen.stop = (const char *const *)j->stop;
    j->gen.n_stop = r->n_stop;
    j->deadline = deadline;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->phase = RG_JOB_QUEUED;
    j->cap = 256;
    j->text = rg_xmalloc(j->cap);
    atomic_init(&j->refs, 1);
    return j;
}

void rg_job_ref(rg_job *j) { atomic_fetch_add(&j->refs, 1); }

void rg_job_unref(rg_job *j) {
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    free(j->tokens);
    for (int i = 0; i < j->gen.n_stop; i++) free(j->stop[i]);
    free(j->text);
    free(j->store_blob);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* End a job (under no lock). status 0 = success. */
static void job_done(rg_job *j, int status, const char *code, const char *msg) {
    pthread_mutex_lock(&j->mu);
    if (j->phase != RG_JOB_DONE) {
        j->phase = RG_JOB_DONE;
        j->error_status = status;
        j->error_code = code;
        if (msg) snprintf(j->error, sizeof j->error, "%s", msg);
        if (!j->finish) j->finish = "stop";
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

typedef struct slot {
    struct rg_sched *sched;
    rg_state *state;
    rg_seq *seq;  /* the job's sequence while busy */
    int n_ids;    /* ids generated for the current job */
    int cached;   /* prompt tokens whose state came from the cache */
    double t0, t_first;
    int timed_out;
    rg_job *job;  /* NULL: free */
} slot;

struct rg_sched {
    const rg_model *model;
    const rg_tokenizer *tok;
    rg_state_cache *cache;
    rg_store *store;
    rg_metrics *met;
    int threads, queue_max, n_slots, prefill_chunk;
    int32_t stop_ids[1];
    int n_stop_ids;
    pthread_t engine;
    int engine_started;
    pthread_mutex_t mu; /* the queue, the counts and the slots' job pointers */
    pthread_cond_t cv;
    rg_job *head, *tail;
    int queued, idle, busy;
    atomic_int stopping;
    slot *slots;
};

static int should_stop(slot *sl) {
    rg_job *j = sl->job;
    if (atomic_load(&j->cancel) || atomic_load(&sl->sched->stopping)) return 1;
    if (rg_time_s() > j->deadline) {
        sl->timed_out = 1;
        return 1;
    }
    return 0;
}

/* id -1: the end, with the text still held back */
static int on_token(void *ctx, int32_t id, const char *text, size_t len) {
    slot *sl = ctx;
    rg_job *j = sl->job;
    if (!text) len = 0;
    if (id >= 0) {
        sl->n_ids++;
        rg_metrics_generated(sl->sched->met, 1);
    }
    if (sl->t_first == 0) sl->t_first = rg_time_s();
    pthread_mutex_lock(&j->mu);
    j->text = rg_grow(j->text, &j->cap, j->len + len + 1, 1);
    if (len) memcpy(j->text + j->len, text, len); /* text may be NULL: an id with no piece */
    j->len += len;
    j->text[j->len] = 0;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return should_stop(sl);
}

/* After a chat turn: bring the state to the end of the closed model turn and
 * save it. The state holds everything but the last sampled id (next); that
 * id still belongs to the reply unless it is the EOS / <end_of_turn> that
 * ended it. */
static void save_turn(slot *sl, int32_t next, int ended_by_id) {
    rg_sched *s = sl->sched;
    rg_job *j = sl->job;
    int32_t *feed = NULL, *key = NULL;
    int n_feed = 0, n_key = 0;
    if (next >= 0 && !ended_by_id) {
        feed = rg_xmalloc(sizeof *feed);
        feed[n_feed++] = next;
    }
    if (rg_chat_append_turn_end(s->tok, &feed, &n_feed) || rg_forward(s->model, sl->state, feed, n_feed, NULL, 0))
        goto out;
    key = rg_xmalloc(sizeof *key * (size_t)(j->cache_prefix + 1));
    memcpy(key, j->tokens, sizeof *key * (size_t)j->cache_prefix);
    n_key = j->cache_prefix;
    pthread_mutex_lock(&j->mu); /* the text is final, but it is guarded by mu */
    int rc = rg_chat_append_turn(s->tok, 1, j->text, j->len, &key, &n_key);
    pthread_mutex_unlock(&j->mu);
    if (rc == 0) rg_state_cache_store(s->cache, key, n_key, sl->state);
    if (rc == 0 && s->store) j->store_ticket = rg_store_put(s->store, key, n_key, sl->cached, sl->state);
out:
    free(feed);
    free(key);
}

/* Give the slot's job its starting state and its sequence. Returns -1 when
 * the job ended before it began (cancelled, timed out, bad). */
static int start_job(slot *sl) {
    rg_sched *s = sl->sched;
    rg_job *j = sl->job;
    sl->n_ids = 0;
    sl->t_first = 0;
    sl->timed_out = 0;
    sl->t0 = rg_time_s();
    if (should_stop(sl)) {
        if (!sl->timed_out) {
            job_done(j, 499, "cancelled", "the request was cancelled");
            return -1;
        }
        atomic_fetch_add(&s->met->timeouts, 1);
        job_done(j, 503, "timeout", "the request timed out while waiting for a free slot");
        return -1;
    }
    int n = j->n_tokens, cached = 0;
    /* the store's state was looked up because it is longer than the local one */
    if (j->store_blob) {
        if (rg_state_blob_read(sl->state, j->store_blob, j->store_blob_len, "state store") == 0) {
            cached = j->store_prefix;
            rg_store_hit(s->store, cached);
        } else {
            fprintf(stderr, "rgemma: serve: %s\n", rg_last_error());
            rg_store_refused(s->store);
        }
        free(j->store_blob);
        j->store_blob = NULL;
    }
    if (cached == 0 && s->cache) cached = rg_state_cache_lookup(s->cache, j->tokens, n - 1, sl->state);
    if (cached == 0) rg_state_reset(sl->state);
    sl->cached = cached;
    j->cached_tokens = cached;
    rg_generate_params gp = j->gen;
    gp.stop_ids = s->stop_ids;
    gp.n_stop_ids = gp.ignore_eos ? 0 : s->n_stop_ids; /* ignore_eos: no end-of-turn either */
    j->gen = gp;
    sl->seq = rg_seq_new(s->model, s->tok, sl->state, j->tokens + cached, n - cached, &j->gen, on_token, sl);
    if (!sl->seq) {
        job_done(j, 500, "internal_error", rg_last_error());
        return -1;
    }
    return 0;
}

/* The slot's sequence is done: account, save the turn, answer. */
static void end_job(slot *sl) {
    rg_sched *s = sl->sched;
    rg_job *j = sl->job;
    rg_generate_result res = *rg_seq_result(sl->seq);
    double t_end = rg_time_s();
    if (sl->t_first == 0) sl->t_first = t_end;
    atomic_fetch_add(&s->met->prompt_tokens, (unsigned long long)res.prompt_tokens);
    atomic_fetch_add(&s->met->cached_tokens, (unsigned long long)sl->cached);
    atomic_fetch_add(&s->met->prompt_us, (unsigned long long)((sl->t_first - sl->t0) * 1e6));
    atomic_fetch_add(&s->met->generate_us, (unsigned long long)((t_end - sl->t_first) * 1e6));
    if (res.stop_reason == RG_STOP_ERROR) {
        job_done(j, 500, "internal_error", rg_seq_error(sl->seq));
        return;
    }
    if (sl->timed_out) atomic_fetch_add(&s->met->timeouts, 1);
    const char *finish = res.stop_reason == RG_STOP_EOS || res.stop_reason == RG_STOP_STRING ? "stop" : "length";
    /* after a stop string the state holds text the reply does not: not saved */
    int clean = res.stop_reason == RG_STOP_EOS || res.stop_reason == RG_STOP_LENGTH;
    if (j->cache_prefix >= 0 && s->cache && clean && !atomic_load(&j->cancel) && !atomic_load(&s->stopping))
        save_turn(sl, res.next_token, res.stop_reason == RG_STOP_EOS);
    pthread_mutex_lock(&j->mu);
    j->completion_tokens = sl->n_ids;
    j->prompt_s = sl->t_first - sl->t0;
    j->generate_s = t_end - sl->t_first;
    j->finish = finish;
    pthread_mutex_unlock(&j->mu);
    job_done(j, 0, NULL, NULL);
}

/* Release a slot after its job ended (either way). */
static void free_slot(slot *sl) {
    rg_sched *s = sl->sched;
    rg_seq_free(sl->seq);
    sl->seq = NULL;
    rg_job *j = sl->job;
    pthread_mutex_lock(&s->mu);
    sl->job = NULL;
    s->busy--;
    s->idle++;
    pthread_mutex_unlock(&s->mu);
    rg_job_unref(j);
}

/* Under s->mu: move queued jobs into free slots (FIFO). */
static void take_jobs(rg_sched *s, slot **started, int *n_started) {
    for (int i = 0; i < s->n_slots && s->head; i++) {
        slot *sl = &s->slots[i];
        if (sl->job) continue;
        rg_job *j = s->head;
        s->head = j->next;
        if (!s->head) s->tail = NULL;
        j->next = NULL;
        s->queued--;
        s->busy++;
        s->idle--;
        pthread_mutex_lock(&j->mu);
        j->phase = RG_JOB_RUNNING;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        sl->job = j;
        started[(*n_started)++] = sl;
    }
}

static void *engine_main(void *arg) {
    rg_sched *s = arg;
    rg_set_threads(s->threads); /* a per-thread setting under OpenMP */
    slot **started = rg_xmalloc(sizeof *started * (size_t)s->n_slots);
    rg_seq **seqs = rg_xmalloc(sizeof *seqs * (size_t)s->n_slots);
    for (;;) {
        int n_started = 0;
        pthread_mutex_lock(&s->mu);
        while (!s->head && s->busy == 0 && !atomic_load(&s->stopping)) pthread_cond_wait(&s->cv, &s->mu);
        if (atomic_load(&s->stopping) && s->busy == 0) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if (!atomic_load(&s->stopping)) take_jobs(s, started, &n_started);
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < n_started; i++)
            if (start_job(started[i])) free_slot(started[i]);

        /* one step over every busy slot */
        int n = 0, decoding = 0;
        for (int i = 0; i < s->n_slots; i++) {
            slot *sl = &s->slots[i];
            if (!sl->seq) continue;
            if (should_stop(sl)) rg_seq_stop(sl->seq);
            decoding += rg_seq_result(sl->seq)->prompt_tokens == sl->job->n_tokens - sl->cached;
            seqs[n++] = sl->seq;
        }
        int budget = s->prefill_chunk > 0 ? s->prefill_chunk
                     : decoding == 0      ? IDLE_PREFILL
                                          : (decoding > MIN_PREFILL ? decoding : MIN_PREFILL);
        double t0 = rg_time_s();
        if (n > 0) rg_seq_step(seqs, n, budget);
        if (n > 0) rg_metrics_step(s->met, n, rg_time_s() - t0);
        for (int i = 0; i < s->n_slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->seq && rg_seq_done(sl->seq)) {
                end_job(sl);
                free_slot(sl);
            }
        }
    }
    free(started);
    free(seqs);
    return NULL;
}

rg_sched *rg_sched_new(const rg_model *m, const rg_tokenizer *t, int n_slots, int threads, int queue_max,
                       int prefill_chunk, rg_state_cache *cache, rg_store *store, rg_metrics *met) {
    rg_sched *s = rg_xcalloc(1, sizeof *s);
    s->model = m;
    s->tok = t;
    s->cache = cache;
    s->store = store;
    s->met = met;
    s->threads = threads;
    s->queue_max = queue_max;
    s->prefill_chunk = prefill_chunk;
    int32_t eot = rg_tokenizer_piece_id(t, "<end_of_turn>");
    if (eot >= 0) s->stop_ids[s->n_stop_ids++] = eot;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->slots = rg_xcalloc((size_t)n_slots, sizeof *s->slots);
    for (int i = 0; i < n_slots; i++) {
        slot *sl = &s->slots[i];
        sl->sched = s;
        sl->state = rg_state_new(m);
        if (!sl->state) {
            rg_error("serve: cannot allocate the state of slot %d", i);
            rg_sched_free(s);
            return NULL;
        }
        s->n_slots++;
        s->idle++;
    }
    if (pthread_create(&s->engine, NULL, engine_main, s)) {
        rg_error("serve: cannot start the engine thread");
        rg_sched_free(s);
        return NULL;
    }
    s->engine_started = 1;
    return s;
}

int rg_sched_submit(rg_sched *s, rg_job *j) {
    pthread_mutex_lock(&s->mu);
    /* idle slots take queued jobs at once, so they do not count as waiting */
    if (atomic_load(&s->stopping) || s->queued >= s->idle + s->queue_max) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    rg_job_ref(j);
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Unlink a queued job; returns 1 if it was in the queue (its reference is
 * then the caller's to drop). Under s->mu. */
static int unqueue(rg_sched *s, rg_job *j) {
    rg_job **pp = &s->head, *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) return 0;
    *pp = j->next;
    if (s->tail == j) s->tail = prev;
    j->next = NULL;
    s->queued--;
    return 1;
}

void rg_sched_cancel(rg_sched *s, rg_job *j) {
    atomic_store(&j->cancel, 1);
    pthread_mutex_lock(&s->mu);
    int was_queued = unqueue(s, j);
    pthread_mutex_unlock(&s->mu);
    if (was_queued) {
        job_done(j, 499, "cancelled", "the request was cancelled");
        rg_job_unref(j);
    }
}

void rg_sched_load(rg_sched *s, int *busy, int *queued) {
    pthread_mutex_lock(&s->mu);
    *busy = s->busy;
    *queued = s->queued;
    pthread_mutex_unlock(&s->mu);
}

void rg_sched_free(rg_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stopping, 1);
    rg_job *q = s->head;
    s->head = s->tail = NULL;
    s->queued = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    while (q) {
        rg_job *next = q->next;
        job_done(q, 503, "shutting_down", "the server is shutting down");
        rg_job_unref(q);
        q = next;
    }
    if (s->engine_started) pthread_join(s->engine, NULL); /* it ends the running jobs first */
    for (int i = 0; i < s->n_slots; i++) rg_state_free(s->slots[i].state);
    free(s->slots);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
