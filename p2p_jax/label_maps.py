"""Semantic label maps as pix2pixHD's generator sees them, and as people look at them.

The official code (NVIDIA/pix2pixHD, Pix2PixHDModel.encode_input and get_edges) turns a
label map into a one-hot tensor of label_nc channels and appends the instance boundary
map: 1 wherever a pixel's instance id differs from one of its 4 neighbours, else 0. Here
that happens on the device inside the jitted step (`encode`), from the integer maps of the
batch, so only [H, W] integers travel from the host.

Inference takes one array per image (what `TrainedGenerator.apply` and the exported model
take): `pack` stacks the label ids and the instance ids as float32 channels [N, H, W, 2]
(ids below 2**24 are exact; Cityscapes' instance ids are below 34,000), and `encode_packed`
encodes that on the device. With label_nc = 0 the input is an RGB image in [-1, 1] (the
official `label_nc 0` mode) with the instance ids as a 4th channel when instances are on.

`colorize` paints a label map with the official palette (util.labelcolormap: Cityscapes'
colours for 35 labels, a bit-interleaved palette otherwise) for sample grids and result
pages; `read_label_file` reads a label or instance PNG as its integer ids, and
`find_instance_map` the instance map that goes with a label map, by the official layouts'
names (Cityscapes' *_gtFine_labelIds.png / *_gtFine_instanceIds.png; the official
datasets' test_label/ beside test_inst/).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from p2p_jax import image_io

CITYSCAPES_COLORS = np.array([
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81),
    (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70),
    (102, 102, 156), (190, 153, 153), (180, 165, 180), (150, 100, 100), (150, 120, 90),
    (153, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35),
    (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    (0, 0, 142)], np.uint8)


def edges(instance: jax.Array) -> jax.Array:
  """get_edges: [N, H, W] ids -> [N, H, W] float32, 1 where a pixel differs from its left,
  right, upper or lower neighbour."""
  dx = instance[:, :, 1:] != instance[:, :, :-1]
  dy = instance[:, 1:, :] != instance[:, :-1, :]
  no_x = jnp.zeros_like(dx[:, :, :1])
  no_y = jnp.zeros_like(dy[:, :1, :])
  e = (jnp.concatenate([no_x, dx], 2) | jnp.concatenate([dx, no_x], 2)
       | jnp.concatenate([no_y, dy], 1) | jnp.concatenate([dy, no_y], 1))
  return e.astype(jnp.float32)


def encode(label_nc: int, label=None, instance=None, image=None) -> jax.Array:
  """The generator's input [N, H, W, C]: one-hot of `label` ([N, H, W] ids < label_nc)
  or, with label_nc 0, `image` ([N, H, W, 3] in [-1, 1]); then the edges of `instance`
  ([N, H, W] ids) as one more channel when it is given."""
  if label_nc:
    x = jax.nn.one_hot(jnp.asarray(label).astype(jnp.int32), label_nc, dtype=jnp.float32)
  else:
    x = jnp.asarray(image, jnp.float32)
  if instance is not None:
    x = jnp.concatenate([x, edges(jnp.asarray(instance))[..., None]], -1)
  return x


def packed_channels(label_nc: int, instances: bool, input_nc: int = 3) -> int:
  """Channels of `pack`'s arrays."""
  return (1 if label_nc else input_nc) + (1 if instances else 0)


def pack(label_nc: int, instances: bool, batch: dict) -> np.ndarray:
  """A host batch ({'label', 'instance'} or, label_nc 0, {'input', 'instance'}) as the one
  float32 array [N, H, W, packed_channels] inference takes."""
  parts = [np.asarray(batch['label'], np.float32)[..., None] if label_nc
           else np.asarray(batch['input'], np.float32)]
  if instances:
    parts.append(np.asarray(batch['instance'], np.float32)[..., None])
  return np.concatenate(parts, -1)


def encode_packed(label_nc: int, instances: bool, x: jax.Array) -> jax.Array:
  """`encode` of a `pack`ed array (inside the inference program)."""
  instance = x[..., -1] if instances else None
  if label_nc:
    return encode(label_nc, label=jnp.round(x[..., 0]), instance=instance)
  return encode(0, image=x[..., :-1] if instances else x, instance=instance)


def palette(n: int) -> np.ndarray:
  """util.labelcolormap(n): Cityscapes' colours for 35 labels, else the bit-interleaved
  palette ([n, 3] uint8)."""
  if n == 35:
    return CITYSCAPES_COLORS.copy()
  cmap = np.zeros((n, 3), np.uint8)
  for i in range(n):
    r = g = b = 0
    c = i
    for j in range(7):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    cmap[i] = (r, g, b)
  return cmap


def colorize(label: np.ndarray, label_nc: int) -> np.ndarray:
  """[..., H, W] ids -> [..., H, W, 3] float32 in [-1, 1] with `palette(label_nc)`; ids
  outside 0..label_nc-1 are black (as the official Colorize leaves them)."""
  ids = np.asarray(label).astype(np.int64)
  colors = np.concatenate([palette(label_nc), np.zeros((1, 3), np.uint8)])
  ids = np.where((ids >= 0) & (ids < label_nc), ids, label_nc)
  return image_io.to_float(colors[ids])


def read_label_file(path: str) -> np.ndarray:
  """A label or instance map file as its integer ids [H, W] (int32): 8- and 16-bit gray
  and 32-bit integer PNGs as stored, palette PNGs as their indices. Raises
  image_io.ImageError naming the file for a colour image (labels are one channel)."""
  with image_io.open_image(path) as im:
    if im.mode in ('L', 'P', 'I', 'I;16', 'I;16B', 'I;16L'):
      return np.asarray(im).astype(np.int32)
    raise image_io.ImageError(f'{path}: a {im.mode} image, but a label map holds one id per '
                              'pixel (a gray or palette PNG)')


def find_instance_map(label_path: str) -> str | None:
  """The instance map of a label map file, if one is where the official layouts put it:
  the same name with 'labelIds' -> 'instanceIds' (Cityscapes), in the same folder or in
  the sibling folder '<x>_inst' of '<x>_label' (pix2pixHD's datasets/cityscapes/)."""
  folder, name = os.path.split(os.path.abspath(label_path))
  names = [name.replace('labelIds', 'instanceIds')] + (
      [name] if 'labelIds' not in name else [])
  folders = []
  if folder.endswith('_label'):
    folders.append(folder[:-len('_label')] + '_inst')
  folders.append(folder)
  for f in folders:
    for n in names:
      candidate = os.path.join(f, n)
      if os.path.normcase(candidate) != os.path.normcase(os.path.abspath(label_path)) and (
          os.path.isfile(candidate)):
        return candidate
  return None
