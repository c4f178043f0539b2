/* Hugging Face tokenizer.json (a BPE model converted from SentencePiece) ->
 * the same in-memory model a tokenizer.model gives, so that it encodes the
 * SentencePiece way, not the HF way.
 *
 * tokenizer.json keeps the SentencePiece ids but not the piece types or
 * scores. They are rebuilt from the layout spm_train writes and the HF
 * converter keeps:
 *   - added tokens marked special are CONTROL (model.unk_token: UNKNOWN),
 *     other added tokens USER_DEFINED;
 *   - with byte_fallback, <0xNN> pieces are BYTE. The converter renamed some
 *     byte pieces to the byte itself (Gemma: <0x09> at id 226 became "\t"); a
 *     one-byte piece at the slot of a missing <0xNN> is renamed back;
 *   - the NORMAL pieces are the ids after the last BYTE piece (or after the
 *     last added token) up to the last one-character piece, and spm_train
 *     sorted them by score: score = -(id - first NORMAL id);
 *   - every other piece (Gemma: <start_of_turn>, runs of \n, U+2581 and tabs,
 *     HTML tags, <unusedN>) is USER_DEFINED, i.e. matched whole in text.
 * The merges list must agree: it is checked to be in that score order. */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <cjson/cJSON.h>
#include "tokenizer/tokenizer.h"
#include "util/util.h"

static int is_null_or(const cJSON *j, const char *empty_string) {
    return !j || cJSON_IsNull(j) || (cJSON_IsString(j) && !strcmp(j->valuestring, empty_string));
}

/* normalizer: Replace(" " -> U+2581), optionally after Prepend(U+2581). */
static int is_space_replace(const cJSON *n) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(n, "type");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(n, "content");
    return cJSON_IsString(type) && !strcmp(type->valuestring, "Replace") && cJSON_IsString(str) &&
           !strcmp(str->valuestring, " ") && cJSON_IsString(content) &&
           !strcmp(content->valuestring, "\xe2\x96\x81");
}

static int is_prepend_space(const cJSON *n) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(n, "type");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(n, "prepend");
    return cJSON_IsString(type) && !strcmp(type->valuestring, "Prepend") && cJSON_IsString(pre) &&
           !strcmp(pre->valuestring, "\xe2\x96\x81");
}

static int read_normalizer(rg_tokenizer *t, const cJSON *n, const char *name) {
    t->escape_whitespaces = 1;
    t->remove_extra_whitespaces = 0;
    t->add_dummy_prefix = 0;
    if (is_space_replace(n)) return 0;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(n, "type");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "Sequence") && cJSON_GetArraySize(list) == 2 &&
        is_prepend_space(cJSON_GetArrayItem(list, 0)) && is_space_replace(cJSON_GetArrayItem(list, 1))) {
        t->add_dummy_prefix = 1;
        return 0;
    }
    return rg_error("%s: normalizer %s is not supported (only Replace \" \" with U+2581, optionally after "
                    "Prepend U+2581)",
                    name, cJSON_IsString(type) ? type->valuestring : "null");
}

/* A special-token name from tokenizer_config.json: "x" or {"content": "x"}. */
static const char *config_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int byte_piece_value(const char *s) {
    unsigned v;
    char tail;
    if (strlen(s) != 6 || sscanf(s, "<0x%2X%c", &v, &tail) != 2 || tail != '>') return -1;
    for (int i = 3; i < 5; i++)
        if (s[i] >= 'a' && s[i] <= 'f') return -1;
    return (int)v;
}

typedef struct {
    const char **piece; /* by id */
    uint8_t *type;      /* by id, 0 = not decided yet */
    int32_t n;
} vocab;

static int read_vocab(vocab *v, const cJSON *model, const char *name) {
    const cJSON *vj = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vj)) return rg_error("%s: model.vocab is not an object", name);
    int n = cJSON_GetArraySize(vj);
    if (n <= 0) return rg_error("%s: model.vocab is empty", name);
    v->n = n;
    v->piece = rg_xcalloc((size_t)n, sizeof *v->piece);
    v->type = rg_xcalloc((size_t)n, 1);
    for (const cJSON *e = vj->child; e; e = e->next) {
        double d = e->valuedouble;
        if (!cJSON_IsNumber(e) || d != floor(d))
            return rg_error("%s: model.vocab[\"%s\"] is not an integer id", name, e->string);
        /* the range before the conversion: a double beyond int32_t's is undefined to convert */
        if (!(d >= 0 && d < n))
            return rg_error("%s: model.vocab[\"%s\"] = %g is out of range (%d pieces)", name, e->string, d, n);
        int32_t id = (int32_t)d;
        if (v->piece[id])
            return rg_error("%s: model.vocab id %d is used by \"%s\" and \"%s\"", name, id, v->piece[id],
                            e->string);
        v->piece[id] = e->string;
    }
    return 0;
}

