/* OpenAI-compatible request parsing, the Gemma chat format and response
 * objects for `rgemma serve` (see api.h). Every field of a request is
 * type- and range-checked; a problem becomes an rg_api_error with a 4xx
 * status naming the field. */
#include "server/api.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "util/util.h"

int rg_api_fail(rg_api_error *e, int status, const char *code, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status >= 500 ? "server_error" : "invalid_request_error";
    e->code = code;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

char *rg_api_error_json(const rg_api_error *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param)
        cJSON_AddStringToObject(err, "param", e->param);
    else
        cJSON_AddNullToObject(err, "param");
    if (e->code)
        cJSON_AddStringToObject(err, "code", e->code);
    else
        cJSON_AddNullToObject(err, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

long rg_utf8_check(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int extra;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) extra = 1, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) extra = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) extra = 3, cp = c & 0x07, min = 0x10000;
        else return (long)i;
        if (n - i <= (size_t)extra) return (long)i;
        for (int k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return (long)i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return (long)i;
        i += (size_t)extra + 1;
    }
    return -1;
}

/* ------------------------------------------------------------ field access */

/* Offset of the first NUL in the (valid) JSON text: a raw 0 byte, or a
 * "\u0000" escape inside a string; -1 if none. cJSON's strings end at their
 * first NUL, so text after one would be dropped without a word. */
static long find_nul(const char *s, size_t n) {
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        if (!s[i]) return (long)i;
        if (!in_str) {
            in_str = s[i] == '"';
        } else if (s[i] == '"') {
            in_str = 0;
        } else if (s[i] == '\\' && i + 1 < n) {
            if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4)) return (long)i;
            i += 1; /* the escaped character; \uXXXX's hex digits are plain characters */
        }
    }
    return -1;
}

