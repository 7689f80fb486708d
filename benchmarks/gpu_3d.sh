#!/usr/bin/env bash
# The prepared 3D script for a lent GPU (issue: 3D on WORD/BraTS). Run from the repo root:
#   OUT=$OUT bash benchmarks/gpu_3d.sh          # (set SMOKE=1 to check it on a CPU)
# 1. the 3D training step at 80 x 96 x 96 (batch 1, 4 channels): patches/s and peak GPU
#    memory in bf16 and in fp32 (benchmarks/mem3d.py --only step);
# 2. a short `word` run on synthetic CT in the WORD layout (dmsps synth abdomen ->
#    dmsps import word -> dmsps run --preset word with fewer iterations).
# Results land in $OUT (json + logs); nothing here is timed against other jobs.
set -euo pipefail
OUT=${OUT:-bench-out/gpu3d}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
if [ "${SMOKE:-0}" = 1 ]; then
  STEPS=2; QUICK=--quick; ITERS=4; SHAPE="40 96 96"; CASES=5
else
  STEPS=30; QUICK=; ITERS=3000; SHAPE="80 192 192"; CASES=30
fi
for amp in bf16 none; do
  python benchmarks/mem3d.py $QUICK --only step --device "$DEVICE" --amp "$amp" \
    --steps "$STEPS" --threads 8 --out "$OUT/step_$amp.json" | tee "$OUT/step_$amp.log"
done
VAL=$(( ITERS / 6 > 0 ? ITERS / 6 : 1 ))
dmsps synth abdomen "$OUT/src" --cases "$CASES" --shape $SHAPE --overwrite > "$OUT/synth.log"
dmsps import word "$OUT/src" "$OUT/data" --overwrite > "$OUT/import.log" 2>&1
dmsps run "$OUT/data" --preset word --out "$OUT/run" --device "$DEVICE" --quiet \
  --set stage1.iterations="$ITERS" --set stage2.iterations=$((ITERS / 2)) \
  --set stage1.val_interval=$VAL --set stage2.val_interval=$VAL \
  | tee "$OUT/run.log"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for amp in ("bf16", "none"):
    r = json.loads((out / f"step_{amp}.json").read_text())["train"]
    r = next(iter(r.values()))
    print(amp, {k: r.get(k) for k in ("patches_per_s", "peak_gpu_gb", "step_s_median_after_first")})
for stage in ("stage1", "stage2"):
    s = json.loads((out / "run" / "metrics" / stage / "summary.json").read_text())
    print(stage, "mean Dice", s["foreground_mean"]["dice"]["mean"])
PY
