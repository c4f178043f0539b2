/* The JSON layer of rgemma serve (src/server/api.c): request validation and
 * its error objects, UTF-8 checking, the chat format (the same ids as
 * rg_chat_turn) and the response objects. */
#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "server/api.h"

static const rg_api_limits lim = {"tiny", 64, 1000};

static int parse(const char *body, int chat, rg_api_request *r, rg_api_error *e) {
    return rg_api_parse_request(body, strlen(body), chat, &lim, r, e);
}

/* body must be refused with status, code and (if not NULL) param */
static void refused(const char *body, int chat, int status, const char *code, const char *param) {
    rg_api_request r;
    rg_api_error e;
    memset(&e, 0, sizeof e);
    if (parse(body, chat, &r, &e) != -1) fail_msg("accepted: %s", body);
    if (e.status != status || strcmp(e.code, code)) fail_msg("%s: got %d %s (%s)", body, e.status, e.code, e.message);
    if (param) assert_string_equal(e.param, param);
    assert_true(strlen(e.message) > 0);
}

static void test_utf8(void **st) {
    (void)st;
    assert_int_equal(rg_utf8_check("plain", 5), -1);
    assert_int_equal(rg_utf8_check("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14), -1);
    assert_int_equal(rg_utf8_check("a\xff", 2), 1);            /* never a lead byte */
    assert_int_equal(rg_utf8_check("ab\xc0\xaf", 4), 2);       /* overlong '/' */
    assert_int_equal(rg_utf8_check("\xe0\x80\xaf", 3), 0);     /* overlong, 3 bytes */
    assert_int_equal(rg_utf8_check("x\xed\xa0\x80", 4), 1);    /* surrogate U+D800 */
    assert_int_equal(rg_utf8_check("\xf4\x90\x80\x80", 4), 0); /* above U+10FFFF */
    assert_int_equal(rg_utf8_check("ok\xe2\x82", 4), 2);       /* cut short */
    assert_int_equal(rg_utf8_check("\x80", 1), 0);             /* lone continuation */
    assert_int_equal(rg_utf8_check("nul\0ok", 6), -1);         /* U+0000 is valid */
}

static void test_chat_request(void **st) {
    (void)st;
    rg_api_request r;
    rg_api_error e;
    const char *body = "{\"model\":\"tiny\",\"messages\":["
                       "{\"role\":\"system\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
                       "{\"role\":\"assistant\",\"content\":\"ok\"},"
                       "{\"role\":\"developer\",\"content\":\"Later rule.\"},"
                       "{\"role\":\"user\",\"content\":\"c\"}],"
                       "\"max_tokens\":10,\"temperature\":0,\"top_p\":0.5,\"top_k\":3,\"seed\":99,"
                       "\"stop\":[\"x\",\"\",\"yz\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                       "\"presence_penalty\":0.5,\"n\":1,\"logprobs\":false,\"user\":\"ignored\"}";
    assert_int_equal(parse(body, 1, &r, &e), 0);
    assert_int_equal(r.n_turns, 3);
    assert_int_equal(r.turns[0].model, 0);
    assert_string_equal(r.turns[0].text, "Be brief.\n\na\nb"); /* system folded into the next user turn */
    assert_int_equal(r.turns[1].model, 1);
    assert_string_equal(r.turns[1].text, "ok");
    assert_string_equal(r.turns[2].text, "Later rule.\n\nc");
    assert_int_equal(r.open_model_turn, 0);
    assert_int_equal(r.max_tokens, 10);
    assert_true(r.sampling.temperature == 0.0f && r.sampling.top_p == 0.5f && r.sampling.top_k == 3);
    assert_true(r.sampling.presence_penalty == 0.5f);
    assert_int_equal(r.sampling.seed, 99);
    assert_int_equal(r.n_stop, 2); /* the empty stop string is dropped */
    assert_string_equal(r.stop[1], "yz");
    assert_true(r.stream && r.include_usage);
    rg_api_request_free(&r);

    /* defaults: llama.cpp's sampling, the server's token cap; a trailing
     * assistant message is continued; a lone system message is a user turn */
    assert_int_equal(parse("{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                           "{\"role\":\"assistant\",\"content\":\"Once\"}]}", 1, &r, &e), 0);
    assert_int_equal(r.n_turns, 2);
    assert_string_equal(r.turns[0].text, "S");
    assert_int_equal(r.turns[0].model, 0);
    assert_int_equal(r.open_model_turn, 1);
    assert_int_equal(r.max_tokens, 64);
    rg_sampling_params d;
    rg_sampling_params_default(&d);
    assert_memory_equal(&r.sampling, &d, sizeof d);
    assert_false(r.stream);
    rg_api_request_free(&r);
}

static void test_completion_request(void **st) {
    (void)st;
    rg_api_request r;
    rg_api_error e;
    assert_int_equal(parse("{\"prompt\":\"hello\",\"n_predict\":5,\"stop\":\"\\n\"}", 0, &r, &e), 0);
    assert_string_equal(r.prompt, "hello");
    assert_int_equal(r.max_tokens, 5);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "\n");
    rg_api_request_free(&r);
    assert_int_equal(parse("{\"prompt\":[\"one\"]}", 0, &r, &e), 0);
    assert_string_equal(r.prompt, "one");
    rg_api_request_free(&r);
    assert_int_equal(parse("{\"prompt\":[[2,17,999]]}", 0, &r, &e), 0);
    assert_int_equal(r.n_prompt_ids, 3);
    assert_int_equal(r.prompt_ids[2], 999);
    rg_api_request_free(&r);
}

static void test_bad_requests(void **st) {
    (void)st;
    const char *m = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[512];
    refused("", 1, 400, "invalid_json", NULL);
    refused("{\"messages\":", 1, 400, "invalid_json", NULL);
    refused("{} {}", 1, 400, "invalid_json", NULL);
    refused("\"text\"", 1, 400, "invalid_json", NULL);
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"\\udc00\"}]}", 1, 400, "invalid_json", NULL);
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}", 1, 400, "invalid_utf8", NULL);
    refused("{}", 1, 400, "missing_field", "messages");
    refused("{\"messages\":{}}", 1, 400, "invalid_type", "messages");
    refused("{\"messages\":[]}", 1, 400, "invalid_value", "messages");
    refused("{\"messages\":[\"hi\"]}", 1, 400, "invalid_type", "messages");
    refused("{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", 1, 400, "invalid_value", "messages");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 1, 400, "invalid_type", "messages");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 1, 400,
            "unsupported_content", "messages");
    static const struct {
        const char *extra, *code, *param;
        int status;
    } cases[] = {
        {"\"model\":\"other\"", "model_not_found", "model", 404},
        {"\"model\":[]", "invalid_type", "model", 400},
        {"\"max_tokens\":-1", "invalid_value", "max_tokens", 400},
        {"\"max_tokens\":0", "invalid_value", "max_tokens", 400},
        {"\"max_tokens\":65", "invalid_value", "max_tokens", 400},
        {"\"max_tokens\":1e300", "invalid_value", "max_tokens", 400},
        {"\"max_tokens\":2.5", "invalid_type", "max_tokens", 400},
        {"\"max_tokens\":\"8\"", "invalid_type", "max_tokens", 400},
        {"\"max_completion_tokens\":100", "invalid_value", "max_completion_tokens", 400},
        {"\"temperature\":3", "invalid_value", "temperature", 400},
        {"\"temperature\":true", "invalid_type", "temperature", 400},
        {"\"top_p\":-0.1", "invalid_value", "top_p", 400},
        {"\"top_k\":1001", "invalid_value", "top_k", 400},
        {"\"min_p\":2", "invalid_value", "min_p", 400},
        {"\"repeat_penalty\":0", "invalid_value", "repeat_penalty", 400},
        {"\"frequency_penalty\":-3", "invalid_value", "frequency_penalty", 400},
        {"\"seed\":0.5", "invalid_type", "seed", 400},
        {"\"n\":3", "invalid_value", "n", 400},
        {"\"logprobs\":true", "unsupported_parameter", "logprobs", 400},
        {"\"stream\":1", "invalid_type", "stream", 400},
        {"\"stream_options\":true", "invalid_type", "stream_options", 400},
        {"\"stop\":7", "invalid_type", "stop", 400},
        {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]",
         "invalid_value", "stop", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(b, sizeof b, "{%s,%s}", m, cases[i].extra);
        refused(b, 1, cases[i].status, cases[i].code, cases[i].param);
    }
    refused("{\"prompt\":5}", 0, 400, "invalid_type", "prompt");
    refused("{\"prompt\":[1,1000]}", 0, 400, "invalid_value", "prompt");
    refused("{\"prompt\":[1,-1]}", 0, 400, "invalid_value", "prompt");
    refused("{\"prompt\":[]}", 0, 400, "invalid_value", "prompt");
    refused("{\"prompt\":[\"a\",\"b\"]}", 0, 400, "invalid_value", "prompt");
    refused("{\"max_tokens\":3}", 0, 400, "missing_field", "prompt");
}

