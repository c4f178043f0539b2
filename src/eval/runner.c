/* Scoring task items on a model.
 *
 * Every prompt is [prefix][context][continuation], where the prefix is BOS,
 * the item's description and its few-shot examples (the same for every item
 * of a group, so it is processed once and kept as a state), and the context
 * is shared by all choices of a multiple-choice item: it is processed once,
 * the state is snapshotted, and each choice is scored from a copy of the
 * snapshot. With reuse off, every choice is processed from an empty state,
 * which gives the same numbers and serves as the baseline of the speed-up. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "eval/eval.h"
#include "util/util.h"

struct rg_evaluator {
    rg_eval_opts o;
    int V;
    rg_state *pre, *ctx, *work;
    float *pre_logits, *ctx_logits;
    int32_t *key; /* the prefix the pre state holds (valid when cached) */
    int n_key, cached;
    /* batched scoring (rg_eval_items): free states, and rows x V logits */
    rg_state **pool;
    int n_pool, cap_pool, rows;
    float *rows_logits;
};

rg_evaluator *rg_evaluator_new(const rg_eval_opts *opts) {
    rg_evaluator *ev = rg_xcalloc(1, sizeof *ev);
    ev->o = *opts;
    if (!ev->o.shot_sep) ev->o.shot_sep = "\n\n";
    if (ev->o.samples < 1) ev->o.samples = 1;
    ev->V = rg_model_config(opts->model)->vocab_size;
    ev->pre = rg_state_new(opts->model);
    ev->ctx = rg_state_new(opts->model);
    ev->work = rg_state_new(opts->model);
    ev->pre_logits = rg_xmalloc(sizeof(float) * (size_t)ev->V);
    ev->ctx_logits = rg_xmalloc(sizeof(float) * (size_t)ev->V);
    if (!ev->pre || !ev->ctx || !ev->work) {
        rg_evaluator_free(ev);
        return NULL;
    }
    return ev;
}

void rg_evaluator_free(rg_evaluator *ev) {
    if (!ev) return;
    rg_state_free(ev->pre);
    rg_state_free(ev->ctx);
    rg_state_free(ev->work);
    for (int i = 0; i < ev->n_pool; i++) rg_state_free(ev->pool[i]);
    free(ev->pool);
    free(ev->rows_logits);
    free(ev->pre_logits);
    free(ev->ctx_logits);
    free(ev->key);
    free(ev);
}

void rg_item_result_free(rg_item_result *r) {
    free(r->ll);
    free(r->n_tokens);
    free(r->greedy);
    for (int i = 0; i < r->n_outputs; i++) {
        free(r->outputs[i]);
        free(r->extracted[i]);
    }
    free(r->outputs);
    free(r->extracted);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ token buffers */

typedef struct {
    int32_t *v;
    int n, cap;
} ids_buf;

static void ids_add(ids_buf *b, const int32_t *ids, int n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 16;
        b->v = rg_xrealloc(b->v, sizeof(int32_t) * (size_t)b->cap);
    }
    if (n) memcpy(b->v + b->n, ids, sizeof(int32_t) * (size_t)n);
    b->n += n;
}

typedef struct {
    char *s;
    size_t n, cap;
} str_buf;

