# Sourced by the seeded studies (examples/seeded_study.sh, examples/tat_study.sh): their shared arguments
# [DATA] [RESULTS] [OUT] and the one `sweep` they run, the cpu-600 budget of examples/depth_sweep.py.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
data=${1:-${TIMM_LL_DATA:-../shared/data}/cifar10-jpeg.zip}
results=${2:-docs/results/depth_sweep_cpu-600-seeded.jsonl}
out=${3:-${TMPDIR:-/tmp}/timm-ll-seeded-study}
sweep() { python examples/depth_sweep.py --preset cpu-600 --data "$data" --results "$results" --out "$out" "$@"; }
