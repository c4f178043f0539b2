#!/bin/sh
# Shapes the reference golden data does not cover (lru_width != hidden_size,
# head_dim 32, windows 3 and 5, soft cap 0, a pattern starting with
# attention): tests/reference/griffin_ref.py, an independent plain-Python
# implementation of the forward pass, writes golden cases; check-golden must pass them.
set -e
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 tests/reference/griffin_ref.py "$out"
"$RGEMMA_BUILD/check-golden" "$out"