/* The body as a JSON object, or an error (400). */
static cJSON *parse_object(const char *body, size_t len, rg_api_error *e) {
    long bad = rg_utf8_check(body, len);
    if (bad >= 0) {
        rg_api_fail(e, 400, "invalid_utf8", NULL, "request body is not valid UTF-8 (byte %ld)", bad);
        return NULL;
    }
    if ((bad = find_nul(body, len)) >= 0) {
        rg_api_fail(e, 400, "invalid_value", NULL,
                    "request body holds a NUL character (U+0000) at byte %ld: text with NUL is not supported", bad);
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        long at = end ? (long)(end - body) : 0;
        rg_api_fail(e, 400, "invalid_json", NULL, "request body is not valid JSON (error near byte %ld)", at);
        return NULL;
    }
    /* trailing non-space bytes after the value */
    for (const char *p = end; p && p < body + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(root);
            rg_api_fail(e, 400, "invalid_json", NULL, "request body has extra data after the JSON value (byte %ld)",
                        (long)(p - body));
            return NULL;
        }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        rg_api_fail(e, 400, "invalid_json", NULL, "request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* A field that is absent or null counts as not given. */
static cJSON *field(const cJSON *o, const char *name) {
    cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

/* Returns 1 if the field is given (into *out), 0 if not, -1 on error. */
static int get_number(const cJSON *o, const char *name, double lo, double hi, double *out, rg_api_error *e) {
    cJSON *f = field(o, name);
    if (!f) return 0;
    if (!cJSON_IsNumber(f)) return rg_api_fail(e, 400, "invalid_type", name, "'%s' must be a number", name);
    double v = f->valuedouble;
    if (!(v >= lo && v <= hi))
        return rg_api_fail(e, 400, "invalid_value", name, "'%s' must be between %g and %g (got %g)", name, lo, hi,
                           v);
    *out = v;
    return 1;
}

static int get_int(const cJSON *o, const char *name, double lo, double hi, long long *out, rg_api_error *e) {
    cJSON *f = field(o, name);
    if (!f) return 0;
    if (!cJSON_IsNumber(f) || f->valuedouble != floor(f->valuedouble) || !isfinite(f->valuedouble))
        return rg_api_fail(e, 400, "invalid_type", name, "'%s' must be an integer", name);
    double v = f->valuedouble;
    if (v < lo || v > hi)
        return rg_api_fail(e, 400, "invalid_value", name, "'%s' must be between %.0f and %.0f (got %.0f)", name, lo,
                           hi, v);
    *out = (long long)v;
    return 1;
}

static int get_bool(const cJSON *o, const char *name, int *out, rg_api_error *e) {
    cJSON *f = field(o, name);
    if (!f) return 0;
    if (!cJSON_IsBool(f)) return rg_api_fail(e, 400, "invalid_type", name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(f);
    return 1;
}

static char *dup_bytes(const char *s, size_t n) {
    char *d = rg_xmalloc(n + 1);
    if (n) memcpy(d, s, n); /* s may be NULL when n is 0 (a job's text before its first piece) */
    d[n] = 0;
    return d;
}

/* ---------------------------------------------------------------- requests */

static int check_model(const cJSON *root, const rg_api_limits *lim, rg_api_error *e) {
    cJSON *f = field(root, "model");
    if (!f) return 0;
    if (!cJSON_IsString(f)) return rg_api_fail(e, 400, "invalid_type", "model", "'model' must be a string");
    if (lim->model_name && strcmp(f->valuestring, lim->model_name))
        return rg_api_fail(e, 404, "model_not_found", "model", "The model '%.100s' does not exist (this server has '%.100s')",
                           f->valuestring, lim->model_name);
    return 0;
}

/* Content: a string, null, or a list of {"type":"text","text":…} parts
 * (joined with "\n"). */
static int message_text(const cJSON *content, char **out, rg_api_error *e) {
    if (!content || cJSON_IsNull(content)) {
        *out = dup_bytes("", 0);
        return 0;
    }
    if (cJSON_IsString(content)) {
        *out = dup_bytes(content->valuestring, strlen(content->valuestring));
        return 0;
    }
    if (!cJSON_IsArray(content))
        return rg_api_fail(e, 400, "invalid_type", "messages", "message 'content' must be a string or a list of parts");
    size_t len = 0, cap = 64;
    char *s = rg_xmalloc(cap);
    const cJSON *part;
    int i = 0;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
            free(s);
            return rg_api_fail(e, 400, "unsupported_content", "messages",
                               "message content parts must be {\"type\":\"text\",\"text\":string} (only text is supported)");
        }
        size_t n = strlen(text->valuestring);
        while (len + n + 2 > cap) cap *= 2;
        s = rg_xrealloc(s, cap);
        if (i++) s[len++] = '\n';
        memcpy(s + len, text->valuestring, n);
        len += n;
    }
    s[len] = 0;
    *out = s;
    return 0;
}

static char *join(const char *a, const char *sep, const char *b) {
    size_t na = strlen(a), ns = strlen(sep), nb = strlen(b);
    char *s = rg_xmalloc(na + ns + nb + 1);
    memcpy(s, a, na);
    memcpy(s + na, sep, ns);
    memcpy(s + na + ns, b, nb + 1);
    return s;
}

static void add_turn(rg_api_request *r, int model, char *text) {
    r->turns = rg_xrealloc(r->turns, sizeof *r->turns * (size_t)(r->n_turns + 1));
    r->turns[r->n_turns].model = model;
    r->turns[r->n_turns].text = text;
    r->n_turns++;
}

/* messages → turns. System (and developer) messages are folded into the next
 * user turn as "{system}\n\n{user}"; one with no user turn after it becomes
 * a user turn of its own. */
static int parse_messages(const cJSON *root, rg_api_request *r, rg_api_error *e) {
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!msgs) return rg_api_fail(e, 400, "missing_field", "messages", "'messages' is required");
    if (!cJSON_IsArray(msgs)) return rg_api_fail(e, 400, "invalid_type", "messages", "'messages' must be a list");
    if (cJSON_GetArraySize(msgs) == 0)
        return rg_api_fail(e, 400, "invalid_value", "messages", "'messages' must not be empty");
    char *pending = NULL; /* system text waiting for a user turn */
    const cJSON *m;
    int i = 0, last_model = 0;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            free(pending);
            return rg_api_fail(e, 400, "invalid_type", "messages",
                               "messages[%d] must be an object with a string 'role'", i);
        }
        const char *rs = role->valuestring;
        int sys = !strcmp(rs, "system") || !strcmp(rs, "developer");
        int user = !strcmp(rs, "user"), model = !strcmp(rs, "assistant");
        if (!sys && !user && !model) {
            free(pending);
            return rg_api_fail(e, 400, "invalid_value", "messages",
                               "messages[%d]: role '%.40s' is not supported (use system, user or assistant)", i, rs);
        }
        char *text = NULL;
        if (message_text(cJSON_GetObjectItemCaseSensitive(m, "content"), &text, e)) {
            free(pending);
            return -1;
        }
        if (sys) {
            if (pending) {
                char *j = join(pending, "\n\n", text);
                free(pending);
                free(text);
                text = j;
            }
            pending = text;
        } else if (user) {
            if (pending) {
                char *j = join(pending, "\n\n", text);
                free(pending);
                free(text);
                text = j;
                pending = NULL;
            }
            add_turn(r, 0, text);
        } else {
            if (pending) add_turn(r, 0, pending);
            pending = NULL;
            add_turn(r, 1, text);
        }
        last_model = model;
        i++;
    }
    if (pending) {
        add_turn(r, 0, pending);
        last_model = 0;
    }
    r->open_model_turn = last_model;
    return 0;
}

