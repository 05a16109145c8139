#!/usr/bin/env bash
# Tailored rectifiers at depth 200 (docs/REPRODUCTION.md, section "Tailored rectifiers at depth 200"): the seeded
# study's cpu-600 recipe, data and seeds for tat_plain200 and tat_slim200, beside the committed cifar_resnet200 and
# ll_slim200 pairs; results appended to the seeded results file. Resumable: rerun the same command and finished
# runs are skipped (a run is its model, budget, seed and recipe).
#
#   bash examples/tat_study.sh [DATA] [RESULTS] [OUT]
#
# Phase 1 (seeds 0 and 1 of both new families: about 2.5 hours on 2 CPU cores) runs to the end before phase 2 reads
# its results: phase 2 gives the new family closest to ResNet-200 on seeds 0-1 and the ResNet a third seed (what a
# target claim needs, so it comes first), then doubles the peak learning rate (seed 0) for cifar_resnet200, ll_slim200
# and that family. Within each sweep the cheaper run comes first: a run cut off (a session's end) is lost whole.
set -euo pipefail
# shellcheck source=examples/seeded_sweep.sh
. "$(dirname "$0")/seeded_sweep.sh" "$@"
sweep --depths 200 --families tat_plain,tat_slim --seeds 0
sweep --depths 200 --families tat_plain,tat_slim --seeds 1
# chosen on seeds 0-1 only (the smaller mean paired difference to cifar_resnet200), before any third seed exists
closest=$(python examples/seeded_report.py "$results" --closest-to cifar_resnet200 --among tat_plain200,tat_slim200)
echo "closest new family on seeds 0-1: $closest"
doubled_lr=$(python -c "from timm_ll.app.recipe import Recipe; print(2 * Recipe.lr)")
sweep --depths 200 --families "cifar_resnet,${closest%200}" --seeds 2
sweep --depths 200 --families "cifar_resnet,ll_slim,${closest%200}" --seeds 0 --lr "$doubled_lr"
