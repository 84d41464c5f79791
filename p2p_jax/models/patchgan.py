"""The pix2pix discriminator: a PatchGAN that classifies every N x N patch as real or fake.

D sees the pair concat(x, y) on channels (conditional) or y alone (the paper's unconditional
ablation) and outputs a map of logits, one per patch; its loss averages over the map.
`n_layers` selects the family of the paper's Table 3 / Figure 6: 0 = 1x1 PixelGAN,
1 = 16x16, 2 = 34x34, 3 = 70x70 (default), 4 = 142x142, 5 = 286x286 ("ImageGAN" at 256 px).
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax.models import layers


def layer_specs(n_layers: int, ndf: int = 64) -> list[tuple[int, int, int, int]]:
  """The conv layers of a PatchGAN as (features, kernel, stride, padding), input to output.

  n_layers >= 1 (PyTorch's NLayerDiscriminator): C64 stride 2, then n_layers - 1 more
  stride-2 layers doubling the width up to 8 * ndf, one stride-1 layer, and a stride-1 conv
  to one logit channel; all 4x4 with padding 1. n_layers == 0 is the PixelGAN: 1x1 convs.
  """
  if n_layers < 0:
    raise ValueError(f'n_layers must be >= 0, got {n_layers}')
  if n_layers == 0:
    return [(ndf, 1, 1, 0), (2 * ndf, 1, 1, 0), (1, 1, 1, 0)]
  specs = [(ndf, 4, 2, 1)]
  for n in range(1, n_layers):
    specs.append((ndf * min(2 ** n, 8), 4, 2, 1))
  specs.append((ndf * min(2 ** n_layers, 8), 4, 1, 1))
  specs.append((1, 4, 1, 1))
  return specs


def receptive_field(specs: list[tuple[int, int, int, int]]) -> int:
  """Side of the input patch that one output logit sees, from the layer list."""
  rf = 1
  for _, kernel, stride, _ in reversed(specs):
    rf = (rf - 1) * stride + kernel
  return rf


class PatchGAN(nn.Module):
  """PatchGAN discriminator. Defaults: the paper's 70x70 D on concat(x, y), 3 + 3 channels.

  Attributes:
    n_layers: see module docstring; 3 gives 70x70 patches and a 30x30 map at 256x256.
    ndf: filters of the first layer.
    x_channels: channels of the condition x; 0 for an unconditional D that sees only y.
    y_channels: channels of the (real or generated) output image y.
    norm: 'batch', 'instance' or 'none'; never on the first layer.
    bn_axis_name: mapped axis over which BatchNorm averages statistics (None: per device).
    dtype: compute dtype; logits are returned in float32.
    conv: the layer module (layers.Conv, possibly with a faster `op`, see p2p_jax.kernels).
  """
  n_layers: int = 3
  ndf: int = 64
  x_channels: int = 3
  y_channels: int = 3
  norm: str = 'batch'
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv

  def check_input(self, x_shape, y_shape) -> None:
    """Raises ValueError naming the expected and given shapes when (x, y) do not fit."""
    if len(y_shape) != 4 or y_shape[-1] != self.y_channels:
      raise ValueError(f'PatchGAN expects y of shape [batch, height, width, '
                       f'{self.y_channels}], got {tuple(y_shape)}')
    if self.x_channels == 0:
      if x_shape is not None:
        raise ValueError('this PatchGAN is unconditional (x_channels=0) but was given x of '
                         f'shape {tuple(x_shape)}')
      return
    if x_shape is None:
      raise ValueError(f'this PatchGAN is conditional and needs x with {self.x_channels} '
                       'channels; got none')
    expected = tuple(y_shape[:3]) + (self.x_channels,)
    if tuple(x_shape) != expected:
      raise ValueError(f'PatchGAN expects x of shape {expected} to match y of shape '
                       f'{tuple(y_shape)}, got x of shape {tuple(x_shape)}')

  @nn.compact
  def __call__(self, x: jax.Array | None, y: jax.Array, *, train: bool) -> jax.Array:
    """Returns the logit map [N, h, w, 1] for the pair (x, y) (or y alone if unconditional)."""
    self.check_input(None if x is None else x.shape, y.shape)
    h = y if x is None else jnp.concatenate([x, y], axis=-1)
    specs = layer_specs(self.n_layers, self.ndf)
    bias = layers.uses_bias(self.norm)
    for i, (features, kernel, stride, padding) in enumerate(specs):
      first, last = i == 0, i == len(specs) - 1
      if not first:
        h = nn.leaky_relu(h, 0.2)
      # PixelGAN's last conv follows the reference: no bias when BatchNorm is used.
      has_bias = first or (last and self.n_layers > 0) or bias
      h = self.conv(features, kernel, stride, padding, use_bias=has_bias, dtype=self.dtype,
                    name=f'conv{i + 1}')(h)
      if not first and not last:
        norm = layers.norm_layer(self.norm, train=train, axis_name=self.bn_axis_name,
                                 dtype=self.dtype, name=f'conv{i + 1}_norm')
        h = h if norm is None else norm(h)
    return h.astype(jnp.float32)
