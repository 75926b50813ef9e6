#!/usr/bin/env bash
# Rebuilds the shipped checkpoints from nothing, in the order the stages need, and copies them
# into model/checkpoints/. Each command resumes where it stopped when run again. Every shipped
# checkpoint has one recipe named after it; a recipe names the checkpoint it starts from.
#   stage 1 (AR)  ar-tiny.json                   -> model/checkpoints/ar-tiny
#   stage 2 (RAD) rad-b8-start.json, rad-b8.json -> model/checkpoints/rad-b8  (the B = 8 teacher:
#                 1,500 steps, then 1,000 more from a fresh schedule)
#   stage 3 (DCD) dcd-b8.json                    -> model/checkpoints/dcd-b8
#   B = 4         rad-b4.json, dcd-b4.json       -> model/checkpoints/dcd-b4  (the default engine's:
#                 the B = 8 teacher continued at B = 4, then the dcd-b8 recipe from it)
# Every shipped checkpoint then gets its trust statistics (trust.json: finding calibration,
# out-of-distribution gate, critical thresholds; `echocxr fit-trust`, a few minutes each, the
# first one renders the validation and training images). Training and fitting read phantom
# studies through DICOM (read_study, to_model_input), as serving does.
# Times on the project's 2-core CPU are in docs/model.md. BASELINES=1 also trains, into runs/
# only, the factorized baselines the benchmark compares the students with (on their rollouts).
set -euo pipefail
cd "$(dirname "$0")/.."
ECHOCXR=.venv/bin/echocxr
BASELINES=${BASELINES:-0}

ship() {  # ship RUN NAME: copy a finished run's checkpoint into the package
  rm -rf "model/checkpoints/$2"
  mkdir -p model/checkpoints
  cp -r "runs/$1/checkpoint" "model/checkpoints/$2"
}

$ECHOCXR train --config model/configs/ar-tiny.json --out runs/ar-tiny --seed 0
ship ar-tiny ar-tiny
$ECHOCXR train-rad --config model/configs/rad-b8-start.json --out runs/rad-b8-start --seed 0
$ECHOCXR train-rad --config model/configs/rad-b8.json --out runs/rad-b8 --seed 1
ship rad-b8 rad-b8  # dcd-b8 and rad-b4 start from the shipped teacher
$ECHOCXR distill --config model/configs/dcd-b8.json --out runs/dcd-b8 --seed 0
ship dcd-b8 dcd-b8
$ECHOCXR train-rad --config model/configs/rad-b4.json --out runs/rad-b4 --seed 0
$ECHOCXR distill --config model/configs/dcd-b4.json --out runs/dcd-b4 --seed 0
ship dcd-b4 dcd-b4
for name in ar-tiny rad-b8 dcd-b8 dcd-b4; do
  $ECHOCXR fit-trust --checkpoint "$name"
done
if [ "$BASELINES" = 1 ]; then
  for b in 8 4; do
    $ECHOCXR distill --config "model/configs/dcd-factorized-b$b.json" \
      --out "runs/dcd-factorized-b$b" --seed 0
  done
fi
