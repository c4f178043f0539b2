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
    char **cases;
    int n = rg_find_all_golden_cases(&cases);
    if (n == 0) {
        fprintf(stderr, "no golden cases found under tests/data/golden\n");
        free(cases);
        return 1;
    }
    struct CMUnitTest *tests = malloc(sizeof *tests * (size_t)n);
    for (int i = 0; i < n; i++) tests[i] = (struct CMUnitTest){cases[i], test_case, NULL, NULL, cases[i]};
    int rc = _cmocka_run_group_tests("golden", tests, (size_t)n, NULL, NULL);
    for (int i = 0; i < n; i++) free(cases[i]);
    free(cases);
    free(tests);
    return rc;
}
