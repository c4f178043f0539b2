/* rg_gemm's driver: cuts c into blocks and hands them to the threads, each
 * computed whole by the active kernel set's gemm (which packs its own
 * operands). An element's sum does not depend on its block, so neither the
 * cut nor the thread count changes the result. */
#include <omp.h>
#include "ops/ops.h"

/* Blocks start at most this many rows and columns (a block's B slab then
 * packs into 480 KiB per k block); cut at multiples of 48 rows and 96
 * columns, whole tiles of every set (GEMM_MR 6, 8, 12; GEMM_NR 12, 16, 32). */
enum { BLOCK_MAX = 480, ROW_STEP = 48, COL_STEP = 96, BLOCKS_PER_THREAD = 2 };

static int round_up(int x, int step) { return (x + step - 1) / step * step; }
static int min_int(int a, int b) { return a < b ? a : b; }

void rg_gemm(int m, int n, int k, const float *a, size_t a_rs, size_t a_cs, const float *b, size_t b_rs, size_t b_cs,
             float *c, size_t ldc, int add) {
    if (m <= 0 || n <= 0) return;
    const rg_kernel_set *ks = rg_active_kernels();
    /* halve the larger side until there are a few blocks per thread, so a
     * thread slowed down (another process on its core) does fewer of them */
    int rb = min_int(round_up(m, ROW_STEP), BLOCK_MAX), cb = min_int(round_up(n, COL_STEP), BLOCK_MAX);
    long want = (long)BLOCKS_PER_THREAD * omp_get_max_threads();
    for (;;) {
        long blocks = (long)((m + rb - 1) / rb) * ((n + cb - 1) / cb);
        if (blocks >= want) break;
        if (rb > ROW_STEP && (rb >= cb || cb <= COL_STEP)) rb = round_up(rb / 2, ROW_STEP);
        else if (cb > COL_STEP) cb = round_up(cb / 2, COL_STEP);
        else break;
    }
    int row_blocks = (m + rb - 1) / rb, blocks = row_blocks * ((n + cb - 1) / cb);
#pragma omp parallel for schedule(dynamic, 1) if (blocks > 1)
    for (int blk = 0; blk < blocks; blk++) {
        int i0 = blk % row_blocks * rb, j0 = blk / row_blocks * cb;
        ks->gemm(min_int(rb, m - i0), min_int(cb, n - j0), k, a + (size_t)i0 * a_rs, a_rs, a_cs, b + (size_t)j0 * b_cs,
                 b_rs, b_cs, c + (size_t)i0 * ldc + j0, ldc, add);
    }
}
