#!/usr/bin/env bash
# The pseudo-label loss forms side by side on ACDC at the `acdc` preset (issue: paper
# fidelity, docs/results.md section 8): our soft cross-entropy against the authors'
# double softmax, stage 1 and stage 2, one `dmsps run` per (form, seed), in bf16.
#
#   DATA=imported-acdc OUT=bench-out/form bash benchmarks/loss_forms.sh "authors 0" "soft-ce 0"
#
# Each argument is "FORM SEED"; default: both forms, seeds 0 and 1 (about 55 minutes per
# run on a 2-core CPU with native bf16). A rerun resumes each run where it stopped and
# skips finished ones (`dmsps run` does), then prints the table of finished runs.
set -euo pipefail
DATA=${DATA:?set DATA to an imported ACDC dataset (dmsps import acdc-h5 ...)}
OUT=${OUT:-bench-out/form}
AMP=${AMP:-bf16}
if [ $# -eq 0 ]; then set -- "soft-ce 0" "authors 0" "soft-ce 1" "authors 1"; fi
for spec in "$@"; do
  read -r form seed <<<"$spec"
  echo "== $form seed $seed ($(date -u +%H:%M))"
  dmsps run "$DATA" --preset acdc --seed "$seed" \
    --set stage1.pl_loss="$form" --set stage2.pl_loss="$form" \
    --set stage1.amp="$AMP" --set stage2.amp="$AMP" --out "$OUT/$form-s$seed"
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path

print("| run | stage 1 | stage 2 | RV | Myo | LV (stage 2) | train min (1 + 2) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for run in sorted(Path(sys.argv[1]).iterdir()):
    m = {s: run / "metrics" / s / "summary.json" for s in ("stage1", "stage2")}
    if not all(p.is_file() for p in m.values()):
        continue
    s1, s2 = (json.loads(p.read_text()) for p in m.values())
    mins = [json.loads((run / s / "final.json").read_text())["train_seconds"] / 60
            for s in ("stage1", "stage2")]
    cls = [f"{c['dice']['mean']:.3f}" for c in s2["classes"]]
    d1, d2 = (s["foreground_mean"]["dice"]["mean"] for s in (s1, s2))
    print(f"| {run.name} | {d1:.4f} | {d2:.4f} | "
          f"{' | '.join(cls)} | {mins[0]:.1f} + {mins[1]:.1f} |")
PY
