#!/bin/sh
# No file in src/ or tools/ includes a header from a layer above its own
# (scripts/check-layers.sh names the layers).
sh scripts/check-layers.sh
