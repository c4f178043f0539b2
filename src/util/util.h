/* Internal helpers shared by every part of the library. */
#ifndef RG_UTIL_H
#define RG_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "rgemma.h"

#if defined(__GNUC__)
#define RG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RG_PRINTF(a, b)
#endif

/* Set the thread's error message; always returns -1 so callers can
 * `return rg_error("...")`. */
int rg_error(const char *fmt, ...) RG_PRINTF(1, 2);
/* Prefix the current error message with more context ("file: ..."). */
int rg_error_prefix(const char *fmt, ...) RG_PRINTF(1, 2);
void rg_clear_error(void);

/* Read a whole file into a malloc'd, NUL-terminated buffer (limit: max_bytes). */
int rg_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/* A read-only memory mapping of a whole file. */
typedef struct {
    const uint8_t *data;
    size_t size;
    char *path;
} rg_mapped_file;
int rg_map_file(const char *path, rg_mapped_file *out);
void rg_unmap_file(rg_mapped_file *f);
/* Gives back the pages of bytes [p, p+n) of such a mapping (they are read
 * from the file again if touched): a tensor read once, e.g. packed or
 * converted, then leaves the resident set. */
void rg_drop_file_pages(const void *p, size_t n);

/* path join into a malloc'd string */
char *rg_path_join(const char *dir, const char *name);
int rg_is_dir(const char *path);
/* mkdir -p: dir and every missing parent (0755). -1 with "DIR: cannot create
 * folder: reason" or "DIR: exists and is not a folder". */
int rg_make_dirs(const char *dir);
/* The folder a model path names: itself when it is a folder, else the folder
 * of the file ("." for a bare name). malloc'd. */
char *rg_model_dir(const char *path);
int rg_file_exists(const char *path);

/* Number conversions. bf16 is the top half of a float32; conversion to bf16
 * rounds to nearest, ties to even (NaN kept quiet). */
static inline float rg_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t rg_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
float rg_f16_to_f32(uint16_t h);
uint16_t rg_f32_to_f16(float f);

/* splitmix64: the finaliser mixes 64 bits well (mix(key + i * golden) is an
 * independent-looking stream indexed by i); the generator steps it. */
#define RG_GOLDEN64 0x9e3779b97f4a7c15ull
static inline uint64_t rg_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline uint64_t rg_splitmix64(uint64_t *x) { return rg_mix64(*x += RG_GOLDEN64); }

/* 64-bit FNV-1a */
uint64_t rg_fnv1a(const void *data, size_t len, uint64_t seed);

void *rg_xmalloc(size_t n);       /* aborts on OOM */
void *rg_xcalloc(size_t n, size_t size);
void *rg_xrealloc(void *p, size_t n); /* aborts on OOM */
/* A growable array p of *cap elements of elem bytes, with room for at least
 * need of them: p itself or a bigger copy (doubling, from 64 elements); aborts
 * on OOM. */
void *rg_grow(void *p, size_t *cap, size_t need, size_t elem);
void *rg_aligned_alloc(size_t n); /* 64-byte aligned, zeroed; free with free() */

double rg_time_s(void); /* monotonic seconds */

#endif
