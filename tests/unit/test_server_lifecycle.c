/* rgemma serve's lifecycle through its public calls, over HTTP (libcurl):
 * listening before the model is attached (/health alive and "loading",
 * /ready and every other endpoint 503), an attach that fails leaves it not
 * ready, a good attach makes it ready; X-Request-Id comes back when it is
 * safe to log; a drain makes /health, /ready and new requests 503. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <unistd.h>

#include "model/synth.h"
#include "util/util.h"

typedef struct {
    char body[4096];
    size_t len;
    char req_id[160];
} answer;

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
    answer *a = ctx;
    size_t k = size * n, room = sizeof a->body - 1 - a->len;
    memcpy(a->body + a->len, p, k < room ? k : room);
    a->len += k < room ? k : room;
    a->body[a->len] = 0;
    return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx) {
    answer *a = ctx;
    size_t k = size * n;
    if (k > 14 && !strncasecmp(p, "X-Request-Id: ", 14))
        snprintf(a->req_id, sizeof a->req_id, "%.*s", (int)(k - 14 - 2), p + 14); /* without \r\n */
    return k;
}

/* HTTP status of GET (post NULL) or POST path; the answer in *a */
static long request(int port, const char *path, const char *post, const char *req_id, answer *a) {
    memset(a, 0, sizeof *a);
    char url[256], hdr[300];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    if (req_id) {
        snprintf(hdr, sizeof hdr, "X-Request-Id: %s", req_id);
        h = curl_slist_append(h, hdr);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    if (post) curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    long status = 0;
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static void test_listen_attach_drain(void **state) {
    (void)state;
    rg_server_opts o;
    rg_server_opts_default(&o);
    o.port = 0;
    o.model_name = "tiny";
    rg_server *s;
    assert_int_equal(rg_server_listen(&o, &s), 0);
    int port = rg_server_port(s);
    answer a;

    /* loading: alive, not ready, nothing else served */
    assert_int_equal(request(port, "/health", NULL, NULL, &a), 200);
    assert_non_null(strstr(a.body, "\"loading\""));
    assert_int_equal(request(port, "/ready", NULL, NULL, &a), 503);
    assert_int_equal(request(port, "/v1/models", NULL, NULL, &a), 503);
    assert_non_null(strstr(a.body, "loading"));
    assert_int_equal(request(port, "/v1/completions", "{\"prompt\":\"Hi\"}", NULL, &a), 503);

    /* a model whose vocabulary the tokenizer does not fit: still not ready */
    rg_tokenizer *tok;
    assert_int_equal(rg_tokenizer_load("tests/data/tokenizer/small_bpe.model", &tok), 0);
    rg_model *small;
    assert_int_equal(rg_model_load("tests/data/golden/dev_4layer", &small), 0);
    assert_int_equal(rg_server_attach(s, small, tok), -1);
    assert_int_equal(request(port, "/ready", NULL, NULL, &a), 503);

    char dir[] = "/tmp/rg-lifecycle-XXXXXX";
    assert_non_null(mkdtemp(dir));
    rg_config c;
    rg_synth_preset("tiny", &c);
    c.vocab_size = 1000; /* small_bpe.model */
    c.hidden_size = c.lru_width = 64;
    c.num_heads = 4;
    c.head_dim = 16;
    c.mlp_width = 128;
    c.window = 32;
    rg_synth_options so = {.dtype = RG_DT_F32, .seed = 3};
    assert_int_equal(rg_synth_write(&c, dir, &so, NULL), 0);
    rg_model *m;
    assert_int_equal(rg_model_load(dir, &m), 0);
    assert_int_equal(rg_server_attach(s, m, tok), 0);
    assert_int_equal(request(port, "/ready", NULL, NULL, &a), 200);
    assert_int_equal(request(port, "/health", NULL, NULL, &a), 200);
    assert_non_null(strstr(a.body, "\"ok\""));
    assert_int_equal(request(port, "/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":3}", "req-42.a_b:c", &a), 200);
    assert_string_equal(a.req_id, "req-42.a_b:c");
    /* ids that are not safe in a log line are not taken */
    assert_int_equal(request(port, "/health", NULL, "two words", &a), 200);
    assert_string_equal(a.req_id, "");
    char long_id[140];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    assert_int_equal(request(port, "/health", NULL, long_id, &a), 200);
    assert_string_equal(a.req_id, "");
    assert_int_equal(rg_server_active(s), 0);

    /* draining: everything new gets 503 at once */
    rg_server_drain(s);
    assert_int_equal(request(port, "/health", NULL, NULL, &a), 503);
    assert_non_null(strstr(a.body, "\"draining\""));
    assert_int_equal(request(port, "/ready", NULL, NULL, &a), 503);
    assert_int_equal(request(port, "/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":3}", NULL, &a), 503);
    assert_non_null(strstr(a.body, "shutting_down"));
    assert_int_equal(rg_server_active(s), 0);

    rg_server_stop(s);
    rg_model_free(m);
    rg_model_free(small);
    rg_tokenizer_free(tok);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_attach_drain),
    };
    int rc = cmocka_run_group_tests_name("server_lifecycle", tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
