/* safetensors writer (format: see formats/safetensors.c). The header is built
 * first, so every tensor's place in the file is known; the data is then
 * produced in chunks of CHUNK elements by all threads and written with
 * pwrite at its offset. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "formats/st_write.h"
#include "util/util.h"

#define CHUNK ((int64_t)1 << 20)

int64_t rg_st_spec_elements(const rg_st_spec *s) {
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= s->shape[i];
    return n;
}

uint64_t rg_st_spec_bytes(const rg_st_spec *s) {
    return rg_dtype_row_bytes(s->dtype, rg_st_spec_elements(s));
}

/* serializes the progress count and callback across the writer threads */
static pthread_mutex_t progress_lock = PTHREAD_MUTEX_INITIALIZER;

static int write_all(int fd, const void *buf, size_t len, uint64_t off) {
    const uint8_t *p = buf;
    while (len) {
        ssize_t k = pwrite(fd, p, len, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        len -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

typedef struct {
    int tensor;
    int64_t first, count;
    uint64_t offset; /* in the file */
} chunk;

/* The header JSON, padded with spaces to a multiple of 8 bytes. */
static char *build_header(const rg_st_spec *specs, int n, const char *note, uint64_t *data_off, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    if (note) cJSON_AddStringToObject(meta, "rgemma", note);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, specs[i].name);
        cJSON_AddStringToObject(t, "dtype", rg_dtype_name(specs[i].dtype));
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < specs[i].ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)specs[i].shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        data_off[i] = off;
        off += rg_st_spec_bytes(&specs[i]);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)data_off[i]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t k = strlen(json), padded = (k + 7) & ~(size_t)7;
    char *h = rg_xmalloc(padded + 1);
    memcpy(h, json, k);
    memset(h + k, ' ', padded - k);
    h[padded] = 0;
    free(json);
    *len = padded;
    return h;
}

typedef struct {
    uint64_t done, total;
} progress_state;

/* Writes specs[0..n) into one file; index0 = index of specs[0] in the
 * caller's whole list (what the fill callback sees). */
