#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "util/util.h"

/* A pipe, a terminal or a process substitution: read until EOF, growing the
 * buffer, up to max_bytes. */
static int read_stream(FILE *f, const char *path, size_t max_bytes, char **data, size_t *len) {
    size_t n = 0, cap = 1 << 16;
    char *buf = malloc(cap + 1);
    if (!buf) return rg_error("%s: out of memory", path);
    for (;;) {
        if (n == cap) {
            if (cap > max_bytes) break;
            cap *= 2;
            char *b = realloc(buf, cap + 1);
            if (!b) {
                free(buf);
                return rg_error("%s: out of memory", path);
            }
            buf = b;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return rg_error("%s: read error: %s", path, strerror(errno));
    }
    if (n > max_bytes) {
        free(buf);
        return rg_error("%s: input too large (more than %zu bytes)", path, max_bytes);
    }
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return 0;
}

int rg_read_file(const char *path, size_t max_bytes, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return rg_error("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return rg_error("%s: cannot stat: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        fclose(f);
        return rg_error("%s: is a directory, not a file", path);
    }
    if (!S_ISREG(st.st_mode)) { /* a pipe or a device: its size is not known */
        int rc = read_stream(f, path, max_bytes, data, len);
        fclose(f);
        return rc;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return rg_error("%s: file too large (%lld bytes, limit %zu)", path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return rg_error("%s: out of memory", path);
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return rg_error("%s: read error", path);
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return 0;
}

int rg_map_file(const char *path, rg_mapped_file *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rg_error("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return rg_error("%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return rg_error("%s: file is empty", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return rg_error("%s: mmap failed: %s", path, strerror(errno));
    out->data = p;
    out->size = (size_t)st.st_size;
    out->path = strdup(path);
    return 0;
}

void rg_unmap_file(rg_mapped_file *f) {
    if (f->data) munmap((void *)f->data, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

void rg_drop_file_pages(const void *p, size_t n) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(page - 1), e = (uintptr_t)p + n;
    madvise((void *)a, e - a, MADV_DONTNEED);
}

char *rg_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = rg_xmalloc(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int rg_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int rg_make_dirs(const char *dir) {
    char *p = rg_xmalloc(strlen(dir) + 1);
    strcpy(p, dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        mkdir(p, 0755); /* a parent that fails shows in the last mkdir */
        *s = '/';
    }
    int rc = 0;
    if (mkdir(p, 0755) && errno != EEXIST) rc = rg_error("%s: cannot create folder: %s", dir, strerror(errno));
    else if (!rg_is_dir(p)) rc = rg_error("%s: exists and is not a folder", dir);
    free(p);
    return rc;
}

char *rg_model_dir(const char *path) {
    const char *slash = rg_is_dir(path) ? NULL : strrchr(path, '/');
    size_t n = rg_is_dir(path) ? strlen(path) : slash ? (size_t)(slash - path) + 1 : 0;
    char *dir = rg_xmalloc(n + 2);
    memcpy(dir, n ? path : ".", n ? n : 1);
    dir[n ? n : 1] = 0;
    return dir;
}

int rg_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

float rg_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ff;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t rg_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t man = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)half;
}

uint64_t rg_fnv1a(const void *data, size_t len, uint64_t seed) {
    const uint8_t *p = data;
    uint64_t h = seed ? seed : 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void *rg_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "rgemma: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

void *rg_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "rgemma: out of memory (%zu x %zu bytes)\n", n, size);
        abort();
    }
    return p;
}

void *rg_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "rgemma: out of memory (%zu bytes)\n", n);
        abort();
    }
    return q;
}

void *rg_grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    *cap = c;
    return rg_xrealloc(p, c * elem);
}

void *rg_aligned_alloc(size_t n) {
    size_t sz = (n + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, sz ? sz : 64);
    if (!p) {
        fprintf(stderr, "rgemma: out of memory (%zu bytes)\n", n);
        abort();
    }
    memset(p, 0, sz ? sz : 64);
    return p;
}

double rg_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
