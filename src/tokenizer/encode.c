/* Encoding text to ids exactly as SentencePiece's BPE model does:
 *  1. normalise (identity): U+0020 -> U+2581, each byte of invalid UTF-8 -> U+FFFD,
 *     optional dummy prefix (or suffix) and extra-whitespace removal;
 *  2. split into symbols: the longest USER_DEFINED piece at each position is one
 *     frozen symbol, otherwise one UTF-8 character is one symbol;
 *  3. repeatedly merge the adjacent pair whose concatenation is a piece with the
 *     highest score (ties: the leftmost pair), using a heap of candidate pairs;
 *  4. emit each symbol's id; a symbol not in the vocabulary becomes one BYTE
 *     piece per byte (byte fallback) or <unk> (one for a run of them).
 * Frozen symbols never merge, so BPE runs on each run of unfrozen symbols alone
 * (and on each word when no piece spans a "x▁" boundary, see split_before_space).
 * A run's ids depend on its bytes only, so repeated runs are looked up in a
 * per-call cache instead of being merged again. */
#include <stdio.h>
#include <stdlib.h>
#include "tokenizer/tokenizer.h"
#include "util/util.h"

#define SPACE_SYMBOL "\xe2\x96\x81"

typedef struct {
    int32_t start, len; /* bytes of the normalised text; len 0 = merged into its left neighbour */
    int32_t prev, next;
    int32_t id;         /* piece id once known (after a merge), else -1 */
} symbol;

typedef struct {
    float score;
    int32_t left, right, size, id;
} pair;

/* A run of symbols seen before: its bytes text[start..start+len) gave the ids
 * out[ids..ids+n_ids). */
typedef struct {
    uint32_t tag, start, len, ids, n_ids;
} cached_run;

typedef struct {
    const rg_tokenizer *t;
    int plain;           /* special pieces are text: never matched or merged into */
    const uint8_t *text; /* normalised */
    size_t text_len;
    cached_run *cache;   /* open addressing; len 0 = empty */
    size_t cache_mask, cache_n;
    symbol *sym;
    size_t sym_cap;
    pair *heap;
    size_t heap_n, heap_cap;
    int32_t *out;
    size_t n_out, out_cap;
} encoder;


static inline void emit(encoder *e, int32_t id) {
    if (e->n_out == e->out_cap) e->out = rg_grow(e->out, &e->out_cap, e->n_out + 1, sizeof *e->out);
    e->out[e->n_out++] = id;
}

/* ---- heap of candidate merges: best = highest score, then leftmost */

static inline int better(const pair *a, const pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(encoder *e, pair p) {
    if (e->heap_n == e->heap_cap) e->heap = rg_grow(e->heap, &e->heap_cap, e->heap_n + 1, sizeof *e->heap);
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!better(&p, &e->heap[parent])) break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = p;
}

