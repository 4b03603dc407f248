#!/usr/bin/env bash
# One GPU session for the decode path: install the carried wheels (CI's transformers), kernel and
# graph-decode tests on CUDA, kernel before/after variants, then the end-to-end decode benchmark.
# Usage: bench/gpu_e2e_job.sh OUTDIR STAGES [e2e args...]
#   STAGES: any of tests,variants,kernel,tune,profile,e2e,overhead,concurrent,prefill,real. `real` needs the packaged
#   GGUF carried in .gpu/gguf.partNN pieces (see bench/RESULTS.md). The tokenizer (no weights) travels in
#   .gpu/cache/models/qwen2.5-coder-0.5b-instruct (HOGWILD_CACHE_DIR): tests and whole-engine benches use it.
set -uo pipefail
out=$1
stages=$2
shift 2
cd "$(dirname "$0")/.."
if ls wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        wheels/*.whl >"$out/pip.log" 2>&1 || { echo "pip install failed"; tail -5 "$out/pip.log"; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:-}:$PWD:$PWD/kernels:$PWD/tests/kernels PYTHONUNBUFFERED=1
export HOGWILD_CACHE_DIR=$PWD/.gpu/cache HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
TOK=$PWD/.gpu/cache/models/qwen2.5-coder-0.5b-instruct
py=python3
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,memory.total --format=csv,noheader
$py -c "import torch, triton, transformers, hogwild_agents; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"

if [[ $stages == *tests* ]]; then
    timeout ${TESTS_TIMEOUT:-200} $py -m pytest ${TESTS:-tests/kernels tests/engine/test_graph_decode.py \
        tests/engine/test_greedy_fixture.py} -q -rs -s -p no:cacheprovider >"$out/pytest.log" 2>&1
    echo "pytest exit $?"
    grep -E "relative error|graph vs eager|liger vs|compiled vs|passed|failed|FAILED|Error" "$out/pytest.log" | head -30
fi
if [[ $stages == *variants* ]]; then
    timeout 150 $py bench/kernel_variants.py --reps 20 --out "$out/variants.md" >"$out/variants.log" 2>&1
    echo "variants exit $?"
    grep -E "failed" "$out/variants.log" | head -5
    cat "$out/variants.md" 2>/dev/null
fi
if [[ $stages == *kernel* ]]; then
    timeout ${KERNEL_TIMEOUT:-240} $py bench/kernel.py --models qwen2.5-7b,llama-3.1-8b,qwen2.5-14b --skip-baselines --reps 20 \
        --results "$out/RESULTS_kernel.md" ${KERNEL_ARGS:-} >"$out/kernel.log" 2>&1
    echo "kernel exit $?"
    tail -20 "$out/kernel.log"
fi
if [[ $stages == *tune* ]]; then
    timeout ${TUNE_TIMEOUT:-200} $py bench/kernel.py --tune --tune-shapes ${TUNE_SHAPES:-qwen2.5-7b:32768:8,qwen2.5-14b:32768:8,qwen2.5-7b:32768:1} \
        --models qwen2.5-7b --lengths 4096 --workers 1 --skip-baselines --reps 10 --no-append \
        --save-config "$out/tuned.json" >"$out/tune.log" 2>&1
    echo "tune exit $?"
    grep -E "best after|tune:   " "$out/tune.log" | tail -12
fi
if [[ $stages == *profile* ]]; then
    timeout ${PROFILE_TIMEOUT:-150} $py bench/decode_profile.py ${PROFILE_ARGS:---skip gemv --workers 1,8 --fused-ops liger} \
        --md "$out/profile.md" >"$out/profile.log" 2>&1
    echo "profile exit $?"
    grep -v -i warn "$out/profile.md" | head -120
fi
if [[ $stages == *e2e* ]]; then
    timeout ${E2E_TIMEOUT:-300} $py bench/e2e.py --jsonl "$out/e2e.jsonl" --md "$out/e2e.md" "$@" >"$out/e2e.log" 2>&1
    echo "e2e exit $?"
    grep -E "Error|error|Traceback" "$out/e2e.log" | head -10
    sed -n '/^e2e /,$p' "$out/e2e.log" | tail -60
fi
if [[ $stages == *overhead* ]]; then
    timeout ${OVERHEAD_TIMEOUT:-240} $py bench/engine_overhead.py --tokenizer "$TOK" --model qwen2.5-7b \
        --workers 1,2,4,8 --md "$out/overhead.md" >"$out/overhead.log" 2>&1
    echo "overhead exit $?"
    grep -E "Error|error" "$out/overhead.log" | head -5
    cat "$out/overhead.md" 2>/dev/null
fi
if [[ $stages == *prefill* ]]; then
    timeout ${PREFILL_TIMEOUT:-240} $py bench/prefill.py --tokenizer "$TOK" --model qwen2.5-7b \
        --lengths 1024,4096,16384,32768 ${PREFILL_ARGS:-} --md "$out/prefill.md" >"$out/prefill.log" 2>&1
    echo "prefill exit $?"
    grep -E "Error|error" "$out/prefill.log" | head -5
    grep -A 22 "### prefill profile" "$out/prefill.log" | head -100
    cat "$out/prefill.md" 2>/dev/null
fi
if [[ $stages == *real* ]]; then
    timeout ${REAL_TIMEOUT:-300} $py bench/real_model_gpu_check.py --gguf-pieces .gpu --model-dir /tmp/qwen05 \
        --out "$out" >"$out/real.log" 2>&1
    echo "real exit $?"
    grep -E "W=|Error|error" "$out/real.log" | head -20
    # The main job on the GPU: scripts/main.sh's task, roles and options on the real model (main.sh itself
    # would run the set-up, which needs the network).
    roles=$(sed -n "/^ROLES='/,/]'$/p" scripts/main.sh | sed "s/^ROLES='//; s/'$//")
    task=$(sed -n 's/^TASK=${TASK:-"\(.*\)"}$/\1/p' scripts/main.sh)
    HOGWILD_MODEL=/tmp/qwen05 timeout 240 $py -m hogwild_agents.ui.cli run "$task" --tool calculator \
        --roles "$roles" --max-forwards 64 --tool-landing next_forward --json \
        >"$out/main_job.json" 2>"$out/main_job.log"
    echo "main job exit $?"
    $py -c "import json,sys; r=json.load(open(sys.argv[1])); print('answer:', r.get('answer')); print('tools:', r.get('tool_events'))" "$out/main_job.json" 2>&1 | head -5
fi
if [[ $stages == *concurrent* ]]; then
    timeout ${CONC_TIMEOUT:-300} $py bench/concurrent_runs.py --tokenizer "$TOK" --model qwen2.5-7b \
        --runs 4 --workers 2 --forwards 200 --prompt-tokens 1024 --md "$out/concurrent.md" >"$out/concurrent.log" 2>&1
    echo "concurrent exit $?"
    grep -E "Error|error" "$out/concurrent.log" | head -5
    cat "$out/concurrent.md" 2>/dev/null
fi
