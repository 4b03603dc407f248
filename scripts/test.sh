#!/usr/bin/env bash
# Set up everything (scripts/setup.sh) and run the whole test suite on CPU (CI runs exactly this).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Nothing is fetched from a model hub at run time: models come from PyPI packages.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
bash scripts/setup.sh || exit 1
# tmux drives the CLI's live view in a real terminal; the test skips (with the reason) if it cannot be had.
# Headless Chromium drives the server's web view (tests/server/test_web_view.py); it too skips with the reason.
need=""
command -v tmux >/dev/null || need="tmux"
command -v chromium >/dev/null && command -v chromedriver >/dev/null || need="$need chromium chromium-driver"
if [ -n "$need" ]; then
  (apt-get install -y -q $need >/dev/null 2>&1 || \
    (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $need >/dev/null 2>&1)) || true
fi
# Default selection: everything except the real-model variants beyond the CI subset (-m full_suite runs those).
if [ "$#" -eq 0 ]; then set -- -m "not full_suite"; fi
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
