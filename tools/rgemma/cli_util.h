/* Small helpers shared by the generate and chat commands. */
#ifndef RG_CLI_UTIL_H
#define RG_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include "rgemma.h"

/* Strict number parsing for option values: the whole string, in range.
 * On failure prints "rgemma: CMD: --OPT must be ... (got "...")" and returns -1. */
int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, float *out);
/* "2,651,6037" -> ids (malloc'd) */
int cli_ids(const char *cmd, const char *opt, const char *s, int32_t **ids, int *n);

/* The tokenizer of a model: `override` if given, else the tokenizer.model or
 * tokenizer.json in the model's folder. When there is none: NULL, and if
 * `required`, a one-line error naming what to do. *failed is set when an
 * error was printed. */
rg_tokenizer *cli_tokenizer(const char *cmd, const char *model_path, const char *override, int required,
                            int *failed);

/* Ctrl-C: the first press sets the flag (generation stops cleanly), a second
 * one kills the program as usual. */
extern volatile int cli_interrupted;
void cli_catch_sigint(void);

/* "12.3 MiB" into buf */
char *cli_bytes(size_t n, char buf[32]);
/* Peak resident set size in bytes. */
size_t cli_peak_rss(void);
/* The end-of-run report on stderr: prompt and generation speed, state
 * memory, peak RSS. */
void cli_report(const rg_generate_result *r, const rg_config *cfg);
const char *cli_stop_name(rg_stop_reason r);

#endif
