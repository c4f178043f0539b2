/* Gemma's chat turn format (REF common.py apply_it_formatter):
 *   <start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n
 * The turn markers are placed by id; the text between them is tokenized as
 * one piece ("user\n{text}"), as a chat template does. */
#include <stdio.h>
#include <stdlib.h>
#include "util/util.h"

typedef struct {
    int32_t *ids;
    size_t n, cap;
} id_buf;

static void put(id_buf *b, int32_t id) {
    b->ids = rg_grow(b->ids, &b->cap, b->n + 1, sizeof *b->ids);
    b->ids[b->n++] = id;
}

static int put_text(id_buf *b, const rg_tokenizer *t, const char *text, size_t len, int parse_special) {
    int32_t *ids;
    size_t n;
    if (rg_tokenize_ex(t, text, len, 0, 0, parse_special, &ids, &n)) return -1;
    for (size_t i = 0; i < n; i++) put(b, ids[i]);
    free(ids);
    return 0;
}

int rg_chat_turn(const rg_tokenizer *t, const char *system, const char *text, int first, int32_t pending,
                 int32_t **ids, size_t *n_ids) {
    return rg_chat_turn_ex(t, system, text, first, pending, 0, ids, n_ids);
}

int rg_chat_turn_ex(const rg_tokenizer *t, const char *system, const char *text, int first, int32_t pending,
                    int parse_special, int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    int32_t sot = rg_tokenizer_piece_id(t, "<start_of_turn>"), eot = rg_tokenizer_piece_id(t, "<end_of_turn>");
    if (sot < 0 || eot < 0)
        return rg_error("chat: the tokenizer has no <start_of_turn>/<end_of_turn> pieces (not a Gemma tokenizer)");
    id_buf b = {0};
    if (first) {
        put(&b, rg_tokenizer_bos(t));
    } else {
        if (pending >= 0) put(&b, pending);
        if (pending != eot) put(&b, eot);
        if (put_text(&b, t, "\n", 1, 0)) goto fail;
    }
    put(&b, sot);
    size_t sl = system && *system && first ? strlen(system) : 0, tl = strlen(text);
    char *user = rg_xmalloc(sl + tl + 8);
    size_t k = 0;
    memcpy(user + k, "user\n", 5), k += 5;
    if (sl) memcpy(user + k, system, sl), k += sl, memcpy(user + k, "\n\n", 2), k += 2;
    memcpy(user + k, text, tl), k += tl;
    int rc = put_text(&b, t, user, k, parse_special);
    free(user);
    if (rc) goto fail;
    put(&b, eot);
    if (put_text(&b, t, "\n", 1, 0)) goto fail;
    put(&b, sot);
    if (put_text(&b, t, "model\n", 6, 0)) goto fail;
    *ids = b.ids;
    *n_ids = b.n;
    return 0;
fail:
    free(b.ids);
    return -1;
}
