/* SHA-256 and SHA-1 after FIPS 180-4; test vectors in tests/unit/test_hub.c. */
#include <string.h>
#include "util/hash.h"

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
static uint32_t rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = be32(p + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++) w[i] = be32(p + 4 * i);
    for (int i = 16; i < 80; i++) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (b & c) | (~b & d), k = 0x5a827999;
        else if (i < 40) f = b ^ c ^ d, k = 0x6ed9eba1;
        else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
        else f = b ^ c ^ d, k = 0xca62c1d6;
        uint32_t t = rotl(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rotl(b, 30);
        b = a;
        a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

/* The Merkle-Damgard framing both share: 64-byte blocks, 0x80, zeros, the
 * bit length big-endian in the last 8 bytes. */
#define UPDATE(c, data, len, block)                                                                               \
    do {                                                                                                           \
        const uint8_t *p_ = (const uint8_t *)(data);                                                             \
        size_t n_ = (len);                                                                                         \
        (c)->len += n_;                                                                                            \
        if (!n_) break; /* data may be NULL with no bytes */                                                      \
        if ((c)->n) {                                                                                              \
            size_t k_ = 64 - (c)->n < n_ ? 64 - (c)->n : n_;                                                     \
            memcpy((c)->buf + (c)->n, p_, k_);                                                                    \
            (c)->n += k_, p_ += k_, n_ -= k_;                                                                     \
            if ((c)->n < 64) break;                                                                                \
            block((c)->h, (c)->buf);                                                                               \
            (c)->n = 0;                                                                                            \
        }                                                                                                          \
        for (; n_ >= 64; p_ += 64, n_ -= 64) block((c)->h, p_);                                                   \
        memcpy((c)->buf, p_, n_);                                                                                  \
        (c)->n = n_;                                                                                               \
    } while (0)

#define FINAL(c, block)                                                                                            \
    do {                                                                                                           \
        uint64_t bits_ = (c)->len * 8;                                                                             \
        (c)->buf[(c)->n++] = 0x80;                                                                                 \
        if ((c)->n > 56) {                                                                                         \
            memset((c)->buf + (c)->n, 0, 64 - (c)->n);                                                            \
            block((c)->h, (c)->buf);                                                                               \
            (c)->n = 0;                                                                                            \
        }                                                                                                          \
        memset((c)->buf + (c)->n, 0, 56 - (c)->n);                                                                \
        put_be32((c)->buf + 56, (uint32_t)(bits_ >> 32));                                                          \
        put_be32((c)->buf + 60, (uint32_t)bits_);                                                                  \
        block((c)->h, (c)->buf);                                                                                   \
    } while (0)

void rg_sha256_init(rg_sha256_ctx *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->len = 0;
    c->n = 0;
}
void rg_sha256_update(rg_sha256_ctx *c, const void *data, size_t len) { UPDATE(c, data, len, sha256_block); }
void rg_sha256_final(rg_sha256_ctx *c, uint8_t out[32]) {
    FINAL(c, sha256_block);
    for (int i = 0; i < 8; i++) put_be32(out + 4 * i, c->h[i]);
}

void rg_sha1_init(rg_sha1_ctx *c) {
    static const uint32_t h0[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    memcpy(c->h, h0, sizeof h0);
    c->len = 0;
    c->n = 0;
}
void rg_sha1_update(rg_sha1_ctx *c, const void *data, size_t len) { UPDATE(c, data, len, sha1_block); }
void rg_sha1_final(rg_sha1_ctx *c, uint8_t out[20]) {
    FINAL(c, sha1_block);
    for (int i = 0; i < 5; i++) put_be32(out + 4 * i, c->h[i]);
}

void rg_hex(const uint8_t *bytes, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[bytes[i] >> 4];
        out[2 * i + 1] = d[bytes[i] & 15];
    }
    out[2 * n] = 0;
}
