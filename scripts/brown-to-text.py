#!/usr/bin/env python3
"""Turn the tagged Brown Corpus (form C: "The/at jury/nn said/vbd ...") into
plain English text: one line per source file (a document), sentences joined
by spaces, tags stripped, and the corpus's tokenised punctuation and quotes
put back as a printed text has them ("``/`` no/at evidence/nn ''/''" ->
"\\"no evidence\\"").

usage: brown-to-text.py CORPUS_DIR OUT_DIR [HELDOUT_EVERY]
Writes OUT_DIR/train.txt and OUT_DIR/heldout.txt: every HELDOUT_EVERY-th
file (default 20, i.e. 5%) in name order goes to heldout.txt, so the
held-out text is whole documents the model never saw.
"""
import os
import re
import sys

OPEN_QUOTES = {"``": '"', "`": "'"}
CLOSE_QUOTES = {"''": '"', "'": "'"}
NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "''", "'", "%"}
NO_SPACE_AFTER = {"``", "`", "(", "[", "{", "$"}


def words_of(line):
    """The words of one tagged sentence line; a word may itself contain '/'."""
    out = []
    for tok in line.split():
        word, sep, tag = tok.rpartition("/")
        out.append(word if sep else tok)
    return out


def detokenize(words):
    text = []
    glue = True  # no space before the next word
    for w in words:
        if w == "." and text and text[-1].endswith("."):
            continue  # "Jr." ends the sentence: one period, as printed
        printed = OPEN_QUOTES.get(w) or CLOSE_QUOTES.get(w) or w
        if text and not glue and w not in NO_SPACE_BEFORE:
            text.append(" ")
        text.append(printed)
        glue = w in NO_SPACE_AFTER
    s = "".join(text)
    # the corpus spaces its dashes ("word -- word"); print them as one dash
    return re.sub(r" ?-- ?", "--", s)


def document(path):
    with open(path, encoding="latin-1") as f:
        sentences = [detokenize(words_of(line)) for line in f if line.strip()]
    return " ".join(s for s in sentences if s)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    every = int(sys.argv[3]) if len(sys.argv) == 4 else 20
    names = sorted(n for n in os.listdir(src) if re.fullmatch(r"c[a-r]\d\d", n))
    if len(names) != 500:
        sys.exit(f"brown-to-text: expected the 500 corpus files ca01..cr09 in {src}, found {len(names)}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "train.txt.tmp"), "w") as tr, open(os.path.join(out, "heldout.txt.tmp"), "w") as ho:
        for i, name in enumerate(names):
            (ho if i % every == every - 1 else tr).write(document(os.path.join(src, name)) + "\n")
    for part in ("train", "heldout"):
        os.replace(os.path.join(out, part + ".txt.tmp"), os.path.join(out, part + ".txt"))


if __name__ == "__main__":
    main()
