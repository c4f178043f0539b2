/* config.json: keys, types, ranges, the block pattern, consistency. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rg_config cfg;
    if (rg_config_parse((const char *)data, size, "config.json", &cfg) == 0)
        for (int i = 0; i < cfg.num_layers; i++) (void)rg_config_layer_type(&cfg, i);
    return 0;
}
