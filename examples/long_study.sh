#!/usr/bin/env bash
# Depth that pays (docs/REPRODUCTION.md, section "Ten epochs of all of CIFAR-10"): skip-free nets against ResNets at
# the cpu-long budget (all 50k images, 10 epochs, 3,900 steps of 128, the study's recipe), plus the init ablation at
# the seeded study's cpu-600 budget. One run at a time, in this order so that the first answers come first; results
# appended to one committed JSON-lines file. Resumable twice over: rerun the same command and finished runs are
# skipped (a run is its model, preset, budget, seed, recipe and create_model keywords), and a run that was cut off
# continues from its last end-of-epoch checkpoint in OUT (keep OUT across sessions; tests/test_training.py checks
# that a resumed run ends bitwise as an uninterrupted one).
#
#   bash examples/long_study.sh [DATA] [RESULTS] [OUT]
#
# Run it from a pinned worktree (the code must not change under a study that runs for days), with that worktree
# first on the path, e.g. `git worktree add --detach ../study HEAD && cd ../study && PYTHONPATH=$PWD nohup nice
# bash examples/long_study.sh ... &`. Expect 9 to 45 hours of CPU on a 2-core VM.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
data=${1:-${TIMM_LL_DATA:-../shared/data}/cifar10-jpeg.zip}
results=${2:-docs/results/depth_study_cpu-long.jsonl}
out=${3:-${TMPDIR:-/tmp}/timm-ll-long-study}
run() { python examples/depth_sweep.py --data "$data" --results "$results" --out "$out" "$@"; }
long() { run --preset cpu-long "$@"; }
# 1. the first pairs: depth 20, then 110, seed 0; then both at seed 1 (the cheaper run first in each sweep)
long --depths 20 --families cifar_resnet,tat_slim --seeds 0
long --depths 110 --families cifar_resnet,tat_slim --seeds 0
long --depths 20 --families cifar_resnet,tat_slim --seeds 1
long --depths 110 --families cifar_resnet,tat_slim --seeds 1
# 2. the init ablation: ll_slim200 with tat_slim's delta-orthogonal convs, at the seeded study's recipe (cpu-600),
#    beside the committed flattened ll_slim200 and delta tat_slim200 rows of docs/results/depth_sweep_cpu-600-seeded.jsonl
run --preset cpu-600 --depths 200 --families ll_slim --seeds 0,1 --model-kwargs '{"orthogonal": "delta"}'
# 3. the third seed at depth 110, then the paper's LL at equal compute
long --depths 110 --families cifar_resnet,tat_slim --seeds 2
long --depths 20,110 --families ll_slim --seeds 0
