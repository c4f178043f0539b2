/* Benchmark task files (JSON Lines): every item kind and field. */
#include "fuzz_util.h"
#include "eval/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rg_task task;
    memset(&task, 0, sizeof task);
    if (rg_task_parse((const char *)data, size, "task.jsonl", &task) == 0) {
        int idx[8];
        if (task.n > 0) rg_choose_shots(&task, &task.items[0], 3, 1, idx);
        rg_task_free(&task);
    }
    return 0;
}
