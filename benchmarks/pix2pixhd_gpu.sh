#!/bin/bash
# Issue 26's prepared GPU run (about 8 minutes at most): pix2pixHD's training step against
# the official one on one GPU, alternated in one process (benchmarks/pix2pixhd_step.py):
# the 512p recipe's networks (global G ngf 64, 4 downsamplings, 9 residual blocks; 2-scale
# D ndf 64; Cityscapes' 36 input channels; the VGG19 loss on, with generated weights, as the
# official defaults), batch 1, at 512x256 and 1024x512, float32 and bfloat16 (PyTorch: its
# forward passes under torch.autocast).
# p2p_jax alone where PyTorch has no CUDA. One JSON line per round and a summary per case.
#
#   bash benchmarks/pix2pixhd_gpu.sh [out.jsonl]      # from the repository root
#
# $PYTHON picks the interpreter (default python3). Lines are appended to out.jsonl (default:
# $OUT/pix2pixhd_gpu.jsonl where a lent device machine collects files, else ./).
set -u
out=${1:-${OUT:-.}/pix2pixhd_gpu.jsonl}
py=${PYTHON:-python3}
export PYTHONPATH=.
torch_side=(--device cuda)
"$py" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null || torch_side=(--jax-only)
"$py" -c 'import jax; print("jax", jax.__version__, jax.devices())'
for size in '--height 256 --width 512' '--height 512 --width 1024'; do
  for dtype in float32 bfloat16; do
    (( SECONDS < 420 )) || { echo "$size $dtype: skipped, out of time"; continue; }
    # shellcheck disable=SC2086  # $size is several arguments
    timeout 150 "$py" benchmarks/pix2pixhd_step.py $size --networks 512p --in-channels 36 --vgg \
        --dtype "$dtype" \
        "${torch_side[@]}" --rounds 3 --steps 10 --warmup 3 | tee -a "$out"
  done
done
