/* model.safetensors.index.json: the weight map of a sharded checkpoint, with
 * two small valid shards beside it (a.safetensors, b.safetensors). */
#include "fuzz_util.h"
#include "formats/safetensors.h"

static void write_shard(const char *name, const char *tensor) {
    char header[160];
    int n = snprintf(header, sizeof header, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", tensor);
    uint8_t buf[256];
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, (size_t)n);
    memset(buf + 8 + n, 0, 8);
    fuzz_file(name, buf, (size_t)n + 16);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        write_shard("a.safetensors", "x");
        write_shard("b.safetensors", "y");
        ready = 1;
    }
    fuzz_file("model.safetensors.index.json", data, size);
    const char *dir = fuzz_path("");
    rg_safetensors st;
    memset(&st, 0, sizeof st);
    rg_st_open(&st, dir);
    rg_st_close(&st);
    return 0;
}
