/* Decoding ids to text as SentencePiece does, in one go or streaming.
 * CONTROL pieces decode to "", the UNKNOWN piece to unk_surface (" \u2047 "),
 * U+2581 to a space. A run of BYTE pieces is joined into bytes; each byte that
 * does not start a valid UTF-8 character becomes one U+FFFD. With a dummy
 * prefix or extra-whitespace removal the first piece loses one leading U+2581
 * (with extra-whitespace removal, every piece until text appears does). */
#include <stdio.h>
#include <stdlib.h>
#include "tokenizer/tokenizer.h"
#include "util/util.h"

#define SPACE_SYMBOL "\xe2\x96\x81"

typedef struct {
    const rg_tokenizer *t;
    uint8_t pend[4]; /* bytes of an incomplete UTF-8 character */
    int n_pend;
    int is_bos_ws;   /* still at the start: a leading U+2581 may be dropped */
    int has_bos_ws;  /* a leading U+2581 was dropped */
    size_t emitted;  /* bytes of text produced so far */
    char *buf;       /* text not yet handed out */
    size_t len, cap;
} decoder;

static void put(decoder *d, const void *s, size_t n) {
    d->buf = rg_grow(d->buf, &d->cap, d->len + n + 1, 1);
    memcpy(d->buf + d->len, s, n);
    d->len += n;
    d->buf[d->len] = 0;
    d->emitted += n;
}

/* Hand out the complete characters among the pending bytes; at the end of a
 * byte run (final) an incomplete character's bytes become U+FFFD each. */
static void drain(decoder *d, int final) {
    while (d->n_pend > 0) {
        int l = rg_utf8_char(d->pend, (size_t)d->n_pend);
        if (l < 0 && !final) return;
        if (l <= 0) {
            put(d, "\xef\xbf\xbd", 3);
            l = 1;
        } else {
            put(d, d->pend, (size_t)l);
        }
        d->n_pend -= l;
        memmove(d->pend, d->pend + l, (size_t)d->n_pend);
    }
}

static int push_id(decoder *d, int32_t id) {
    const rg_tokenizer *t = d->t;
    if (id < 0 || id >= t->n) return rg_error("detokenize: id %d is out of range (%d pieces)", id, t->n);
    int type = t->type[id];
    if (type == RG_PIECE_BYTE) {
        d->pend[d->n_pend++] = (uint8_t)t->byte_value[id];
        drain(d, 0);
        return 0;
    }
    drain(d, 1);
    if (d->has_bos_ws || d->emitted > 0) d->is_bos_ws = 0;
    if (type == RG_PIECE_CONTROL) return 0;
    if (type == RG_PIECE_UNKNOWN) {
        put(d, t->unk_surface, strlen(t->unk_surface));
        return 0;
    }
    const char *s = rg_tok_text(t, id);
    size_t n = rg_tok_len(t, id);
    if (d->is_bos_ws && (t->add_dummy_prefix || t->remove_extra_whitespaces)) {
        d->has_bos_ws = n >= 3 && !memcmp(s, SPACE_SYMBOL, 3);
        if (d->has_bos_ws) s += 3, n -= 3;
        if (t->remove_extra_whitespaces) d->has_bos_ws = 0;
    }
    size_t run = 0; /* copy runs between U+2581s */
    for (size_t i = 0; i < n; i++) {
        if (i + 3 <= n && !memcmp(s + i, SPACE_SYMBOL, 3)) {
            put(d, s + run, i - run);
            put(d, " ", 1);
            run = i + 3;
            i += 2;
        }
    }
    put(d, s + run, n - run);
    return 0;
}

static void decoder_init(decoder *d, const rg_tokenizer *t) {
    memset(d, 0, sizeof *d);
    d->t = t;
    d->is_bos_ws = 1;
}

int rg_detokenize(const rg_tokenizer *t, const int32_t *ids, size_t n_ids, char **text, size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    decoder d;
    decoder_init(&d, t);
    put(&d, "", 0);
    for (size_t i = 0; i < n_ids; i++) {
        if (push_id(&d, ids[i])) {
            free(d.buf);
            return -1;
        }
    }
    drain(&d, 1);
    *text = d.buf;
    if (len) *len = d.len;
    return 0;
}

struct rg_detok_stream {
    decoder d;
};

rg_detok_stream *rg_detok_stream_new(const rg_tokenizer *t) {
    rg_detok_stream *s = rg_xmalloc(sizeof *s);
    decoder_init(&s->d, t);
    put(&s->d, "", 0);
    s->d.emitted = 0;
    return s;
}

void rg_detok_stream_free(rg_detok_stream *s) {
    if (!s) return;
    free(s->d.buf);
    free(s);
}

const char *rg_detok_stream_push(rg_detok_stream *s, int32_t id, size_t *len) {
    s->d.len = 0;
    s->d.buf[0] = 0;
    *len = 0;
    if (push_id(&s->d, id)) return NULL;
    *len = s->d.len;
    return s->d.buf;
}

const char *rg_detok_stream_flush(rg_detok_stream *s, size_t *len) {
    s->d.len = 0;
    s->d.buf[0] = 0;
    drain(&s->d, 1);
    *len = s->d.len;
    return s->d.buf;
}
