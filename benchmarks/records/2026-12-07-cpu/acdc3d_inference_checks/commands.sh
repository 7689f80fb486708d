set -u
D=/work/main/.venv/bin/dmsps
CK=/tmp/x/s3d/authors_s0/stage1/checkpoints/last.pt
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/exp3/src
for v in "gaussian 0.5" "gaussian 0.25" "constant 0.25" "constant 0"; do
  set -- $v; tag=/tmp/x/infer/$1_$2
  [ -f $tag/metrics/summary.json ] && continue
  s=$(date +%s); $D predict $CK /tmp/acdc/data $tag/pred --split val --blend $1 --overlap $2 --quiet --device cpu
  echo "$1 $2 predict $(( $(date +%s)-s )) s"
  $D evaluate $tag/pred /tmp/acdc/data --out $tag/metrics --quiet | tail -3
done
tag=/tmp/x/infer/lcc; $D predict $CK /tmp/acdc/data $tag/pred --split val --largest-component --quiet --device cpu; $D evaluate $tag/pred /tmp/acdc/data --out $tag/metrics --quiet | tail -3
echo done
