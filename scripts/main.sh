#!/usr/bin/env bash
# Set up everything (scripts/setup.sh) and run the main job: several workers with a calculator tool on the
# default real model, on GPU if there is one, else CPU. Extra arguments go to `hogwild run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Nothing is fetched from a model hub at run time: models come from PyPI packages.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
bash scripts/setup.sh
TASK=${TASK:-"A train travels 12345 meters per hour for 6789 hours. How many meters does it travel? Use the calculator."}
# Two roles: Alice computes with the calculator (her first step is a call: the 0.5B model rarely decides to
# call a tool by itself, so her role forces it through constrained decoding), Bob checks and concludes.
ROLES='[{"name": "Alice", "instructions": "Compute the result with the calculator.", "tools": ["calculator"],
  "tool_choice": "required"},
 {"name": "Bob", "instructions": "Check the result Alice gets and state the final answer.", "tools": []}]'
# 64 worker forwards keep the demo near a minute on 2 CPU cores; pass --max-forwards to give it more.
exec .venv/bin/hogwild run "$TASK" --tool calculator --roles "$ROLES" --max-forwards 64 "$@"
