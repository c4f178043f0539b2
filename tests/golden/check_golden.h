/* Checks one golden case folder (see tests/data/golden/README.md) against
 * the engine: every run the case lists, with the tolerance in its golden.json. */
#ifndef RG_CHECK_GOLDEN_H
#define RG_CHECK_GOLDEN_H

#include <stdint.h>
#include <stdio.h>

/* Prints one line per run to out. Returns the number of failed runs
 * (a missing or malformed file counts as a failure). *runs gets the number
 * of runs checked. */
int rg_check_golden_case(const char *dir, FILE *out, int *runs);
/* Is dir a case folder (has golden.json)? */
int rg_is_golden_case(const char *dir);
/* Sorted list of the folders directly under root for which is_case holds
 * (malloc'd strings). */
int rg_find_case_dirs(const char *root, int (*is_case)(const char *dir), char ***cases);
/* Sorted list of case folders directly under root (malloc'd strings). */
int rg_find_golden_cases(const char *root, char ***cases);
/* The case folders of tests/data/golden, then those of
 * $RGEMMA_SHARED/testdata/golden when it is set and exists (a note on
 * stdout when it is set and missing); malloc'd strings. */
int rg_find_all_golden_cases(char ***cases);

/* For what the golden cases cannot show (their head dimension is 16: no
 * Q8_0 windows): a synthetic float32 model written to dir, 6 layers (2
 * attention), 2 heads of head_dim, a window of 16, vocabulary 512. 0, or -1
 * with the library's error. */
int rg_write_test_synth(const char *dir, int head_dim, uint64_t seed);

#endif
