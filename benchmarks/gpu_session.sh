#!/usr/bin/env bash
# One prepared session on a lent GPU machine (see docs/results.md). In order:
#   1. ACDC method matrix at the CPU-budget preset `acdc`: pce x2, dmsps (stage 1 +
#      stage 2) x2, full x1, all at once on the one GPU (each run is small and
#      launch-bound), fp32 like the CPU path (amp=none), one CPU thread per process;
#      then three stage-2 variants per dmsps seed from the same stage-1 weights;
#   2. benchmarks/speed.py on the GPU (images/s, % of dense bf16 peak), GPU to itself;
#   3. the paper's setting (256x256, batch 24, bf16) for the time left, GPU to itself,
#      stopped with SIGINT (saves last.pt): images/s and the validation Dice reached.
# Everything lands in $OUT as few files (the device tool returns at most 8).
# Needs .acdc/acdc_u8.npz.xz (benchmarks/acdc_pack.py; ignored by git, so name it in the
# device tool's carry) and, where nibabel is missing
# there, its wheel in .whl/. SMOKE=1 runs the same steps on a fake tiny dataset on the
# CPU (to test this script).
# History: commit d4cd1da's version ran three matrices at once on an H200 (the preset of
# then, a 192x192 one, an lr variant); its outputs are in benchmarks/records/2026-11-26-h200.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench-out/gpu}
mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-330}
SPEED_S=${SPEED_S:-100}
PAPER_S=${PAPER_S:-90}
if [ -d .whl ] && ! python3 -c "import nibabel" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
W=/tmp/dmsps-gpu
rm -rf "$W"; mkdir -p "$W/logs"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  nproc; } > "$W/logs/machine.txt" 2>&1
cat "$W/logs/machine.txt"

if [ "${SMOKE:-0}" = 1 ]; then
  SRC=${SMOKE_SRC:-/tmp/fake_acdc}
  TINY=(--set stage1.iterations=6 --set stage2.iterations=4 --set stage1.val_interval=3
        --set stage2.val_interval=2 --set stage1.patch_size=32 --set stage2.patch_size=32)
  PAPER_EXTRA=(--iterations 8 --val-interval 4 --patch-size 32 --batch-size 4)
  SPEED_EXTRA=(--quick)
else
  SRC=$W/acdc_h5
  python3 benchmarks/acdc_pack.py unpack .acdc/acdc_u8.npz.xz "$SRC"
  TINY=()
  PAPER_EXTRA=()
  SPEED_EXTRA=(${SPEED_ARGS:---rounds 3 --variant fp32:amp=none --variant nchw:channels_last=0})
fi
FP32=(--set stage1.amp=none --set stage2.amp=none)

echo "== 0. import ($(date +%T))"
python3 -m dmsps.cli import acdc-h5 "$SRC" "$W/dataset" > "$W/logs/import.log" 2>&1 \
  || { cat "$W/logs/import.log"; exit 1; }

echo "== 1. ACDC matrix at once ($(date +%T))"
bench() {  # name, then acdc.py arguments
  local name=$1; shift
  OMP_NUM_THREADS=1 timeout "$BUDGET_S" python3 benchmarks/acdc.py --source "$SRC" \
    --dataset "$W/dataset" --work "$W/$name" --device "$DEVICE" "$@" \
    > "$W/logs/acdc_$name.log" 2>&1
  echo "acdc.py $name exit $? ($(date +%T))"
}
# Stage-2 variants from the same stage-1 weights and seeds: SGD with poly decay at two
# learning rates, and Adam with poly decay (both anneal, so the last weights are stable)
# next to the preset's constant-lr Adam, which ended below stage 1 on the CPU run.
bench preset --parallel 5 "${FP32[@]}" "${TINY[@]}" \
  --stage2-variant sgd01:optimizer=sgd,lr=0.01,weight_decay=0.0001 \
  --stage2-variant sgd003:optimizer=sgd,lr=0.003,weight_decay=0.0001 \
  --stage2-variant adampoly:schedule=poly
# timeout stops acdc.py but not the dmsps commands it started: stop them (only ours,
# matched by the work folder) before timing.
pkill -f -- "dmsps.cli .*$W/" && sleep 2
for name in preset; do
  echo "-- $name"
  tail -22 "$W/logs/acdc_$name.log"
  for f in "$W/$name"/runs/*/commands.log; do  # a failed run: show its error
    grep -q "Traceback\|error" "$f" 2>/dev/null && { echo "[$f]"; tail -15 "$f"; }
  done
done

echo "== 2. speed benchmark ($(date +%T))"
timeout "$SPEED_S" python3 benchmarks/speed.py --device "$DEVICE" --out "$OUT/speed_gpu.json" \
  "${SPEED_EXTRA[@]}" > "$W/logs/speed.log" 2>&1
echo "speed.py exit $?"
tail -30 "$W/logs/speed.log"

if [ "$PAPER_S" -gt 0 ]; then
  echo "== 3. paper setting for ${PAPER_S}s ($(date +%T))"
  timeout -s INT "$PAPER_S" python3 -m dmsps.cli train "$W/dataset" --preset acdc-paper \
    --out "$W/paper" --device "$DEVICE" --quiet "${PAPER_EXTRA[@]}" > "$W/logs/paper.log" 2>&1
  echo "paper exit $?"
  tail -3 "$W/logs/paper.log"
  cp "$W/paper/log.csv" "$W/logs/paper_log.csv" 2>/dev/null
  grep -v '^$' "$W/paper/log.csv" 2>/dev/null | awk -F, 'NR==1 || /,0\.[0-9]/' | tail -8
fi

for name in preset; do
  cp "$W/$name/results.json" "$W/logs/results_$name.json" 2>/dev/null
  cp "$W/$name/results.md" "$W/logs/results_$name.md" 2>/dev/null
done
tar czf "$OUT/session.tgz" -C "$W" --exclude='*.pt' --exclude='*.nii.gz' --exclude='*.png' \
  --exclude='*.npy' --exclude='dataset' --exclude='acdc_h5' logs preset paper 2>/dev/null
cat "$W"/logs/results_*.md 2>/dev/null
ls -la "$OUT"
