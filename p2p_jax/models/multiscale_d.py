"""pix2pixHD's discriminator: PatchGANs at several scales, every layer's output returned.

As the official MultiscaleDiscriminator and NLayerDiscriminator (NVIDIA/pix2pixHD,
models/networks.py). One NLayerDiscriminator per scale, each on the input downsampled once
more (AvgPool2d(3, 2, 1, count_include_pad=False), models/pix2pixhd.downsample): scale 0
sees the full resolution. An NLayerDiscriminator of n_layers (3) has n_layers + 2 layers,
4x4 convs with zero padding 2 (pix2pix's has 1) and a bias everywhere:

  layer0  conv ndf, stride 2, LeakyReLU 0.2
  layer1..n_layers-1  conv min(2 nf, 512), stride 2, instance norm, LeakyReLU 0.2
  layer n_layers      conv min(2 nf, 512), stride 1, instance norm, LeakyReLU 0.2
  layer n_layers+1    conv 1, stride 1: the logit map

and returns the output of every layer (for the feature-matching loss; the last one is
what the GAN loss judges). Channels are capped at 512 (not at 8 ndf as in pix2pix).

Parameter names keep the official (reversed) naming: the network of scale i is
`scale{num_D - 1 - i}`, so the full-resolution D of a num_D = 2 model (the 512p D, named
scale1) becomes the middle scale of a num_D = 3 model (the 1024p D) when weights are copied
by name, as the official load_pretrain does. `scale{s}/layer{j}` = the state_dict's
`scale{s}_layer{j}.0` (p2p_jax/pytorch/pix2pixhd_weights.py).
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax.models import layers
from p2p_jax.models.pix2pixhd import downsample, instance_norm


def layer_specs(n_layers: int, ndf: int) -> list[tuple[int, int, bool]]:
  """(features, stride, normalised) of each layer of an NLayerDiscriminator."""
  specs, nf = [(ndf, 2, False)], ndf
  for _ in range(1, n_layers):
    nf = min(nf * 2, 512)
    specs.append((nf, 2, True))
  nf = min(nf * 2, 512)
  return specs + [(nf, 1, True), (1, 1, False)]


class NLayerDiscriminator(nn.Module):
  """One scale's PatchGAN: returns the n_layers + 2 layer outputs, the logits last."""
  n_layers: int = 3
  ndf: int = 64
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    outputs, h = [], x
    specs = layer_specs(self.n_layers, self.ndf)
    for j, (features, stride, normalised) in enumerate(specs):
      h = self.conv(features, 4, stride, 2, dtype=self.dtype, name=f'layer{j}')(h)
      if normalised:
        h = instance_norm(self.dtype, f'layer{j}_norm')(h)
      if j < len(specs) - 1:
        h = nn.leaky_relu(h, 0.2)
      outputs.append(h)
    return outputs


class MultiscaleDiscriminator(nn.Module):
  """num_D PatchGANs on concat(input, image) at 1, 1/2, 1/4, ... of the resolution.

  Attributes:
    num_D: scales (2 by default, 3 for the 1024p recipe).
    n_layers: n_layers_D of each (3).
    ndf: filters of each first layer (64).
    in_channels: the input's channels (label_nc + 1 for edges, or input_nc) + the image's.
    dtype, conv: as the generators'.
  Returns a list over scales (full resolution first) of lists of layer outputs (float32).
  """
  num_D: int = 2
  n_layers: int = 3
  ndf: int = 64
  in_channels: int = 39
  dtype: Any = jnp.float32
  conv: Callable[..., nn.Module] = layers.Conv

  def check_input(self, shape) -> None:
    if len(shape) != 4 or shape[-1] != self.in_channels:
      raise ValueError(f'MultiscaleDiscriminator expects [batch, height, width, '
                       f'{self.in_channels}] (input and image concatenated), got '
                       f'{tuple(shape)}')

  @nn.compact
  def __call__(self, x: jax.Array) -> list[list[jax.Array]]:
    self.check_input(x.shape)
    results = []
    for i in range(self.num_D):
      net = NLayerDiscriminator(self.n_layers, self.ndf, self.dtype, self.conv,
                                name=f'scale{self.num_D - 1 - i}')
      results.append([o.astype(jnp.float32) for o in net(x)])
      if i != self.num_D - 1:
        x = downsample(x)
    return results


def receptive_field(n_layers: int) -> int:
  """Side of the input patch one logit of an NLayerDiscriminator sees (4x4 kernels)."""
  rf = 1
  for _, stride, _ in reversed(layer_specs(n_layers, 1)):
    rf = (rf - 1) * stride + 4
  return rf


def output_size(size: int, n_layers: int) -> int:
  """Height of the logit map for an input of height `size` (padding 2: stride 2 gives
  size // 2 + 1, stride 1 gives size + 1)."""
  for _, stride, _ in layer_specs(n_layers, 1):
    size = (size + 4 - 4) // stride + 1
  return size