static void str_add(str_buf *b, const char *s, size_t n) {
    b->s = rg_grow(b->s, &b->cap, b->n + n + 1, 1);
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

/* The tokens of a piece appended to out: ids as given, text through the
 * tokenizer (BOS first when add_bos). */
static int piece_ids(const rg_evaluator *ev, const rg_piece *p, int add_bos, ids_buf *out) {
    if (!p->text) {
        ids_add(out, p->ids, p->n_ids);
        return 0;
    }
    if (!ev->o.tok) return rg_error("text items need a tokenizer (--tokenizer, or a model folder that has one)");
    int32_t *ids;
    size_t n;
    if (rg_tokenize(ev->o.tok, p->text, p->len, add_bos, 0, &ids, &n) < 0) return -1;
    ids_add(out, ids, (int)n);
    free(ids);
    return 0;
}

/* ---------------------------------------------------------------- prefixes */

/* The text or ids a shot contributes: its correct answer appended to its prompt. */
static int render_shot(const rg_item *shot, int is_ids, str_buf *text, ids_buf *ids) {
    if (shot->is_ids != is_ids)
        return rg_error("shot on line %d is %s but the item is %s", shot->line, shot->is_ids ? "token ids" : "text",
                        is_ids ? "token ids" : "text");
    const rg_piece *a, *b;
    const char *target = NULL;
    if (shot->kind == RG_ITEM_MC) {
        a = &shot->ctx[shot->label];
        b = &shot->cont[shot->label];
    } else {
        a = &shot->prompt;
        b = &shot->answers[0];
        target = shot->target;
    }
    if (is_ids) {
        ids_add(ids, a->ids, a->n_ids);
        ids_add(ids, b->ids, b->n_ids);
        return 0;
    }
    str_add(text, a->text, a->len);
    if (target) {
        str_add(text, target, strlen(target));
    } else {
        if (shot->kind == RG_ITEM_GEN) str_add(text, " ", 1); /* choices carry their own leading space */
        str_add(text, b->text, b->len);
    }
    return 0;
}

/* BOS + description + shots (text), or the shots' ids (an ids item gets
 * nothing it did not write itself). */
static int build_prefix(const rg_evaluator *ev, const rg_item *item, ids_buf *out) {
    const rg_eval_opts *o = &ev->o;
    int k = o->shots ? o->k_shots : 0, rc = 0;
    int *idx = rg_xmalloc(sizeof(int) * (size_t)(k > 0 ? k : 1));
    str_buf text = {0};
    str_add(&text, "", 0);
    if (item->description) str_add(&text, item->description, strlen(item->description));
    if (k > 0 && rg_choose_shots(o->shots, item, k, o->seed, idx) < 0) rc = -1;
    for (int i = 0; i < k && rc == 0; i++) {
        rc = render_shot(&o->shots->items[idx[i]], item->is_ids, &text, out);
        if (rc == 0 && !item->is_ids) str_add(&text, o->shot_sep, strlen(o->shot_sep));
    }
    if (rc == 0 && !item->is_ids) {
        rg_piece p = {.text = text.s, .len = text.n};
        rc = piece_ids(ev, &p, 1, out);
    }
    free(text.s);
    free(idx);
    return rc;
}

/* Make the pre state hold the prefix (from the cache when it already does). */
static int run_prefix(rg_evaluator *ev, const ids_buf *p, rg_item_result *res) {
    if (ev->o.reuse && ev->cached && ev->n_key == p->n &&
        (p->n == 0 || !memcmp(ev->key, p->v, sizeof(int32_t) * (size_t)p->n)))
        return 0;
    ev->cached = 0;
    rg_state_reset(ev->pre);
    if (p->n && rg_forward(ev->o.model, ev->pre, p->v, p->n, ev->pre_logits, 0) < 0) return -1;
    res->tokens += p->n;
    free(ev->key);
    ev->key = rg_xmalloc(sizeof(int32_t) * (size_t)(p->n + 1));
    if (p->n) memcpy(ev->key, p->v, sizeof(int32_t) * (size_t)p->n);
    ev->n_key = p->n;
    ev->cached = 1;
    return 0;
}

/* dst := prefix followed by ctx[0..n). With reuse the prefix comes from the
 * pre state; without, it is processed again from an empty state. *last gets
 * the logits of the last token (NULL when there were no tokens). */
static int prepare(rg_evaluator *ev, const ids_buf *prefix, const int32_t *ctx, int n, rg_state *dst,
                   const float **last, rg_item_result *res) {
    *last = NULL;
    if (ev->o.reuse) {
        if (rg_state_copy(dst, ev->pre) < 0) return -1;
        if (prefix->n) *last = ev->pre_logits;
    } else {
        rg_state_reset(dst);
        if (prefix->n) {
            if (rg_forward(ev->o.model, dst, prefix->v, prefix->n, ev->ctx_logits, 0) < 0) return -1;
            *last = ev->ctx_logits;
            res->tokens += prefix->n;
        }
    }
    if (n) {
        if (rg_forward(ev->o.model, dst, ctx, n, ev->ctx_logits, 0) < 0) return -1;
        *last = ev->ctx_logits;
        res->tokens += n;
    }
    return 0;
}

/* ------------------------------------------------------------ multiple choice */

/* acc: the highest log-likelihood; acc_norm: the highest per character of
 * the choice's text (per token for ids), the first on ties */
static void mc_decide(const rg_item *it, rg_item_result *r) {
    double best = -INFINITY, best_norm = -INFINITY;
    for (int i = 0; i < it->n_choices; i++) {
        const rg_piece *c = &it->cont[i];
        double len = c->text ? (double)rg_utf8_chars(c->text, c->len) : (double)r->n_tokens[i];
        double norm = r->ll[i] / (len > 0 ? len : 1);
        if (r->ll[i] > best) best = r->ll[i], r->pred = i;
        if (norm > best_norm) best_norm = norm, r->pred_norm = i;
    }
    r->acc = r->pred == it->label;
    r->acc_norm = r->pred_norm == it->label;
}

static int eval_mc(rg_evaluator *ev, const rg_item *it, const ids_buf *prefix, rg_item_result *r) {
    int nc = it->n_choices, rc = 0;
    r->ll = rg_xcalloc((size_t)nc, sizeof *r->ll);
    r->n_tokens = rg_xcalloc((size_t)nc, sizeof *r->n_tokens);
    r->greedy = rg_xcalloc((size_t)nc, sizeof *r->greedy);
    ids_buf ctx = {0}, cont = {0};
    const float *last = NULL;
    int snapshot = ev->o.reuse && it->shared_ctx;
    if (snapshot) { /* the context once, for every choice */
        rc = piece_ids(ev, &it->ctx[0], 0, &ctx);
        if (rc == 0) rc = prepare(ev, prefix, ctx.v, ctx.n, ev->ctx, &last, r);
    }
    for (int i = 0; i < nc && rc == 0; i++) {
        if (snapshot) {
            rc = rg_state_copy(ev->work, ev->ctx);
        } else {
            ctx.n = 0;
            rc = piece_ids(ev, &it->ctx[i], 0, &ctx);
            if (rc == 0) rc = prepare(ev, prefix, ctx.v, ctx.n, ev->work, &last, r);
        }
        if (rc == 0 && !last) rc = rg_error("the context is empty (an item with token ids needs context ids)");
        cont.n = 0;
        if (rc == 0) rc = piece_ids(ev, &it->cont[i], 0, &cont);
        if (rc == 0 && cont.n == 0) rc = rg_error("choice %d has no tokens", i);
        if (rc == 0)
            rc = rg_score_continuation(ev->o.model, ev->work, last, cont.v, cont.n, &r->ll[i], &r->greedy[i], NULL);
        r->n_tokens[i] = cont.n;
        if (rc == 0) r->tokens += cont.n - 1;
    }
    free(ctx.v);
    free(cont.v);
    if (rc < 0) return -1;
    mc_decide(it, r);
    return 0;
}

/* -------------------------------------------------------------- generation */

typedef struct {
    str_buf text;
    int is_ids;
} gen_out;

static int on_token(void *ctx, int32_t token, const char *text, size_t len) {
    gen_out *g = ctx;
    if (token < 0 && g->is_ids) return 0; /* the end-of-generation call carries only held text */
    if (g->is_ids) {
        char num[16];
        int n = snprintf(num, sizeof num, g->text.n ? " %d" : "%d", token);
        str_add(&g->text, num, (size_t)n);
    } else {
        str_add(&g->text, text ? text : "", text ? len : 0);
    }
    return 0;
}

/* An answer as the string generated text is compared with. */
static char *answer_string(const rg_piece *a) {
    if (a->text) return strdup(a->text);
    str_buf b = {0};
    str_add(&b, "", 0);
    for (int i = 0; i < a->n_ids; i++) {
        char num[16];
        int n = snprintf(num, sizeof num, i ? " %d" : "%d", a->ids[i]);
        str_add(&b, num, (size_t)n);
    }
    return b.s;
}

/* Is s (normalised with norm, or trimmed) equal to one of the answers? */
static int matches(const rg_item *it, const char *s, int norm) {
    int hit = 0;
    char *x = norm ? rg_normalize_answer(s, strlen(s)) : rg_extract_answer("text", s);
    for (int j = 0; j < it->n_answers && !hit; j++) {
        char *a = answer_string(&it->answers[j]);
        char *y = norm ? rg_normalize_answer(a, strlen(a)) : rg_extract_answer("text", a);
        hit = !strcmp(x, y);
        free(a);
        free(y);
    }
    free(x);
    return hit;
}

static uint64_t mix_seed(uint64_t seed, int index, int sample) {
    return rg_mix64(seed ^ ((uint64_t)index * RG_GOLDEN64) ^ ((uint64_t)sample << 40));
}

static int eval_gen(rg_evaluator *ev, const rg_item *it, int index, const ids_buf *prefix, rg_item_result *r) {
    const rg_eval_opts *o = &ev->o;
    int k = o->samples, rc = 0;
    ids_buf p = {0};
    if (piece_ids(ev, &it->prompt, 0, &p) < 0) return -1;
    if (p.n == 0) {
        free(p.v);
        return rg_error("the prompt has no tokens");
    }
    rg_generate_params gp;
    rg_generate_params_default(&gp);
    gp.max_tokens = it->max_tokens > 0 ? it->max_tokens : o->max_tokens;
    if (!it->is_ids) {
        gp.stop = it->stop ? (const char *const *)it->stop : o->stop;
        gp.n_stop = it->stop ? it->n_stop : o->n_stop;
    }
    r->outputs = rg_xcalloc((size_t)k, sizeof *r->outputs);
    r->extracted = rg_xcalloc((size_t)k, sizeof *r->extracted);
    char **norm = rg_xcalloc((size_t)k, sizeof *norm);
    const float *last;
    /* the prompt but its last token once; each sample starts from a copy */
    if (o->reuse) rc = prepare(ev, prefix, p.v, p.n - 1, ev->ctx, &last, r);
    for (int s = 0; s < k && rc == 0; s++) {
        rc = o->reuse ? rg_state_copy(ev->work, ev->ctx) : prepare(ev, prefix, p.v, p.n - 1, ev->work, &last, r);
        if (rc < 0) break;
        gp.sampling = o->sampling;
        gp.sampling.seed = mix_seed(o->seed, index, s);
        gen_out g = {.is_ids = it->is_ids};
        str_add(&g.text, "", 0);
        rg_generate_result gr;
        rc = rg_generate(o->model, it->is_ids ? NULL : o->tok, ev->work, p.v + p.n - 1, 1, &gp, on_token, &g, &gr);
        r->tokens += 1 + gr.generated_tokens;
        r->outputs[s] = g.text.s;
        r->n_outputs = s + 1;
        if (rc < 0) break;
        r->extracted[s] = rg_extract_answer(it->is_ids ? "text" : o->extract, g.text.s);
        if (!r->extracted[s]) {
            rc = -1;
            break;
        }
        norm[s] = rg_normalize_answer(r->extracted[s], strlen(r->extracted[s]));
    }
    if (rc == 0) {
        r->em = matches(it, r->extracted[0], 0);
        r->nm = matches(it, r->extracted[0], 1);
        r->vote = rg_majority(norm, k);
        r->maj = matches(it, r->extracted[r->vote], 1);
    }
    for (int s = 0; s < k; s++) free(norm[s]);
    free(norm);
    free(p.v);
    return rc;
}

int rg_eval_item(rg_evaluator *ev, const rg_item *item, int index, rg_item_result *res) {
    memset(res, 0, sizeof *res);
    ids_buf prefix = {0};
    int rc = build_prefix(ev, item, &prefix);
    if (rc == 0 && ev->o.reuse) rc = run_prefix(ev, &prefix, res);
    if (rc == 0) rc = item->kind == RG_ITEM_MC ? eval_mc(ev, item, &prefix, res) : eval_gen(ev, item, index, &prefix, res);
    free(prefix.v);
    if (rc < 0) {
        ev->cached = 0; /* a failed forward may have left the states half-advanced */
        return rg_error_prefix("line %d", item->line);
    }
    return 0;
}

/* ------------------------------------------------------------ batched scoring
 *
 * rg_eval_items scores the multiple-choice items of a call in waves: the
 * items whose contexts need at most opts.batch states. Each context starts
 * from a copy of the prefix state; the contexts of a wave are fed together,
 * then its choices, each from a copy of its context's state (the last choice
 * of a context takes the state itself), at most opts.batch at once. Every
 * rg_forward_batch call carries at most ev->rows rows, so the logits of a
 * call stay within EVAL_LOGITS_BYTES. The log-probabilities are the same
 * terms, summed in the same order, as rg_score_continuation's. */

/* bound on one call's logits (rows x V floats): 64 MiB, like the 64-row
 * chunks of rg_score_continuation for the 256k vocabulary */
#define EVAL_LOGITS_BYTES ((size_t)64 << 20)
#define EVAL_MAX_ROWS 256

typedef struct {
    ids_buf ids;    /* the context after the prefix */
    rg_state *s;
    float *last;    /* logits of its last token (prefix or context); NULL while there are none */
    int users;      /* choices with more than one token still to start from s */
} ctx_job;

typedef struct {
    int ctx;        /* its context */
    ids_buf cont;
    double *ll;     /* the result's slots */
    int *greedy;
} choice_job;

/* A sequence being fed: a context (ch == NULL; logits of its last token
 * into last) or a choice's continuation but its last token (every row scored). */
typedef struct {
    rg_state *s;
    const int32_t *tok;
    int n, fed;
    float *last;
    choice_job *ch;
} feed;

static rg_state *pool_get(rg_evaluator *ev) {
    if (ev->n_pool) return ev->pool[--ev->n_pool];
    return rg_state_new(ev->o.model);
}

static void pool_put(rg_evaluator *ev, rg_state *s) {
    if (!s) return;
    if (ev->n_pool == ev->cap_pool) {
        ev->cap_pool = ev->cap_pool * 2 + 8;
        ev->pool = rg_xrealloc(ev->pool, sizeof *ev->pool * (size_t)ev->cap_pool);
        if (!ev->pool) abort();
    }
    ev->pool[ev->n_pool++] = s;
}

static int check_vocab(const int32_t *ids, int n, int V, const char *what) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return rg_error("%s: token id %d at index %d is outside the vocabulary [0, %d)", what, ids[i], i, V);
    return 0;
}

