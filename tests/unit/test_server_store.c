/* The shared state store of rgemma serve (src/server/store.c) without a
 * real Redis: URL parsing, keys, a Redis that is down (no request waits on
 * it, failures are counted, writes complete their tickets), and a fake Redis
 * that answers with values that cannot be states (refused by type, size,
 * header and checksum before the lookup returns them). The real Redis is
 * tested by tests/cli/cluster.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "model/state.h"
#include "server/store.h"
#include "util/util.h"

#define MODEL "tests/data/golden/dev_4layer"

static int setup(void **st) {
    rg_model *m;
    if (rg_model_load(MODEL, &m)) return -1;
    *st = m;
    return 0;
}

static int teardown(void **st) {
    rg_model_free(*st);
    return 0;
}

static void test_parse_url(void **st) {
    char host[64];
    int port, db;
    assert_int_equal(rg_store_parse_url("redis://127.0.0.1:6379", host, sizeof host, &port, &db), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6379);
    assert_int_equal(db, 0);
    assert_int_equal(rg_store_parse_url("redis://cache-1.example:7000/3", host, sizeof host, &port, &db), 0);
    assert_string_equal(host, "cache-1.example");
    assert_int_equal(db, 3);
    assert_int_equal(rg_store_parse_url("redis://[::1]:6380", host, sizeof host, &port, &db), 0);
    assert_string_equal(host, "::1");
    const char *bad[] = {"http://h:1", "redis://h", "redis://:1", "redis://h:0", "redis://h:65536", "redis://h:1/",
                         "redis://h:1/x", "redis://h:1x", "redis://[::1:1", "redis://h h:1", "redis://h:1/2/3", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(rg_store_parse_url(bad[i], host, sizeof host, &port, &db), -1);
        assert_non_null(strstr(rg_last_error(), "serve: --state-store"));
    }
}

/* a port nothing listens on: bound, then closed */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Keys differ by prefix and by model; lookups and writes against a closed
 * port fail fast, are counted, and the next ones are skipped (backoff). */
static void test_redis_down(void **st) {
    const rg_model *m = *st;
    rg_model *other;
    assert_int_equal(rg_model_load("tests/data/golden/dev_6layer", &other), 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", closed_port());
    rg_store *s = rg_store_new(url, m, 60), *so = rg_store_new(url, other, 60);
    assert_non_null(s);
    int32_t t[8] = {2, 5, 9, 4, 5, 9, 7, 1}; /* 5: the turn boundary */
    char k1[RG_STORE_KEY_MAX], k2[RG_STORE_KEY_MAX], k3[RG_STORE_KEY_MAX];
    rg_store_key(s, t, 4, k1);
    rg_store_key(s, t, 5, k2);
    rg_store_key(so, t, 4, k3);
    assert_string_not_equal(k1, k2);
    assert_string_not_equal(k1, k3);
    assert_non_null(strstr(k1, "rgemma:" RG_VERSION ":"));

    uint8_t *blob;
    size_t len;
    double t0 = rg_time_s();
    assert_int_equal(rg_store_lookup(s, t, 7, 0, 5, 8, &blob, &len), 0);
    assert_int_equal(rg_store_lookup(s, t, 7, 0, 5, 8, &blob, &len), 0);
    assert_null(blob);
    assert_true(rg_time_s() - t0 < 1.0);
    /* every boundary opens a model turn (5 then 9): no candidate, Redis not asked */
    assert_int_equal(rg_store_lookup(s, t, 7, 0, 5, 9, &blob, &len), 0);
    rg_state *state = rg_state_new(m);
    uint64_t ticket = rg_store_put(s, t, 4, 0, state);
    assert_true(ticket > 0);
    rg_store_wait(s, ticket, 5);
    rg_store_stats ss;
    rg_store_get_stats(s, &ss);
    assert_int_equal(ss.up, 0);
    assert_int_equal(ss.errors, 1);  /* the first connect */
    assert_int_equal(ss.skipped, 2); /* the second lookup and the write, within the backoff */
    assert_int_equal(ss.misses, 2);
    assert_int_equal(ss.writes, 0);
    rg_state_free(state);
    rg_store_free(s, 1);
    rg_store_free(so, 1);
    rg_model_free(other);
}

/* ---- a fake Redis: EXISTS answers `exists`, GET answers `get`, then,
 * with `flood`, bytes without end until the client hangs up (`sent`) */

typedef struct {
    int fd;
    const char *exists;
    const char *get;
    size_t get_len;
    int flood;
    size_t sent;
} fake;

static void *fake_main(void *arg) {
    fake *f = arg;
    int c = accept(f->fd, NULL, NULL);
    if (c < 0) return NULL;
    char buf[65536];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf - 1)) > 0) {
        buf[n] = 0;
        for (char *p = buf; (p = strstr(p, "EXISTS\r\n")); p += 8)
            if (write(c, f->exists, strlen(f->exists)) < 0) break;
        if (!strstr(buf, "$3\r\nGET\r\n")) continue;
        if (write(c, f->get, f->get_len) < 0) break;
        static const char chunk[65536];
        ssize_t w;
        while (f->flood && (w = send(c, chunk, sizeof chunk, MSG_NOSIGNAL)) > 0) f->sent += (size_t)w;
    }
    close(c);
    return NULL;
}

