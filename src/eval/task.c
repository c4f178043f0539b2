/* Task files: one JSON object per line (schema in README "Evaluation").
 * Every field is checked; an error names the file and line. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include "eval/eval.h"
#include "util/util.h"

#define TASK_MAX_BYTES ((size_t)1 << 30)

/* Fails with "NAME:LINE: <message>" (the line is set by the caller's prefix). */
#define FAIL(...) return rg_error(__VA_ARGS__)

static int get_string(const cJSON *o, const char *key, char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        *out = strdup(v->valuestring);
        return 0;
    }
    if (cJSON_IsNumber(v)) { /* ids may be numbers */
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", v->valuedouble);
        *out = strdup(buf);
        return 0;
    }
    FAIL("\"%s\" must be a string", key);
}

static int parse_ids(const cJSON *a, const char *key, rg_piece *p) {
    if (!cJSON_IsArray(a)) FAIL("\"%s\" must be an array of token ids", key);
    int n = cJSON_GetArraySize(a);
    p->ids = rg_xmalloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    p->n_ids = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        /* range first: converting a double outside int64_t's range is undefined */
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble <= INT32_MAX) ||
            e->valuedouble != (double)(int64_t)e->valuedouble)
            FAIL("\"%s\"[%d] is not a token id (a non-negative integer)", key, p->n_ids);
        p->ids[p->n_ids++] = (int32_t)e->valuedouble;
    }
    return 0;
}

static int parse_text(const cJSON *s, const char *key, rg_piece *p) {
    if (!cJSON_IsString(s)) FAIL("\"%s\" must be a string", key);
    p->text = strdup(s->valuestring);
    p->len = strlen(p->text);
    return 0;
}

/* One piece from key (text) or key_ids (ids); *is_ids is set from the first
 * piece of the item and must agree for the rest. required: absent is an error. */
static int get_piece(const cJSON *o, const char *key, rg_piece *p, int *is_ids, int required) {
    char ids_key[64];
    snprintf(ids_key, sizeof ids_key, "%s_ids", key);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, key), *i = cJSON_GetObjectItemCaseSensitive(o, ids_key);
    memset(p, 0, sizeof *p);
    if (t && i) FAIL("give \"%s\" or \"%s\", not both", key, ids_key);
    if (!t && !i) {
        if (required) FAIL("missing \"%s\" (or \"%s\")", key, ids_key);
        return 0;
    }
    int want = i != NULL;
    if (*is_ids >= 0 && *is_ids != want) FAIL("\"%s\": an item is all text or all token ids, not a mix", want ? ids_key : key);
    *is_ids = want;
    return want ? parse_ids(i, ids_key, p) : parse_text(t, key, p);
}

/* An array of pieces from key (array of strings) or key_ids (array of id arrays). */
static int get_pieces(const cJSON *o, const char *key, rg_piece **out, int *n, int *is_ids) {
    char ids_key[64];
    snprintf(ids_key, sizeof ids_key, "%s_ids", key);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, key), *i = cJSON_GetObjectItemCaseSensitive(o, ids_key);
    *out = NULL;
    *n = 0;
    if (t && i) FAIL("give \"%s\" or \"%s\", not both", key, ids_key);
    const cJSON *a = t ? t : i;
    if (!a) return 0;
    int want = i != NULL;
    const char *name = want ? ids_key : key;
    if (*is_ids >= 0 && *is_ids != want) FAIL("\"%s\": an item is all text or all token ids, not a mix", name);
    *is_ids = want;
    if (!want && cJSON_IsString(a)) { /* a single answer may be given as a string */
        *out = rg_xcalloc(1, sizeof **out);
        *n = 1;
        return parse_text(a, key, *out);
    }
    if (!cJSON_IsArray(a)) FAIL("\"%s\" must be an array", name);
    int count = cJSON_GetArraySize(a);
    if (count < 1) FAIL("\"%s\" is empty", name);
    *out = rg_xcalloc((size_t)count, sizeof **out);
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        char sub[96];
        snprintf(sub, sizeof sub, "%s[%d]", name, *n);
        rg_piece *p = &(*out)[(*n)++];
        if ((want ? parse_ids(e, sub, p) : parse_text(e, sub, p)) < 0) return -1;
        if ((want ? p->n_ids : (int)p->len) == 0) FAIL("\"%s\" is empty", sub);
    }
    return 0;
}

static void piece_free(rg_piece *p) {
    free(p->text);
    free(p->ids);
}

