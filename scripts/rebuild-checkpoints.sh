#!/usr/bin/env bash
# Rebuilds the shipped checkpoints from nothing, in the order the stages need, and copies them
# into model/checkpoints/. Each command resumes where it stopped when run again.
#   stage 1 (AR)  -> model/checkpoints/ar-tiny   (< 1 h on a 2-core CPU)
#   stage 2 (RAD) -> model/checkpoints/rad-b8    (the multi-step teacher)
#   stage 3 (DCD) -> model/checkpoints/dcd-b8    (one forward per block; since 2026-12-04 from
#                    dcd-l2r-ngrams-b8.json: the teacher rolled out left to right, the n-gram
#                    student round; benchmarks/results/teacher_order.md)
# Stages 2 + 3 at B = 8 take ~58 min on both cores, estimated from the parts of stage 3
# (benchmarks/results/stages_2_3_time.md).
# BLOCKS="4 8 16" also trains the other block sizes, the first stage-3 recipe dcd-bB.json at every
# B and the factorized baseline (runs/ only), which the benchmark tables compare; only B = 8 ships.
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
for b in $BLOCKS; do
  $ECHOCXR train-rad --config "model/configs/rad-b$b.json" --out "runs/rad-b$b" --seed 0
  if [ -f "model/configs/rad-b$b-more.json" ]; then  # B = 8 and 16 train 1,000 steps more
    $ECHOCXR train-rad --config "model/configs/rad-b$b-more.json" --out "runs/rad-b$b-more" --seed 1
  fi
  if [ "$b" = 8 ]; then
    $ECHOCXR distill --config model/configs/dcd-l2r-ngrams-b8.json --out runs/dcd-l2r-ngrams-b8 \
      --seed 0
  fi
  if [ "$BLOCKS" != 8 ]; then
    $ECHOCXR distill --config "model/configs/dcd-b$b.json" --out "runs/dcd-b$b" --seed 0
    $ECHOCXR distill --config "model/configs/dcd-factorized-b$b.json" \
      --out "runs/dcd-factorized-b$b" --seed 0
  fi
done
ship rad-b8-more rad-b8
ship dcd-l2r-ngrams-b8 dcd-b8
