/* rgemma pull: a model repository of the Hugging Face hub into the
 * huggingface_hub cache (rg_hub_pull); prints the snapshot folder. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "cli_util.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma pull ORG/NAME[@REV] [--offline] [-q]\n\n"
            "Downloads a model repository of the Hugging Face hub (config.json, the\n"
            "safetensors weights, the tokenizer and its small JSON files) into\n"
            "huggingface_hub's cache, which Python's transformers shares: $HF_HUB_CACHE,\n"
            "else $HF_HOME/hub, else ~/.cache/huggingface/hub. Files already there are\n"
            "not downloaded again, a partial one is resumed, each is verified against\n"
            "its sha256 (git sha1 for small files). Prints the snapshot folder, which\n"
            "-m takes; every command that takes -m also takes -hf ORG/NAME[@REV].\n\n"
            "  REV            branch, tag or commit (default main)\n"
            "  --offline      use the cache only (also HF_HUB_OFFLINE=1); without it a\n"
            "                 server that cannot be reached is an error\n"
            "  -q, --quiet    no progress on stderr\n\n"
            "environment: HF_TOKEN (or the file $HF_HOME/token) for gated models,\n"
            "HF_ENDPOINT (default https://huggingface.co), HF_HUB_CACHE, HF_HOME,\n"
            "HF_HUB_OFFLINE, HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT (s, default 10)\n");
}

int cmd_pull(int argc, char **argv) {
    static const struct option opts[] = {
        {"offline", no_argument, 0, 'o'}, {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int offline = 0, quiet = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': offline = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "rgemma: pull: unknown option '%s' (try 'rgemma pull --help')\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "rgemma: pull: %s (try 'rgemma pull --help')\n",
                optind == argc ? "no model given: ORG/NAME[@REV]" : "one model at a time");
        return 2;
    }
    char dir[4096];
    if (cli_pull("pull", argv[optind], offline, quiet, dir, sizeof dir)) return 1;
    printf("%s\n", dir);
    return 0;
}