static int fake_start(fake *f, pthread_t *th) {
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->fd, 4), 0);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&a, &len), 0);
    assert_int_equal(pthread_create(th, NULL, fake_main, f), 0);
    return ntohs(a.sin_port);
}

/* a lookup against the fake; returns the bytes it flooded */
static size_t lookup_fake(const rg_model *m, const char *exists, const char *get, size_t get_len, int flood,
                          int want_prefix, int want_errors, uint8_t **blob, size_t *len) {
    fake f = {0, exists, get, get_len, flood, 0};
    pthread_t th;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", fake_start(&f, &th));
    rg_store *s = rg_store_new(url, m, 60);
    int32_t t[8] = {2, 5, 9, 4, 5, 9, 7, 1};
    assert_int_equal(rg_store_lookup(s, t, 7, 0, 5, 8, blob, len), want_prefix);
    rg_store_stats ss;
    rg_store_get_stats(s, &ss);
    assert_int_equal(ss.errors, want_errors);
    rg_store_free(s, 1);
    shutdown(f.fd, SHUT_RDWR);
    close(f.fd);
    pthread_join(th, NULL);
    return f.sent;
}

static void test_untrusted_replies(void **st) {
    const rg_model *m = *st;
    uint8_t *blob;
    size_t len;
    /* a string that is not a state: refused by its header */
    const char junk[] = "$10\r\n0123456789\r\n";
    lookup_fake(m, ":1\r\n", junk, sizeof junk - 1, 0, 0, 1, &blob, &len);
    assert_null(blob);
    rg_state *s = rg_state_new(m);
    /* a string longer than any state of this model: refused without a copy */
    size_t big = rg_state_file_bytes(rg_model_config(m)) + 1;
    char *huge = rg_xmalloc(big + 32);
    int h = snprintf(huge, 32, "$%zu\r\n", big);
    memset(huge + h, 'x', big);
    memcpy(huge + h + big, "\r\n", 2);
    lookup_fake(m, ":1\r\n", huge, (size_t)h + big + 2, 0, 0, 1, &blob, &len);
    assert_null(blob);
    free(huge);
    /* a string announced longer than memory, its bytes without end: the
     * connection is dropped once the reply buffers more than a state (and
     * the socket buffers hold a few MB), not after the 2 s command timeout
     * (gigabytes on loopback) */
    const char endless[] = "$999999999999\r\n";
    size_t flooded = lookup_fake(m, ":1\r\n", endless, sizeof endless - 1, 1, 0, 1, &blob, &len);
    assert_null(blob);
    assert_true(flooded < big + ((size_t)64 << 20));
    /* EXISTS answered with a status, GET with an integer */
    lookup_fake(m, "+OK\r\n", ":3\r\n", 4, 0, 0, 1, &blob, &len);
    lookup_fake(m, ":1\r\n", ":3\r\n", 4, 0, 0, 1, &blob, &len);
    /* a real state blob comes through and reads back */
    int32_t ids[3] = {1, 2, 3};
    assert_int_equal(rg_forward(m, s, ids, 3, NULL, 0), 0);
    size_t n = rg_state_blob_bytes(s);
    char *reply = rg_xmalloc(n + 32);
    h = snprintf(reply, 32, "$%zu\r\n", n);
    rg_state_blob_write(s, (uint8_t *)reply + h);
    /* unsealed (no checksum): refused */
    memcpy(reply + h + n, "\r\n", 2);
    lookup_fake(m, ":1\r\n", reply, (size_t)h + n + 2, 0, 0, 1, &blob, &len);
    assert_null(blob);
    rg_state_blob_seal((uint8_t *)reply + h, n);
    lookup_fake(m, ":1\r\n", reply, (size_t)h + n + 2, 0, 4, 0, &blob, &len);
    rg_state *back = rg_state_new(m);
    assert_int_equal(rg_state_blob_read(back, blob, len, "state store"), 0);
    assert_int_equal(rg_state_pos(back), 3);
    free(blob);
    free(reply);
    rg_state_free(back);
    rg_state_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_redis_down),
        cmocka_unit_test(test_untrusted_replies),
    };
    return cmocka_run_group_tests_name("server_store", tests, setup, teardown);
}
