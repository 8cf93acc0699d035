#!/usr/bin/env bash
# Runs the whole test suite with the venv made by install.sh. Extra args go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")"
export DS_ACCELERATOR=cpu RAY_DEDUP_LOGS=0 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
