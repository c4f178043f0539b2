/* safetensors: the 8-byte header length and the JSON header (names, dtypes,
 * shapes, offsets) of one file, as rg_st_add_file reads it. */
#include "fuzz_util.h"
#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model.safetensors", data, size);
    rg_safetensors st;
    memset(&st, 0, sizeof st);
    if (rg_st_add_file(&st, path) == 0)
        for (int i = 0; i < st.n_entries; i++) (void)rg_st_find(&st, st.entries[i].name);
    rg_st_close(&st);
    return 0;
}
