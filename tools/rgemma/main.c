#include <stdio.h>
#include <string.h>
#include "rgemma.h"
#include "cli_util.h"
#include "commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    int takes_model; /* -m MODEL, hence -hf ORG/NAME[@REV] (cli_hf_args) */
} command;

static const command commands[] = {
    {"generate", cmd_generate, "generate text or token ids from a prompt", 1},
    {"quantize", cmd_quantize, "write a GGUF file (f32, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m); --eval measures the quality cost", 0},
    {"bench", cmd_bench, "prefill and decode speed, as fractions of this machine's roofline", 1},
    {"tokenize", cmd_tokenize, "text to token ids (also JSON Lines, tokenizer.json -> .model, benchmark)", 1},
    {"detokenize", cmd_detokenize, "token ids to text", 1},
    {"chat", cmd_chat, "talk to an instruction-tuned model (Gemma turns; the state is kept between turns)", 1},
    {"synth", cmd_synth, "write a checkpoint folder of RANDOM weights in the released shapes", 0},
    {"perplexity", cmd_perplexity, "perplexity of a text file (llama.cpp style)", 1},
    {"eval", cmd_eval, "score benchmark tasks (multiple choice, generation, maj@k) from JSONL", 1},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (chat, completions, streaming)", 1},
    {"pull", cmd_pull, "download a model from Hugging Face into the shared cache (also: -hf ORG/NAME)", 0},
    {"train", cmd_train, "train from scratch, fine-tune or LoRA on text or chat data (AdamW, checkpoints, resume)", 1},
};

static void usage(FILE *f) {
    fprintf(f, "rgemma %s — RecurrentGemma inference\n\nusage: rgemma COMMAND [options]\n\ncommands:\n",
            RG_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nEvery command that takes -m MODEL also takes -hf ORG/NAME[@REV]: the model from\n"
               "Hugging Face, pulled into the cache first (--offline: from the cache only).\n"
               "'rgemma COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("rgemma %s\n", RG_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int n = argc - 1;
            char **args = argv + 1;
            if (commands[i].takes_model && (n = cli_hf_args(commands[i].name, n, argv + 1, &args)) < 0) return 1;
            return commands[i].run(n, args);
        }
    fprintf(stderr, "rgemma: unknown command '%s' (try 'rgemma --help')\n", argv[1]);
    return 2;
}
