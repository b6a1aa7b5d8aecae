#!/usr/bin/env bash
# Every GPU check of this project in one command, for a lent GPU machine (device tool), in order of
# importance, each step time-boxed so that a failure or a slow step leaves time for the next:
#   1. throughput: the reference against our loop, side by side (benchmarks/throughput.py)
#   2. 20 epochs on 10,000 CIFAR-10 images: ours (two learning rates) and the reference, kNN on 2,000
#   3. the Lightning scripts: a short run each; the distributed one with SyncBatchNorm in bf16
#   4. the accuracy run: our example on all of CIFAR-10 for as many epochs as the time left allows
# Needs .carry/cifar10.tgz (tar czf of ../shared/data/cifar10) and .carry/wheels/lightly-1.6.0-*.whl.
# Results, logs and metrics are packed into $OUT/results.tgz after every step.
set -u
export PYTHONUNBUFFERED=1
START=$(date +%s)
BUDGET=${BUDGET:-540}   # seconds this script may take in all
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" runs benchmarks/results
LOG="$OUT/session.log"
exec > >(tee -a "$LOG") 2>&1

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
pack() { tar czf "$OUT/results.tgz" benchmarks/results runs/*/metrics.jsonl 2>/dev/null; }
step() { echo; echo "=== $1 ($(left) s left) $(date +%T)"; }

step "setup"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torchvision, pytorch_lightning as pl; print(torch.__version__, torchvision.__version__, pl.__version__, torch.cuda.get_device_name())"
tar xzf .carry/cifar10.tgz -C /tmp
python3 -m pip install --no-deps --no-index -q .carry/wheels/lightly-*.whl
DATA=/tmp/cifar10
GPU=$(python3 -c "import torch; print(torch.cuda.get_device_name().lower().replace(' ', '-'))")
WORKERS=$(( $(nproc) - 1 ))

step "1. throughput"
timeout 150 python3 benchmarks/throughput.py --data $DATA/train --batch-size 256 --workers $WORKERS || echo "FAILED: throughput"
pack

step "2. 20 epochs on 10,000 images"
SUBSET="--train $DATA/train --test $DATA/test --train-images 10000 --test-images 2000"
for lr in 0.2 0.12; do
  timeout 70 python3 benchmarks/accuracy.py --name $GPU-20ep-10k-ours-lr$lr $SUBSET -- \
    python3 examples/pytorch/byol.py --data $DATA/train --train-images 10000 --val $DATA/test --val-images 2000 \
    --epochs 20 --eval-every 5 --lr $lr --num-workers $WORKERS || echo "FAILED: ours lr $lr"
  pack
done
timeout 90 python3 benchmarks/accuracy.py --name $GPU-20ep-10k-reference $SUBSET -- \
  python3 benchmarks/reference_byol.py --data $DATA/train --train-images 10000 --epochs 20 \
  --num-workers $WORKERS || echo "FAILED: reference"
pack
BEST_LR=$(python3 - <<PY
import json, glob
runs = {json.load(open(p))["command"].split("--lr ")[1].split()[0]: json.load(open(p))["knn_top1"]
        for p in glob.glob("benchmarks/results/accuracy-$GPU-20ep-10k-ours-lr*.json")}
print(max(runs, key=runs.get) if runs else "0.2")
PY
)
echo "learning rate for the accuracy run: $BEST_LR"

step "3. Lightning scripts"
SHORT="--data $DATA/train --train-images 10000 --val $DATA/test --val-images 2000 --epochs 3 --eval-every 3 --num-workers $WORKERS"
timeout 60 python3 examples/pytorch_lightning/byol.py $SHORT --output-dir runs/lightning-short || echo "FAILED: lightning"
timeout 60 python3 examples/pytorch_lightning_distributed/byol.py $SHORT --devices 1 \
  --output-dir runs/lightning-distributed-short || echo "FAILED: lightning distributed"
timeout 45 python3 examples/pytorch/byol.py $SHORT --output-dir runs/pytorch-short || echo "FAILED: pytorch short"
pack

step "4. accuracy run on all of CIFAR-10"
# Epochs that fit: the time left, less about 60 s of start-up and final evaluation, at the default
# loop's measured images/s (or 12,000/s if the throughput step failed).
EPOCHS=$(python3 - <<PY
import json, os
path = "benchmarks/results/throughput-$GPU.json"
ips = json.load(open(path))["default_images_per_s"] if os.path.exists(path) else 12000
print(max(5, int(($(left) - 75) * 0.9 * ips / 50000)))
PY
)
echo "epochs: $EPOCHS"
timeout $(( $(left) - 10 )) python3 benchmarks/accuracy.py --name $GPU-full-${EPOCHS}ep \
  --train $DATA/train --test $DATA/test -- \
  python3 examples/pytorch/byol.py --data $DATA/train --val $DATA/test --epochs $EPOCHS --eval-every 10 \
  --lr $BEST_LR --num-workers $WORKERS || echo "FAILED: accuracy run"
pack
step "done"
