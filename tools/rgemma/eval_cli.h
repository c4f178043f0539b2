/* Helpers shared by `rgemma perplexity` and `rgemma eval`: loading a
 * model's tokenizer and the progress line on stderr. */
#ifndef RG_EVAL_CLI_H
#define RG_EVAL_CLI_H

#include <stdint.h>
#include "rgemma.h"

/* The tokenizer for a model: explicit_path if given, else the model's own
 * (rg_tokenizer_find). Returns what they return (< 0: rg_last_error). */
int cli_load_tokenizer(const char *model_path, const char *explicit_path, rg_tokenizer **out);

/* A one-line progress bar with rate and ETA, redrawn at most 5 times a
 * second; silent when disabled. */
typedef struct {
    int enabled;
    int64_t total;
    double start, last;
    const char *unit;
} cli_progress;

void cli_progress_start(cli_progress *p, int enabled, int64_t total, const char *unit);
void cli_progress_update(cli_progress *p, int64_t done, const char *extra);
void cli_progress_end(cli_progress *p);

#endif