static int read_added_tokens(vocab *v, const cJSON *root, const char *unk, const char *name, int32_t *last) {
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    *last = -1;
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        return rg_error("%s: added_tokens is not an array", name);
    int i = 0;
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(content))
            return rg_error("%s: added_tokens[%d] needs a numeric id and a string content", name, i);
        if (id->valuedouble < 0 || id->valuedouble >= v->n || id->valuedouble != (double)id->valueint)
            return rg_error("%s: added_tokens[%d] id %g is out of range (%d pieces)", name, i, id->valuedouble, v->n);
        int32_t k = id->valueint;
        if (strcmp(v->piece[k], content->valuestring))
            return rg_error("%s: added_tokens[%d] \"%s\" has id %d, which the vocab gives to \"%s\"", name, i,
                            content->valuestring, k, v->piece[k]);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "special")))
            v->type[k] = unk && !strcmp(unk, content->valuestring) ? RG_PIECE_UNKNOWN : RG_PIECE_CONTROL;
        else
            v->type[k] = RG_PIECE_USER_DEFINED;
        if (k > *last) *last = k;
    }
    return 0;
}

/* Which BYTE pieces there are; returns the last BYTE id (-1 if none). */
static int32_t mark_bytes(vocab *v, const char **renamed, char names[256][7]) {
    int32_t id_of[256], last = -1, base = -1;
    for (int b = 0; b < 256; b++) id_of[b] = -1;
    for (int32_t id = 0; id < v->n; id++) {
        int b = byte_piece_value(v->piece[id]);
        if (b < 0 || v->type[id]) continue;
        id_of[b] = id;
        base = id - b;
    }
    for (int b = 0; b < 256; b++) {
        int32_t id = id_of[b];
        if (id < 0 && base >= 0 && base + b < v->n && !v->type[base + b] && v->piece[base + b][0] == (char)b &&
            v->piece[base + b][1] == 0 && b != 0) {
            id = base + b; /* the converter's renaming of <0xNN> to the byte itself */
            snprintf(names[b], 7, "<0x%02X>", b);
            renamed[id] = names[b];
        }
        if (id < 0) continue;
        v->type[id] = RG_PIECE_BYTE;
        if (id > last) last = id;
    }
    return last;
}

static int one_char(const char *s) {
    size_t n = strlen(s);
    return n > 0 && rg_utf8_char((const uint8_t *)s, n) == (int)n;
}

/* Each merge "a b" (or ["a", "b"]) must make a piece, and the NORMAL pieces
 * must come in score order (increasing id). */
static int check_merges(const rg_tokenizer *t, const cJSON *model, const char *name) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (merges && !cJSON_IsArray(merges)) return rg_error("%s: model.merges is not an array", name);
    int32_t last = -1;
    int i = 0;
    char buf[1024];
    for (const cJSON *m = merges ? merges->child : NULL; m; m = m->next, i++) {
        int32_t id = -1;
        if (cJSON_IsString(m)) {
            /* "a b": pieces may hold spaces, so try each split point */
            const char *s = m->valuestring;
            size_t n = strlen(s);
            for (const char *sp = strchr(s, ' '); sp && id < 0; sp = strchr(sp + 1, ' ')) {
                size_t a = (size_t)(sp - s);
                if (n >= sizeof buf) break;
                memcpy(buf, s, a);
                memcpy(buf + a, sp + 1, n - a - 1);
                id = rg_tok_lookup(t, buf, n - 1);
            }
        } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            size_t a = strlen(m->child->valuestring), b = strlen(m->child->next->valuestring);
            if (a + b < sizeof buf) {
                memcpy(buf, m->child->valuestring, a);
                memcpy(buf + a, m->child->next->valuestring, b);
                id = rg_tok_lookup(t, buf, a + b);
            }
        } else {
            return rg_error("%s: model.merges[%d] is neither \"a b\" nor [\"a\", \"b\"]", name, i);
        }
        if (id < 0) return rg_error("%s: model.merges[%d] does not make a piece of the vocab", name, i);
        if (t->type[id] != RG_PIECE_NORMAL) continue;
        if (id < last)
            return rg_error("%s: model.merges[%d] makes \"%s\" (id %d) after id %d: the merges are not in "
                            "SentencePiece score order, so the scores cannot be rebuilt",
                            name, i, rg_tok_text(t, id), id, last);
        last = id;
    }
    return 0;
}

