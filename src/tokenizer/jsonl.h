/* A small reader for one JSON Lines object whose strings may hold U+0000
 * (cJSON stops at NUL), and a writer of JSON strings with lengths. Used by
 * `rgemma tokenize --jsonl` and by the tokenizer tests on the golden files. */
#ifndef RG_JSONL_H
#define RG_JSONL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Value of a top-level key of the object in line[0..len): 1 = found (*out is
 * malloc'd; strings are NUL-terminated and *n is their length in bytes),
 * 0 = key absent, -1 = malformed line or wrong value type (rg_last_error). */
int rg_jsonl_string(const char *line, size_t len, const char *key, char **out, size_t *n);
int rg_jsonl_ints(const char *line, size_t len, const char *key, int32_t **out, size_t *n);

/* Write s[0..n) as a JSON string (quotes included), escaped like the golden
 * files: Python's json.dumps(ensure_ascii=False), plus U+0085, U+2028, U+2029
 * and U+FEFF as \u escapes. */
void rg_json_write_string(FILE *f, const char *s, size_t n);

#endif
