"""The layers of pix2pix (paper, Section 6.1) and its successors, with the PyTorch
reference's geometry.

  * `Conv`: a k x k convolution with stride s and symmetric zero padding p (4x4, s2, p1 in
    both networks; s1 for the last two PatchGAN layers; 1x1 for the PixelGAN).
  * `ConvTranspose4x4`: PyTorch's ConvTranspose2d(kernel 4, stride 2, padding 1), which
    doubles the spatial size; `ConvTranspose3x3`: ConvTranspose2d(3, 2, 1,
    output_padding=1), the same for CycleGAN's and pix2pixHD's ResNet generators.
  * `norm_layer`: BatchNorm (the paper), instance norm or none; `uses_bias`: the reference's
    rule for conv biases.
  * Initialisation: conv weights N(0, 0.02), biases 0, BatchNorm scale N(1, 0.02);
    pix2pixHD leaves biases at PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (`bias_init='torch'`).
Parameters keep the standard HWIO layout (kernel [kh, kw, in, out]) whatever computes the
convolution (`op`, see `p2p_jax.kernels`), so checkpoints, export and parameter counts do
not depend on it.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from p2p_jax.models import batch_norm

# pix2pix initialises every conv weight with N(0, 0.02) and every bias with 0.
conv_init = nn.initializers.normal(stddev=0.02)


def torch_bias_init(fan_in: int):
  """PyTorch's default bias init of Conv2d / ConvTranspose2d: U(-1/sqrt(fan_in), ...)."""
  bound = 1.0 / np.sqrt(fan_in) if fan_in > 0 else 0.0

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


# `bias_init` of the conv layers: 'zeros' (pix2pix, CycleGAN: the reference's init_weights
# zeroes them) or 'torch' (pix2pixHD's weights_init leaves PyTorch's default).
BIAS_INITS = ('zeros', 'torch')


def _bias(module: nn.Module, features: int, fan_in: int, kind: str) -> jax.Array:
  init = nn.initializers.zeros if kind == 'zeros' else torch_bias_init(fan_in)
  return module.param('bias', init, (features,), jnp.float32)


