"""pix2pixHD's generators (Wang et al., CVPR 2018): the global generator and the local enhancer.

As the official code (NVIDIA/pix2pixHD, models/networks.py), with c7s1-k = ReflectionPad(3),
7x7 conv, instance norm, ReLU; dk = 3x3 conv stride 2 (zero padding 1), norm, ReLU;
Rk = residual block (reflection padding); uk = 3x3 transposed conv stride 2 (padding 1,
output_padding 1), norm, ReLU:

  GlobalGenerator (netG=global; ngf 64, 4 downsamplings, 9 blocks; the 512p model):
    c7s1-64, d128, d256, d512, d1024, R1024 x 9, u512, u256, u128, u64, c7s1-3 (conv, tanh)
  LocalEnhancer (netG=local; ngf 32, 1 enhancer, 3 blocks; the 1024p model):
    the GlobalGenerator of ngf 2 * 32 without its last three layers (pad, conv, tanh), run
    on the input downsampled by AvgPool2d(3, stride 2, padding 1, count_include_pad=False);
    its 64-channel output is added to the local front end's (c7s1-32, d64) at full
    resolution, then R64 x 3, u32, c7s1-3 (conv, tanh).

Every conv has a bias (instance norm; the official code has no `use_bias` rule), instance
norm is InstanceNorm2d(affine=False) (no parameters, no running statistics), conv weights
are N(0, 0.02) and biases keep PyTorch's default init (its weights_init touches only
weights), layers.Conv(bias_init='torch').

Parameter names map one to one onto the official state_dict keys (p2p_jax/pytorch/
pix2pixhd_weights.py): GlobalGenerator `conv_in` = `model.1`, `down1..4` = `model.4, 7,
10, 13`, `block1..9/conv1|conv2` = `model.16..24.conv_block.1|5`, `up1..4` = `model.25, 28,
31, 34`, `conv_out` = `model.38`; LocalEnhancer: `model/...` the same keys under `model.`,
`model1_1/conv_in|down` = `model1_1.1|4`, `model1_2/block1..3` = `model1_2.0..2.conv_block.*`,
`model1_2/up` = `model1_2.3`, `model1_2/conv_out` = `model1_2.7`.

`remat`: residual blocks rematerialised in the backward pass (nn.remat): the same function
and parameters, less activation memory, more compute (for 2048x1024 images).
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from p2p_jax.models import layers
from p2p_jax.models.resnet import reflect_pad

# The generators of config.model.generator for method pix2pixhd (the official --netG).
HD_GENERATORS = ('pix2pixhd_global', 'pix2pixhd_local')


def downsample(x: jax.Array) -> jax.Array:
  """AvgPool2d(3, stride=2, padding=1, count_include_pad=False) on NHWC: [N, H, W, C] ->
  [N, ceil(H / 2), ceil(W / 2), C], each output the mean of the input pixels its 3x3
  window covers (the padding is not counted)."""
  window, strides = (1, 3, 3, 1), (1, 2, 2, 1)
  pads = ((0, 0), (1, 1), (1, 1), (0, 0))
  # A Python 0.0 lets JAX see a window sum (differentiable), not a general reduction.
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pads)
  return total / count


def instance_norm(dtype, name: str) -> nn.Module:
  """InstanceNorm2d(affine=False): eps 1e-5, biased variance, here in two passes,
  mean((x - mean)^2), since a channel's mean can be large against its spread (conv biases
  at PyTorch's init), where E[x^2] - E[x]^2 loses the variance to float32 rounding."""
  return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype,
                         use_fast_variance=False, name=name)


def _relu_norm(h, name, dtype):
  return nn.relu(instance_norm(dtype, name)(h))


class ResidualBlock(nn.Module):
  """x + [ReflectionPad(1), 3x3 conv, norm, ReLU, ReflectionPad(1), 3x3 conv, norm](x)."""
  features: int
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv

  @nn.compact
  def __call__(self, x):
    h = self.conv(self.features, 3, 1, 0, dtype=self.dtype, name='conv1')(reflect_pad(x, 1))
    h = _relu_norm(h, 'conv1_norm', self.dtype)
    h = self.conv(self.features, 3, 1, 0, dtype=self.dtype, name='conv2')(reflect_pad(h, 1))
    return x + instance_norm(self.dtype, 'conv2_norm')(h)


