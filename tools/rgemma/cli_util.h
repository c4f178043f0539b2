/* Helpers shared by the CLI's commands. The CLI is a program over the public
 * interface (include/rgemma.h) only: what it needs beyond that lives here. */
#ifndef RG_CLI_UTIL_H
#define RG_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include "rgemma.h"

/* Strict number parsing for option values: the whole string, in range.
 * On failure prints "rgemma: CMD: --OPT must be ... (got "...")" and returns -1. */
int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, float *out);
/* Options shared by generate and chat: -n, -s, -t and the sampling flags.
 * Their long-option codes are CLI_OPT_*; a command numbers its own options
 * from CLI_OPT_OWN. */
enum {
    CLI_OPT_TEMP = 256, CLI_OPT_TOP_K, CLI_OPT_TOP_P, CLI_OPT_MIN_P, CLI_OPT_REPEAT_PENALTY, CLI_OPT_REPEAT_LAST_N,
    CLI_OPT_PRESENCE, CLI_OPT_FREQUENCY, CLI_OPT_OWN
};
#define CLI_GENERATION_OPTIONS                                                                                   \
    {"n-predict", required_argument, 0, 'n'}, {"seed", required_argument, 0, 's'},                             \
        {"threads", required_argument, 0, 't'}, {"temp", required_argument, 0, CLI_OPT_TEMP},                 \
        {"top-k", required_argument, 0, CLI_OPT_TOP_K}, {"top-p", required_argument, 0, CLI_OPT_TOP_P},       \
        {"min-p", required_argument, 0, CLI_OPT_MIN_P},                                                        \
        {"repeat-penalty", required_argument, 0, CLI_OPT_REPEAT_PENALTY},                                      \
        {"repeat-last-n", required_argument, 0, CLI_OPT_REPEAT_LAST_N},                                        \
        {"presence-penalty", required_argument, 0, CLI_OPT_PRESENCE},                                          \
        {"frequency-penalty", required_argument, 0, CLI_OPT_FREQUENCY}
/* Apply option c (from getopt_long) if it is one of those: 1 = applied,
 * 0 = not one of them, -1 = bad value (the error is printed). */
int cli_generation_option(const char *cmd, int c, const char *arg, rg_generate_params *gp);

/* The command's own failures (a file it cannot write, a bad line it read):
 * cli_fail sets the message (returns -1); cli_errmsg is that message, or the
 * library's (rg_last_error) when the command set none. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *cli_errmsg(void);

/* --kv-type f32|f16, an option of every command that makes states from a
 * model: the attention window's element type (rg_model_set_kv_type). Its
 * long-option code lies above every command's own. cli_kv_type checks the
 * value: 0 with *kv_type = arg, or -1 after printing the error. */
enum { CLI_OPT_KV_TYPE = 1000 };
#define CLI_KV_TYPE_OPTION {"kv-type", required_argument, 0, CLI_OPT_KV_TYPE}
int cli_kv_type(const char *cmd, const char *arg, const char **kv_type);

/* rg_model_load, then, when lora is not NULL, rg_model_apply_lora (the
 * --lora FILE of the commands that take -m), and when kv_type is not NULL,
 * rg_model_set_kv_type. -1 with the library's error. */
int cli_load_model(const char *path, const char *lora, const char *kv_type, rg_model **m);

/* Print cli_errmsg() as "rgemma: CMD: message". A leading command
 * name in the message ("generate: ", "perplexity: ", ...: the library names
 * the step that failed) is dropped, so the line names one command. */
void cli_error(const char *cmd);

/* --save-state FILE: check at start that FILE can be written (its folder
 * exists and is writable, it is not a folder), by creating and removing
 * FILE.tmp, the name the state is first written under. Prints the error. */
int cli_check_writable(const char *cmd, const char *opt, const char *path);

/* "2,651,6037" -> ids (malloc'd) */
int cli_ids(const char *cmd, const char *opt, const char *s, int32_t **ids, int *n);

/* The tokenizer of a model: `override` if given, else the model's own
 * (rg_tokenizer_find: inside a .gguf file, else in the model's folder). When
 * the model has none: NULL, and if `required`, a one-line error naming what
 * to do. *failed is set when an error was printed. */
rg_tokenizer *cli_tokenizer(const char *cmd, const char *model_path, const char *override, int required,
                            int *failed);

/* Ctrl-C: the first press sets the flag (generation stops cleanly), a second
 * one kills the program as usual. */
extern volatile int cli_interrupted;
void cli_catch_sigint(void);

/* Hugging Face models: rg_hub_pull with a progress bar on stderr when it is
 * a terminal, else one line per file downloaded (quiet: neither). Prints the
 * error as "rgemma: CMD: ..." and returns -1 on failure. */
int cli_pull(const char *cmd, const char *repo, int offline, int quiet, char *out, size_t out_len);
/* For a command that takes -m: each "-hf ORG/NAME[@REV]" (also --hf X,
 * --hf=X) is pulled and becomes "-m SNAPSHOT_DIR"; "--offline" (the cache
 * only) is taken out; serve gets "--alias ORG/NAME" unless it has an alias.
 * The new arguments go to *argv_out (kept until exit); returns their count,
 * or -1 after printing the error. With -h/--help among the arguments nothing
 * is downloaded. Stops at "--". */
int cli_hf_args(const char *cmd, int argc, char **argv, char ***argv_out);

/* Monotonic seconds. */
double cli_time_s(void);
/* malloc / calloc / realloc that end the program with a message when memory runs out. */
void *cli_malloc(size_t n);
void *cli_calloc(size_t n, size_t size);
void *cli_realloc(void *p, size_t n);
/* A whole file (a pipe too) into a malloc'd, NUL-terminated buffer of at
 * most max_bytes; on failure -1 and cli_errmsg() names the file and why. */
int cli_read_file(const char *path, size_t max_bytes, char **data, size_t *len);
/* 1 when path is a folder / a regular file. */
int cli_is_dir(const char *path);
int cli_is_file(const char *path);
/* dir/name, malloc'd. */
char *cli_path_join(const char *dir, const char *name);

/* "12.3 MiB" into buf */
char *cli_bytes(size_t n, char buf[32]);
/* Peak resident set size in bytes. */
size_t cli_peak_rss(void);
/* The end-of-run report on stderr: prompt and generation speed, state
 * memory, peak RSS. */
void cli_report(const rg_generate_result *r, const rg_model *m);
const char *cli_stop_name(rg_stop_reason r);

#endif
