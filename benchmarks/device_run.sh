#!/usr/bin/env bash
# The one prepared GPU run (device tool): model benchmarks on CUDA, then the deep-net sweep (ll_plain and
# cifar_resnet at depths 56 and 110, all 50k images, the default Recipe, bf16-mixed + channels-last, the
# ShatteringMonitor attached) and its shattering-during-training figures.
# Needs, carried into the repo root: .whl/ (the timm wheel) and .gpu_data/cifar10-jpeg.zip.
# Everything it measures lands in $OUT; the sweep appends one JSON line per finished run, so a
# timeout still returns every finished run.
# Its logic is tested on CPU (tests/test_examples_logic.py) with
#   OUT=... PRESET=tiny DATA=digits SKIP_INSTALL=1 SKIP_BENCH=1 bash benchmarks/device_run.sh
set -u
PRESET=${PRESET:-gpu-deep}
DATA=${DATA:-.gpu_data/cifar10-jpeg.zip}
SWEEP_OUT=${SWEEP_OUT:-/tmp/sweep}
if [ -z "${SKIP_INSTALL:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
  python3 -c "import torch, timm, lightning; print(torch.__version__, timm.__version__, lightning.__version__)"; } \
  > "$OUT/versions.txt" 2>&1
[ -n "${SKIP_BENCH:-}" ] || (cd benchmarks && timeout 90 python3 models.py --device cuda --repeats 10 > "$OUT/models-cuda.md" 2>&1
 timeout 90 python3 models.py --imagenet --device cuda --batch-size 64 --repeats 10 > "$OUT/models-imagenet-cuda.md" 2>&1)
timeout "${SWEEP_SECONDS:-420}" python3 examples/depth_sweep.py --preset "$PRESET" --data "$DATA" \
  --out "$SWEEP_OUT" --results "$OUT/$PRESET.jsonl" > "$OUT/sweep.log" 2>&1
echo "sweep exit $?" >> "$OUT/sweep.log"
python3 examples/shattering_during_training.py "$OUT/$PRESET.jsonl" --out "$OUT/figures" > "$OUT/shattering.md" 2>&1
echo "analysis exit $?" >> "$OUT/sweep.log"
tail -n 20 "$OUT/sweep.log"
