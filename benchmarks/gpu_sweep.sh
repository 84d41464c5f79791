#!/bin/bash
# Issue 7's prepared GPU/TPU run: the training step at batch 1, 16 and 64 in float32 and
# bfloat16 mixed precision, then inference at batch 1 and 16; one JSON line each.
#
#   bash benchmarks/gpu_sweep.sh [out.jsonl]      # from the repository root (default: gpu_sweep.jsonl)
#
# Needs only jax, flax, optax (no TensorFlow, no ml_collections). Not run on a GPU yet: the
# timeouts below cap it at 40 minutes; expect most of the time in compilation. `gflop_s` /
# the device's peak (H100 SXM: 989 TFLOP/s dense bf16, 495 TF32, 67 float32 without tensor
# cores) gives the fraction of peak.
set -u
out=${1:-${OUT:-.}/gpu_sweep.jsonl}  # $OUT: where a lent device machine collects files
export PYTHONPATH=.
for dtype in float32 bfloat16; do
  for batch in 1 16 64; do
    timeout 300 python benchmarks/train_step.py --batch "$batch" --dtype "$dtype" \
        --steps 10 --warmup 3 2>/dev/null | tail -1 | tee -a "$out"
  done
done
for batch in 1 16; do
  timeout 200 python benchmarks/inference.py --batch "$batch" --steps 20 2>/dev/null \
      | tail -1 | tee -a "$out"
done