/* One rg_forward_batch call over the unfinished feeds (in order, up to
 * ev->rows rows); the choices' rows are scored. Returns 1 when something ran. */
static int feed_step(rg_evaluator *ev, feed *f, int nf, rg_batch_seq *b, int *rc) {
    int V = ev->V, nb = 0, rows = 0;
    int *take = rg_xmalloc(sizeof(int) * (size_t)(nf > 0 ? nf : 1));
    for (int i = 0; i < nf; i++) {
        take[i] = 0;
        if (f[i].fed == f[i].n || rows == ev->rows) continue;
        int t = f[i].n - f[i].fed < ev->rows - rows ? f[i].n - f[i].fed : ev->rows - rows;
        take[i] = t;
        if (f[i].ch)
            b[nb] = (rg_batch_seq){f[i].s, f[i].tok + f[i].fed, t, ev->rows_logits + (size_t)rows * V, 1};
        else
            b[nb] = (rg_batch_seq){f[i].s, f[i].tok + f[i].fed, t, f[i].fed + t == f[i].n ? f[i].last : NULL, 0};
        rows += t;
        nb++;
    }
    if (nb == 0) {
        free(take);
        return 0;
    }
    if (rg_forward_batch(ev->o.model, b, nb) < 0) {
        *rc = -1;
        free(take);
        return 1;
    }
    /* the rows' log-probabilities side by side (a softmax over V each), then
     * summed per choice in token order */
    const float **row = rg_xmalloc(sizeof *row * (size_t)rows);
    int32_t *target = rg_xmalloc(sizeof *target * (size_t)rows);
    int64_t *pos = rg_xmalloc(sizeof *pos * (size_t)rows);
    double *lp = rg_xmalloc(sizeof *lp * (size_t)rows);
    int *is_max = rg_xmalloc(sizeof *is_max * (size_t)rows);
    int nr = 0;
    for (int i = 0, k = 0; i < nf; i++) {
        if (!take[i]) continue;
        /* row j (input cont[fed + j]) predicts cont[fed + j + 1] */
        for (int j = 0; f[i].ch && j < take[i]; j++, nr++) {
            row[nr] = b[k].logits + (size_t)j * V;
            target[nr] = f[i].ch->cont.v[f[i].fed + j + 1];
            pos[nr] = rg_state_pos(f[i].s) - take[i] + j;
        }
        k++;
    }
    for (int r = 0; r < nr && *rc == 0; r++)
        if (rg_logits_check(row[r], V, pos[r])) *rc = rg_error_prefix("score");
#pragma omp parallel for schedule(static) if (nr > 1)
    for (int r = 0; r < nr; r++) lp[r] = rg_logprob_max(row[r], V, target[r], &is_max[r]);
    nr = 0;
    for (int i = 0; i < nf; i++) {
        if (!take[i]) continue;
        for (int j = 0; f[i].ch && j < take[i]; j++, nr++) {
            *f[i].ch->ll += lp[nr];
            *f[i].ch->greedy &= is_max[nr];
        }
        f[i].fed += take[i];
    }
    free(row);
    free(target);
    free(pos);
    free(lp);
    free(is_max);
    free(take);
    return 1;
}

