#!/usr/bin/env bash
# Set up charrnn in ./.venv from nothing: a virtual environment, the right PyTorch build, then charrnn.
#
#   bash scripts/setup.sh          # to use the tool (with the extras of `charrnn plot`, `serve` and `export`)
#   bash scripts/setup.sh --dev    # also pytest and ruff, to run the tests
#
# PyTorch: with an NVIDIA GPU (nvidia-smi works) you get the CUDA build from PyPI; without one, the CPU
# build (a local wheel if pip can find one, else PyTorch's CPU index), never the multi-GB CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${CHARRNN_TORCH_VERSION:-2.13.0}"
PYTHON="${PYTHON:-python3}"
# matplotlib, plotext, the server's few packages and the exporters' are small next to PyTorch, so every
# install gets `charrnn plot`, `charrnn serve` and `charrnn export`
extras="[plot,serve,export]"
[ "${1:-}" = "--dev" ] && extras="[dev,plot,serve,export]"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

if .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "setup: PyTorch $(.venv/bin/python -c 'import torch; print(torch.__version__)') already installed" >&2
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing the CUDA build of PyTorch $TORCH_VERSION" >&2
    pip install "torch==$TORCH_VERSION"
else
    echo "setup: no NVIDIA GPU: installing the CPU build of PyTorch $TORCH_VERSION" >&2
    pip install "torch==$TORCH_VERSION+cpu" 2>/dev/null \
        || pip install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
fi

pip install -e ".$extras"
echo "setup: done; run .venv/bin/charrnn --help (or activate with: source .venv/bin/activate)" >&2
