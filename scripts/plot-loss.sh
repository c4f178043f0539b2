#!/bin/sh
# The loss curve of `rgemma train --csv FILE` as a PNG, or an SVG when the
# output's name ends in .svg (gnuplot, Debian package gnuplot-nox): training
# loss per step, held-out loss where it was measured.
# usage: sh scripts/plot-loss.sh train.csv [loss.png|loss.svg]
set -eu
csv=${1:?usage: sh scripts/plot-loss.sh train.csv [loss.png]}
png=${2:-${csv%.csv}.png}
command -v gnuplot >/dev/null || { echo "plot-loss: gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
case "$png" in *.svg) term="svg size 900,500 dynamic background rgb 'white'" ;; *) term="png size 900,500" ;; esac
gnuplot <<GP
set terminal $term
set output '$png'
set datafile separator ','
set key autotitle columnhead
set xlabel 'step'
set ylabel 'loss (nats per token)'
set grid
plot '$csv' using 1:2 with lines lw 2 title 'train', \
     '' using 1:3 with linespoints pt 7 lw 2 title 'held out'
GP
echo "$png"
