#!/usr/bin/env bash
# One GPU session for the attention kernel: kernel tests on CUDA, a greedy launch-config sweep, the full
# benchmark with the chosen config (RESULTS block written to OUTDIR/RESULTS_block.md), then a compiler
# resource report and an ncu profile of one shape.
# Usage: bench/gpu_job.sh OUTDIR COMMIT [extra bench/kernel.py args...]
set -uo pipefail
out=$1
commit=$2
shift 2
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/kernels:$PWD/tests/kernels PYTHONUNBUFFERED=1
py=python3

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$out/smi.txt"
$py -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

timeout 150 $py -m pytest tests/kernels -q -rs -s -p no:cacheprovider --durations=5 >"$out/pytest.log" 2>&1
echo "pytest exit $?"
grep -E "relative error|passed|failed|FAILED" "$out/pytest.log" | head -12

timeout 330 $py bench/kernel.py --tune --save-config "$out/tuned.json" --reps 20 --commit "$commit" \
    --results "$out/RESULTS_block.md" "$@" 2>&1 | grep -v '^{' | tee "$out/bench.log" | grep -v '^tune: LaunchConfig'

cfg=$(cat "$out/tuned.json" 2>/dev/null || echo '{}')
$py bench/kernel.py --profile qwen2.5-14b:16384:4 --config "$cfg" --dump "$out" 2>&1 | grep profile: | tee "$out/profile.log"
timeout 60 ncu --clock-control none -k regex:split_kernel -s 3 -c 1 --section SpeedOfLight \
    --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats \
    $py bench/kernel.py --profile qwen2.5-14b:16384:4 --config "$cfg" >"$out/ncu.log" 2>&1
grep -E "DRAM Throughput|Duration|Achieved Occupancy|Registers Per|Theoretical Occ|Spilling Requests|Warp Cycles Per Issued" "$out/ncu.log" | head -12
