"""The paper's layers (models/layers.py) against PyTorch's definitions of them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from p2p_jax.models import layers
from test_kernels import assert_close, random_inputs


def convt_definition(x, kernel):
  """PyTorch's ConvTranspose2d(4, stride 2, padding 1) by its scatter definition (numpy).

  PyTorch's weight is this layer's kernel flipped in space with in/out kept:
  out[2i - 1 + a, 2j - 1 + b] += x[i, j] @ kernel[3 - a, 3 - b].
  """
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  n, h, w, _ = x.shape
  out = np.zeros((n, 2 * h + 2, 2 * w + 2, kernel.shape[-1]))  # 1 extra row/col each side
  for a in range(4):
    for b in range(4):
      out[:, a:a + 2 * h:2, b:b + 2 * w:2] += x @ kernel[3 - a, 3 - b]
  return out[:, 1:-1, 1:-1]


def conv_definition(x, kernel, stride, padding):
  """PyTorch's Conv2d (cross-correlation, symmetric zero padding) by its sum (numpy)."""
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  k = kernel.shape[0]
  xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  ho = (xp.shape[1] - k) // stride + 1
  wo = (xp.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], ho, wo, kernel.shape[-1]))
  for a in range(k):
    for b in range(k):
      out += xp[:, a:a + stride * ho:stride, b:b + stride * wo:stride] @ kernel[a, b]
  return out


# (batch, height, width, in, out): the U-Net's decoder in miniature: 1x1 inputs (the
# innermost layer), non-square inputs, 3 output channels (the last layer).
CONVT_CASES = [(2, 4, 4, 5, 3), (1, 1, 1, 8, 16), (2, 3, 5, 6, 7), (3, 2, 2, 4, 1)]


@pytest.mark.parametrize('case', CONVT_CASES, ids=str)
def test_conv_transpose_is_pytorch_definition(case):
  n, h, w, cin, cout = case
  x, kernel = random_inputs(n, h, w, cin, 4, cout)
  got = jax.jit(layers.conv_transpose_4x4_s2)(x, kernel)
  assert_close(got, convt_definition(x, kernel), f'definition {case}')


# (batch, height, width, in, kernel, stride, padding, out): the networks' 4x4 s2 p1 and
# s1 p1 convs on odd sizes, and the PixelGAN's 1x1.
CONV_CASES = [(2, 8, 6, 3, 4, 2, 1, 5), (1, 7, 7, 4, 4, 1, 1, 1), (2, 5, 5, 6, 1, 1, 0, 7)]


@pytest.mark.parametrize('case', CONV_CASES, ids=str)
def test_conv_is_pytorch_definition(case):
  n, h, w, cin, k, s, p, cout = case
  x, kernel = random_inputs(n, h, w, cin, k, cout)
  got = jax.jit(layers.conv2d, static_argnums=(2, 3))(x, kernel, s, p)
  assert_close(got, conv_definition(x, kernel, s, p), f'definition {case}')


@pytest.mark.parametrize('case', CONVT_CASES, ids=str)
def test_resize_conv_is_nearest_upsampling_then_a_3x3_conv(case):
  """model.upsample='resize_conv': the transposed conv with resize_conv_kernel(k) is 2x
  repetition followed by the 3x3 conv k (padding 1)."""
  n, h, w, cin, cout = case
  x, kernel = random_inputs(n, h, w, cin, 3, cout)
  got = jax.jit(lambda x, k: layers.conv_transpose_4x4_s2(x, layers.resize_conv_kernel(k)))(
      x, kernel)
  repeated = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
  assert_close(got, conv_definition(repeated, kernel, 1, 1), f'resize conv {case}')


def test_resize_conv_keeps_a_uniform_input_uniform_where_a_transposed_conv_does_not():
  """Away from the borders a uniform input gives a uniform output: no texture tied to the
  pixel grid (the reason the option exists)."""
  x = np.ones((1, 6, 6, 4), np.float32)
  _, k3 = random_inputs(1, 1, 1, 4, 3, 2, seed=1)
  _, k4 = random_inputs(1, 1, 1, 4, 4, 2, seed=1)
  resized = layers.conv_transpose_4x4_s2(x, layers.resize_conv_kernel(jnp.asarray(k3)))
  transposed = layers.conv_transpose_4x4_s2(x, k4)
  spread = lambda y: float(np.ptp(np.asarray(y)[0, 2:-2, 2:-2], axis=(0, 1)).max())
  assert spread(resized) < 1e-5 * float(np.abs(resized).max())
  assert spread(transposed) > 0.1 * float(np.abs(transposed).max())


def test_instance_norm_keeps_its_precision_when_a_channel_mean_dwarfs_its_spread():
  """InstanceNorm2d(affine=False) computed in float64 by its definition; channels with
  offsets of 300 and spread 1 (a trained conv's bias can shift a channel so) lose the
  variance to rounding in E[x^2] - E[x]^2 (1.3e-2 off here), not in two passes (1.1e-5)."""
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(2, 64, 64, 4)) + np.array([0.0, 3.0, 30.0, 300.0])).astype(np.float32)
  x64 = x.astype(np.float64)
  mean = x64.mean(axis=(1, 2), keepdims=True)
  want = (x64 - mean) / np.sqrt(x64.var(axis=(1, 2), keepdims=True) + 1e-5)
  norm = layers.norm_layer('instance', train=True, axis_name=None, dtype=jnp.float32,
                           name='n')
  got = np.asarray(norm.apply({}, jnp.asarray(x)))
  assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max(axis=(0, 1, 2))
