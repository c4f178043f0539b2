/* SHA-256 and SHA-1 (FIPS 180-4), streaming. Used to verify downloaded files
 * against the digests the Hugging Face hub names them by (src/hub). */
#ifndef RG_HASH_H
#define RG_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len; /* bytes hashed so far */
    uint8_t buf[64];
    size_t n;     /* bytes in buf */
} rg_sha256_ctx;

typedef struct {
    uint32_t h[5];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
} rg_sha1_ctx;

void rg_sha256_init(rg_sha256_ctx *c);
void rg_sha256_update(rg_sha256_ctx *c, const void *data, size_t len);
void rg_sha256_final(rg_sha256_ctx *c, uint8_t out[32]);

void rg_sha1_init(rg_sha1_ctx *c);
void rg_sha1_update(rg_sha1_ctx *c, const void *data, size_t len);
void rg_sha1_final(rg_sha1_ctx *c, uint8_t out[20]);

/* n bytes as 2n lower-case hex digits and a NUL */
void rg_hex(const uint8_t *bytes, size_t n, char *out);

#endif
