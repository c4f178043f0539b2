/* Training data: files into one stream of token ids with, per id, whether
 * the loss counts it as a target. A plain-text file is one document, a
 * .jsonl file one document or chat per line. Text is tokenized with special
 * pieces as plain text (rg_tokenize_ex, parse_special = 0): only the chat
 * template places turn markers, by id, as src/generate/chat.c does. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train/train.h"
#include "util/util.h"

/* A training file may be large, but its tokens must fit in memory anyway. */
#define MAX_DATA_FILE ((size_t)1 << 32)

static void put(rg_train_stream *s, int32_t id, uint8_t counts) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 4096;
        s->ids = rg_xrealloc(s->ids, sizeof *s->ids * s->cap);
        s->counts = rg_xrealloc(s->counts, s->cap);
    }
    s->ids[s->n] = id;
    s->counts[s->n++] = counts;
}

static int put_text(rg_train_stream *s, const rg_tokenizer *t, const char *text, size_t len, uint8_t counts) {
    int32_t *ids;
    size_t n;
    if (rg_tokenize_ex(t, text, len, 0, 0, 0, &ids, &n)) return -1;
    for (size_t i = 0; i < n; i++) put(s, ids[i], counts);
    free(ids);
    return 0;
}

/* BOS text EOS. BOS is never a target: it starts a document whatever came
 * before it. */
static int put_document(rg_train_stream *s, const rg_tokenizer *t, const char *text, size_t len) {
    put(s, rg_tokenizer_bos(t), 0);
    if (put_text(s, t, text, len, 1)) return -1;
    put(s, rg_tokenizer_eos(t), 1);
    s->n_docs++;
    return 0;
}

/* One Gemma turn: <start_of_turn>{role}\n{text}<end_of_turn>\n. A model
 * turn counts its text and its <end_of_turn> (the model learns to stop);
 * "model\n" is tokenized apart from the text, as a prompt ends with it when
 * the model replies. A user turn is "user\n{text}" in one piece, as
 * rg_chat_turn encodes it. */
static int put_turn(rg_train_stream *s, const rg_tokenizer *t, int model, const char *text, size_t len) {
    int32_t sot = rg_tokenizer_piece_id(t, "<start_of_turn>"), eot = rg_tokenizer_piece_id(t, "<end_of_turn>");
    put(s, sot, 0);
    if (model) {
        if (put_text(s, t, "model\n", 6, 0) || put_text(s, t, text, len, 1)) return -1;
    } else {
        char *user = rg_xmalloc(len + 6);
        memcpy(user, "user\n", 5);
        memcpy(user + 5, text, len);
        int rc = put_text(s, t, user, len + 5, 0);
        free(user);
        if (rc) return -1;
    }
    put(s, eot, (uint8_t)model);
    return put_text(s, t, "\n", 1, 0);
}

/* "a" + "\n\n" + "b", malloc'd */
static char *join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *j = rg_xmalloc(na + nb + 3);
    memcpy(j, a, na);
    memcpy(j + na, "\n\n", 2);
    memcpy(j + na + 2, b, nb + 1);
    return j;
}

/* messages: BOS, then the turns. System messages are folded into the next
 * user turn as "{system}\n\n{text}" (Gemma has no system role; the server
 * does the same); one with no user turn after it is a user turn itself. */
static int put_chat(rg_train_stream *s, const rg_tokenizer *t, const cJSON *msgs, const char *where) {
    if (rg_tokenizer_piece_id(t, "<start_of_turn>") < 0 || rg_tokenizer_piece_id(t, "<end_of_turn>") < 0)
        return rg_error("%s: chat data needs a tokenizer with <start_of_turn> and <end_of_turn>", where);
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return rg_error("%s: \"messages\" must be a non-empty list", where);
    put(s, rg_tokenizer_bos(t), 0);
    char *pending = NULL; /* system text waiting for its user turn */
    int i = 0, rc = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role) || !cJSON_IsString(content)) {
            rc = rg_error("%s: messages[%d] must be an object with string \"role\" and \"content\"", where, i);
            break;
        }
        const char *r = role->valuestring, *text = content->valuestring;
        int model = !strcmp(r, "model") || !strcmp(r, "assistant");
        if (!strcmp(r, "system")) {
            char *j = pending ? join(pending, text) : strdup(text);
            free(pending);
            pending = j;
        } else if (!strcmp(r, "user")) {
            char *j = pending ? join(pending, text) : NULL;
            rc = put_turn(s, t, 0, j ? j : text, strlen(j ? j : text));
            free(j);
            free(pending);
            pending = NULL;
        } else if (model) {
            if (pending) rc = put_turn(s, t, 0, pending, strlen(pending));
            free(pending);
            pending = NULL;
            if (!rc) rc = put_turn(s, t, 1, text, strlen(text));
        } else {
            rc = rg_error("%s: messages[%d]: role \"%.40s\" is not one of user, model, assistant, system", where, i, r);
        }
        if (rc) break;
        i++;
    }
    if (!rc && pending) rc = put_turn(s, t, 0, pending, strlen(pending));
    free(pending);
    if (!rc) s->n_docs++;
    return rc;
}

static int put_jsonl_line(rg_train_stream *s, const rg_tokenizer *t, const char *line, size_t len, const char *where) {
    cJSON *root = cJSON_ParseWithLength(line, len);
    int rc;
    if (!root || !cJSON_IsObject(root)) {
        rc = rg_error("%s: not a JSON object", where);
    } else {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text");
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (text && msgs) rc = rg_error("%s: has both \"text\" and \"messages\"", where);
        else if (text && !cJSON_IsString(text)) rc = rg_error("%s: \"text\" must be a string", where);
        else if (text) rc = put_document(s, t, text->valuestring, strlen(text->valuestring));
        else if (msgs) rc = put_chat(s, t, msgs, where);
        else rc = rg_error("%s: expected a \"text\" or a \"messages\" key", where);
    }
    cJSON_Delete(root);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int rg_train_stream_add_file(rg_train_stream *s, const rg_tokenizer *t, const char *path) {
    char *data;
    size_t len;
    if (rg_read_file(path, MAX_DATA_FILE, &data, &len)) return -1;
    int rc = 0;
    if (!ends_with(path, ".jsonl")) {
        rc = put_document(s, t, data, len);
        if (rc) rg_error_prefix("%s", path);
    } else {
        int line_no = 0;
        for (size_t at = 0; at < len && !rc;) {
            const char *line = data + at;
            const char *nl = memchr(line, '\n', len - at);
            size_t n = nl ? (size_t)(nl - line) : len - at;
            at += n + 1;
            line_no++;
            size_t blank = 0;
            while (blank < n && (line[blank] == ' ' || line[blank] == '\t' || line[blank] == '\r')) blank++;
            if (blank == n) continue;
            char where[512];
            snprintf(where, sizeof where, "%s:%d", path, line_no);
            rc = put_jsonl_line(s, t, line, n, where);
        }
    }
    free(data);
    return rc;
}

void rg_train_stream_free(rg_train_stream *s) {
    free(s->ids);
    free(s->counts);
    memset(s, 0, sizeof *s);
}
