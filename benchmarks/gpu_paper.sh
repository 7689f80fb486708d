#!/usr/bin/env bash
# The paper's ACDC setting with both pseudo-label loss forms, on a lent GPU, in pieces.
#
#   OUT=$OUT bash benchmarks/gpu_paper.sh                   # the first piece
#   STATE=.gpu-paper OUT=$OUT bash benchmarks/gpu_paper.sh  # every later piece
#
# Two `dmsps run --preset acdc-paper` (256 x 256, batch 24, 30 000 + 20 000 iterations),
# one with the paper's pseudo-label loss formula (soft-ce) and one with the authors'
# published form (authors: H(q, softmax(softmax(z))), the default since 2026-12-03),
# everything else equal, train at once on the one GPU (each is launch-bound, so two
# share it well). After PIECE_S seconds each gets
# SIGINT: the trainer finishes its iteration, saves last.pt and exits; a rerun resumes.
#
# The device machine is fresh at every start, so each run folder travels back: packed
# (without caches, predictions and, once stage 1 is complete, its last.pt) into
# $OUT/state_<form>.tar.xz.part_aa, _ab, ... of at most 15 MiB (the device tool returns
# 8 files of at most 16 MiB). For the next piece put all parts into one ignored folder
# of the working tree (.gpu-paper/ is ignored by git), carry it, and pass it as STATE.
#
# When both runs are complete, $OUT/paper_results.json holds per stage the validation
# Dice (monai and medpy conventions), HD95 and training minutes, beside the paper's
# 88.94 % (stage 1) and 89.51 % (stage 2); $OUT/log_<form>.txt holds each piece's output.
# The data: .acdc/acdc_u8.npz.xz (benchmarks/acdc_pack.py pack; carry it), unpacked and
# imported here. SMOKE=1 runs the same steps on tiny synthetic cardiac data on the CPU.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench-out/gpu-paper}
STATE=${STATE:-}
DEVICE=${DEVICE:-cuda}
PIECE_S=${PIECE_S:-540}
FORMS=(soft-ce authors)
W=${WORK:-/tmp/dmsps-paper}  # fixed: the run folders record absolute paths under it
mkdir -p "$OUT" "$W"
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
DMSPS=(python3 -m dmsps.cli)

if [ "${SMOKE:-0}" = 1 ]; then
  DEVICE=cpu
  EXTRA=()
  for stage in stage1 stage2; do
    for kv in iterations=6 val_interval=3 patch_size=32 batch_size=2 features=4,8,16,32,64 \
              threads=1; do
      EXTRA+=(--set "$stage.$kv")
    done
  done
  [ -f "$W/data/dataset.json" ] || "${DMSPS[@]}" synth cardiac "$W/data" --cases 8 --size 32 \
    --slices 4 > "$W/synth.log" 2>&1 || { cat "$W/synth.log"; exit 1; }
else
  EXTRA=()
  if [ ! -f "$W/data/dataset.json" ]; then
    python3 benchmarks/acdc_pack.py unpack .acdc/acdc_u8.npz.xz "$W/acdc_h5" || exit 1
    "${DMSPS[@]}" import acdc-h5 "$W/acdc_h5" "$W/data" > "$W/import.log" 2>&1 \
      || { cat "$W/import.log"; exit 1; }
  fi
fi

for form in "${FORMS[@]}"; do  # an earlier piece's state, if any
  if [ -n "$STATE" ] && ls "$STATE/state_$form.tar.xz.part_"* > /dev/null 2>&1; then
    rm -rf "${W:?}/$form"
    cat "$STATE/state_$form.tar.xz.part_"* | tar -C "$W" -xJf - || exit 1
    echo "restored $form from $STATE"
  fi
done

echo "== piece of at most ${PIECE_S}s on $DEVICE ($(date +%T))"
for form in "${FORMS[@]}"; do
  { echo "== piece started $(date -u +%FT%TZ)"
    timeout -s INT -k 120 "$PIECE_S" "${DMSPS[@]}" run "$W/data" --preset acdc-paper \
      --out "$W/$form" --device "$DEVICE" --quiet \
      --set stage1.pl_loss="$form" --set stage2.pl_loss="$form" "${EXTRA[@]}"
    echo "== exit $? $(date -u +%FT%TZ)"; } >> "$W/log_$form.txt" 2>&1 &
done
wait

complete=1
for form in "${FORMS[@]}"; do
  tail -4 "$W/log_$form.txt"
  cp "$W/log_$form.txt" "$OUT/"
  [ -f "$W/$form/metrics/stage2/summary.json" ] || complete=0
  skip=(--exclude="$form/cache" --exclude="$form/predictions" --exclude="$form/report")
  [ -f "$W/$form/stage1/final.json" ] && skip+=(--exclude="$form/stage1/checkpoints/last.pt")
  rm -f "$OUT/state_$form.tar.xz.part_"*
  tar -C "$W" "${skip[@]}" -cJf - "$form" | split -b 15M - "$OUT/state_$form.tar.xz.part_"
done

python3 - "$W" "$OUT" "${FORMS[@]}" <<'PY'
import json
import sys
from pathlib import Path

work, out, forms = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
paper = {"stage1": 0.8894, "stage2": 0.8951}  # the paper's ACDC mean Dice
results = {"paper_dice": paper, "runs": {}}
for form in forms:
    run = {}
    for stage in ("stage1", "stage2"):
        final = work / form / stage / "final.json"
        summary = work / form / "metrics" / stage / "summary.json"
        medpy = work / form / "metrics" / stage / "summary_medpy.json"
        log = work / form / stage / "log.csv"
        row = {}
        if final.is_file():
            f = json.loads(final.read_text())
            row.update(iterations=f["iterations"], train_minutes=f["train_seconds"] / 60,
                       best_val_dice=f["best_val_dice"])
        elif log.is_file():
            lines = log.read_text().splitlines()
            row["iterations_so_far"] = int(lines[-1].split(",")[0]) if len(lines) > 1 else 0
        for name, path in (("monai", summary), ("medpy", medpy)):
            if path.is_file():
                s = json.loads(path.read_text())["foreground_mean"]
                row[name] = {"dice": s["dice"]["mean"], "hd95": s["hd95"]["mean"]}
        run[stage] = row
    results["runs"][form] = run
(out / "paper_results.json").write_text(json.dumps(results, indent=2) + "\n")
print(json.dumps(results["runs"], indent=1))
PY
if [ "$complete" = 1 ]; then
  echo "both runs complete: $OUT/paper_results.json"
else
  echo "not complete yet: put $OUT/state_* into a folder of the working tree, carry it and"
  echo "rerun with STATE=<that folder>"
fi
ls -la "$OUT"
