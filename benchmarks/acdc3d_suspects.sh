#!/usr/bin/env bash
# Why is 3D behind 2D on ACDC? Dense labels (method full) through the 3D path, one
# suspect at a time, 500 iterations each at half width, then inference-only checks of one
# checkpoint (window blending and overlap, the validation against dmsps evaluate).
# docs/results.md section 12 has the figures. Usage:
#   DATA=data/acdc OUT=bench-out/acdc3d-suspects bash benchmarks/acdc3d_suspects.sh [NAMES]
# NAMES (default all): A B C D E F H P checks. A run whose final.json exists is skipped.
# SEED=N (default 0) trains with that seed; runs other than seed 0 are named NAME_sN.
set -euo pipefail
DATA=${DATA:?set DATA to the ACDC dataset (dmsps import acdc-h5)}
OUT=${OUT:-bench-out/acdc3d-suspects}
SEED=${SEED:-0}
mkdir -p "$OUT"
BASE=(train "$DATA" --preset acdc-3d --method full --iterations 500 --val-interval 125
      --features 8,16,32,64,128 --cache-dir "$OUT/cache3mm" --quiet)
ANISO=(--kernel-sizes 1x3x3,3x3x3,3x3x3,3x3x3,3x3x3 --pool-strides 1x2x2,2x2x2,1x2x2,1x2x2)
BN=(--norm batch --activation leakyrelu)
PLANNED=("${ANISO[@]}" "${BN[@]}" --patch-size 10,128,112)
SLABS=("${ANISO[@]}" "${BN[@]}" --patch-size 4,128,112 --batch-size 6)  # the planner's rule

train() {  # name, settings...
    local name=$1; shift
    [ "$SEED" = 0 ] || name="${name}_s$SEED"
    [ -f "$OUT/$name/final.json" ] && return 0
    echo "== $name $(date +%T)"
    dmsps "${BASE[@]}" --seed "$SEED" --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
    tail -1 "$OUT/$name.log"
}

checks() {  # inference only, on D's best checkpoint
    local ckpt="$OUT/D/checkpoints/best.pt"
    for v in "gaussian 0.25" "gaussian 0.5" "constant 0.25"; do
        set -- $v
        local tag="infer_$1_$2"
        [ -f "$OUT/$tag/metrics/summary.json" ] && continue
        dmsps predict "$ckpt" "$DATA" "$OUT/$tag/pred" --split val --blend "$1" --overlap "$2" --quiet
        dmsps evaluate "$OUT/$tag/pred" "$DATA" --out "$OUT/$tag/metrics" --quiet | tail -2
    done
}

for name in ${@:-A B C D E F H P checks}; do
    case $name in
        A) train A ;;                                   # acdc-3d's network: 3x3x3, instance norm, 8 x 96 x 96
        B) train B "${ANISO[@]}" ;;                      # + per-level kernels / pooling (1x3x3 on thick slices)
        C) train C "${ANISO[@]}" "${BN[@]}" ;;           # + BatchNorm, LeakyReLU
        D) train D "${PLANNED[@]}" ;;                    # + the planned patch 10 x 128 x 112
        H) train H "${SLABS[@]}" ;;                      # D with more hearts a step: 6 x 4 slices
        E) train E "${SLABS[@]}" --optimizer sgd --lr 0.01 --weight-decay 1e-4 ;;  # H with SGD (poly) instead of Adam
        F) train F "${SLABS[@]}" --centring class ;;     # H centred on a scribbled class first
        P) train P "${SLABS[@]}" --amp none ;;           # H in fp32 (amp=auto is bf16 on CPUs with native bf16)
        checks) checks ;;
        *) echo "unknown step $name" >&2; exit 2 ;;
    esac
done
