#!/usr/bin/env python3
"""The held-out perplexity of a unigram model: the baseline a trained
language model must beat. Token frequencies are counted on the training
text (add-one smoothing over the vocabulary) and the held-out tokens are
scored by them: PPL = exp(-mean log p(token)).

usage: unigram-ppl.py VOCAB TRAIN_IDS HELDOUT_IDS
The id files hold token ids separated by white space (spm_encode
--output_format=id writes them). Prints one JSON line:
{"unigram_ppl": ..., "heldout_tokens": ..., "train_tokens": ...}.
"""
import collections
import json
import math
import sys


def ids(path):
    with open(path) as f:
        for line in f:
            yield from (int(t) for t in line.split())


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    vocab = int(sys.argv[1])
    counts = collections.Counter(ids(sys.argv[2]))
    train = sum(counts.values())
    total = train + vocab
    nll, n = 0.0, 0
    for t in ids(sys.argv[3]):
        nll -= math.log((counts[t] + 1) / total)
        n += 1
    if n == 0:
        sys.exit("unigram-ppl: no held-out tokens")
    print(json.dumps({"unigram_ppl": round(math.exp(nll / n), 2), "heldout_tokens": n, "train_tokens": train}))


if __name__ == "__main__":
    main()
