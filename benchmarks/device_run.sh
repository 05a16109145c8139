#!/usr/bin/env bash
# The one prepared GPU run (device tool), within 10 minutes: whether torch.compile pays for the sweep's
# length (benchmarks/compile_pays.py), then the seeded equal-compute sweep (preset gpu-seeded: ll_slim and
# cifar_resnet at depth 110, seeds 0 and 1 in turn so that every finished seed is a pair, all 50k images for
# 10 epochs, the default Recipe, bf16-mixed + channels-last, the images resident on the GPU, the
# ShatteringMonitor attached; compiled when that pays) and its shattering-during-training figures.
# PRESET=gpu-deep SEEDS=0 runs the older unseeded sweep (ll_plain and cifar_resnet at 110 and 56).
# PRESET=gpu-tat SEEDS=0 PROBE_MODELS=tat_slim200 runs the tailored-rectifier families (tat_slim, tat_plain) beside
# cifar_resnet at depth 200, then 110 (docs/REPRODUCTION.md, "Tailored rectifiers at depth 200").
# PRESET=gpu-long SEEDS=0 PROBE_MODELS=tat_slim110 runs the long study's 10-epoch budget on the GPU: cifar_resnet,
# tat_slim and ll_slim at depth 110, then 200 (docs/REPRODUCTION.md, "Depth that pays"), rows in $OUT/gpu-long.jsonl.
# BENCH=1 also runs the model benchmarks (benchmarks/models.py) first: about 3 more minutes.
# Needs, carried into the repo root: .whl/ (the timm wheel) and .gpu_data/cifar10-jpeg.zip.
# Everything it measures lands in $OUT; the sweep appends one JSON line per finished run, so a
# timeout still returns every finished run.
# Its logic is tested on CPU (tests/test_examples_logic.py) with
#   OUT=... PRESET=tiny DATA=digits SKIP_INSTALL=1 DEVICE=cpu COMPILE_BACKEND=eager PROBE_MODELS=cifar_resnet8 \
#   RUN_STEPS=10 PROBE_STEPS=3 bash benchmarks/device_run.sh
set -u
PRESET=${PRESET:-gpu-seeded}
SEEDS=${SEEDS:-0,1}
DATA=${DATA:-.gpu_data/cifar10-jpeg.zip}
SWEEP_OUT=${SWEEP_OUT:-/tmp/sweep}
DEVICE=${DEVICE:-cuda}
RUN_STEPS=${RUN_STEPS:-3900}  # gpu-deep: 10 epochs of 390 steps
PROBE_MODELS=${PROBE_MODELS:-ll_slim110}
if [ -z "${SKIP_INSTALL:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
  python3 -c "import torch, timm, lightning; print(torch.__version__, timm.__version__, lightning.__version__)"; } \
  > "$OUT/versions.txt" 2>&1
[ -z "${BENCH:-}" ] || (cd benchmarks && timeout 90 python3 models.py --device cuda --repeats 10 > "$OUT/models-cuda.md" 2>&1
 timeout 90 python3 models.py --imagenet --device cuda --batch-size 64 --repeats 10 > "$OUT/models-imagenet-cuda.md" 2>&1)
# compile only when it pays for a run of the sweep's length (a probe that fails or times out: eager)
COMPILE_FLAG=""
timeout "${PROBE_SECONDS:-120}" python3 benchmarks/compile_pays.py --device "$DEVICE" --models "$PROBE_MODELS" \
  --run-steps "$RUN_STEPS" --steps "${PROBE_STEPS:-20}" --backend "${COMPILE_BACKEND:-inductor}" --json "$OUT/compile.json" > "$OUT/compile.md" 2>&1
echo "probe exit $?" >> "$OUT/compile.md"
if python3 -c "import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))['pays'] else 1)" "$OUT/compile.json" \
  2>/dev/null; then
  COMPILE_FLAG=--compile
fi
echo "sweep flags: ${COMPILE_FLAG:-(eager)}" > "$OUT/sweep.log"
timeout "${SWEEP_SECONDS:-390}" python3 examples/depth_sweep.py --preset "$PRESET" --data "$DATA" \
  --seeds "$SEEDS" --out "$SWEEP_OUT" --results "$OUT/$PRESET.jsonl" $COMPILE_FLAG >> "$OUT/sweep.log" 2>&1
echo "sweep exit $?" >> "$OUT/sweep.log"
python3 examples/shattering_during_training.py "$OUT/$PRESET.jsonl" --out "$OUT/figures" > "$OUT/shattering.md" 2>&1
echo "analysis exit $?" >> "$OUT/sweep.log"
tail -n 20 "$OUT/sweep.log"
