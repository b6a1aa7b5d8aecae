#!/usr/bin/env bash
# Every GPU check of this project in one command, for a lent GPU machine (device tool), in order of
# importance, each step time-boxed so that a failure or a slow step leaves time for the next:
#   1. throughput: the reference against our loop, side by side, the augmentation alone, batch 512
#   2. 20 epochs on 10,000 CIFAR-10 images, ours and the reference, kNN on 2,000 test images, both at
#      the reference's batch of 256 (our default 512 would leave 19 steps per epoch on 10,000 images)
#   3. the accuracy run: our example on all of CIFAR-10 for as many epochs as the time left allows
# Needs .carry/cifar10.tgz (tar czf of ../shared/data/cifar10) and .carry/wheels/lightly-1.6.0-*.whl, and
# if the machine lacks kornia, its wheels for the machine's Python there too (kornia, kornia_rs).
# Results, logs and metrics are packed into $OUT/results.tgz after every step.
# BUDGET (seconds, default 560) must fit the device time left less the machine's start-up: read
# budget_left_s from the device tool's status first, e.g. `BUDGET=480 bash benchmarks/gpu_session.sh`,
# with the call's timeout_s at least BUDGET + 30.
set -u
export PYTHONUNBUFFERED=1
START=$(date +%s)
BUDGET=${BUDGET:-560}   # seconds this script may take in all
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" runs benchmarks/results
exec > >(tee -a "$OUT/session.log") 2>&1

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
pack() { tar czf "$OUT/results.tgz" benchmarks/results runs/*/metrics.jsonl 2>/dev/null; }
step() { echo; echo "=== $1 ($(left) s left) $(date +%T)"; }

step "setup"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import torch, torchvision, pytorch_lightning as pl; print(torch.__version__, torchvision.__version__, pl.__version__, torch.cuda.get_device_name())"
tar xzf .carry/cifar10.tgz -C /tmp
python3 -m pip install --no-deps --no-index -q .carry/wheels/lightly-*.whl
python3 -c "import kornia" 2>/dev/null || python3 -m pip install --no-deps --no-index -q .carry/wheels/kornia*.whl
python3 -c "import kornia; print('kornia', kornia.__version__)" || echo "FAILED: no kornia: the examples cannot run"
DATA=/tmp/cifar10
GPU=$(python3 -c "import torch; print(torch.cuda.get_device_name().lower().replace(' ', '-'))")
WORKERS=$(( $(nproc) - 1 ))

step "1. throughput"
# the committed figures of an earlier session must not pass for this one's (step 3 reads the file)
rm -f benchmarks/results/throughput-$GPU.json
timeout 200 python3 benchmarks/throughput.py --data $DATA/train --batch-size 256 --workers $WORKERS \
  --warmup 10 --steps 50 || echo "FAILED: throughput"
pack

step "2. 20 epochs on 10,000 images"
python3 benchmarks/subset.py $DATA/train runs/subsets/train-10k --images 10000
python3 benchmarks/subset.py $DATA/test runs/subsets/test-2k --images 2000
SUBSET="--train runs/subsets/train-10k --test runs/subsets/test-2k"
timeout 130 python3 benchmarks/accuracy.py --name $GPU-20ep-10k-ours $SUBSET -- \
  python3 examples/pytorch/byol.py --data runs/subsets/train-10k --val runs/subsets/test-2k \
  --epochs 20 --batch-size 256 --eval-every 5 --num-workers $WORKERS || echo "FAILED: ours"
pack
timeout 130 python3 benchmarks/accuracy.py --name $GPU-20ep-10k-reference $SUBSET -- \
  python3 benchmarks/reference_byol.py --data runs/subsets/train-10k --epochs 20 \
  --num-workers $WORKERS || echo "FAILED: reference"
pack

step "3. accuracy run on all of CIFAR-10"
# Batch 512 if the throughput step found it clearly faster; epochs that fit the time left, less about
# 70 s of start-up and final evaluation, at the measured images/s (12,000/s if that step failed).
if [ "$(left)" -lt 120 ]; then
  echo "SKIPPED: $(left) s left, too few for an accuracy run on all of CIFAR-10"
else
  read BATCH EPOCHS < <(python3 - <<PY
import json, os
path = "benchmarks/results/throughput-$GPU.json"
record = json.load(open(path)) if os.path.exists(path) else {}
ips = record.get("default_images_per_s") or 12000
ips_512 = record.get("candidates_images_per_s", {}).get("default_batch_512") or 0
batch, ips = (512, ips_512) if ips_512 > 1.15 * ips else (256, ips)
print(batch, max(1, int(($(left) - 70) * 0.85 * ips / 50000)))
PY
  )
  echo "batch $BATCH, epochs $EPOCHS"
  timeout $(( $(left) - 5 )) python3 benchmarks/accuracy.py --name $GPU-full-${EPOCHS}ep \
    --train $DATA/train --test $DATA/test -- \
    python3 examples/pytorch/byol.py --data $DATA/train --val $DATA/test --epochs $EPOCHS --eval-every 10 \
    --batch-size $BATCH --num-workers $WORKERS || echo "FAILED: accuracy run"
  pack
fi
step "done"
