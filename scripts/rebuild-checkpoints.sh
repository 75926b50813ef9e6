#!/usr/bin/env bash
# Rebuilds the shipped checkpoints from nothing, in the order the stages need, and copies them
# into model/checkpoints/. Each command resumes where it stopped when run again.
#   stage 1 (AR)  -> model/checkpoints/ar-tiny   (< 1 h on a 2-core CPU)
#   stage 2 (RAD) -> model/checkpoints/rad-b8    (the multi-step teacher)
#   stage 3 (DCD) -> model/checkpoints/dcd-b8    (one forward per block, from dcd-l2r-ngrams-b8.json:
#                    the teacher rolled out left to right, the n-gram student round)
#   B = 4         -> model/checkpoints/dcd-b4    (the default engine's: stage 2 continued at B = 4
#                    from the B = 8 teacher, then the same stage-3 recipe)
# The default's stages 2 + 3 (rad-b8, rad-b8-more, rad-b4-from-b8, dcd-l2r-ngrams-b4) took
# 51.9 min on both cores (benchmarks/results/block_sizes_from_b8.md); B = 8's stage 3 adds ~23.
# BLOCKS="4 8 16" also trains, into runs/ only, what the benchmark tables compare: at B = 8 the
# first stage-3 recipe (dcd-b8.json) and the factorized baseline, at B = 4 the factorized
# baseline, and B = 16 from the B = 8 teacher like B = 4 (rad-b16-from-b8.json) with its
# factorized baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
ECHOCXR=.venv/bin/echocxr
BLOCKS=${BLOCKS:-8}

ship() {  # ship RUN NAME: copy a finished run's checkpoint into the package
  rm -rf "model/checkpoints/$2"
  mkdir -p model/checkpoints
  cp -r "runs/$1/checkpoint" "model/checkpoints/$2"
}

$ECHOCXR train --stage ar --config model/configs/ar-tiny.json --out runs/ar-tiny --seed 0
ship ar-tiny ar-tiny
$ECHOCXR train-rad --config model/configs/rad-b8.json --out runs/rad-b8 --seed 0
$ECHOCXR train-rad --config model/configs/rad-b8-more.json --out runs/rad-b8-more --seed 1
ship rad-b8-more rad-b8  # B = 4 and 16 start from the shipped teacher
$ECHOCXR distill --config model/configs/dcd-l2r-ngrams-b8.json --out runs/dcd-l2r-ngrams-b8 --seed 0
ship dcd-l2r-ngrams-b8 dcd-b8
from_b8() {  # from_b8 B: stage 2 continued at block size B from the B = 8 teacher, then stage 3
  $ECHOCXR train-rad --config "model/configs/rad-b$1-from-b8.json" --out "runs/rad-b$1-from-b8" \
    --seed 0
  $ECHOCXR distill --config "model/configs/dcd-l2r-ngrams-b$1.json" \
    --out "runs/dcd-l2r-ngrams-b$1" --seed 0
}
from_b8 4
ship dcd-l2r-ngrams-b4 dcd-b4
if [ "$BLOCKS" != 8 ]; then  # the rows the benchmark tables compare the shipped students with
  $ECHOCXR distill --config model/configs/dcd-b8.json --out runs/dcd-b8 --seed 0
  $ECHOCXR distill --config model/configs/dcd-factorized-b8.json --out runs/dcd-factorized-b8 \
    --seed 0
  for b in $BLOCKS; do
    if [ "$b" = 16 ]; then
      from_b8 16
    fi
    if [ "$b" != 8 ]; then
      $ECHOCXR distill --config "model/configs/dcd-factorized-b$b-from-b8.json" \
        --out "runs/dcd-factorized-b$b-from-b8" --seed 0
    fi
  done
fi