static int write_file(const char *path, const rg_st_spec *specs, int n, int index0, const rg_st_source *src,
                      progress_state *ps) {
    for (int i = 0; i < n; i++)
        if (!rg_dtype_info(specs[i].dtype) || rg_dtype_is_quantised(specs[i].dtype))
            return rg_error("%s: tensor \"%s\": cannot write dtype %s", path, specs[i].name,
                            rg_dtype_name(specs[i].dtype));
    uint64_t *data_off = rg_xmalloc(sizeof *data_off * (size_t)(n ? n : 1));
    size_t hlen;
    char *header = build_header(specs, n, src->metadata, data_off, &hlen);
    /* written as PATH.tmp and renamed when complete: an interrupted run never
     * leaves a file that looks like a whole shard */
    size_t pl = strlen(path);
    char *tmp = rg_xmalloc(pl + 5);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rg_error("%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        free(header);
        free(data_off);
        return -1;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int failed = write_all(fd, len8, 8, 0) || write_all(fd, header, hlen, 8);
    uint64_t base = 8 + hlen;
    free(header);

    int n_chunks = 0;
    for (int i = 0; i < n; i++) n_chunks += (int)((rg_st_spec_elements(&specs[i]) + CHUNK - 1) / CHUNK);
    chunk *chunks = rg_xmalloc(sizeof *chunks * (size_t)(n_chunks ? n_chunks : 1));
    int c = 0;
    for (int i = 0; i < n; i++) {
        int64_t total = rg_st_spec_elements(&specs[i]);
        size_t es = rg_dtype_row_bytes(specs[i].dtype, 1);
        for (int64_t f = 0; f < total; f += CHUNK)
            chunks[c++] = (chunk){i, f, total - f < CHUNK ? total - f : CHUNK, base + data_off[i] + (uint64_t)f * es};
    }
    free(data_off);
    #pragma omp parallel if (!failed)
    {
        float *vals = rg_xmalloc(sizeof(float) * CHUNK);
        uint8_t *bytes = rg_xmalloc(rg_dtype_row_bytes(RG_DT_F32, CHUNK)); /* the widest type */
        #pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < n_chunks; k++) {
            int bad;
            #pragma omp atomic read
            bad = failed;
            if (bad) continue;
            const chunk *ch = &chunks[k];
            const rg_st_spec *s = &specs[ch->tensor];
            src->fill(src->fill_ctx, index0 + ch->tensor, ch->first, ch->count, vals);
            rg_dtype_info(s->dtype)->from_float(vals, ch->count, bytes); /* plain floats: cannot fail */
            size_t nb = rg_dtype_row_bytes(s->dtype, ch->count);
            if (write_all(fd, bytes, nb, ch->offset)) {
                #pragma omp atomic write
                failed = 1;
            }
            /* a static mutex, not a named omp critical: that one's lock is a
             * global symbol that librgemma.so would export */
            pthread_mutex_lock(&progress_lock);
            ps->done += nb;
            if (src->progress) src->progress(src->progress_ctx, ps->done, ps->total);
            pthread_mutex_unlock(&progress_lock);
        }
        free(vals);
        free(bytes);
    }
    free(chunks);
    int e = failed ? (errno ? errno : EIO) : 0;
    if (!failed && fsync(fd)) failed = 1, e = errno;
    if (close(fd) && !failed) failed = 1, e = errno;
    if (!failed && rename(tmp, path)) {
        rg_error("%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    if (failed) {
        unlink(tmp);
        rg_error("%s: write failed: %s", path, strerror(e));
    }
    free(tmp);
    return failed ? -1 : 0;
}

static int write_index(const char *dir, const rg_st_spec *specs, int n, const int *shard_of, int n_shards,
                       uint64_t total) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", shard_of[i] + 1, n_shards);
        cJSON_AddStringToObject(map, specs[i].name, name);
    }
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    char *path = rg_path_join(dir, "model.safetensors.index.json");
    FILE *f = fopen(path, "w");
    int rc = 0;
    if (!f || fputs(json, f) < 0 || fputc('\n', f) < 0) rc = rg_error("%s: cannot write: %s", path, strerror(errno));
    if (f && fclose(f) && !rc) rc = rg_error("%s: cannot write: %s", path, strerror(errno));
    free(json);
    free(path);
    return rc;
}

int rg_st_write_file(const char *path, const rg_st_spec *specs, int n, const rg_st_source *src) {
    progress_state ps = {0, 0};
    for (int i = 0; i < n; i++) ps.total += rg_st_spec_bytes(&specs[i]);
    return write_file(path, specs, n, 0, src, &ps);
}

int rg_st_write_checkpoint(const char *dir, const rg_st_spec *specs, int n, uint64_t max_shard_bytes,
                           const rg_st_source *src, int *n_shards_out) {
    if (n < 1) return rg_error("%s: no tensors to write", dir);
    /* greedy packing in the given order */
    int *shard_of = rg_xmalloc(sizeof *shard_of * (size_t)n);
    int n_shards = 0;
    uint64_t in_shard = 0, total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = rg_st_spec_bytes(&specs[i]);
        if (i == 0 || (in_shard > 0 && in_shard + b > max_shard_bytes)) {
            n_shards++;
            in_shard = 0;
        }
        shard_of[i] = n_shards - 1;
        in_shard += b;
        total += b;
    }
    progress_state ps = {0, total};
    int rc = 0;
    for (int s = 0, first = 0; s < n_shards && !rc; s++) {
        int end = first;
        while (end < n && shard_of[end] == s) end++;
        char name[64];
        if (n_shards == 1) snprintf(name, sizeof name, "model.safetensors");
        else snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        char *path = rg_path_join(dir, name);
        rc = write_file(path, specs + first, end - first, first, src, &ps);
        free(path);
        first = end;
    }
    if (!rc && n_shards > 1) rc = write_index(dir, specs, n, shard_of, n_shards, total);
    free(shard_of);
    if (n_shards_out) *n_shards_out = n_shards;
    return rc;
}