/* Context and choices of one item, ready to be fed (nothing runs yet but
 * the prefix). Fails with the reason (without the line). */
static int setup_item(rg_evaluator *ev, const rg_item *it, rg_item_result *r, ctx_job *cj, int *n_ctx,
                      choice_job *chj, int *n_ch) {
    int nc = it->n_choices, n_own = it->shared_ctx ? 1 : nc, V = ev->V;
    r->ll = rg_xcalloc((size_t)nc, sizeof *r->ll);
    r->n_tokens = rg_xcalloc((size_t)nc, sizeof *r->n_tokens);
    r->greedy = rg_xcalloc((size_t)nc, sizeof *r->greedy);
    ids_buf prefix = {0};
    int rc = build_prefix(ev, it, &prefix);
    if (rc == 0) rc = run_prefix(ev, &prefix, r);
    int c0 = *n_ctx;
    for (int i = 0; i < n_own && rc == 0; i++) {
        ctx_job *c = &cj[(*n_ctx)++];
        memset(c, 0, sizeof *c);
        rc = piece_ids(ev, &it->ctx[i], 0, &c->ids);
        if (rc == 0) rc = check_vocab(c->ids.v, c->ids.n, V, "forward");
        if (rc == 0 && prefix.n == 0 && c->ids.n == 0)
            rc = rg_error("the context is empty (an item with token ids needs context ids)");
        if (rc < 0) break;
        c->last = rg_xmalloc(sizeof(float) * (size_t)V);
        if (prefix.n) memcpy(c->last, ev->pre_logits, sizeof(float) * (size_t)V);
        c->s = pool_get(ev);
        if (!c->s || rg_state_copy(c->s, ev->pre) < 0) rc = -1;
        r->tokens += c->ids.n;
    }
    for (int i = 0; i < nc && rc == 0; i++) {
        choice_job *h = &chj[(*n_ch)++];
        memset(h, 0, sizeof *h);
        h->ctx = c0 + (it->shared_ctx ? 0 : i);
        h->ll = &r->ll[i];
        h->greedy = &r->greedy[i];
        *h->greedy = 1;
        rc = piece_ids(ev, &it->cont[i], 0, &h->cont);
        if (rc == 0 && h->cont.n == 0) rc = rg_error("choice %d has no tokens", i);
        if (rc == 0) rc = check_vocab(h->cont.v, h->cont.n, V, "score");
        r->n_tokens[i] = h->cont.n;
        if (rc == 0) r->tokens += h->cont.n - 1;
        if (rc == 0 && h->cont.n > 1) cj[h->ctx].users++;
    }
    free(prefix.v);
    return rc;
}

