"""pix2pixHD's instance-wise feature encoder (Wang et al., CVPR 2018, Sec. 3.4; the official
models/networks.py `Encoder`, trained with --instance_feat or --label_feat).

E maps the photo to a low-dimensional feature map (feat_num channels, 3), then replaces
every pixel's features by the mean over its instance (or, with label_feat, its label
class), so each object gets one feature vector. G sees those maps beside the label map
(G's input: one-hot labels, instance edges, features); E learns with G, from G's loss,
under G's Adam. At test time the features are what lets one label map give several
photos (other vectors per object).

The network is the official Encoder: ReflectionPad(3), 7x7 conv (nef), norm, ReLU;
n_downsample_E x [3x3 stride-2 conv, norm, ReLU]; as many [3x3 stride-2 transposed conv,
norm, ReLU]; ReflectionPad(3), 7x7 conv, tanh. That is layer for layer a GlobalGenerator
with no residual blocks, so E is one here (same parameter names, same state_dict keys
`model.1`, `model.4`, ..., the same weight conversion).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax.models.pix2pixhd import GlobalGenerator


def instance_mean(features: jax.Array, ids: jax.Array) -> jax.Array:
  """Each pixel's features replaced by the mean over the pixels of its image that share
  its id (the official Encoder.forward's loop over np.unique(inst)).

  features: [N, H, W, C]; ids: [N, H, W] integer ids (any values). Returns float32
  [N, H, W, C]; its gradient spreads each mean's evenly over the segment's pixels.
  """
  n, h, w, c = features.shape
  if not isinstance(h * w, int):
    # jnp.unique and the segment sums need the pixel count as a number.
    raise ValueError('the feature encoder\'s instance-wise average needs a fixed image size '
                     f'(got {h}x{w}): for export, give --image_size')
  flat = features.reshape(n, h * w, c).astype(jnp.float32)
  ids = jnp.asarray(ids).reshape(n, h * w)

  def one(f, i):
    # Dense segment numbers from the ids, without knowing how many there are: an image
    # of P pixels has at most P segments. The ids themselves may be large (26001).
    _, segment = jnp.unique(i, size=h * w, fill_value=0, return_inverse=True)
    segment = segment.reshape(-1)
    total = jax.ops.segment_sum(f, segment, num_segments=h * w)
    count = jax.ops.segment_sum(jnp.ones((h * w, 1), jnp.float32), segment,
                                num_segments=h * w)
    return (total / jnp.maximum(count, 1.0))[segment]

  return jax.vmap(one)(flat, ids).reshape(n, h, w, c)


class FeatureEncoder(nn.Module):
  """E: photo [N, H, W, out_channels of G] and ids [N, H, W] -> instance-wise mean
  features [N, H, W, feat_num] in [-1, 1]. Its parameters are those of `net` (shared
  scope: `conv_in`, `down1..`, `up1..`, `conv_out`)."""
  net: GlobalGenerator

  def setup(self):
    nn.share_scope(self, self.net)

  @property
  def size_multiple(self) -> int:
    return self.net.size_multiple

  @property
  def in_channels(self) -> int:
    return self.net.in_channels

  @property
  def feat_num(self) -> int:
    return self.net.out_channels

  def __call__(self, image: jax.Array, ids: jax.Array) -> jax.Array:
    return instance_mean(self.net(image), ids)


def create(ngf: int, n_downsampling: int, in_channels: int, feat_num: int,
           dtype: Any = jnp.float32, **layer_kwargs) -> FeatureEncoder:
  """The official Encoder(input_nc=in_channels, output_nc=feat_num, ngf=nef,
  n_downsampling=n_downsample_E) with instance norm."""
  return FeatureEncoder(GlobalGenerator(ngf=ngf, n_downsampling=n_downsampling, n_blocks=0,
                                        in_channels=in_channels, out_channels=feat_num,
                                        dtype=dtype, **layer_kwargs))
