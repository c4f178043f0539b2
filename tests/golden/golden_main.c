/* check-golden DIR: check one golden case folder, or every case folder
 * directly under DIR. Exit 0 only if every run is within tolerance. */
#include <stdio.h>
#include <stdlib.h>
#include "check_golden.h"
#include "rgemma.h"
#include "util/util.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: check-golden <case folder | folder of cases>\n");
        return 2;
    }
    int failures = 0, runs = 0, r;
    if (rg_is_golden_case(argv[1])) {
        failures = rg_check_golden_case(argv[1], stdout, &runs);
    } else {
        char **cases;
        int n = rg_find_golden_cases(argv[1], &cases);
        if (n == 0) {
            fprintf(stderr, "check-golden: %s: no golden.json here or in any sub-folder\n", argv[1]);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            failures += rg_check_golden_case(cases[i], stdout, &r);
            runs += r;
            free(cases[i]);
        }
        free(cases);
    }
    printf("check-golden (%s kernels): %d runs, %d failed\n", rg_kernel_path(), runs, failures);
    return failures ? 1 : 0;
}
