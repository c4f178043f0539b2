/* Golden tests: every case folder under tests/data/golden (and, when the
 * shared folder is present, under $RGEMMA_SHARED/testdata/golden), every run
 * it lists, within its golden.json tolerance (atol 5e-4; an independent
 * float32 implementation lands within ~1e-5, the smallest listed mistake
 * moves logits by 3e-3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include "../golden/check_golden.h"
#include "util/util.h"

static void test_case(void **state) {
    const char *dir = *state;
    int runs = 0;
    int failures = rg_check_golden_case(dir, stdout, &runs);
    assert_int_equal(failures, 0);
    assert_true(runs >= 10);
}

int main(void) {
    const char *roots[2] = {"tests/data/golden", NULL};
    char *shared = NULL;
    const char *sh = getenv("RGEMMA_SHARED");
    if (sh && *sh) {
        shared = rg_path_join(sh, "testdata/golden");
        if (rg_is_dir(shared)) roots[1] = shared;
        else printf("note: %s not found; checking the project's copy of the golden cases only\n", shared);
    }
    struct CMUnitTest *tests = NULL;
    int n = 0;
    for (int r = 0; r < 2 && roots[r]; r++) {
        char **cases;
        int k = rg_find_golden_cases(roots[r], &cases);
        for (int i = 0; i < k; i++) {
            tests = realloc(tests, sizeof *tests * (size_t)(n + 1));
            tests[n++] = (struct CMUnitTest){cases[i], test_case, NULL, NULL, cases[i]};
        }
        free(cases);
    }
    if (n == 0) {
        fprintf(stderr, "no golden cases found under tests/data/golden\n");
        return 1;
    }
    int rc = _cmocka_run_group_tests("golden", tests, (size_t)n, NULL, NULL);
    for (int i = 0; i < n; i++) free((void *)tests[i].initial_state);
    free(tests);
    free(shared);
    return rc;
}
