#!/usr/bin/env bash
# Set up everything (scripts/setup.sh) and run the main job: several workers with a calculator tool on the
# default real model, on GPU if there is one, else CPU. Extra arguments go to `hogwild run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Nothing is fetched from a model hub at run time: models come from PyPI packages.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
bash scripts/setup.sh
TASK=${TASK:-"A shop sells pens at 3 dollars and notebooks at 7 dollars. Ana buys 4 pens and 5 notebooks. How much does she pay? Use the calculator."}
# The 0.5B model rarely decides to call a tool by itself: the first call is forced (constrained decoding).
exec .venv/bin/hogwild run "$TASK" --workers 2 --tool calculator --tool-choice required "$@"
