/* src/hub and src/util/hash.c: SHA-256 and SHA-1 on the FIPS 180 test
 * vectors (whole and fed in odd pieces), the git blob sha1 the hub names small
 * files by, and the checks that keep server-supplied names out of the file
 * system. The downloads themselves: tests/cli/pull.sh (tests/hub/fake_hub.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "hub/hub.h"
#include "util/hash.h"
#include "util/util.h"

static void sha256_hex(const void *data, size_t n, size_t piece, char out[65]) {
    rg_sha256_ctx c;
    rg_sha256_init(&c);
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i += piece) rg_sha256_update(&c, p + i, n - i < piece ? n - i : piece);
    uint8_t d[32];
    rg_sha256_final(&c, d);
    rg_hex(d, 32, out);
}

static void sha1_hex(const void *data, size_t n, size_t piece, char out[41]) {
    rg_sha1_ctx c;
    rg_sha1_init(&c);
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i += piece) rg_sha1_update(&c, p + i, n - i < piece ? n - i : piece);
    uint8_t d[20];
    rg_sha1_final(&c, d);
    rg_hex(d, 20, out);
}

static void test_sha256(void **state) {
    (void)state;
    static const struct {
        const char *in, *want;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
         "nopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char got[65];
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        for (size_t piece = 1; piece <= 128; piece = piece * 3 + 1) {
            sha256_hex(v[i].in, strlen(v[i].in), piece, got);
            assert_string_equal(got, v[i].want);
        }
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sha256_hex(a, 1000000, 4093, got);
    assert_string_equal(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

static void test_sha1(void **state) {
    (void)state;
    char got[41];
    sha1_hex("", 0, 1, got);
    assert_string_equal(got, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    for (size_t piece = 1; piece <= 64; piece *= 2) {
        sha1_hex("abc", 3, piece, got);
        assert_string_equal(got, "a9993e364706816aba3e25717850c26c9cd0d89d");
        const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        sha1_hex(m, strlen(m), piece, got);
        assert_string_equal(got, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    }
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sha1_hex(a, 1000000, 777, got);
    assert_string_equal(got, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(a);
    /* git hash-object of "hello\n": sha1("blob 6\0hello\n") */
    sha1_hex("blob 6\0hello\n", 13, 5, got);
    assert_string_equal(got, "ce013625030ba8dba906f756967f9e9ca394464a");
}

static void test_names(void **state) {
    (void)state;
    assert_true(rg_hub_valid_repo("google/recurrentgemma-2b-it"));
    assert_true(rg_hub_valid_repo("a/b"));
    assert_true(rg_hub_valid_repo("Org_1/Name.v2"));
    const char *bad_repo[] = {"", "google", "/x", "x/", "a/b/c", "../x", "a/..", "a/.x", "a/-x", "a/b..c",
                              "a--b/c", "a/b c", "a/b\n", "a/b?x", "a\\b/c", "a/b%2f"};
    for (size_t i = 0; i < sizeof bad_repo / sizeof *bad_repo; i++) assert_false(rg_hub_valid_repo(bad_repo[i]));
    char longname[120];
    memset(longname, 'a', sizeof longname);
    longname[0] = 'o', longname[1] = '/', longname[119] = 0;
    assert_false(rg_hub_valid_repo(longname));

    assert_true(rg_hub_valid_rev("main"));
    assert_true(rg_hub_valid_rev("v1.0"));
    assert_true(rg_hub_valid_rev("0123456789abcdef0123456789abcdef01234567"));
    const char *bad_rev[] = {"", "..", "a/b", ".hidden", "-x", "a..b", "x y", "refs/pr/1"};
    for (size_t i = 0; i < sizeof bad_rev / sizeof *bad_rev; i++) assert_false(rg_hub_valid_rev(bad_rev[i]));

    assert_true(rg_hub_valid_weight_name("model-00001-of-00002.safetensors"));
    const char *bad_w[] = {"", ".safetensors", "../model.safetensors", "a/b.safetensors", "model.bin",
                           "model..safetensors", "x.safetensors/", ".x.safetensors", "a b.safetensors",
                           "model.safetensors.json"};
    for (size_t i = 0; i < sizeof bad_w / sizeof *bad_w; i++) assert_false(rg_hub_valid_weight_name(bad_w[i]));

    assert_true(rg_hub_valid_hex("0123456789abcdef0123456789abcdef01234567", 40));
    assert_false(rg_hub_valid_hex("0123456789ABCDEF0123456789abcdef01234567", 40));
    assert_false(rg_hub_valid_hex("0123456789abcdef0123456789abcdef0123456", 40));
    assert_false(rg_hub_valid_hex("../3456789abcdef0123456789abcdef01234567", 40));
}