static void test_error_json(void **st) {
    (void)st;
    rg_api_error e;
    assert_int_equal(rg_api_fail(&e, 400, "invalid_value", "top_p", "'%s' is \"bad\"", "top_p"), -1);
    char *s = rg_api_error_json(&e);
    cJSON *root = cJSON_Parse(s), *err = cJSON_GetObjectItem(root, "error");
    assert_string_equal(cJSON_GetObjectItem(err, "message")->valuestring, "'top_p' is \"bad\"");
    assert_string_equal(cJSON_GetObjectItem(err, "type")->valuestring, "invalid_request_error");
    assert_string_equal(cJSON_GetObjectItem(err, "param")->valuestring, "top_p");
    assert_string_equal(cJSON_GetObjectItem(err, "code")->valuestring, "invalid_value");
    cJSON_Delete(root);
    free(s);
    rg_api_fail(&e, 503, "overloaded", NULL, "busy");
    s = rg_api_error_json(&e);
    root = cJSON_Parse(s);
    err = cJSON_GetObjectItem(root, "error");
    assert_string_equal(cJSON_GetObjectItem(err, "type")->valuestring, "server_error");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(err, "param")));
    cJSON_Delete(root);
    free(s);
}

static void test_tokenize_requests(void **st) {
    (void)st;
    rg_api_tokenize_req t;
    rg_api_error e;
    /* a NUL would cut the text: refused, whether escaped or raw */
    const char *b = "{\"content\":\"a\\u0000b\",\"add_special\":true}";
    assert_int_equal(rg_api_parse_tokenize(b, strlen(b), &t, &e), -1);
    assert_int_equal(e.status, 400);
    assert_non_null(strstr(e.message, "NUL"));
    assert_int_equal(rg_api_parse_tokenize("{\"content\":\"a\0b\"}", 17, &t, &e), -1);
    assert_int_equal(e.status, 400);
    /* an escaped backslash before u0000 is not a NUL */
    b = "{\"content\":\"a\\\\u0000b\",\"add_special\":true}";
    assert_int_equal(rg_api_parse_tokenize(b, strlen(b), &t, &e), 0);
    assert_string_equal(t.content, "a\\u0000b");
    assert_true(t.add_special && !t.with_pieces && t.parse_special);
    free(t.content);
    b = "{\"content\":null}";
    assert_int_equal(rg_api_parse_tokenize(b, strlen(b), &t, &e), -1);
    assert_string_equal(e.code, "invalid_type");
    int32_t *ids;
    int n;
    b = "{\"tokens\":[0,5,999]}";
    assert_int_equal(rg_api_parse_detokenize(b, strlen(b), 1000, &ids, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[2], 999);
    free(ids);
    b = "{\"tokens\":[0,1000]}";
    assert_int_equal(rg_api_parse_detokenize(b, strlen(b), 1000, &ids, &n, &e), -1);
    assert_string_equal(e.param, "tokens");
}

/* The chat ids equal rg_chat_turn's (the CLI's chat) for the same turn, and a
 * conversation's ids are a prefix of those of any continuation. */
static void test_chat_format(void **st) {
    (void)st;
    rg_tokenizer *t;
    assert_int_equal(rg_tokenizer_load("tests/data/tokenizer/small_bpe.model", &t), 0);
    rg_api_turn turns[3] = {{0, "System says hi.\n\nWhat is the GPL?"}, {1, "A license."}, {0, "Which version?"}};
    int32_t *ids = NULL, *ref;
    int n = 0;
    size_t n_ref;
    assert_int_equal(rg_chat_tokens(t, turns, 1, 0, &ids, &n), 0);
    assert_int_equal(rg_chat_append_reply_start(t, &ids, &n), 0);
    assert_int_equal(rg_chat_turn(t, "System says hi.", "What is the GPL?", 1, -1, &ref, &n_ref), 0);
    assert_int_equal((size_t)n, n_ref);
    assert_memory_equal(ids, ref, n_ref * sizeof *ref);
    free(ref);
    assert_int_equal(ids[0], rg_tokenizer_bos(t));
    assert_int_equal(ids[1], rg_tokenizer_piece_id(t, "<start_of_turn>"));
    int n1 = n;
    int32_t *ids3 = NULL;
    int n3 = 0;
    assert_int_equal(rg_chat_tokens(t, turns, 3, 0, &ids3, &n3), 0);
    /* turn 1 (without the reply start) and the closed model turn are a prefix */
    int n_closed1 = 0;
    int32_t *c1 = NULL;
    assert_int_equal(rg_chat_tokens(t, turns, 1, 0, &c1, &n_closed1), 0);
    assert_int_equal(rg_chat_append_turn(t, 1, "A license.", 10, &c1, &n_closed1), 0);
    assert_true(n_closed1 < n3 && n1 < n_closed1);
    assert_memory_equal(c1, ids3, sizeof *c1 * (size_t)n_closed1);
    /* an open last turn: no <end_of_turn> after it */
    int32_t *open = NULL;
    int n_open = 0;
    assert_int_equal(rg_chat_tokens(t, turns, 2, 1, &open, &n_open), 0);
    assert_int_not_equal(open[n_open - 1], rg_tokenizer_piece_id(t, "<end_of_turn>"));
    assert_memory_equal(open, c1, sizeof *open * (size_t)n_open);
    assert_int_equal(c1[n_open], rg_tokenizer_piece_id(t, "<end_of_turn>"));
    free(ids);
    free(ids3);
    free(c1);
    free(open);
    rg_tokenizer_free(t);
}

static cJSON *parse_free(char *s) {
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    free(s);
    return j;
}

static void test_responses(void **st) {
    (void)st;
    rg_api_meta meta = {"chatcmpl-1", 1700000000, "tiny"};
    rg_api_result res = {"Hi \"there\"\n", 11, "stop", 20, 15, 3, 2.0, 4.0};
    cJSON *j = parse_free(rg_api_completion_json(1, &meta, &res));
    assert_string_equal(cJSON_GetObjectItem(j, "object")->valuestring, "chat.completion");
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "message"), "content")->valuestring,
                        "Hi \"there\"\n");
    assert_string_equal(cJSON_GetObjectItem(c, "finish_reason")->valuestring, "stop");
    cJSON *u = cJSON_GetObjectItem(j, "usage");
    assert_int_equal(cJSON_GetObjectItem(u, "total_tokens")->valueint, 23);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(u, "prompt_tokens_details"), "cached_tokens")->valueint, 15);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "timings"), "prompt_n")->valueint, 5);
    cJSON_Delete(j);

    j = parse_free(rg_api_completion_json(0, &meta, &res));
    assert_string_equal(cJSON_GetObjectItem(j, "object")->valuestring, "text_completion");
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c, "text")->valuestring, "Hi \"there\"\n");
    cJSON_Delete(j);

    /* chunks: the first carries the role, the last the finish reason and usage */
    j = parse_free(rg_api_chunk_json(1, &meta, "", 0, 1, NULL, NULL, 0));
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "delta"), "role")->valuestring, "assistant");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(c, "finish_reason")));
    assert_string_equal(cJSON_GetObjectItem(j, "object")->valuestring, "chat.completion.chunk");
    cJSON_Delete(j);
    j = parse_free(rg_api_chunk_json(1, &meta, "abc", 2, 0, NULL, NULL, 0));
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "delta"), "content")->valuestring, "ab");
    assert_null(cJSON_GetObjectItem(j, "usage"));
    cJSON_Delete(j);
    j = parse_free(rg_api_chunk_json(1, &meta, "", 0, 0, "length", &res, 0));
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "delta"), "content"));
    assert_string_equal(cJSON_GetObjectItem(c, "finish_reason")->valuestring, "length");
    assert_non_null(cJSON_GetObjectItem(j, "usage"));
    cJSON_Delete(j);
    j = parse_free(rg_api_chunk_json(1, &meta, NULL, 0, 0, NULL, &res, 1));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "choices")), 0);
    assert_non_null(cJSON_GetObjectItem(j, "usage"));
    cJSON_Delete(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),          cmocka_unit_test(test_chat_request),
        cmocka_unit_test(test_completion_request), cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_error_json),    cmocka_unit_test(test_tokenize_requests),
        cmocka_unit_test(test_chat_format),   cmocka_unit_test(test_responses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