static int parse_id_list(const cJSON *a, const char *param, int vocab, int32_t **ids, int *n, rg_api_error *e) {
    int count = cJSON_GetArraySize(a);
    int32_t *v = rg_xmalloc(sizeof *v * (size_t)(count > 0 ? count : 1));
    const cJSON *x;
    int i = 0;
    cJSON_ArrayForEach(x, a) {
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
            x->valuedouble >= vocab) {
            free(v);
            return rg_api_fail(e, 400, "invalid_value", param, "'%s'[%d] must be a token id in [0, %d)", param, i,
                               vocab);
        }
        v[i++] = (int32_t)x->valuedouble;
    }
    *ids = v;
    *n = i;
    return 0;
}

/* prompt: a string, a list of one string, a list of token ids, or a list
 * holding one list of token ids. */
static int parse_prompt(const cJSON *root, const rg_api_limits *lim, rg_api_request *r, rg_api_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p) return rg_api_fail(e, 400, "missing_field", "prompt", "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && !cJSON_IsNumber(p->child)) p = p->child;
    if (cJSON_IsString(p)) {
        r->prompt_len = strlen(p->valuestring);
        r->prompt = dup_bytes(p->valuestring, r->prompt_len);
        return 0;
    }
    if (cJSON_IsArray(p) && (!p->child || cJSON_IsNumber(p->child))) {
        if (parse_id_list(p, "prompt", lim->vocab_size, &r->prompt_ids, &r->n_prompt_ids, e)) return -1;
        if (r->n_prompt_ids == 0) return rg_api_fail(e, 400, "invalid_value", "prompt", "'prompt' has no tokens");
        return 0;
    }
    if (cJSON_IsArray(p))
        return rg_api_fail(e, 400, "invalid_value", "prompt", "only one prompt per request is supported");
    return rg_api_fail(e, 400, "invalid_type", "prompt", "'prompt' must be a string or a list of token ids");
}

static int parse_stop(const cJSON *root, rg_api_request *r, rg_api_error *e) {
    const cJSON *s = field(root, "stop");
    if (!s) return 0;
    if (cJSON_IsString(s)) {
        if (*s->valuestring) r->stop[r->n_stop++] = dup_bytes(s->valuestring, strlen(s->valuestring));
        return 0;
    }
    if (!cJSON_IsArray(s)) return rg_api_fail(e, 400, "invalid_type", "stop", "'stop' must be a string or a list of strings");
    if (cJSON_GetArraySize(s) > RG_API_MAX_STOP)
        return rg_api_fail(e, 400, "invalid_value", "stop", "'stop' may hold at most %d strings", RG_API_MAX_STOP);
    const cJSON *x;
    cJSON_ArrayForEach(x, s) {
        if (!cJSON_IsString(x)) return rg_api_fail(e, 400, "invalid_type", "stop", "'stop' must be a list of strings");
        size_t n = strlen(x->valuestring);
        if (n > RG_API_MAX_STOP_LEN)
            return rg_api_fail(e, 400, "invalid_value", "stop", "a stop string may be at most %d bytes",
                               RG_API_MAX_STOP_LEN);
        if (n) r->stop[r->n_stop++] = dup_bytes(x->valuestring, n);
    }
    return 0;
}

/* Sampling fields, named as OpenAI and llama-server name them; what is not
 * given keeps llama.cpp's defaults (rg_sampling_params_default). */