def _blocks(remat: bool):
  """The residual block module, rematerialised in the backward pass when `remat`."""
  return nn.remat(ResidualBlock) if remat else ResidualBlock


def _check(name: str, shape, in_channels: int, multiple: int, smallest: int) -> None:
  if len(shape) != 4:
    raise ValueError(f'{name} expects images of shape [batch, height, width, {in_channels}], '
                     f'got shape {tuple(shape)}')
  _, h, w, c = shape
  # Symbolic sizes (a SavedModel for any size, export.py) are multiples by construction.
  sizes = [d for d in (h, w) if isinstance(d, (int, np.integer))]
  if any(d % multiple or d < smallest for d in sizes):
    raise ValueError(f'{name} needs height and width that are multiples of {multiple} and at '
                     f'least {smallest}, got {h}x{w} (shape {tuple(shape)})')
  if c != in_channels:
    raise ValueError(f'{name} expects {in_channels} input channels, got {c} '
                     f'(shape {tuple(shape)})')


class GlobalGenerator(nn.Module):
  """The official GlobalGenerator; with `final=False` the LocalEnhancer's global part (its
  output is the last upsampling's ReLU, ngf channels at the input's resolution).

  Attributes:
    ngf: filters of the first layer; ngf * 2**n_downsampling at the lowest resolution.
    n_downsampling: stride-2 convs (n_downsample_global, 4).
    n_blocks: residual blocks (n_blocks_global, 9).
    in_channels: label_nc (+ 1 for the instance edges; + feat_num) or input_nc.
    out_channels: image channels (3).
    final: end with ReflectionPad(3), 7x7 conv, tanh (False: the LocalEnhancer's `model`).
    remat: rematerialise the residual blocks in the backward pass.
    dtype: compute dtype; parameters are float32 either way.
    conv, conv_transpose: layer modules (layers.Conv, layers.ConvTranspose3x3, with the
      forms p2p_jax.kernels picks and bias_init='torch').
  """
  ngf: int = 64
  n_downsampling: int = 4
  n_blocks: int = 9
  in_channels: int = 36
  out_channels: int = 3
  final: bool = True
  remat: bool = False
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv
  conv_transpose: Callable[..., nn.Module] = layers.ConvTranspose3x3

  @property
  def size_multiple(self) -> int:
    """Height and width of the input must be positive multiples of this."""
    return 2 ** self.n_downsampling

  def check_input(self, shape) -> None:
    """ValueError unless `shape` is [N, H, W, in_channels] with H and W multiples of
    size_multiple, at least 2 pixels at the lowest resolution (reflection padding)."""
    _check('GlobalGenerator', shape, self.in_channels, self.size_multiple,
           2 * self.size_multiple)

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """x [N, H, W, in_channels] -> image [N, H, W, out_channels] in [-1, 1] (final), or the
    ngf-channel features of the last upsampling (not final). `train` changes nothing
    (instance norm, no dropout); it is there for the shared inference code."""
    self.check_input(x.shape)
    dt = self.dtype
    h = self.conv(self.ngf, 7, 1, 0, dtype=dt, name='conv_in')(reflect_pad(x, 3))
    h = _relu_norm(h, 'conv_in_norm', dt)
    for i in range(self.n_downsampling):
      h = self.conv(self.ngf * 2 ** (i + 1), 3, 2, 1, dtype=dt, name=f'down{i + 1}')(h)
      h = _relu_norm(h, f'down{i + 1}_norm', dt)
    width = self.ngf * 2 ** self.n_downsampling
    block = _blocks(self.remat)
    for i in range(self.n_blocks):
      h = block(width, dt, self.conv, name=f'block{i + 1}')(h)
    for i in range(self.n_downsampling):
      h = self.conv_transpose(width // 2 ** (i + 1), dtype=dt, name=f'up{i + 1}')(h)
      h = _relu_norm(h, f'up{i + 1}_norm', dt)
    if not self.final:
      return h
    h = self.conv(self.out_channels, 7, 1, 0, dtype=dt, name='conv_out')(reflect_pad(h, 3))
    return jnp.tanh(h.astype(jnp.float32))


class _LocalFront(nn.Module):
  """model{n}_1: c7s1-k, then a 3x3 stride-2 conv to 2k channels (norm, ReLU after each)."""
  features: int
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv

  @nn.compact
  def __call__(self, x):
    h = self.conv(self.features, 7, 1, 0, dtype=self.dtype, name='conv_in')(reflect_pad(x, 3))
    h = _relu_norm(h, 'conv_in_norm', self.dtype)
    h = self.conv(2 * self.features, 3, 2, 1, dtype=self.dtype, name='down')(h)
    return _relu_norm(h, 'down_norm', self.dtype)


class _LocalBack(nn.Module):
  """model{n}_2: residual blocks at 2k, a transposed conv to k (norm, ReLU); the last
  enhancer ends with ReflectionPad(3), 7x7 conv, tanh."""
  features: int
  n_blocks: int
  out_channels: int | None  # None: not the last enhancer
  remat: bool = False
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv
  conv_transpose: Callable[..., nn.Module] = layers.ConvTranspose3x3

  @nn.compact
  def __call__(self, h):
    block = _blocks(self.remat)
    for i in range(self.n_blocks):
      h = block(2 * self.features, self.dtype, self.conv, name=f'block{i + 1}')(h)
    h = self.conv_transpose(self.features, dtype=self.dtype, name='up')(h)
    h = _relu_norm(h, 'up_norm', self.dtype)
    if self.out_channels is None:
      return h
    h = self.conv(self.out_channels, 7, 1, 0, dtype=self.dtype, name='conv_out')(
        reflect_pad(h, 3))
    return jnp.tanh(h.astype(jnp.float32))


class LocalEnhancer(nn.Module):
  """The official LocalEnhancer: a global generator at 1 / 2**n_local_enhancers of the
  resolution, refined by n_local_enhancers local networks (see module docstring).

  Attributes: as GlobalGenerator's, plus
    ngf: filters of the outermost (full-resolution) enhancer; the global part has
      ngf * 2**n_local_enhancers.
    n_downsample_global, n_blocks_global: the global part's (4, 9).
    n_local_enhancers: local networks (1).
    n_blocks_local: residual blocks of each (3).
  """
  ngf: int = 32
  n_downsample_global: int = 4
  n_blocks_global: int = 9
  n_local_enhancers: int = 1
  n_blocks_local: int = 3
  in_channels: int = 36
  out_channels: int = 3
  remat: bool = False
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv
  conv_transpose: Callable[..., nn.Module] = layers.ConvTranspose3x3

  @property
  def size_multiple(self) -> int:
    return 2 ** (self.n_downsample_global + self.n_local_enhancers)

  def check_input(self, shape) -> None:
    _check('LocalEnhancer', shape, self.in_channels, self.size_multiple,
           2 * self.size_multiple)

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """x [N, H, W, in_channels] -> image [N, H, W, out_channels] in [-1, 1]."""
    self.check_input(x.shape)
    n_local = self.n_local_enhancers
    pyramid = [x]
    for _ in range(n_local):
      pyramid.append(downsample(pyramid[-1]))
    out = GlobalGenerator(
        self.ngf * 2 ** n_local, self.n_downsample_global, self.n_blocks_global,
        self.in_channels, self.out_channels, final=False, remat=self.remat, dtype=self.dtype,
        conv=self.conv, conv_transpose=self.conv_transpose, name='model')(pyramid[-1])
    for n in range(1, n_local + 1):
      features = self.ngf * 2 ** (n_local - n)
      front = _LocalFront(features, self.dtype, self.conv, name=f'model{n}_1')
      back = _LocalBack(features, self.n_blocks_local,
                        self.out_channels if n == n_local else None, self.remat, self.dtype,
                        self.conv, self.conv_transpose, name=f'model{n}_2')
      out = back(front(pyramid[n_local - n]) + out)
    return out
