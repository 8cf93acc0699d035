#!/usr/bin/env bash
# The GPU path on a CUDA machine, installed and measured in one command (under 10 minutes on one GPU):
#   bash benchmarks/gpu_check.sh [--model smollm2-135m] [--peak-tflops 989]
# installs the CUDA engines (EXTRAS=gpu,dev: CUDA torch, vLLM), then runs benchmarks/gpu_check.py: the tiny
# pipeline with Ray Train + DeepSpeed on NCCL in bf16 and the causal student on CUDA vLLM, and prints vLLM
# output tokens/s, training samples/s and MFU against the GPU's dense bf16 peak.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
EXTRAS=gpu,dev bash install.sh
exec .venv/bin/python benchmarks/gpu_check.py "$@"