static int parse_sampling(const cJSON *root, const rg_api_limits *lim, rg_api_request *r, rg_api_error *e) {
    rg_sampling_params *sp = &r->sampling;
    rg_sampling_params_default(sp);
    double d;
    long long ll;
    int k;
    if ((k = get_number(root, "temperature", 0, 2, &d, e)) < 0) return -1;
    if (k) sp->temperature = (float)d;
    if ((k = get_number(root, "top_p", 0, 1, &d, e)) < 0) return -1;
    if (k) sp->top_p = (float)d;
    if ((k = get_number(root, "min_p", 0, 1, &d, e)) < 0) return -1;
    if (k) sp->min_p = (float)d;
    if ((k = get_int(root, "top_k", 0, lim->vocab_size, &ll, e)) < 0) return -1;
    if (k) sp->top_k = (int)ll;
    if ((k = get_number(root, "presence_penalty", -2, 2, &d, e)) < 0) return -1;
    if (k) sp->presence_penalty = (float)d;
    if ((k = get_number(root, "frequency_penalty", -2, 2, &d, e)) < 0) return -1;
    if (k) sp->frequency_penalty = (float)d;
    if ((k = get_number(root, "repeat_penalty", 0, 10, &d, e)) < 0) return -1;
    if (k && d <= 0) return rg_api_fail(e, 400, "invalid_value", "repeat_penalty", "'repeat_penalty' must be above 0");
    if (k) sp->repeat_penalty = (float)d;
    if ((k = get_int(root, "repeat_last_n", -1, 1 << 20, &ll, e)) < 0) return -1;
    if (k) sp->repeat_last_n = (int)ll;
    /* seed: integers exactly representable in JSON numbers; negative = random */
    if ((k = get_int(root, "seed", -9007199254740992.0, 9007199254740992.0, &ll, e)) < 0) return -1;
    if (k && ll >= 0) sp->seed = (uint64_t)ll;
    return 0;
}

int rg_api_parse_request(const char *body, size_t len, int chat, const rg_api_limits *lim, rg_api_request *r,
                         rg_api_error *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    cJSON *root = parse_object(body, len, e);
    if (!root) return -1;
    int rc = -1;
    long long ll;
    int k;
    if (check_model(root, lim, e)) goto out;
    if (chat ? parse_messages(root, r, e) : parse_prompt(root, lim, r, e)) goto out;
    r->max_tokens = lim->max_tokens;
    /* max_tokens (OpenAI), max_completion_tokens (newer OpenAI), n_predict (llama-server) */
    static const char *const max_names[] = {"max_tokens", "max_completion_tokens", "n_predict"};
    for (int i = 0; i < 3; i++) {
        if ((k = get_int(root, max_names[i], -1e18, 1e18, &ll, e)) < 0) goto out;
        if (!k) continue;
        if (ll < 1 || ll > lim->max_tokens) {
            rg_api_fail(e, 400, "invalid_value", max_names[i], "'%s' must be between 1 and %d (got %lld)",
                        max_names[i], lim->max_tokens, ll);
            goto out;
        }
        r->max_tokens = (int)ll;
    }
    if ((k = get_int(root, "n", -1e18, 1e18, &ll, e)) < 0) goto out;
    if (k && ll != 1) {
        rg_api_fail(e, 400, "invalid_value", "n", "only n=1 is supported");
        goto out;
    }
    int flag = 0;
    if (get_bool(root, "logprobs", &flag, e) < 0) goto out;
    if (flag) {
        rg_api_fail(e, 400, "unsupported_parameter", "logprobs", "'logprobs' is not supported");
        goto out;
    }
    if (get_bool(root, "stream", &r->stream, e) < 0 || get_bool(root, "ignore_eos", &r->ignore_eos, e) < 0) goto out;
    const cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so)) {
            rg_api_fail(e, 400, "invalid_type", "stream_options", "'stream_options' must be an object");
            goto out;
        }
        if (get_bool(so, "include_usage", &r->include_usage, e) < 0) goto out;
    }
    r->parse_special = !chat;
    if (get_bool(root, "parse_special", &r->parse_special, e) < 0) goto out;
    if (parse_stop(root, r, e)) goto out;
    if (parse_sampling(root, lim, r, e)) goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc) rg_api_request_free(r);
    return rc;
}

