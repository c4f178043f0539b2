#!/bin/sh
# Dependencies point down only. Each folder of src/ (and tools/) has a rank;
# a file may include headers of its own folder and of strictly lower ranks,
# never of a sibling or of a layer above it. Prints every offending
# "file:line: includes header (layer > layer)" and exits 1 if there is one.
#   7 tools
#   6 server eval
#   5 generate quant hub train
#   4 model
#   3 tokenizer sampling ops
#   2 formats
#   1 core
#   0 util
# Usage: scripts/check-layers.sh [ROOT]   (default: the current folder)
ROOT=${1:-.}
cd "$ROOT" || exit 2
find src tools -name '*.[ch]' | sort | xargs awk '
BEGIN {
    n = split("util:0 core:1 formats:2 tokenizer:3 sampling:3 ops:3 model:4 generate:5 quant:5 hub:5 train:5 eval:6 server:6 tools:7", kv, " ")
    for (i = 1; i <= n; i++) { split(kv[i], p, ":"); rank[p[1]] = p[2] }
    bad = 0
}
FNR == 1 {
    split(FILENAME, parts, "/")
    layer = parts[1] == "tools" ? "tools" : parts[2]
    if (!(layer in rank)) { printf "%s: folder \"%s\" has no layer in scripts/check-layers.sh\n", FILENAME, layer; bad = 1 }
}
/^[ \t]*#[ \t]*include[ \t]*"/ {
    h = $0
    sub(/^[^"]*"/, "", h); sub(/".*/, "", h)
    if (index(h, "/") == 0) next            # rgemma.h (the public API) or a header beside the file
    split(h, hp, "/")
    to = hp[1]
    if (!(to in rank) || to == layer) next
    if (rank[to] >= rank[layer]) {
        printf "%s:%d: includes \"%s\" (%s, layer %d; %s is layer %d)\n", FILENAME, FNR, h, to, rank[to], layer, rank[layer]
        bad = 1
    }
}
END { exit bad }
'
