"""CycleGAN's generator: a ResNet between two downsamplings and two upsamplings.

Zhu et al. (ICCV 2017, appendix 7.2) after Johnson et al.'s style-transfer network; as the
PyTorch reference's ResnetGenerator (junyanz/pytorch-CycleGAN-and-pix2pix,
models/networks.py), with c7s1-k = ReflectionPad(3), 7x7 conv stride 1, norm, ReLU;
dk = 3x3 conv stride 2 (padding 1), norm, ReLU; Rk = residual block; uk = 3x3 transposed
conv stride 2 (padding 1, output_padding 1: exactly twice the size), norm, ReLU:

  resnet_9blocks (256 px):  c7s1-64, d128, d256, R256 x 9, u128, u64, c7s1-3 (conv + tanh)
  resnet_6blocks (128 px):  the same with 6 residual blocks

A residual block is x + [ReflectionPad(1), 3x3 conv, norm, ReLU, (Dropout 0.5),
ReflectionPad(1), 3x3 conv, norm](x). Padding is by reflection everywhere but in the two
stride-2 convs and the transposed convs (zeros, as the reference's). Biases follow the
reference's rule (none before BatchNorm; with instance norm every conv has one); the last
conv always has one. Instance norm is the reference's InstanceNorm2d(affine=False): no
parameters and no running statistics (layers.norm_layer).

Parameter names (`conv_in`, `down1`, `block3/conv2`, `up1`, `conv_out`, ...) map one to one
onto the reference's state_dict keys (`model.1`, `model.4`, `model.12.conv_block.5`,
`model.19`, `model.26`, ...; p2p_jax/pytorch/resnet_weights.py).
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax.models import layers

# name -> residual blocks: the reference's --netG resnet_9blocks and resnet_6blocks, and
# resnet_2blocks, a small variant for tests and CPU-sized demos.
RESNET_GENERATORS = {'resnet_9blocks': 9, 'resnet_6blocks': 6, 'resnet_2blocks': 2}


def reflect_pad(x: jax.Array, p: int) -> jax.Array:
  """PyTorch's ReflectionPad2d(p) on NHWC: mirrors without repeating the edge pixel."""
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode='reflect')


class ResnetBlock(nn.Module):
  """x + F(x), F = pad, 3x3 conv, norm, ReLU, (dropout), pad, 3x3 conv, norm."""
  features: int
  norm: str = 'instance'
  dropout: bool = False
  dropout_rate: float = 0.5
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv

  @nn.compact
  def __call__(self, x, *, train: bool):
    bias = layers.uses_bias(self.norm)

    def conv_norm(h, name):
      h = self.conv(self.features, 3, 1, 0, use_bias=bias, dtype=self.dtype,
                    name=name)(reflect_pad(h, 1))
      norm = layers.norm_layer(self.norm, train=train, axis_name=self.bn_axis_name,
                               dtype=self.dtype, name=f'{name}_norm')
      return h if norm is None else norm(h)

    h = nn.relu(conv_norm(x, 'conv1'))
    if self.dropout:
      h = nn.Dropout(self.dropout_rate, deterministic=not train, name='dropout')(h)
    return x + conv_norm(h, 'conv2')


class ResnetGenerator(nn.Module):
  """CycleGAN's generator. Defaults: resnet_9blocks, 3 -> 3 channels, instance norm.

  Attributes:
    n_blocks: residual blocks at the lowest resolution (9 or 6 in the reference).
    ngf: filters of the first layer; 2 * ngf and 4 * ngf after the two downsamplings.
    in_channels, out_channels: image channels of the input and the output.
    norm: 'instance' (CycleGAN) or 'batch'.
    dropout: dropout 0.5 inside every residual block (off in CycleGAN: --no_dropout).
    n_downsampling: stride-2 convs before the blocks (2); inputs must have height and width
      that are multiples of 2**n_downsampling.
    bn_axis_name: mapped axis over which BatchNorm averages statistics (None: per device).
    dtype: compute dtype; parameters are float32 either way.
    conv, conv_transpose: the layer modules (layers.Conv and layers.ConvTranspose3x3,
      possibly with a faster `op`, see p2p_jax.kernels).
  """
  n_blocks: int = 9
  ngf: int = 64
  in_channels: int = 3
  out_channels: int = 3
  norm: str = 'instance'
  dropout: bool = False
  dropout_rate: float = 0.5
  n_downsampling: int = 2
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv
  conv_transpose: Callable[..., nn.Module] = layers.ConvTranspose3x3

  @property
  def size_multiple(self) -> int:
    """Height and width of the input must be positive multiples of this."""
    return 2 ** self.n_downsampling

  def check_input(self, shape: tuple[int, ...]) -> None:
    """Raises ValueError unless `shape` is [N, H, W, in_channels] with H and W multiples of
    size_multiple and large enough for the reflection padding at the lowest resolution."""
    if len(shape) != 4:
      raise ValueError(f'ResnetGenerator expects images of shape [batch, height, width, '
                       f'{self.in_channels}], got rank {len(shape)} shape {tuple(shape)}')
    _, h, w, c = shape
    m = self.size_multiple
    if h % m or w % m or h < 2 * m or w < 2 * m:
      raise ValueError(f'ResnetGenerator needs height and width that are multiples of {m} '
                       f'and at least {2 * m}, got {h}x{w} (shape {tuple(shape)})')
    if c != self.in_channels:
      raise ValueError(f'ResnetGenerator expects {self.in_channels} input channels, got {c} '
                       f'(shape {tuple(shape)})')

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Maps x in [-1, 1] to G(x) in [-1, 1]; `train` switches BatchNorm to batch statistics
    and dropout on (instance norm is the same in both)."""
    self.check_input(x.shape)
    dt, bias = self.dtype, layers.uses_bias(self.norm)

    def normed(h, name):
      norm = layers.norm_layer(self.norm, train=train, axis_name=self.bn_axis_name,
                               dtype=dt, name=f'{name}_norm')
      return nn.relu(h if norm is None else norm(h))

    h = self.conv(self.ngf, 7, 1, 0, use_bias=bias, dtype=dt, name='conv_in')(
        reflect_pad(x, 3))
    h = normed(h, 'conv_in')
    for i in range(self.n_downsampling):
      h = self.conv(self.ngf * 2 ** (i + 1), 3, 2, 1, use_bias=bias, dtype=dt,
                    name=f'down{i + 1}')(h)
      h = normed(h, f'down{i + 1}')
    width = self.ngf * 2 ** self.n_downsampling
    for i in range(self.n_blocks):
      h = ResnetBlock(width, self.norm, self.dropout, self.dropout_rate, self.bn_axis_name,
                      dt, self.conv, name=f'block{i + 1}')(h, train=train)
    for i in range(self.n_downsampling):
      h = self.conv_transpose(width // 2 ** (i + 1), use_bias=bias, dtype=dt,
                              name=f'up{i + 1}')(h)
      h = normed(h, f'up{i + 1}')
    h = self.conv(self.out_channels, 7, 1, 0, use_bias=True, dtype=dt, name='conv_out')(
        reflect_pad(h, 3))
    return jnp.tanh(h.astype(jnp.float32))
