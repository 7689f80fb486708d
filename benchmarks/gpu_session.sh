#!/usr/bin/env bash
# One prepared session on a lent GPU machine (see docs/results.md). In order:
#   1. ACDC at the CPU-budget preset: pce x2 seeds, dmsps (stage 1 + 2) x2, full x1,
#      all at once on the one GPU (each run is small and launch-bound);
#   2. benchmarks/speed.py on the GPU (images/s, % of bf16 peak);
#   3. the paper's setting (256x256, batch 24) for the time left, stopped with SIGINT
#      (saves last.pt) — reports images/s and the validation Dice reached.
# Everything small lands in $OUT. Needs .acdc/acdc_u8.npz.xz (benchmarks/acdc_pack.py)
# and, where nibabel is missing, its wheel in .whl/.
# SMOKE=1 runs the same steps on a fake tiny dataset on the CPU (to test this script).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench-out/gpu}
mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-330}
SPEED_S=${SPEED_S:-100}
PAPER_S=${PAPER_S:-100}
if [ -d .whl ] && ! python3 -c "import nibabel" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
W=/tmp/dmsps-gpu
rm -rf "$W"; mkdir -p "$W"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  nproc; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

if [ "${SMOKE:-0}" = 1 ]; then
  SRC=${SMOKE_SRC:-/tmp/fake_acdc}
  EXTRA=(--set stage1.iterations=6 --set stage2.iterations=4 --set stage1.val_interval=3
         --set stage2.val_interval=2 --set stage1.patch_size=32 --set stage2.patch_size=32)
  PAPER_EXTRA=(--iterations 8 --val-interval 4 --patch-size 32 --batch-size 4)
  SPEED_EXTRA=(--quick)
else
  SRC=$W/acdc_h5
  python3 benchmarks/acdc_pack.py unpack .acdc/acdc_u8.npz.xz "$SRC"
  EXTRA=()
  PAPER_EXTRA=()
  SPEED_EXTRA=()
fi

echo "== 1. ACDC, CPU-budget preset, all methods at once ($(date +%T))"
timeout "$BUDGET_S" python3 benchmarks/acdc.py --source "$SRC" --work "$W/acdc" \
  --device "$DEVICE" --parallel 5 "${EXTRA[@]}" > "$OUT/acdc.log" 2>&1
echo "acdc.py exit $?"
tail -25 "$OUT/acdc.log"

echo "== 2. speed benchmark ($(date +%T))"
timeout "$SPEED_S" python3 benchmarks/speed.py --device "$DEVICE" --out "$OUT/speed_gpu.json" \
  "${SPEED_EXTRA[@]}" > "$OUT/speed.log" 2>&1
echo "speed.py exit $?"
tail -30 "$OUT/speed.log"

echo "== 3. paper setting for ${PAPER_S}s ($(date +%T))"
timeout -s INT "$PAPER_S" python3 -m dmsps.cli train "$W/acdc/dataset" --preset acdc-paper \
  --out "$W/paper" --device "$DEVICE" --quiet "${PAPER_EXTRA[@]}" > "$OUT/paper.log" 2>&1
echo "paper exit $?"
cp "$W/paper/log.csv" "$OUT/paper_log.csv" 2>/dev/null
tail -5 "$OUT/paper_log.csv" 2>/dev/null

cp "$W/acdc/results.json" "$W/acdc/results.md" "$OUT/" 2>/dev/null
tar czf "$OUT/runs.tgz" -C "$W/acdc" --exclude='*.pt' --exclude='*.nii.gz' --exclude='*.png' runs 2>/dev/null
ls -la "$OUT"
