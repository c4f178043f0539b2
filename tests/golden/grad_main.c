/* check-grad DIR: check the gradients of one case folder, or of every case
 * folder directly under DIR that has a grad.safetensors. Exit 0 only if the
 * loss and every tensor are within tolerance. */
#include <stdio.h>
#include <stdlib.h>
#include "check_grad.h"
#include "rgemma.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: check-grad <case folder | folder of cases>\n");
        return 2;
    }
    int failures = 0, checks = 0, cases = 0, r;
    if (rg_is_grad_case(argv[1])) {
        failures = rg_check_grad_case(argv[1], stdout, &checks);
        cases = 1;
    } else {
        char **list;
        cases = rg_find_grad_cases(argv[1], &list);
        if (cases == 0) {
            fprintf(stderr, "check-grad: %s: no grad.safetensors here or in any sub-folder\n", argv[1]);
            return 1;
        }
        for (int i = 0; i < cases; i++) {
            failures += rg_check_grad_case(list[i], stdout, &r);
            checks += r;
            free(list[i]);
        }
        free(list);
    }
    printf("check-grad: %d case%s, %d checks, %d failed\n", cases, cases == 1 ? "" : "s", checks, failures);
    return failures ? 1 : 0;
}