/* Feed the contexts, score every choice's first token from its context's
 * last logits, then feed the longer choices, at most ev->o.batch at once. */
static int run_wave(rg_evaluator *ev, ctx_job *cj, int n_ctx, choice_job *chj, int n_ch) {
    int S = ev->o.batch, rc = 0, cap = n_ctx > S ? n_ctx : S;
    feed *f = rg_xcalloc((size_t)cap, sizeof *f);
    rg_batch_seq *b = rg_xmalloc(sizeof *b * (size_t)cap);
    int nf = 0;
    for (int i = 0; i < n_ctx; i++)
        if (cj[i].ids.n) f[nf++] = (feed){cj[i].s, cj[i].ids.v, cj[i].ids.n, 0, cj[i].last, NULL};
    while (rc == 0 && feed_step(ev, f, nf, b, &rc)) {}
    for (int i = 0; i < n_ch && rc == 0; i++) {
        choice_job *h = &chj[i];
        int is_max;
        if (rg_logits_check(cj[h->ctx].last, ev->V, rg_state_pos(cj[h->ctx].s) - 1)) {
            rc = rg_error_prefix("score");
            break;
        }
        *h->ll = rg_logprob_max(cj[h->ctx].last, ev->V, h->cont.v[0], &is_max);
        *h->greedy = is_max;
    }
    for (int i = 0; i < n_ctx; i++)
        if (cj[i].users == 0) { /* no choice needs the state */
            pool_put(ev, cj[i].s);
            cj[i].s = NULL;
        }
    /* the choices: a slot is refilled with the next choice as soon as one ends */
    nf = 0;
    int next = 0;
    while (rc == 0) {
        int k = 0;
        for (int i = 0; i < nf; i++) {
            if (f[i].fed == f[i].n) {
                pool_put(ev, f[i].s);
                continue;
            }
            f[k++] = f[i];
        }
        nf = k;
        while (nf < S && next < n_ch && rc == 0) {
            choice_job *h = &chj[next++];
            if (h->cont.n < 2) continue;
            ctx_job *c = &cj[h->ctx];
            rg_state *s;
            if (--c->users == 0) { /* the last one takes the context's state */
                s = c->s;
                c->s = NULL;
            } else {
                s = pool_get(ev);
                if (!s || rg_state_copy(s, c->s) < 0) rc = -1;
            }
            f[nf++] = (feed){s, h->cont.v, h->cont.n - 1, 0, NULL, h};
        }
        if (rc < 0 || !feed_step(ev, f, nf, b, &rc)) break;
    }
    for (int i = 0; i < nf; i++) pool_put(ev, f[i].s);
    free(f);
    free(b);
    return rc;
}