void rg_api_request_free(rg_api_request *r) {
    for (int i = 0; i < r->n_turns; i++) free(r->turns[i].text);
    free(r->turns);
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

int rg_api_parse_tokenize(const char *body, size_t len, rg_api_tokenize_req *r, rg_api_error *e) {
    memset(r, 0, sizeof *r);
    cJSON *root = parse_object(body, len, e);
    if (!root) return -1;
    int rc = -1;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "content");
    if (!c) {
        rg_api_fail(e, 400, "missing_field", "content", "'content' is required");
        goto out;
    }
    if (!cJSON_IsString(c)) {
        rg_api_fail(e, 400, "invalid_type", "content", "'content' must be a string");
        goto out;
    }
    r->parse_special = 1;
    if (get_bool(root, "add_special", &r->add_special, e) < 0 || get_bool(root, "with_pieces", &r->with_pieces, e) < 0 ||
        get_bool(root, "parse_special", &r->parse_special, e) < 0)
        goto out;
    r->len = strlen(c->valuestring);
    r->content = dup_bytes(c->valuestring, r->len);
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int rg_api_parse_detokenize(const char *body, size_t len, int vocab, int32_t **ids, int *n, rg_api_error *e) {
    cJSON *root = parse_object(body, len, e);
    if (!root) return -1;
    int rc = -1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    if (!t)
        rg_api_fail(e, 400, "missing_field", "tokens", "'tokens' is required");
    else if (!cJSON_IsArray(t))
        rg_api_fail(e, 400, "invalid_type", "tokens", "'tokens' must be a list of token ids");
    else
        rc = parse_id_list(t, "tokens", vocab, ids, n, e);
    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------- chat format */

int rg_tokens_append(const rg_tokenizer *t, const char *text, size_t len, int32_t **ids, int *n) {
    return rg_tokens_append_ex(t, text, len, 1, ids, n);
}

int rg_tokens_append_ex(const rg_tokenizer *t, const char *text, size_t len, int parse_special, int32_t **ids, int *n) {
    if (len == 0) return 0;
    int32_t *add;
    size_t n_add;
    if (rg_tokenize_ex(t, text, len, 0, 0, parse_special, &add, &n_add)) return -1;
    *ids = rg_xrealloc(*ids, sizeof **ids * ((size_t)*n + n_add + 1));
    memcpy(*ids + *n, add, sizeof *add * n_add);
    *n += (int)n_add;
    free(add);
    return 0;
}

static int push_id(int32_t id, int32_t **ids, int *n) {
    *ids = rg_xrealloc(*ids, sizeof **ids * ((size_t)*n + 1));
    (*ids)[(*n)++] = id;
    return 0;
}

static int turn_ids(const rg_tokenizer *t, int32_t *sot, int32_t *eot) {
    *sot = rg_tokenizer_piece_id(t, "<start_of_turn>");
    *eot = rg_tokenizer_piece_id(t, "<end_of_turn>");
    if (*sot < 0 || *eot < 0)
        return rg_error("chat: the tokenizer has no <start_of_turn>/<end_of_turn> pieces (not a Gemma tokenizer)");
    return 0;
}

/* <start_of_turn>{role}\n{text} */
static int open_turn(const rg_tokenizer *t, int model, const char *text, size_t len, int parse_special, int32_t **ids,
                     int *n) {
    int32_t sot, eot;
    if (turn_ids(t, &sot, &eot)) return -1;
    const char *role = model ? "model\n" : "user\n";
    size_t rl = strlen(role);
    char *s = rg_xmalloc(rl + len + 1);
    memcpy(s, role, rl);
    memcpy(s + rl, text, len);
    push_id(sot, ids, n);
    int rc = rg_tokens_append_ex(t, s, rl + len, parse_special, ids, n);
    free(s);
    return rc;
}

int rg_chat_append_turn_end(const rg_tokenizer *t, int32_t **ids, int *n) {
    int32_t sot, eot;
    if (turn_ids(t, &sot, &eot)) return -1;
    push_id(eot, ids, n);
    return rg_tokens_append(t, "\n", 1, ids, n);
}

static int closed_turn(const rg_tokenizer *t, int model, const char *text, size_t len, int parse_special,
                       int32_t **ids, int *n) {
    if (open_turn(t, model, text, len, parse_special, ids, n)) return -1;
    return rg_chat_append_turn_end(t, ids, n);
}

int rg_chat_append_turn(const rg_tokenizer *t, int model, const char *text, size_t len, int32_t **ids, int *n) {
    return closed_turn(t, model, text, len, 0, ids, n);
}

int rg_chat_append_reply_start(const rg_tokenizer *t, int32_t **ids, int *n) {
    return open_turn(t, 1, "", 0, 0, ids, n);
}

int rg_chat_tokens(const rg_tokenizer *t, const rg_api_turn *turns, int n_turns, int open_last, int32_t **ids,
                   int *n_ids) {
    return rg_chat_tokens_ex(t, turns, n_turns, open_last, 0, ids, n_ids);
}

int rg_chat_tokens_ex(const rg_tokenizer *t, const rg_api_turn *turns, int n_turns, int open_last, int parse_special,
                      int32_t **ids, int *n_ids) {
    int32_t *v = NULL;
    int n = 0;
    push_id(rg_tokenizer_bos(t), &v, &n);
    for (int i = 0; i < n_turns; i++) {
        const rg_api_turn *tu = &turns[i];
        size_t len = strlen(tu->text);
        int rc = i == n_turns - 1 && open_last ? open_turn(t, tu->model, tu->text, len, parse_special, &v, &n)
                                               : closed_turn(t, tu->model, tu->text, len, parse_special, &v, &n);
        if (rc) {
            free(v);
            return -1;
        }
    }
    *ids = v;
    *n_ids = n;
    return 0;
}

/* ---------------------------------------------------------------- responses */

static void add_meta(cJSON *o, const char *object, const rg_api_meta *m) {
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON_AddStringToObject(o, "model", m->model);
    cJSON_AddStringToObject(o, "system_fingerprint", "rgemma-" RG_VERSION);
}

/* milliseconds and rates to 3 decimals: enough, and short in JSON */
static double round3(double x) { return round(x * 1000) / 1000; }

/* usage as OpenAI writes it, and timings as llama-server writes them */
static void add_usage(cJSON *o, const rg_api_result *r) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", r->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", r->prompt_tokens + r->completion_tokens);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", r->cached_tokens);
    cJSON *t = cJSON_AddObjectToObject(o, "timings");
    int processed = r->prompt_tokens - r->cached_tokens;
    cJSON_AddNumberToObject(t, "cache_n", r->cached_tokens);
    cJSON_AddNumberToObject(t, "prompt_n", processed);
    cJSON_AddNumberToObject(t, "prompt_ms", round3(r->prompt_ms));
    cJSON_AddNumberToObject(t, "prompt_per_second", r->prompt_ms > 0 ? round3(processed * 1000.0 / r->prompt_ms) : 0);
    cJSON_AddNumberToObject(t, "predicted_n", r->completion_tokens);
    cJSON_AddNumberToObject(t, "predicted_ms", round3(r->predicted_ms));
    cJSON_AddNumberToObject(t, "predicted_per_second",
                            r->predicted_ms > 0 ? round3(r->completion_tokens * 1000.0 / r->predicted_ms) : 0);
}

