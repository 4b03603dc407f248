#!/usr/bin/env bash
# Set up everything (scripts/setup.sh) and run the main job: several workers with a calculator tool on the
# default real model, on GPU if there is one, else CPU. Extra arguments go to `hogwild run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Nothing is fetched from a model hub at run time: models come from PyPI packages.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
bash scripts/setup.sh
TASK=${TASK:-"A train travels 12345 meters per hour for 6789 hours. How many meters does it travel? Use the calculator."}
# Two roles, each with a first step forced to be a calculator call (constrained decoding: the 0.5B model
# rarely decides to call a tool by itself): Alice computes, Bob checks her result with a call of his own.
# Both results land in the shared cache; the finisher answers from them. (With Bob free to write, the 0.5B
# answered with the question's own numbers: bench/RESULTS.md.)
ROLES='[{"name": "Alice", "instructions": "Compute the result with the calculator.", "tools": ["calculator"],
  "tool_choice": "required"},
 {"name": "Bob", "instructions": "Check the result Alice gets with the calculator, then state the final answer.",
  "tools": ["calculator"], "tool_choice": "required"}]'
# 64 worker forwards keep the demo near a minute on 2 CPU cores; pass --max-forwards to give it more.
# Results land at the forward after each call (not when the tool happens to return), so the run and its
# answer are the same every time (with wall-clock landing the 0.5B's answer changed between runs).
exec .venv/bin/hogwild run "$TASK" --tool calculator --roles "$ROLES" --max-forwards 64 \
  --tool-landing next_forward "$@"