static int build(rg_tokenizer *t, const cJSON *root, const cJSON *cfg, const char *name) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return rg_error("%s: no \"model\" object", name);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE"))
        return rg_error("%s: model type %s is not supported (only BPE)", name,
                        cJSON_IsString(type) ? type->valuestring : "(missing)");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return rg_error("%s: BPE dropout is not supported", name);
    if (!is_null_or(cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix"), "") ||
        !is_null_or(cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix"), ""))
        return rg_error("%s: continuing_subword_prefix / end_of_word_suffix are not supported", name);
    if (!is_null_or(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), ""))
        return rg_error("%s: a pre_tokenizer is not supported (SentencePiece BPE has none)", name);
    if (read_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), name)) return -1;
    t->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));

    const cJSON *unk_j = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    const char *unk = cJSON_IsString(unk_j) ? unk_j->valuestring : NULL;
    if (!unk) return rg_error("%s: model.unk_token is missing (SentencePiece needs an unknown piece)", name);

    vocab v = {0};
    const char **renamed = NULL;
    char(*names)[7] = NULL;
    int rc = read_vocab(&v, model, name);
    int32_t last_added = -1;
    if (!rc) rc = read_added_tokens(&v, root, unk, name, &last_added);
    if (!rc) {
        int32_t unk_id = -1;
        for (int32_t id = 0; id < v.n; id++)
            if (!strcmp(v.piece[id], unk)) unk_id = id;
        if (unk_id < 0) rc = rg_error("%s: model.unk_token \"%s\" is not in the vocab", name, unk);
        else v.type[unk_id] = RG_PIECE_UNKNOWN;
    }
    if (!rc) {
        renamed = rg_xcalloc((size_t)v.n, sizeof *renamed);
        names = rg_xcalloc(256, sizeof *names);
        int32_t last_byte = t->byte_fallback ? mark_bytes(&v, renamed, names) : -1;
        int32_t first = (last_byte > last_added ? last_byte : last_added) + 1, last = first - 1;
        for (int32_t id = first; id < v.n; id++)
            if (!v.type[id] && one_char(v.piece[id])) last = id;
        for (int32_t id = 0; id < v.n; id++) {
            int ty = v.type[id];
            if (!ty) ty = id >= first && id <= last ? RG_PIECE_NORMAL : RG_PIECE_USER_DEFINED;
            float score = ty == RG_PIECE_NORMAL ? -(float)(id - first) : 0.0f;
            const char *s = renamed[id] ? renamed[id] : v.piece[id];
            rg_tok_add_piece(t, s, strlen(s), score, ty);
        }
        /* names of the special pieces: tokenizer_config.json, else the usual ones */
        static const char *keys[4] = {"unk_token", "bos_token", "eos_token", "pad_token"};
        static const char *fallback[4][2] = {{NULL, NULL}, {"<bos>", "<s>"}, {"<eos>", "</s>"}, {"<pad>", NULL}};
        t->special_piece[0] = strdup(unk);
        for (int k = 1; k < 4; k++) {
            const char *s = config_token(cfg, keys[k]);
            for (int j = 0; !s && j < 2 && fallback[k][j]; j++)
                for (int32_t id = 0; id < v.n && !s; id++)
                    if (v.type[id] == RG_PIECE_CONTROL && !strcmp(v.piece[id], fallback[k][j])) s = fallback[k][j];
            if (s) t->special_piece[k] = strdup(s);
        }
    }
    free(v.piece);
    free(v.type);
    free(renamed);
    free(names);
    if (!rc) rc = rg_tok_finish(t, name);
    if (!rc) rc = check_merges(t, model, name);
    return rc;
}

int rg_tok_read_hf_json(rg_tokenizer *t, const char *json, size_t len, const char *name, const char *config_json,
                        size_t config_len) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        return rg_error("%s: not valid JSON (near byte %zu)", name,
                        at && at >= json && at <= json + len ? (size_t)(at - json) : (size_t)0);
    }
    cJSON *cfg = config_json ? cJSON_ParseWithLength(config_json, config_len) : NULL;
    int rc = config_json && !cfg ? rg_error("%s: tokenizer_config.json beside it is not valid JSON", name)
                                 : build(t, root, cfg, name);
    cJSON_Delete(cfg);
    cJSON_Delete(root);
    return rc;
}
