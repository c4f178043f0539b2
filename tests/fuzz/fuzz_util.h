/* Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c, built by `make
 * fuzz`): inputs that the library reads from files are written to a private
 * temporary folder first. Run the harnesses from the repository root (some
 * load test data at start). */
#ifndef RG_FUZZ_UTIL_H
#define RG_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "rgemma.h"
#include "util/util.h"

static char fuzz_dir[256];

static inline void fuzz_cleanup(void) {
    if (!fuzz_dir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
    if (system(cmd)) fuzz_dir[0] = 0;
}

/* The path of NAME in the private folder (made on first use). */
static inline const char *fuzz_path(const char *name) {
    static char path[512];
    if (!fuzz_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/rgemma-fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(fuzz_dir)) abort();
        atexit(fuzz_cleanup);
    }
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, name);
    return path;
}

/* Write the input to NAME in the private folder; returns its path. */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    const char *path = fuzz_path(name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) abort();
    return path;
}

#endif
