#!/bin/bash
# Issue 7's prepared GPU/TPU run, sized for a 10-minute slot: the training step at batch 1,
# 16 and 64 in float32 and bfloat16 mixed precision and inference at batch 1 and 16
# (benchmarks/gpu_sweep.py, one process, one JSON line per case, most wanted first), then
# the PyTorch reference on the same GPU when torch is installed. About 9.5 minutes at most.
#
#   bash benchmarks/gpu_sweep.sh [out.jsonl]      # from the repository root
#
# Needs jax, flax, optax, orbax-checkpoint and ml_collections (no TensorFlow); where
# ml_collections is missing it is installed from a wheel in .whl/ (carry it there:
# `pip download --no-deps -d .whl ml-collections`). $PYTHON picks the interpreter
# (default python3). Everything measured is appended to out.jsonl (default:
# $OUT/gpu_sweep.jsonl where a lent device machine collects files, else ./gpu_sweep.jsonl).
set -u
out=${1:-${OUT:-.}/gpu_sweep.jsonl}
py=${PYTHON:-python3}
export PYTHONPATH=.
"$py" -c 'import ml_collections' 2>/dev/null ||
  "$py" -m pip install -q --no-deps --no-index .whl/ml_collections-*.whl
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv 2>/dev/null
# No new JAX case after 330 s; the PyTorch runs below get what is left of 9.5 minutes.
timeout 420 "$py" benchmarks/gpu_sweep.py --out "$out" --deadline-s 330
if "$py" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  for a in '--batch 1' '--batch 16' '--batch 64' '--batch 16 --dtype bfloat16' \
           '--batch 64 --dtype bfloat16' '--batch 1 --inference' '--batch 16 --inference'; do
    (( SECONDS < 530 )) || { echo "pytorch_reference $a: skipped, out of time"; continue; }
    # shellcheck disable=SC2086  # $a is several arguments
    timeout 40 "$py" benchmarks/pytorch_reference.py --device cuda --steps 10 --warmup 3 $a \
        | tail -1 | tee -a "$out"
  done
fi