def bn_scale_init(key, shape, dtype=jnp.float32):
  """BatchNorm scale ~ N(1, 0.02), as the reference's init_weights."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


# ---------------------------------------------------------------- the two convolutions
# Definitions by XLA's convolution op. `p2p_jax.kernels` has other computations of exactly
# these functions (faster on CPU); the networks take whichever they are handed.

_DN = ('NHWC', 'HWIO', 'NHWC')


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """NHWC convolution with symmetric zero padding (PyTorch's Conv2d geometry).

  x: [N, H, W, I]; kernel: [k, k, I, O]; returns [N, (H + 2p - k) // s + 1, ..., O].
  """
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride),
                                      ((padding, padding), (padding, padding)),
                                      dimension_numbers=_DN)


def conv_transpose_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch's ConvTranspose2d(k=4, s=2, p=1) on NHWC input: [N,H,W,I] -> [N,2H,2W,O].

  The dilated convolution with zeros between input pixels (stride 2), k - 1 - p = 2 zeros
  of padding on each side, then a stride-1 4x4 convolution. The kernel is used unflipped
  (as flax.linen.ConvTranspose does); flipping it gives PyTorch's layout.
  """
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((2, 2), (2, 2)),
                                      lhs_dilation=(2, 2), dimension_numbers=_DN)


def conv_transpose_3x3_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch's ConvTranspose2d(k=3, s=2, p=1, output_padding=1) on NHWC input:
  [N,H,W,I] -> [N,2H,2W,O] (CycleGAN's and pix2pixHD's upsampling).

  As conv_transpose_4x4_s2: the input dilated by 2, then k - 1 - p = 1 zero before and
  k - 1 - p + output_padding = 2 after, and a stride-1 3x3 convolution with the kernel
  unflipped (flipping it gives PyTorch's layout).
  """
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 2), (1, 2)),
                                      lhs_dilation=(2, 2), dimension_numbers=_DN)


class Conv(nn.Module):
  """k x k convolution, stride s, zero padding p, with an optional bias.

  op: computes conv2d(x, kernel, stride, padding) (default: the definition above).
  bias_init: one of BIAS_INITS (PyTorch's fan_in: in_channels * k * k).
  """
  features: int
  kernel_size: int = 4
  stride: int = 2
  padding: int = 1
  use_bias: bool = True
  dtype: Any = jnp.float32
  op: Callable = conv2d
  bias_init: str = 'zeros'

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param('kernel', conv_init, (k, k, x.shape[-1], self.features), jnp.float32)
    y = self.op(x.astype(self.dtype), kernel.astype(self.dtype), self.stride, self.padding)
    if self.use_bias:
      y = y + _bias(self, self.features, x.shape[-1] * k * k, self.bias_init).astype(self.dtype)
    return y


class ConvTranspose4x4(nn.Module):
  """4x4 transposed convolution, stride 2, padding 1: doubles height and width.

  op: computes conv_transpose_4x4_s2(x, kernel) (default: the definition above).
  """
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  op: Callable = conv_transpose_4x4_s2

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', conv_init, (4, 4, x.shape[-1], self.features), jnp.float32)
    y = self.op(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32
                         ).astype(self.dtype)
    return y


class ConvTranspose3x3(nn.Module):
  """3x3 transposed convolution, stride 2, padding 1, output padding 1: doubles height and
  width (ResNet generators).

  op: computes conv_transpose_3x3_s2(x, kernel) (default: the definition above).
  bias_init: one of BIAS_INITS (PyTorch's fan_in of a transposed conv: out_channels * 9).
  """
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  op: Callable = conv_transpose_3x3_s2
  bias_init: str = 'zeros'

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', conv_init, (3, 3, x.shape[-1], self.features), jnp.float32)
    y = self.op(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      y = y + _bias(self, self.features, self.features * 9, self.bias_init).astype(self.dtype)
    return y


# Nearest-neighbour 2x upsampling followed by a 3x3 conv (padding 1) is a 4x4 stride-2
# transposed conv whose kernel is, along each axis, RESIZE_CONV_TAPS @ the 3x3 kernel: each
# output phase reads two input pixels with the 3x3 kernel's taps summed in pairs. Run that
# way it costs what ConvTranspose4x4 costs and uses the same computations (`op`).
RESIZE_CONV_TAPS = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], np.float32)


def resize_conv_kernel(kernel: jax.Array) -> jax.Array:
  """[3, 3, I, O] kernel -> the [4, 4, I, O] kernel of `conv_transpose_4x4_s2` that computes
  nearest-neighbour 2x upsampling followed by the 3x3 conv (stride 1, padding 1)."""
  m = jnp.asarray(RESIZE_CONV_TAPS, kernel.dtype)
  return jnp.einsum('ai,bj,ijko->abko', m, m, kernel)


class ResizeConv3x3(nn.Module):
  """Nearest-neighbour 2x upsampling, then a 3x3 conv: doubles height and width like
  ConvTranspose4x4 (not the paper's layer; `model.upsample='resize_conv'`).

  Why offer it: a transposed conv turns a locally uniform input into a pattern fixed to the
  pixel grid (its phases have independent taps), and a stack of them lets a generator put
  texture at the same image positions whatever the input (Odena et al. 2016,
  "Deconvolution and checkerboard artifacts"). Upsampling by repetition keeps a uniform
  input uniform: detail has to come from the input, through the skips.
  op: computes conv_transpose_4x4_s2(x, kernel), as ConvTranspose4x4's.
  """
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  op: Callable = conv_transpose_4x4_s2

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', conv_init, (3, 3, x.shape[-1], self.features), jnp.float32)
    y = self.op(x.astype(self.dtype), resize_conv_kernel(kernel).astype(self.dtype))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32
                         ).astype(self.dtype)
    return y


# config.model.upsample: how G's decoder doubles the resolution.
UPSAMPLERS = {'transposed': ConvTranspose4x4, 'resize_conv': ResizeConv3x3}

NORMS = ('batch', 'instance', 'none')


def norm_layer(norm: str, *, train: bool, axis_name: str | None, dtype: Any, name: str):
  """Returns the normalisation module for `norm` (one of NORMS), or None for 'none'.

  BatchNorm matches PyTorch's BatchNorm2d (momentum 0.1 -> flax momentum 0.9, eps 1e-5,
  running variance from the unbiased batch variance, see batch_norm.py);
  instance norm matches the reference's InstanceNorm2d(affine=False), its variance computed
  in two passes, mean((x - mean)^2): flax's default E[x^2] - E[x]^2 loses the variance to
  float32 rounding when a channel's mean is large against its spread (trained convs' bias
  offsets), and moved a resnet_9blocks G's output by up to 8e-5 against the reference's
  where two passes give 8e-6 (tests/test_layers.py, tests/test_pytorch_resnet.py).
  """
  if norm == 'batch':
    return batch_norm.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                axis_name=axis_name, dtype=dtype, param_dtype=jnp.float32,
                                scale_init=bn_scale_init, name=name)
  if norm == 'instance':
    return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype,
                           use_fast_variance=False, name=name)
  return None


def uses_bias(norm: str) -> bool:
  """Convs followed by BatchNorm carry no bias (BN's shift replaces it); others do."""
  return norm != 'batch'