static pair heap_pop(encoder *e) {
    pair top = e->heap[0], last = e->heap[--e->heap_n];
    size_t n = e->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(&e->heap[c + 1], &e->heap[c])) c++;
        if (!better(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

/* ---- BPE on one run of unfrozen symbols e->sym[0..k) */

static inline void try_pair(encoder *e, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const rg_tokenizer *t = e->t;
    const symbol *a = &e->sym[l], *b = &e->sym[r];
    size_t len = (size_t)a->len + (size_t)b->len;
    if (len > t->max_merge_len) return;
    const uint8_t *p = e->text + a->start;
    int32_t id;
    if (len == 2) { /* two one-byte characters: ASCII */
        id = t->ascii_pair[p[0] * 128 + p[1]];
    } else if (len == 4 && a->len == 3 && p[3] < 0x80 && p[0] == 0xe2 && p[1] == 0x96 && p[2] == 0x81) {
        id = t->space_ascii[p[3]];
    } else {
        id = rg_tok_lookup(t, p, len);
        if (id >= 0 && t->type[id] != RG_PIECE_NORMAL && t->type[id] != RG_PIECE_USER_DEFINED) id = -1;
    }
    if (id >= 0 && e->plain && rg_tok_is_special(t, id)) id = -1;
    if (id >= 0) heap_push(e, (pair){t->score[id], l, r, (int32_t)len, id});
}

static void emit_symbol(encoder *e, int32_t start, int32_t len, int32_t id) {
    const rg_tokenizer *t = e->t;
    const uint8_t *p = e->text + start;
    if (id < 0) id = len == 1 ? t->ascii_id[p[0]] : rg_tok_lookup(t, p, (size_t)len);
    if (id >= 0 && t->type[id] != RG_PIECE_UNKNOWN) {
        emit(e, id);
    } else if (t->byte_fallback) {
        for (int32_t i = 0; i < len; i++) emit(e, t->byte_id[p[i]]);
    } else {
        emit(e, t->unk_id);
    }
}

static void bpe(encoder *e, int32_t k) {
    symbol *s = e->sym;
    if (k == 0) return;
    if (k == 1) {
        emit_symbol(e, s[0].start, s[0].len, -1);
        return;
    }
    for (int32_t i = 0; i < k; i++) {
        s[i].prev = i - 1;
        s[i].next = i + 1 < k ? i + 1 : -1;
        s[i].id = -1;
    }
    e->heap_n = 0;
    for (int32_t i = 0; i + 1 < k; i++) try_pair(e, i, i + 1);
    while (e->heap_n) {
        pair top = heap_pop(e);
        symbol *a = &s[top.left], *b = &s[top.right];
        /* stale: one side was merged away or grew since this pair was queued */
        if (a->len == 0 || b->len == 0 || a->len + b->len != top.size) continue;
        a->len += b->len;
        a->id = top.id;
        a->next = b->next;
        if (b->next >= 0) s[b->next].prev = top.left;
        b->len = 0;
        try_pair(e, a->prev, top.left);
        try_pair(e, top.left, a->next);
    }
    for (int32_t i = 0; i >= 0; i = s[i].next) emit_symbol(e, s[i].start, s[i].len, s[i].id);
}

static void cache_grow(encoder *e, size_t text_len) {
    size_t cap = 64;
    if (e->cache) cap = 2 * (e->cache_mask + 1);
    else while (cap < text_len / 16) cap *= 2; /* about one run per 8 bytes, half full */
    cached_run *old = e->cache, *c = rg_xcalloc(cap, sizeof *c);
    for (size_t i = 0; old && i <= e->cache_mask; i++) {
        if (!old[i].len) continue;
        size_t j = rg_tok_hash(e->text + old[i].start, old[i].len) & (cap - 1);
        while (c[j].len) j = (j + 1) & (cap - 1);
        c[j] = old[i];
    }
    free(old);
    e->cache = c;
    e->cache_mask = cap - 1;
}

/* BPE on the run e->sym[0..k), or its ids from the cache. */
static void run(encoder *e, int32_t k) {
    if (k < 2) {
        bpe(e, k);
        return;
    }
    uint32_t start = (uint32_t)e->sym[0].start;
    uint32_t len = (uint32_t)(e->sym[k - 1].start + e->sym[k - 1].len) - start;
    uint64_t h = rg_tok_hash(e->text + start, len);
    uint32_t tag = (uint32_t)(h >> 32);
    if (!e->cache || 2 * (e->cache_n + 1) > e->cache_mask + 1) cache_grow(e, e->text_len);
    size_t i = h & e->cache_mask;
    for (; e->cache[i].len; i = (i + 1) & e->cache_mask) {
        cached_run *c = &e->cache[i];
        if (c->tag == tag && c->len == len && !memcmp(e->text + c->start, e->text + start, len)) {
            e->out = rg_grow(e->out, &e->out_cap, e->n_out + c->n_ids, sizeof *e->out);
            memcpy(e->out + e->n_out, e->out + c->ids, c->n_ids * sizeof *e->out);
            e->n_out += c->n_ids;
            return;
        }
    }
    size_t before = e->n_out;
    bpe(e, k);
    e->cache[i] = (cached_run){tag, start, len, (uint32_t)before, (uint32_t)(e->n_out - before)};
    e->cache_n++;
}

/* ---- normalisation */

static inline size_t put_space(const rg_tokenizer *t, uint8_t *out, size_t o) {
    if (!t->escape_whitespaces) {
        out[o] = ' ';
        return o + 1;
    }
    memcpy(out + o, SPACE_SYMBOL, 3);
    return o + 3;
}

/* out needs room for 3 * n + 3 bytes. Returns the normalised length. */
static size_t normalize(const rg_tokenizer *t, const uint8_t *in, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    const int rm = t->remove_extra_whitespaces;
    if (rm)
        while (i < n && in[i] == ' ') i++;
    if (i == n) return 0; /* empty, or only spaces: no dummy prefix either */
    if (t->add_dummy_prefix && !t->treat_whitespace_as_suffix) o = put_space(t, out, o);
    int prev_space = rm;
    while (i < n) {
        uint8_t b = in[i];
        if (b == ' ') {
            if (!(rm && prev_space)) o = put_space(t, out, o);
            prev_space = 1;
            i++;
        } else if (b < 0x80) {
            out[o++] = b;
            prev_space = 0;
            i++;
        } else {
            int l = rg_utf8_char(in + i, n - i);
            if (l <= 0) { /* one U+FFFD per invalid byte */
                memcpy(out + o, "\xef\xbf\xbd", 3);
                o += 3;
                i++;
            } else {
                memcpy(out + o, in + i, (size_t)l);
                o += (size_t)l;
                i += (size_t)l;
            }
            prev_space = 0;
        }
    }
    if (rm) {
        size_t sl = t->escape_whitespaces ? 3 : 1;
        const char *sp = t->escape_whitespaces ? SPACE_SYMBOL : " ";
        while (o >= sl && !memcmp(out + o - sl, sp, sl)) o -= sl;
    }
    if (t->add_dummy_prefix && t->treat_whitespace_as_suffix) o = put_space(t, out, o);
    return o;
}

/* Length of the valid UTF-8 character whose first byte is b. */
static inline int char_len(uint8_t b) { return b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4; }

/* Longest USER_DEFINED piece at p (n bytes left): its id and length, or -1. */
static inline int32_t match_user(const rg_tokenizer *t, const uint8_t *p, size_t n, size_t *len, int plain) {
    int32_t node = t->trie_root[p[0]], best = -1;
    for (size_t i = 0; node >= 0;) {
        if (t->trie[node].id >= 0 && !(plain && rg_tok_is_special(t, t->trie[node].id))) {
            best = t->trie[node].id;
            *len = i + 1;
        }
        if (++i >= n) break;
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != p[i]) c = t->trie[c].sibling;
        node = c;
    }
    return best;
}

int rg_tokenize(const rg_tokenizer *t, const char *text, size_t len, int add_bos, int add_eos, int32_t **ids,
                size_t *n_ids) {
    return rg_tokenize_ex(t, text, len, add_bos, add_eos, 1, ids, n_ids);
}

int rg_tokenize_ex(const rg_tokenizer *t, const char *text, size_t len, int add_bos, int add_eos, int parse_special,
                   int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return rg_error("tokenize: text is NULL");
    if (add_bos && t->bos_id < 0) return rg_error("tokenize: the tokenizer has no BOS piece");
    if (add_eos && t->eos_id < 0) return rg_error("tokenize: the tokenizer has no EOS piece");
    if (len > ((size_t)INT32_MAX - 3) / 3) return rg_error("tokenize: text too long (%zu bytes)", len);
    uint8_t *buf = rg_xmalloc(3 * len + 3);
    size_t n = normalize(t, (const uint8_t *)text, len, buf);
    encoder e = {.t = t, .plain = !parse_special, .text = buf, .text_len = n};
    if (add_bos) emit(&e, t->bos_id);

    int32_t k = 0;        /* unfrozen symbols collected so far */
    int prev_space = 0;   /* the last of them is U+2581 */
    for (size_t pos = 0; pos < n;) {
        const uint8_t *p = buf + pos;
        size_t ulen = 0;
        int32_t uid = t->trie_root[p[0]] >= 0 ? match_user(t, p, n - pos, &ulen, e.plain) : -1;
        if (uid >= 0) {
            run(&e, k);
            k = 0;
            emit(&e, uid);
            pos += ulen;
            continue;
        }
        int l = char_len(p[0]);
        int space = l == 3 && p[1] == 0x96 && p[2] == 0x81 && p[0] == 0xe2;
        if (space && !prev_space && k > 0 && t->split_before_space) {
            run(&e, k);
            k = 0;
        }
        if ((size_t)k == e.sym_cap) e.sym = rg_grow(e.sym, &e.sym_cap, (size_t)k + 1, sizeof *e.sym);
        e.sym[k++] = (symbol){.start = (int32_t)pos, .len = l};
        prev_space = space;
        pos += (size_t)l;
    }
    run(&e, k);
    if (!t->byte_fallback) { /* SentencePiece merges a run of unknown pieces into one <unk> */
        size_t j = 0;
        for (size_t i = 0; i < e.n_out; i++)
            if (!(e.out[i] == t->unk_id && j > 0 && e.out[j - 1] == t->unk_id)) e.out[j++] = e.out[i];
        e.n_out = j;
    }
    if (add_eos) emit(&e, t->eos_id);
    free(buf);
    free(e.sym);
    free(e.heap);
    free(e.cache);
    *ids = e.out ? e.out : rg_xmalloc(sizeof(int32_t));
    *n_ids = e.n_out;
    return 0;
}
