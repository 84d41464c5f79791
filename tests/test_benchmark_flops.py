"""benchmarks/flops.py, the yardstick of the GPU sweep's fraction of peak: it must count the
paper's arithmetic (multiply-adds of every convolution, forward and backward), whatever
implementation runs. Only traces (make_jaxpr); nothing is compiled."""

import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'benchmarks'))

import flops  # noqa: E402  (benchmarks/flops.py)
import train_step as bench  # noqa: E402  (benchmarks/train_step.py)

from p2p_jax.models import layers  # noqa: E402

WIDTHS = [64, 128, 256, 512, 512, 512, 512, 512]  # unet_256's encoder


def unet_256_macs():
  """Multiply-adds of G's forward pass at 256x256 from its geometry: (per encoder conv,
  per decoder transposed conv), both 4x4 taps per output / input pixel."""
  enc, size, cin = [], 256, 3
  for c in WIDTHS:
    size //= 2
    enc.append(size * size * 16 * cin * c)
    cin = c
  dec = []
  for i in reversed(range(8)):  # the decoder block mirroring encoder level i
    cin = WIDTHS[i] if i == 7 else 2 * WIDTHS[i]
    cout = 3 if i == 0 else WIDTHS[i - 1]
    size = 256 >> (i + 1)
    dec.append(size * size * 16 * cin * cout)
  return enc, dec


def patchgan_70_macs():
  """Multiply-adds of the 70x70 D on a 256x256 (x, y) pair, per conv."""
  return [128 * 128 * 16 * 6 * 64, 64 * 64 * 16 * 64 * 128, 32 * 32 * 16 * 128 * 256,
          31 * 31 * 16 * 256 * 512, 30 * 30 * 16 * 512 * 1]


def test_one_conv_and_one_transposed_conv_count_their_multiply_adds():
  x = jax.ShapeDtypeStruct((2, 10, 10, 8), np.float32)
  kernel = jax.ShapeDtypeStruct((4, 4, 8, 16), np.float32)
  assert flops.gflop(lambda x, k: layers.conv2d(x, k, 2, 1), x, kernel) * 1e9 == (
      2 * 2 * 5 * 5 * 16 * 8 * 16)
  # The transposed conv is a conv over an input with zeros between pixels: only the taps
  # that meet real pixels count, 16 per input pixel.
  x = jax.ShapeDtypeStruct((2, 5, 5, 8), np.float32)
  assert flops.gflop(layers.conv_transpose_4x4_s2, x, kernel) * 1e9 == (
      2 * 2 * 5 * 5 * 16 * 8 * 16)


def test_training_step_counts_the_paper_arithmetic_for_any_implementation():
  """unet_256 + 70x70 D, batch 1: G forward and both gradients (no input gradient for its
  first layer), D three times forward, twice both gradients (D step) and once the input
  gradient (G step). Within 2%: the gradient convs' zero padding meets the stride
  pattern at the borders."""
  enc, dec = unet_256_macs()
  d = patchgan_70_macs()
  want = 2 * (3 * (sum(enc) + sum(dec)) - enc[0] + 8 * sum(d) - 2 * d[0]) / 1e9
  config = bench.load_default_config()
  batch = {k: jax.ShapeDtypeStruct((1, 256, 256, 3), np.float32) for k in ('input', 'target')}
  for impl in ('auto', 'gemm'):  # the count is of the paper's step, not of the form that runs
    config.compute.conv_impl = impl
    got = bench.model_gflop_per_step(config, batch, 256)
    assert abs(got - want) <= 0.02 * want, (impl, got, want)
  assert config.compute.conv_impl == 'gemm'  # the caller's config is left as it was