/* cJSON strings end at NUL; generated text may hold U+0000, so cut there */
static cJSON *text_value(const char *s, size_t len) {
    char *d = dup_bytes(s, len);
    cJSON *v = cJSON_CreateString(d);
    free(d);
    return v;
}

static char *print_free(cJSON *root) {
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

char *rg_api_completion_json(int chat, const rg_api_meta *m, const rg_api_result *r) {
    cJSON *root = cJSON_CreateObject();
    add_meta(root, chat ? "chat.completion" : "text_completion", m);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) {
        cJSON *msg = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        cJSON_AddItemToObject(msg, "content", text_value(r->text, r->len));
    } else {
        cJSON_AddItemToObject(c, "text", text_value(r->text, r->len));
    }
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", r->finish);
    add_usage(root, r);
    return print_free(root);
}

char *rg_api_chunk_json(int chat, const rg_api_meta *m, const char *text, size_t len, int role, const char *finish,
                        const rg_api_result *usage, int no_choices) {
    cJSON *root = cJSON_CreateObject();
    add_meta(root, chat ? "chat.completion.chunk" : "text_completion", m);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    if (!no_choices) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddItemToArray(choices, c);
        cJSON_AddNumberToObject(c, "index", 0);
        if (chat) {
            cJSON *d = cJSON_AddObjectToObject(c, "delta");
            if (role) cJSON_AddStringToObject(d, "role", "assistant");
            if (len || role) cJSON_AddItemToObject(d, "content", text_value(text, len));
        } else {
            cJSON_AddItemToObject(c, "text", text_value(text, len));
        }
        cJSON_AddNullToObject(c, "logprobs");
        if (finish)
            cJSON_AddStringToObject(c, "finish_reason", finish);
        else
            cJSON_AddNullToObject(c, "finish_reason");
    }
    if (usage) add_usage(root, usage);
    return print_free(root);
}
