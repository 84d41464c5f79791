"""The pix2pix generator: a U-Net (or, without skips, the paper's encoder-decoder).

U-Net-256 (paper, Section 6.1.1), Ck = Conv-Norm-ReLU, CDk = Conv-Norm-Dropout(0.5)-ReLU:
  encoder C64-C128-C256-C512-C512-C512-C512-C512 (no norm on the first layer, LeakyReLU 0.2)
  decoder CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128 (channels after the skip concat),
          ReLU, 4x4 stride-2 transposed convs, then a transposed conv to the output and tanh.
The 1x1 bottleneck carries no normalisation (paper errata: BatchNorm there zeroes the
activations at batch size 1). Layer i of the encoder is concatenated onto decoder layer
depth - i, so the output sees the input's low-level detail directly.

Activations follow the PyTorch reference's pre-activation order: each encoder conv after the
first reads LeakyReLU(previous output), each decoder conv reads ReLU(its input).
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax.models import layers


# name -> (depth, skips). unet_256 / unet_128 are the paper's and the PyTorch reference's;
# encoder_decoder_* is the paper's no-skip ablation (Table 2); the 32 and 64 px variants
# exist for fast tests and demos. The number is the smallest image side the network takes.
GENERATORS = {
    f'{kind}_{2 ** depth}': (depth, kind == 'unet')
    for kind in ('unet', 'encoder_decoder') for depth in (5, 6, 7, 8)
}

# Where the decoder's dropout sits: name -> its first decoder layer.
DROPOUT_PLACEMENTS = {'paper': 1, 'pytorch': 2}


def dropout_layers(depth: int, placement: str) -> tuple[int, ...]:
  """Decoder layers (1 = right after the bottleneck) that apply dropout.

  'paper' puts it on the first depth - 5 decoder layers (d1-d3 for U-Net-256, as the paper
  and its Lua code); 'pytorch' one layer further out (d2-d4, junyanz/pytorch-CycleGAN-and-
  pix2pix, whose innermost block has none). Same count, so the same parameters.
  """
  first = DROPOUT_PLACEMENTS[placement]
  return tuple(range(first, first + max(depth - 5, 0)))


class UNet(nn.Module):
  """pix2pix generator. Defaults: the paper's U-Net-256 for 3 -> 3 channels.

  Attributes:
    depth: number of stride-2 downsamplings; 8 for 256x256 inputs (unet_256), 7 for unet_128.
      Inputs must have height and width divisible by 2**depth.
    ngf: filters of the first encoder layer; deeper layers use up to 8 * ngf.
    in_channels, out_channels: image channels of x and of G(x).
    norm: 'batch', 'instance' or 'none'.
    dropout: whether the decoder's dropout layers exist (pix2pix's only noise).
    dropout_rate: their rate (paper: 0.5).
    dropout_placement: 'paper' or 'pytorch', see `dropout_layers`.
    skips: False gives the paper's encoder-decoder ablation (Table 2).
    bn_axis_name: mapped axis over which BatchNorm averages statistics (None: per device).
    dtype: compute dtype; parameters are float32 either way.
    conv, conv_transpose: the encoder's and decoder's layer modules (layers.Conv and
      layers.ConvTranspose4x4, possibly with a faster `op`, see p2p_jax.kernels).
  """
  depth: int = 8
  ngf: int = 64
  in_channels: int = 3
  out_channels: int = 3
  norm: str = 'batch'
  dropout: bool = True
  dropout_rate: float = 0.5
  dropout_placement: str = 'paper'
  skips: bool = True
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv
  conv_transpose: Callable[..., nn.Module] = layers.ConvTranspose4x4

  @property
  def size_multiple(self) -> int:
    """Height and width of the input must be positive multiples of this."""
    return 2 ** self.depth

  def check_input(self, shape: tuple[int, ...]) -> None:
    """Raises ValueError unless `shape` is [N, H, W, in_channels] with H, W % 2**depth == 0."""
    if len(shape) != 4:
      raise ValueError(f'UNet expects images of shape [batch, height, width, '
                       f'{self.in_channels}], got rank {len(shape)} shape {tuple(shape)}')
    n, h, w, c = shape
    m = 2 ** self.depth
    if h % m or w % m or h < m or w < m:
      raise ValueError(f'UNet with depth {self.depth} needs height and width that are '
                       f'positive multiples of 2**{self.depth} = {m}, got {h}x{w} '
                       f'(shape {tuple(shape)})')
    if c != self.in_channels:
      raise ValueError(f'UNet expects {self.in_channels} input channels, got {c} '
                       f'(shape {tuple(shape)})')

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Maps x in [-1, 1] to G(x) in [-1, 1]. `train` switches BatchNorm to batch stats.

    Dropout needs a 'dropout' rng whenever it is on; it is on in train mode and in the
    paper's test mode (`train=True` without updating running averages, see inference.py).
    """
    self.check_input(x.shape)
    norm, dt = self.norm, self.dtype
    bias = layers.uses_bias(norm)
    widths = [self.ngf * min(2 ** i, 8) for i in range(self.depth)]

    def normed(h, name):
      layer = layers.norm_layer(norm, train=train, axis_name=self.bn_axis_name, dtype=dt,
                                name=name)
      return h if layer is None else layer(h)

    # Encoder. The first and the innermost (bottleneck) layers have no normalisation;
    # with BatchNorm the reference gives neither a bias either.
    h = self.conv(widths[0], use_bias=bias, dtype=dt, name='enc1')(x)
    skips = [h]
    for i in range(1, self.depth):
      h = self.conv(widths[i], use_bias=bias, dtype=dt, name=f'enc{i + 1}')(
          nn.leaky_relu(h, 0.2))
      if i < self.depth - 1:
        h = normed(h, f'enc{i + 1}_norm')
      skips.append(h)

    # Decoder: layer k (1 = innermost) upsamples and, with skips, is concatenated with the
    # encoder output of the same resolution.
    with_dropout = dropout_layers(self.depth, self.dropout_placement) if self.dropout else ()
    for k in range(1, self.depth):
      out_width = widths[self.depth - 1 - k]
      h = self.conv_transpose(out_width, use_bias=bias, dtype=dt, name=f'dec{k}')(nn.relu(h))
      h = normed(h, f'dec{k}_norm')
      if k in with_dropout:
        h = nn.Dropout(self.dropout_rate, deterministic=not train, name=f'dec{k}_dropout')(h)
      if self.skips:
        h = jnp.concatenate([skips[self.depth - 1 - k], h], axis=-1)
    h = self.conv_transpose(self.out_channels, use_bias=True, dtype=dt,
                            name=f'dec{self.depth}')(nn.relu(h))
    return jnp.tanh(h.astype(jnp.float32))
