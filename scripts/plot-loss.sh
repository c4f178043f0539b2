#!/bin/sh
# The loss curve of `rgemma train --csv FILE` as a PNG (gnuplot, Debian
# package gnuplot-nox): training loss per step, held-out loss where it was
# measured, log scale.
# usage: sh scripts/plot-loss.sh train.csv [loss.png]
set -eu
csv=${1:?usage: sh scripts/plot-loss.sh train.csv [loss.png]}
png=${2:-${csv%.csv}.png}
command -v gnuplot >/dev/null || { echo "plot-loss: gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
gnuplot <<GP
set terminal png size 900,500
set output '$png'
set datafile separator ','
set key autotitle columnhead
set xlabel 'step'
set ylabel 'loss (nats per token)'
set logscale y
set grid
plot '$csv' using 1:2 with lines lw 2 title 'train', \
     '' using 1:3 with linespoints pt 7 lw 2 title 'held out'
GP
echo "$png"
