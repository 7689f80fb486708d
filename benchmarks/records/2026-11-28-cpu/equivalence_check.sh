set -e
ENV=$1; OUT=$2
. $ENV/bin/activate
rm -rf $OUT; mkdir -p $OUT
dmsps train /tmp/acdc/data --out $OUT/s1 --preset acdc --iterations 60 --val-interval 30 --log-interval 10 --device cpu --threads 2 --quiet
dmsps expand $OUT/s1/checkpoints/best.pt /tmp/acdc/data $OUT/seeds --threshold 0.3 --split val --device cpu --quiet > $OUT/expand.txt
dmsps predict $OUT/s1/checkpoints/best.pt /tmp/acdc/data $OUT/pred --split val --uncertainty --device cpu --quiet
