#!/bin/sh
# The GPU checks of the training issue, as one prepared command for a machine with a CUDA GPU
# (for the device tool: run it with `sh benchmarks/device_check.sh`, timeout_s 540).
#
#   1. the CUDA-only tests (they skip on CPU-only machines, so CI never runs them);
#   2. a two-epoch `torchsmith train` from the CLI on CUDA with bf16 and channels_last;
#   3. benchmarks/bench_train.py on the GPU: LeNet and the CIFAR ResNet-18, the hand loop beside
#      torchsmith's trainer in the same process, on the same card; it rewrites the training
#      section of docs/benchmarks.md, which comes back in $OUT;
#   4. benchmarks/bench_train.py --lm: a GPT-2-small-shaped decoder at bf16, nanoGPT's loop beside
#      torchsmith's, printing tokens/s and MFU (the summary's training FLOPs per token x tokens/s over the
#      card's dense bf16 peak); it rewrites the LM part of that section too.
#
# Without CUDA (no nvidia-smi, or a torch that sees no GPU) it says so and exits 0, running nothing.
# It uses the machine's own python3 and torch (the package runs from src/, nothing installed);
# everything it prints also lands in $OUT/device_check.log.
set -u
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! $PY -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' \
    >/dev/null 2>&1; then
  echo "device_check: skipped, no CUDA GPU here (nvidia-smi or torch.cuda.is_available() says none)" \
    | tee "$OUT/device_check.log"
  exit 0
fi
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
  echo "== CUDA tests"
  $PY -m pytest -q -p no:cacheprovider -o addopts="" \
    "tests/test_check.py::test_mixed_devices_on_gpu" \
    "tests/test_checkpoint.py::test_cuda_model_saves_and_loads_to_cuda" \
    "tests/test_export.py::test_cuda_model_exports_and_verifies_on_its_device" \
    "tests/test_train.py::test_cuda_fast_path_bf16_channels_last"
  echo "== CLI: torchsmith train on CUDA"
  $PY -m torchsmith train lenet --data synthetic --epochs 2 --device cuda --amp bf16 --channels-last \
    --batch-size 1024 --out "$OUT/run" && $PY -m torchsmith eval "$OUT/run/best.safetensors" --data synthetic --device cuda
  rm -rf "$OUT/run"
  echo "== bench_train.py"
  $PY benchmarks/bench_train.py --repeats 2 && cp docs/benchmarks.md "$OUT/benchmarks.md"
  echo "== bench_train.py --lm (bf16: tokens/s and MFU)"
  $PY benchmarks/bench_train.py --lm --amp bf16 --repeats 2 && cp docs/benchmarks.md "$OUT/benchmarks.md"
} 2>&1 | tee "$OUT/device_check.log"
