/* The rgemma CLI's subcommands: each lives in its own cmd_*.c file and is a
 * thin program over librgemma (include/rgemma.h). */
#ifndef RG_COMMANDS_H
#define RG_COMMANDS_H

int cmd_generate(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_train(int argc, char **argv);

#endif
