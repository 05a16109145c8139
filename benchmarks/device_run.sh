#!/usr/bin/env bash
# The one prepared GPU run (device tool): model benchmarks on CUDA, then the gpu-budget depth sweep.
# Needs, carried into the repo root: .whl/ (timm 1.0.31 wheel) and .gpu_data/cifar10-jpeg.zip.
# Everything it measures lands in $OUT; the sweep appends one JSON line per finished run, so a
# timeout still returns every finished run.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  python3 -c "import torch, timm, lightning; print(torch.__version__, timm.__version__, lightning.__version__)"; } \
  > "$OUT/versions.txt" 2>&1
[ -n "${SKIP_BENCH:-}" ] || (cd benchmarks && timeout 90 python3 models.py --device cuda --repeats 10 > "$OUT/models-cuda.md" 2>&1
 timeout 90 python3 models.py --imagenet --device cuda --batch-size 64 --repeats 10 > "$OUT/models-imagenet-cuda.md" 2>&1)
cp docs/PERFORMANCE.md "$OUT/PERFORMANCE.md"
timeout "${SWEEP_SECONDS:-380}" python3 examples/depth_sweep.py --preset gpu-budget --data .gpu_data/cifar10-jpeg.zip \
  --out /tmp/sweep --results "$OUT/gpu-budget.jsonl" > "$OUT/sweep.log" 2>&1
echo "sweep exit $?" >> "$OUT/sweep.log"
tail -n 20 "$OUT/sweep.log"