static void item_free(rg_item *it) {
    free(it->id);
    free(it->group);
    free(it->description);
    if (it->ctx) {
        int nc = it->shared_ctx ? 1 : it->n_choices;
        for (int i = 0; i < nc; i++) piece_free(&it->ctx[i]);
    }
    if (it->cont) {
        int nc = it->shared_ctx ? it->n_choices : 1;
        for (int i = 0; i < nc; i++) piece_free(&it->cont[i]);
    }
    free(it->ctx);
    free(it->cont);
    piece_free(&it->prompt);
    for (int i = 0; i < it->n_answers; i++) piece_free(&it->answers[i]);
    free(it->answers);
    free(it->target);
    for (int i = 0; i < it->n_stop; i++) free(it->stop[i]);
    free(it->stop);
    memset(it, 0, sizeof *it);
}

static int has(const cJSON *o, const char *key) {
    char ids_key[64];
    snprintf(ids_key, sizeof ids_key, "%s_ids", key);
    return cJSON_GetObjectItemCaseSensitive(o, key) || cJSON_GetObjectItemCaseSensitive(o, ids_key);
}

static int parse_mc(const cJSON *o, rg_item *it) {
    int ids = -1;
    it->kind = RG_ITEM_MC;
    if (has(o, "choices")) {
        /* one context, a continuation per choice */
        if (has(o, "contexts") || has(o, "continuation"))
            FAIL("\"choices\" goes with \"context\"; \"contexts\" goes with \"continuation\"");
        it->ctx = rg_xcalloc(1, sizeof *it->ctx);
        it->shared_ctx = 1;
        if (get_piece(o, "context", &it->ctx[0], &ids, 1) < 0) return -1;
        if (get_pieces(o, "choices", &it->cont, &it->n_choices, &ids) < 0) return -1;
        it->ctx = rg_xrealloc(it->ctx, sizeof *it->ctx * (size_t)it->n_choices);
        for (int i = 1; i < it->n_choices; i++) it->ctx[i] = it->ctx[0];
    } else {
        /* WinoGrande's partial scoring: a context per choice, one continuation */
        if (get_pieces(o, "contexts", &it->ctx, &it->n_choices, &ids) < 0) return -1;
        it->cont = rg_xcalloc((size_t)it->n_choices, sizeof *it->cont);
        if (get_piece(o, "continuation", &it->cont[0], &ids, 1) < 0) return -1;
        if ((ids ? it->cont[0].n_ids : (int)it->cont[0].len) == 0) FAIL("\"continuation\" is empty");
        for (int i = 1; i < it->n_choices; i++) it->cont[i] = it->cont[0];
    }
    it->is_ids = ids;
    if (it->n_choices < 2) FAIL("a multiple-choice item needs at least 2 choices (got %d)", it->n_choices);
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "label");
    if (!l) FAIL("missing \"label\" (index of the correct choice)");
    if (!cJSON_IsNumber(l) || !(l->valuedouble >= 0 && l->valuedouble < it->n_choices) ||
        l->valuedouble != floor(l->valuedouble))
        FAIL("\"label\" must be an integer from 0 to %d", it->n_choices - 1);
    it->label = (int)l->valuedouble;
    return 0;
}

static int parse_gen(const cJSON *o, rg_item *it) {
    int ids = -1;
    it->kind = RG_ITEM_GEN;
    if (get_piece(o, "prompt", &it->prompt, &ids, 1) < 0) return -1;
    if ((ids ? it->prompt.n_ids : (int)it->prompt.len) == 0) FAIL("\"prompt\" is empty");
    if (get_pieces(o, "answers", &it->answers, &it->n_answers, &ids) < 0) return -1;
    it->is_ids = ids;
    if (get_string(o, "target", &it->target) < 0) return -1;
    if (it->target && ids) FAIL("\"target\" is text; an item with token ids uses answers_ids[0] as its target");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (st) {
        if (ids) FAIL("\"stop\" holds strings; an item with token ids stops at EOS or max_tokens");
        if (!cJSON_IsArray(st)) FAIL("\"stop\" must be an array of strings");
        it->stop = rg_xcalloc((size_t)cJSON_GetArraySize(st) + 1, sizeof *it->stop);
        const cJSON *e;
        cJSON_ArrayForEach(e, st) {
            if (!cJSON_IsString(e) || !*e->valuestring) FAIL("\"stop\"[%d] must be a non-empty string", it->n_stop);
            it->stop[it->n_stop++] = strdup(e->valuestring);
        }
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "max_tokens");
    it->max_tokens = -1;
    if (mt) {
        if (!cJSON_IsNumber(mt) || !(mt->valuedouble >= 1 && mt->valuedouble <= INT32_MAX) ||
            mt->valuedouble != floor(mt->valuedouble))
            FAIL("\"max_tokens\" must be a positive integer");
        it->max_tokens = (int)mt->valuedouble;
    }
    return 0;
}

