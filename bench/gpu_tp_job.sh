#!/usr/bin/env bash
# One 2-GPU session for tensor parallelism: CI's transformers from the carried wheels, the CPU TP test
# on the GPU host's torch, a small-shape equality run, then the qwq-32b-shape decode timings.
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
timeout 100 torchrun --standalone --nproc-per-node 2 bench/bench_tensor_parallel.py --model qwen2.5-14b \
    --lengths 4096 --steps 10 --single 2>&1 | grep -v Warning | tee "$out/tp_14b.log" | tail -20
timeout 200 torchrun --standalone --nproc-per-node 2 bench/bench_tensor_parallel.py --model qwq-32b --steps 20 \
    --single 2>&1 | grep -v Warning | tee "$out/tp_32b.log" | tail -25
