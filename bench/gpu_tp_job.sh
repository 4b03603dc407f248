#!/usr/bin/env bash
# One 2-GPU session for tensor parallelism: CI's transformers from the carried wheels, then
# (1) token equality in float32 on a Qwen2.5-7B shape: one GPU (eager, graphs) against TP=2 (eager, graphs),
#     every path starting from the same zeroed store and feeding rank 0's greedy tokens;
# (2) the QwQ-32B-shape decode timings in bf16 at 4k and 16k, one GPU against TP=2 eager and graphs.
# Usage: bench/gpu_tp_job.sh OUTDIR
set -uo pipefail
out=$1
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    wheels/*.whl >"$out/pip.log" 2>&1 \
    || { echo "pip install failed"; tail -5 "$out/pip.log"; }
export PYTHONPATH=/tmp/site:$PWD:$PWD/kernels PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv,noheader
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
timeout 150 torchrun --standalone --nproc-per-node 2 bench/bench_tensor_parallel.py --model qwen2.5-7b \
    --dtype float32 --lengths 1024 --steps 12 --warmup 4 --single --tp-graphs 2>&1 | grep -v Warning \
    | tee "$out/tp_equality.log" | tail -14
timeout 240 torchrun --standalone --nproc-per-node 2 bench/bench_tensor_parallel.py --model qwq-32b \
    --lengths 4096 16384 --steps 20 --single --tp-graphs 2>&1 | grep -v Warning | tee "$out/tp_32b.log" | tail -20