int rg_eval_items(rg_evaluator *ev, const rg_item *items, int n, int index0, rg_item_result *res) {
    for (int i = 0; i < n; i++) memset(&res[i], 0, sizeof res[i]);
    if (ev->o.batch <= 1 || !ev->o.reuse) {
        for (int i = 0; i < n; i++)
            if (rg_eval_item(ev, &items[i], index0 + i, &res[i]) < 0) return -1;
        return 0;
    }
    int S = ev->o.batch, V = ev->V;
    if (!ev->rows_logits) {
        size_t r = EVAL_LOGITS_BYTES / (sizeof(float) * (size_t)V);
        ev->rows = r < 16 ? 16 : r > EVAL_MAX_ROWS ? EVAL_MAX_ROWS : (int)r;
        ev->rows_logits = rg_xmalloc(sizeof(float) * (size_t)ev->rows * V);
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0;) {
        int n_ctx = 0, n_ch = 0, cap_ctx = 0, cap_ch = 0, j = i, bad = -1;
        for (int k = i; k < n; k++) {
            if (items[k].kind != RG_ITEM_MC) continue;
            int own = items[k].shared_ctx ? 1 : items[k].n_choices;
            if (cap_ctx && cap_ctx + own > S) break;
            cap_ctx += own;
            cap_ch += items[k].n_choices;
        }
        ctx_job *cj = rg_xcalloc((size_t)(cap_ctx ? cap_ctx : 1), sizeof *cj);
        choice_job *chj = rg_xcalloc((size_t)(cap_ch ? cap_ch : 1), sizeof *chj);
        /* the wave's items in order (a generation item runs at its turn) */
        for (; j < n && rc == 0; j++) {
            const rg_item *it = &items[j];
            if (it->kind != RG_ITEM_MC) {
                rc = rg_eval_item(ev, it, index0 + j, &res[j]);
                continue;
            }
            int own = it->shared_ctx ? 1 : it->n_choices;
            if (n_ctx && n_ctx + own > cap_ctx) break;
            rc = setup_item(ev, it, &res[j], cj, &n_ctx, chj, &n_ch);
            if (rc < 0) {
                bad = j;
                ev->cached = 0;
            }
        }
        if (rc == 0) {
            rc = run_wave(ev, cj, n_ctx, chj, n_ch);
            if (rc < 0) { /* say which items were in the failed pass */
                ev->cached = 0;
                rg_error_prefix("lines %d-%d", items[i].line, items[j - 1].line);
            }
        } else if (bad >= 0) {
            rg_error_prefix("line %d", items[bad].line);
        }
        for (int k = i; k < j && rc == 0; k++)
            if (items[k].kind == RG_ITEM_MC) mc_decide(&items[k], &res[k]);
        for (int k = 0; k < n_ctx; k++) {
            pool_put(ev, cj[k].s);
            free(cj[k].ids.v);
            free(cj[k].last);
        }
        for (int k = 0; k < n_ch; k++) free(chj[k].cont.v);
        free(cj);
        free(chj);
        i = j;
    }
    return rc;
}
