#!/usr/bin/env bash
# The seeded CPU study (docs/REPRODUCTION.md): the cpu-600 budget (600 steps of batch 128 on the fixed
# 10k-image subset, the full test set, Recipe's defaults, the monitor in every run) at depths 110 and 200,
# seeds fixed before the first run. Resumable: rerun the same command and finished runs are skipped.
#
#   bash examples/seeded_study.sh [DATA] [RESULTS] [OUT]
#
# About 6-7 hours on 2 CPU cores; the pairs seed by seed, so every finished seed is a paired set.
# The order of the runs changes no result: each run's init and data order come from its own seed.
set -euo pipefail
# shellcheck source=examples/seeded_sweep.sh
. "$(dirname "$0")/seeded_sweep.sh" "$@"
# the equal-compute pairs first (the targets are about them), then ll_plain (2x the compute); ll_plain110's
# seed 0 ran right after the depth-110 pairs, its seeds 1-2 wait until depth 200 has two pairs and plain
sweep --depths 110 --families ll_slim,cifar_resnet --seeds 0,1,2
sweep --depths 110 --families ll_plain --seeds 0
sweep --depths 200 --families ll_slim,cifar_resnet --seeds 0
sweep --depths 200 --families plain --seeds 0
sweep --depths 200 --families ll_slim,cifar_resnet --seeds 1
sweep --depths 110 --families ll_plain --seeds 1,2
sweep --depths 200 --families ll_slim,cifar_resnet --seeds 2  # a third seed at depth 200 if time allows
