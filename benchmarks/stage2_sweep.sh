#!/usr/bin/env bash
# Stage-2 sweep from one finished `dmsps run` folder: each variant expands the scribbles
# with its own settings from the same stage-1 weights, trains stage 2 with the run's
# preset plus the variant's overrides, and reports the final validation Dice (the last
# weights, as `--set checkpoint=last` does). Variants run one after another.
#
#   benchmarks/stage2_sweep.sh RUN DATASET OUT 'NAME|EXPAND FLAGS|TRAIN FLAGS' ...
# A train flag `--scratch` starts stage 2 from fresh weights instead of stage 1's.
# e.g.
#   benchmarks/stage2_sweep.sh bench-out/acdc-cpu4k/runs/dmsps-s0 bench-out/acdc-cpu/dataset \
#       bench-out/s2sweep 'tta|--tta|' 't03|--threshold 0.3|' 'scratch||--scratch --lr 0.03 --iterations 2000'
set -euo pipefail
run=$1 data=$2 out=$3; shift 3
ckpt=$run/stage1/checkpoints/last.pt
preset=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['preset'])" "$run/config.json")
mkdir -p "$out"
for spec in "$@"; do
  IFS='|' read -r name eflags tflags <<<"$spec"
  init=(--init-from "$ckpt")
  if [[ " $tflags " == *" --scratch "* ]]; then
    init=()
    tflags=${tflags//--scratch/}
  fi
  seeds=$out/$name/seeds
  echo "== $name: expand [$eflags] train [$tflags]"
  # shellcheck disable=SC2086
  dmsps expand "$ckpt" "$data" "$seeds" --device cpu --quiet $eflags
  # shellcheck disable=SC2086
  dmsps train "$data" --out "$out/$name/stage2" --preset "$preset" --stage 2 \
      "${init[@]}" --scribble-dir "$seeds" --device cpu --quiet $tflags
  python - "$out/$name" <<'PY'
import csv, json, sys
from pathlib import Path
d = Path(sys.argv[1])
rows = [r for r in csv.DictReader(open(d / "stage2/log.csv")) if r["val_dice"]]
s = json.load(open(d / "seeds/expand_summary.json"))
curve = " ".join(f"{float(r['val_dice']):.3f}" for r in rows)
print(f"{d.name}: final val Dice {float(rows[-1]['val_dice']):.4f} (curve {curve}), "
      f"{float(rows[-1]['elapsed_s']) / 60:.1f} min, seed accuracy {s['added_accuracy']:.4f}")
PY
done