static void test_etag(void **state) {
    (void)state;
    char out[65];
    const char *sha = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    char q[80];
    snprintf(q, sizeof q, "\"%s\"", sha);
    assert_int_equal(rg_hub_parse_etag(q, out), 0);
    assert_string_equal(out, sha);
    snprintf(q, sizeof q, "W/\"%s\"", "ce013625030ba8dba906f756967f9e9ca394464a");
    assert_int_equal(rg_hub_parse_etag(q, out), 0);
    assert_string_equal(out, "ce013625030ba8dba906f756967f9e9ca394464a");
    assert_int_equal(rg_hub_parse_etag(sha, out), 0); /* unquoted */
    const char *bad[] = {"", "\"\"", "\"abc\"", "\"../../../../../../../../../../etc/passwd0123456789abcd\"",
                         "\"ce013625030ba8dba906f756967f9e9ca394464a-1\"", "\"CE013625030BA8DBA906F756967F9E9CA394464A\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) assert_int_equal(rg_hub_parse_etag(bad[i], out), -1);
}

static void test_cache_dir(void **state) {
    (void)state;
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    char *d = rg_hub_cache_dir();
    assert_string_equal(d, "/home/u/.cache/huggingface/hub");
    free(d);
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    d = rg_hub_cache_dir();
    assert_string_equal(d, "/xdg/huggingface/hub");
    free(d);
    setenv("HF_HOME", "/hf", 1);
    d = rg_hub_cache_dir();
    assert_string_equal(d, "/hf/hub");
    free(d);
    setenv("HF_HUB_CACHE", "/cache", 1);
    d = rg_hub_cache_dir();
    assert_string_equal(d, "/cache");
    free(d);
}

/* bad names are refused before anything touches the network or the disk */
static void test_pull_refuses(void **state) {
    (void)state;
    char out[256];
    setenv("HF_HUB_CACHE", "/nonexistent/rgemma-test-hub", 1);
    setenv("HF_ENDPOINT", "http://127.0.0.1:9", 1);
    assert_int_equal(rg_hub_pull("../etc", NULL, 0, NULL, NULL, out, sizeof out), -1);
    assert_non_null(strstr(rg_last_error(), "not a repository name"));
    assert_int_equal(rg_hub_pull("a/b@../x", NULL, 0, NULL, NULL, out, sizeof out), -1);
    assert_non_null(strstr(rg_last_error(), "not a revision"));
    assert_int_equal(rg_hub_pull("a/b", NULL, 1, NULL, NULL, out, sizeof out), -1);
    assert_non_null(strstr(rg_last_error(), "not in the cache"));
    setenv("HF_ENDPOINT", "file:///etc", 1);
    assert_int_equal(rg_hub_pull("a/b", NULL, 0, NULL, NULL, out, sizeof out), -1);
    assert_non_null(strstr(rg_last_error(), "HF_ENDPOINT"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256), cmocka_unit_test(test_sha1),       cmocka_unit_test(test_names),
        cmocka_unit_test(test_etag),   cmocka_unit_test(test_cache_dir), cmocka_unit_test(test_pull_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