static int parse_item(const char *line, size_t len, rg_item *it) {
    if (memchr(line, 0, len)) FAIL("the line holds a NUL byte");
    char *buf = rg_xmalloc(len + 1);
    memcpy(buf, line, len);
    buf[len] = 0;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithOpts(buf, &end, 1);
    if (!o) {
        size_t col = end && end >= buf ? (size_t)(end - buf) + 1 : 1;
        free(buf);
        FAIL("invalid JSON near column %zu", col);
    }
    free(buf);
    int rc = -1;
    if (!cJSON_IsObject(o)) {
        rg_error("a line must hold a JSON object");
        goto out;
    }
    if (get_string(o, "id", &it->id) < 0 || get_string(o, "group", &it->group) < 0 ||
        get_string(o, "description", &it->description) < 0)
        goto out;
    int mc = has(o, "choices") || has(o, "contexts"), gen = has(o, "answers");
    if (mc == gen) {
        rg_error(mc ? "an item has \"choices\"/\"contexts\" (multiple choice) or \"answers\" (generation), not both"
                    : "an item needs \"choices\" or \"contexts\" (multiple choice) or \"answers\" (generation)");
        goto out;
    }
    rc = mc ? parse_mc(o, it) : parse_gen(o, it);
    if (rc == 0 && it->description && it->is_ids) rc = rg_error("\"description\" is text; this item uses token ids");
out:
    cJSON_Delete(o);
    return rc;
}

int rg_task_parse(const char *text, size_t len, const char *name, rg_task *task) {
    memset(task, 0, sizeof *task);
    int cap = 0, line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, l = end - pos;
        const char *s = text + pos;
        line++;
        pos = end + 1;
        if (l && s[l - 1] == '\r') l--;
        size_t k = 0;
        while (k < l && (s[k] == ' ' || s[k] == '\t')) k++;
        if (k == l || s[k] == '#') continue;
        if (task->n == cap) {
            cap = cap ? cap * 2 : 64;
            task->items = rg_xrealloc(task->items, sizeof *task->items * (size_t)cap);
        }
        rg_item *it = &task->items[task->n];
        memset(it, 0, sizeof *it);
        it->line = line;
        if (parse_item(s, l, it) < 0) {
            item_free(it);
            rg_error_prefix("%s:%d", name, line);
            rg_task_free(task);
            return -1;
        }
        task->n++;
    }
    if (task->n == 0) return rg_error("%s: no items (one JSON object per line)", name);
    return 0;
}

int rg_task_load(const char *path, rg_task *task) {
    char *data;
    size_t len;
    memset(task, 0, sizeof *task);
    if (rg_read_file(path, TASK_MAX_BYTES, &data, &len) < 0) return -1;
    int rc = rg_task_parse(data, len, path, task);
    free(data);
    return rc;
}

void rg_task_free(rg_task *task) {
    for (int i = 0; i < task->n; i++) item_free(&task->items[i]);
    free(task->items);
    memset(task, 0, sizeof *task);
}

int rg_choose_shots(const rg_task *shots, const rg_item *item, int k, uint64_t seed, int *idx) {
    if (k <= 0) return 0;
    int n = shots->n, same = 0;
    int *pool = rg_xmalloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (item->group)
        for (int i = 0; i < n; i++)
            if (shots->items[i].group && !strcmp(shots->items[i].group, item->group)) pool[same++] = i;
    int m = same;
    if (m == 0)
        for (int i = 0; i < n; i++) pool[m++] = i;
    if (m < k) {
        free(pool);
        return rg_error("shots: %d shots wanted but only %d available%s%s%s", k, m, same ? " for group \"" : "",
                        same ? item->group : "", same ? "\"" : "");
    }
    const char *g = same ? item->group : "";
    uint64_t x = seed ^ rg_fnv1a(g, strlen(g), 0x5eed);
    for (int i = 0; i < k; i++) {
        int j = i + (int)(rg_splitmix64(&x) % (uint64_t)(m - i));
        int t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
        idx[i] = pool[i];
    }
    free(pool);
    return 0;
}
