/* safetensors: u64 header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, "__metadata__": {...}}
 * then the data section. Everything in the header is untrusted: sizes and
 * offsets are checked against the file before any tensor is used. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "formats/safetensors.h"

#define MAX_HEADER (256u << 20)

/* safetensors holds plain floats only, spelt as the type table names them */
static int parse_dtype(const char *s, rg_dtype *out) {
    for (int d = 0; d < RG_DT_COUNT; d++)
        if (!rg_dtype_is_quantised((rg_dtype)d) && !strcmp(s, rg_dtype_name((rg_dtype)d))) {
            *out = (rg_dtype)d;
            return 0;
        }
    return -1;
}

static int cmp_by_offset(const void *a, const void *b) {
    const rg_st_entry *x = *(rg_st_entry *const *)a, *y = *(rg_st_entry *const *)b;
    const uint8_t *pa = x->t.data, *pb = y->t.data;
    return pa < pb ? -1 : pa > pb;
}

const rg_st_entry *rg_st_find(const rg_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_entries; i++)
        if (!strcmp(st->entries[i].name, name)) return &st->entries[i];
    return NULL;
}

int rg_st_add_file(rg_safetensors *st, const char *path) {
    rg_mapped_file mf;
    if (rg_map_file(path, &mf)) return -1;
    if (mf.size < 8) {
        size_t size = mf.size;
        rg_unmap_file(&mf);
        return rg_error("%s: truncated (%zu bytes, no 8-byte header length)", path, size);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | mf.data[i];
    if (hlen < 2 || hlen > MAX_HEADER || hlen > mf.size - 8) {
        rg_error("%s: header length %llu does not fit in the file (%zu bytes)", path, (unsigned long long)hlen,
                 mf.size);
        rg_unmap_file(&mf);
        return -1;
    }
    const uint8_t *data = mf.data + 8 + hlen;
    size_t data_size = mf.size - 8 - hlen;
    cJSON *root = cJSON_ParseWithLength((const char *)mf.data + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        rg_error("%s: header is not a valid JSON object", path);
        cJSON_Delete(root);
        rg_unmap_file(&mf);
        return -1;
    }
    int file_idx = st->n_files;
    st->files = rg_xrealloc(st->files, sizeof *st->files * (size_t)(st->n_files + 1));
    st->files[st->n_files++] = mf;
    int first_new = st->n_entries;
    int rc = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        const char *name = e->string;
        if (!strcmp(name, "__metadata__")) continue;
        if (!cJSON_IsObject(e)) {
            rg_error("%s: tensor \"%s\": entry is not an object", path, name);
            goto done;
        }
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        rg_tensor t = {0};
        if (!cJSON_IsString(dt)) {
            rg_error("%s: tensor \"%s\": missing \"dtype\"", path, name);
            goto done;
        }
        if (parse_dtype(dt->valuestring, &t.dtype)) {
            rg_error("%s: tensor \"%s\": unsupported dtype \"%s\" (supported: F32, BF16, F16)", path, name,
                     dt->valuestring);
            goto done;
        }
        if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > 4) {
            rg_error("%s: tensor \"%s\": \"shape\" must be a list of at most 4 sizes", path, name);
            goto done;
        }
        double count = 1;
        const cJSON *d;
        cJSON_ArrayForEach(d, shape) {
            if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble != floor(d->valuedouble) ||
                d->valuedouble > 1e12) {
                rg_error("%s: tensor \"%s\": invalid dimension in \"shape\"", path, name);
                goto done;
            }
            t.shape[t.ndim++] = (int64_t)d->valuedouble;
            count *= d->valuedouble;
        }
        if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !cJSON_IsNumber(offs->child) ||
            !cJSON_IsNumber(offs->child->next)) {
            rg_error("%s: tensor \"%s\": \"data_offsets\" must be [begin, end]", path, name);
            goto done;
        }
        double b = offs->child->valuedouble, en = offs->child->next->valuedouble;
        if (b < 0 || en < b || b != floor(b) || en != floor(en) || en > (double)data_size) {
            rg_error("%s: tensor \"%s\": data_offsets [%.0f, %.0f] outside the data section (%zu bytes)", path,
                     name, b, en, data_size);
            goto done;
        }
        double want = count * rg_dtype_info(t.dtype)->block_bytes;
        if (want != en - b) {
            rg_error("%s: tensor \"%s\": shape needs %.0f bytes but data_offsets give %.0f", path, name, want,
                     en - b);
            goto done;
        }
        if (rg_st_find(st, name)) {
            rg_error("%s: tensor \"%s\" appears more than once", path, name);
            goto done;
        }
        t.data = data + (size_t)b;
        t.nbytes = (size_t)(en - b);
        st->entries = rg_xrealloc(st->entries, sizeof *st->entries * (size_t)(st->n_entries + 1));
        st->entries[st->n_entries++] = (rg_st_entry){strdup(name), file_idx, t};
    }
    /* no two tensors of this file may share bytes */
    int n_new = st->n_entries - first_new;
    if (n_new > 1) {
        rg_st_entry **order = rg_xmalloc(sizeof *order * (size_t)n_new);
        for (int i = 0; i < n_new; i++) order[i] = &st->entries[first_new + i];
        qsort(order, (size_t)n_new, sizeof *order, cmp_by_offset);
        for (int i = 1; i < n_new; i++) {
            const uint8_t *prev_end = (const uint8_t *)order[i - 1]->t.data + order[i - 1]->t.nbytes;
            if ((const uint8_t *)order[i]->t.data < prev_end) {
                rg_error("%s: tensors \"%s\" and \"%s\" overlap", path, order[i - 1]->name, order[i]->name);
                free(order);
                goto done;
            }
        }
        free(order);
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

static int open_index(rg_safetensors *st, const char *dir, const char *index_path) {
    char *text;
    size_t len;
    if (rg_read_file(index_path, 64u << 20, &text, &len)) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return rg_error("%s: not valid JSON with a \"weight_map\" object", index_path);
    }
    int rc = 0;
    const cJSON *e;
    /* open each shard once, in the order first named */
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || !e->valuestring[0]) {
            rc = rg_error("%s: weight_map[\"%s\"] must be a file name in the same folder", index_path, e->string);
            break;
        }
        int seen = 0;
        for (int i = 0; i < st->n_files && !seen; i++) {
            const char *base = strrchr(st->files[i].path, '/');
            seen = !strcmp(base ? base + 1 : st->files[i].path, e->valuestring);
        }
        if (seen) continue;
        char *shard = rg_path_join(dir, e->valuestring);
        rc = rg_st_add_file(st, shard);
        free(shard);
        if (rc) break;
    }
    /* every tensor the index names must be in the shard it names */
    if (!rc) {
        cJSON_ArrayForEach(e, map) {
            const rg_st_entry *t = rg_st_find(st, e->string);
            const char *base = t ? strrchr(st->files[t->file].path, '/') : NULL;
            if (!t || strcmp(base ? base + 1 : st->files[t->file].path, e->valuestring)) {
                rc = rg_error("%s: tensor \"%s\" is not in shard %s", index_path, e->string, e->valuestring);
                break;
            }
        }
    }
    cJSON_Delete(root);
    return rc;
}

int rg_st_open(rg_safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    int rc;
    if (!rg_is_dir(path)) {
        rc = rg_st_add_file(st, path);
    } else {
        char *index = rg_path_join(path, "model.safetensors.index.json");
        char *single = rg_path_join(path, "model.safetensors");
        if (rg_file_exists(index))
            rc = open_index(st, path, index);
        else if (rg_file_exists(single))
            rc = rg_st_add_file(st, single);
        else
            rc = rg_error("%s: no model.safetensors or model.safetensors.index.json in the folder", path);
        free(index);
        free(single);
    }
    if (rc) rg_st_close(st);
    return rc;
}

void rg_st_close(rg_safetensors *st) {
    for (int i = 0; i < st->n_entries; i++) free(st->entries[i].name);
    for (int i = 0; i < st->n_files; i++) rg_unmap_file(&st->files[i]);
    free(st->entries);
    free(st->files);
    memset(st, 0, sizeof *st);
}
