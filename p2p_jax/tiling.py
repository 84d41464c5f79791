"""Large images in tiles: layout, blending weights, reflect-padded windows, stitching.

A generator's memory grows with the image (unet_256: about 0.7 KB per pixel on CPU, so a
9000x9000 image would need some 60 GB), so `translate` cuts images larger than a tile
into overlapping tiles, translates them one at a time, and blends them back. How that
relates to translating the whole image at once:

  * Tiles are windows of the same reflect-padded canvas a whole-image pass would see, at
    offsets that are multiples of the generator's `multiple` (2**depth for a U-Net), so
    every strided layer samples the same pixel grid.
  * A pixel of a tile depends only on the pixels within `reach` of it (the receptive
    field, `receptive_reach`). Each tile's output is used only `margin` pixels or more
    away from its borders (except at the canvas's own borders); neighbours' outputs are
    blended with smooth weights across the rest of their overlap. With margin >= reach and
    a generator that is local (eval mode with BatchNorm running averages, or no norm
    layers and no dropout), every output pixel equals the whole-image output up to float
    rounding.
  * Paper mode (and instance norm) normalises with the statistics of what it is given, so
    each tile is normalised with its own statistics, not the whole image's, and draws its
    own dropout masks: the output differs from a whole-image pass everywhere; the blend
    only keeps seams from showing.

Layout, weights, windows and stitching are pure numpy functions; `for_generator` reads
what a TrainedGenerator's tiles need (multiple, reach, mode) and `generator_bands` runs it
over the tiles of one image.
"""

import dataclasses
import math
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from p2p_jax.models import UNet, dropout_layers

# 'auto' tiles: at least this side, and at least this many margins, so that the margins
# cost at most about half of each tile (unet_256: 3072 px tiles, ~7 GB peak on CPU).
AUTO_TILE = 2048
AUTO_TILE_MARGINS = 4
# Dropout keys of tiles: tile t of image i uses index i * TILE_KEY_STRIDE + t.
TILE_KEY_STRIDE = 2 ** 16


# ------------------------------------------------------------------ receptive field

def receptive_reach(layers: Sequence[tuple[str, int, int, int]]) -> int:
  """Pixels on either side of an output pixel that it can depend on, for a chain of
  ('conv' | 'convt', kernel, stride, padding) layers along one axis (input first).

  'conv' is a strided convolution, 'convt' PyTorch's ConvTranspose2d (output index
  stride * i - padding + tap); the chain must end at its input's resolution. The reach is
  the maximum over the output phases.
  """
  period = math.prod(s for kind, _, s, _ in layers if kind == 'conv')
  if period != math.prod(s for kind, _, s, _ in layers if kind == 'convt'):
    raise ValueError('the chain of layers must end at the resolution it starts at')
  reach = 0
  for o in range(2 * period):
    lo, hi = o, o
    for kind, k, s, p in reversed(layers):
      if kind == 'conv':
        lo, hi = s * lo - p, s * hi - p + k - 1
      elif kind == 'convt':
        lo, hi = -((k - 1 - p - lo) // s), (hi + p) // s   # ceil, floor
      else:
        raise ValueError(f'unknown layer kind {kind!r}')
    reach = max(reach, o - lo, hi - o)
  return reach


def unet_layers(depth: int) -> list[tuple[str, int, int, int]]:
  """The U-Net's path through its bottleneck: `depth` 4x4 stride-2 convs, then `depth`
  4x4 stride-2 transposed convs (the resize conv is one too, see models/layers.py). The
  skip paths leave out its middle layers and reach less (tests/test_tiling.py measures
  the network's dependence)."""
  return [('conv', 4, 2, 1)] * depth + [('convt', 4, 2, 1)] * depth


# ------------------------------------------------------------------ layout and weights

@dataclasses.dataclass(frozen=True)
class AxisLayout:
  """Tiles along one axis of a canvas: tile k covers [starts[k], starts[k] + tile)."""
  length: int
  tile: int
  margin: int
  starts: tuple[int, ...]

  def weights(self) -> list[np.ndarray]:
    """Each tile's float32 blending weights over its extent; they sum to 1 at every
    canvas position, and are 0 within `margin` of a tile's inner borders."""
    n, t, m = len(self.starts), self.tile, self.margin
    raw = []
    for k, s in enumerate(self.starts):
      x = np.arange(s, s + t, dtype=np.float64) + 0.5   # pixel centres
      w = np.ones(t)
      if k > 0:                                        # rise across the left overlap
        w = np.minimum(w, _smoothstep((x - (s + m)) / (self.starts[k - 1] + t - m - s - m)))
      if k < n - 1:                                    # fall across the right overlap
        a, b = self.starts[k + 1] + m, s + t - m
        w = np.minimum(w, _smoothstep((b - x) / (b - a)))
      raw.append(w)
    total = np.zeros(self.length)
    for s, w in zip(self.starts, raw):
      total[s:s + t] += w
    return [(w / total[s:s + t]).astype(np.float32) for s, w in zip(self.starts, raw)]


def _smoothstep(u: np.ndarray) -> np.ndarray:
  u = np.clip(u, 0.0, 1.0)
  return u * u * (3.0 - 2.0 * u)


def axis_layout(length: int, tile: int, margin: int, multiple: int,
                min_blend: int = 1) -> AxisLayout:
  """The fewest tiles of side `tile` that cover [0, length) with starts at multiples of
  `multiple`, neighbours overlapping by at least 2 * margin + min_blend, spread evenly.

  A canvas no longer than a tile is one tile of its own length. Raises ValueError when
  the tile leaves no room between its margins.
  """
  if length <= tile:
    return AxisLayout(length, length, margin, (0,))
  if length % multiple or tile % multiple:
    raise ValueError(f'canvas {length} and tile {tile} must be multiples of {multiple}')
  max_step = (tile - 2 * margin - min_blend) // multiple   # in units of `multiple`
  if max_step < 1:
    fits = -(-(2 * margin + min_blend + multiple) // multiple) * multiple
    raise ValueError(f'a {margin} px margin on each side of {tile} px tiles leaves no room '
                     f'to advance by {multiple} px with a {min_blend} px blend: use tiles '
                     f'of at least {fits} px or a margin of '
                     f'at most {(tile - min_blend - multiple) // 2} px')
  units = (length - tile) // multiple
  gaps = -(-units // max_step)
  starts = tuple(multiple * (k * units // gaps) for k in range(gaps + 1))
  return AxisLayout(length, tile, margin, starts)


@dataclasses.dataclass(frozen=True)
class Plan:
  """A canvas in tiles: rows x cols, translated in row-major order."""
  rows: AxisLayout
  cols: AxisLayout

  @property
  def count(self) -> int:
    return len(self.rows.starts) * len(self.cols.starts)

  def boxes(self) -> Iterator[tuple[int, int, int, int]]:
    """(top, left, height, width) of each tile on the canvas, row-major."""
    for y in self.rows.starts:
      for x in self.cols.starts:
        yield y, x, self.rows.tile, self.cols.tile


def make_plan(height: int, width: int, tile: int, margin: int, multiple: int) -> Plan:
  """Tiles of at most tile x tile for a height x width canvas (multiples of `multiple`).
  The narrowest blend between neighbours is tile // 16 (at least 1 px)."""
  min_blend = max(tile // 16, 1)
  return Plan(axis_layout(height, tile, margin, multiple, min_blend),
              axis_layout(width, tile, margin, multiple, min_blend))


# ------------------------------------------------------------------ windows and stitching

def reflect_index(index: np.ndarray, n: int, edge: bool = False) -> np.ndarray:
  """Indices into an axis of n pixels for positions reflected about its ends without
  repeating the edge (numpy's 'reflect' pad, any distance), or with `edge` (or n == 1)
  the nearest end (numpy's 'edge' pad)."""
  if edge or n == 1:
    return np.clip(index, 0, n - 1)
  period = 2 * (n - 1)
  index = np.mod(index, period)
  return np.where(index < n, index, period - index)


def read_window(image: np.ndarray, offset: tuple[int, int], box) -> np.ndarray:
  """Window `box` = (top, left, height, width) of the canvas that pads `image` [H, W, C]
  so that image pixel (0, 0) sits at canvas `offset`, without building the canvas (a copy
  of the window only). The padding is translate.pad_to_multiple's: reflection, or the
  edge pixels for an image 1 px high or wide."""
  y, x, h, w = box
  edge = min(image.shape[:2]) <= 1
  rows = reflect_index(np.arange(y, y + h) - offset[0], image.shape[0], edge)
  cols = reflect_index(np.arange(x, x + w) - offset[1], image.shape[1], edge)
  r0, c0 = rows.min(), cols.min()
  sub = image[r0:rows.max() + 1, c0:cols.max() + 1]   # a view; the copy is the window
  return sub[np.ix_(rows - r0, cols - c0)]


def stitch(plan: Plan, outputs: Iterable[np.ndarray], crop) -> Iterator[tuple[int, np.ndarray]]:
  """Blends tile outputs (float [h, w, C], in `plan.boxes()` order) into the canvas region
  crop = (top, left, height, width); yields (first row of the crop, float32 rows) bands
  as soon as no later tile adds to them. Holds one band of tile rows at a time."""
  top, left, height, width = crop
  wy, wx = plan.rows.weights(), plan.cols.weights()
  outputs = iter(outputs)
  acc, acc_top, done = None, top, top        # acc holds crop rows [acc_top, ...)
  for r, y in enumerate(plan.rows.starts):
    y0, y1 = max(y, top), min(y + plan.rows.tile, top + height)
    for c, x in enumerate(plan.cols.starts):
      out = np.asarray(next(outputs), np.float32)
      x0, x1 = max(x, left), min(x + plan.cols.tile, left + width)
      if acc is None:
        acc = np.zeros((y1 - acc_top, width, out.shape[-1]), np.float32)
      if y0 < y1 and x0 < x1:
        w = wy[r][y0 - y:y1 - y, None, None] * wx[c][None, x0 - x:x1 - x, None]
        acc[y0 - acc_top:y1 - acc_top, x0 - left:x1 - left] += w * out[y0 - y:y1 - y,
                                                                       x0 - x:x1 - x]
    final = top + height if r + 1 == len(plan.rows.starts) else min(
        max(plan.rows.starts[r + 1], top), top + height)
    if final > done:
      yield done - top, acc[done - acc_top:final - acc_top]
      done = final
    if r + 1 < len(plan.rows.starts):       # keep the rows the next tile row adds to
      keep = acc[done - acc_top:]
      nxt_end = min(plan.rows.starts[r + 1] + plan.rows.tile, top + height)
      acc = np.zeros((max(nxt_end - done, 0), width, acc.shape[-1]), np.float32)
      acc[:len(keep)] = keep
      acc_top = done


# ------------------------------------------------------------------ with a generator

def translate_tiled(apply_tile: Callable[[int, np.ndarray], np.ndarray], image: np.ndarray,
                    plan: Plan, offset: tuple[int, int],
                    to_input: Callable[[np.ndarray], np.ndarray] = lambda w: w,
                    ) -> Iterator[tuple[int, np.ndarray]]:
  """G's output for `image` [H, W, C] in tiles: yields (first row, float32 rows) bands.

  offset: where image pixel (0, 0) sits on the reflect-padded canvas the plan tiles.
  to_input: turns a window of `image` into the generator's input (scaling, channels);
  apply_tile(k, x) returns G(x) [h, w, Cout] for tile number k (its dropout key).
  """
  crop = (offset[0], offset[1], image.shape[0], image.shape[1])
  outputs = (apply_tile(k, to_input(read_window(image, offset, box)))
             for k, box in enumerate(plan.boxes()))
  return stitch(plan, outputs, crop)


@dataclasses.dataclass(frozen=True)
class Tiling:
  """How a generator's large inputs are tiled (see `for_generator`).

  tile: side of the square tiles; images of more than tile**2 pixels (after padding to
    `multiple`) are tiled, smaller ones run whole. margin: px of each tile's inner borders
    not used. reach: the generator's receptive reach. local: whether the generator's
    output at a pixel depends only on pixels within `reach` in this mode. what: how the
    tiles are normalised, in words.
  """
  tile: int
  margin: int
  multiple: int
  reach: int
  local: bool
  what: str

  def plan(self, height: int, width: int) -> Plan | None:
    """The plan for a padded height x width canvas; None when it runs whole."""
    if height * width <= self.tile ** 2:
      return None
    return make_plan(height, width, self.tile, self.margin, self.multiple)

  def max_batch(self, height: int, width: int, batch_size: int) -> int:
    """How many whole images of this padded size to batch: at most a tile's pixels."""
    return max(1, min(batch_size, self.tile ** 2 // (height * width)))

  def describe(self) -> str:
    """One line: tile size, margin, and how tiled outputs relate to a whole-image pass."""
    head = (f'{self.tile}x{self.tile} px with {self.margin} px margins, blended, for images '
            f'over {self.tile}x{self.tile} px; {self.what}')
    if not self.local:
      return f'{head} per tile, not per image: outputs differ from a whole-image pass'
    if self.margin >= self.reach:
      return (f'{head}: equal to a whole-image pass up to float rounding (margins >= the '
              f"generator's {self.reach} px reach)")
    return (f'{head}: may differ from a whole-image pass within {self.reach - self.margin} '
            f"px of where tiles meet (margins < the generator's {self.reach} px reach)")


def for_generator(generator, tile: str = 'auto', margin: str = 'auto') -> Tiling | None:
  """The tiling of `translate --tile=... --tile_margin=...` for a TrainedGenerator; None
  for tile='off'.

  tile: 'auto' (the larger of AUTO_TILE and AUTO_TILE_MARGINS margins, rounded up to the
    generator's multiple; for generators other than U-Nets, whose reach this module does
    not know yet, None), 'off', or a side in px (a multiple of the multiple).
  margin: 'auto' (the generator's receptive reach, or where the tile is too small for
    that, the most that lets tiles advance by a quarter tile) or px. Raises ValueError
    naming the flag.
  """
  tile, margin = str(tile).strip().lower(), str(margin).strip().lower()
  if tile == 'off':
    return None
  module, mode = generator.generator, generator.mode
  if not isinstance(module, UNet):  # its reach is not known here: whole images, as before
    if tile == 'auto':
      return None
    raise ValueError(f'--tile knows the receptive field of U-Nets only, not of '
                     f'{type(module).__name__}: use --tile=off')
  multiple = generator.multiple
  name = f'2**depth of {generator.config.model.generator}'
  reach = receptive_reach(unet_layers(module.depth))
  if tile == 'auto':
    side = max(AUTO_TILE, -(-AUTO_TILE_MARGINS * reach // multiple) * multiple)
  else:
    side = int(tile) if tile.isdigit() else 0
    if side <= 0 or side % multiple:
      raise ValueError(f"--tile must be 'auto', 'off' or a side in px that is a multiple of "
                       f'{multiple} ({name}), got {tile!r}')
  min_blend = max(side // 16, 1)
  # The widest margin that leaves the tiles room to advance (room), and the widest that
  # lets them advance by a quarter tile (what 'auto' gives where the reach does not fit).
  room = (side - min_blend - multiple) // 2
  quarter = (side - max(multiple, side // 4) - min_blend) // 2
  if room < 0:
    raise ValueError(f'--tile={side} is too small for {generator.config.model.generator}: '
                     f'use at least {2 * multiple} px')
  if margin == 'auto':
    px = min(reach, quarter)
  else:
    px = None if not margin.isdigit() else int(margin)
    if px is None or px > room:
      raise ValueError(f"--tile_margin must be 'auto' or px from 0 to {max(room, 0)} (for "
                       f'{side} px tiles of {generator.config.model.generator}), got {margin!r}')
  has_dropout = module.dropout and bool(dropout_layers(module.depth, module.dropout_placement))
  statistics_local = module.norm == 'none' or (module.norm == 'batch' and mode == 'eval')
  local = statistics_local and (mode == 'eval' or not has_dropout)
  dropout = ' and dropout masks' if has_dropout and mode != 'eval' else ''
  if module.norm == 'batch' and mode == 'eval':
    what = 'eval mode, BatchNorm running averages'
  elif module.norm == 'batch':
    what = f'{mode} mode: BatchNorm statistics{dropout}'
  elif module.norm == 'instance':
    what = f'{mode} mode: instance-norm statistics{dropout}'
  else:
    what = f'{mode} mode, no normalisation' + (': dropout masks' if dropout else '')
  return Tiling(side, px, multiple, reach, local, what)


def generator_bands(generator, image: np.ndarray, plan: Plan, *, seed: int = 0,
                    index: int = 0) -> Iterator[tuple[int, np.ndarray]]:
  """G's output for one image [H, W, C] (uint8, or float in [-1, 1]; C = 1 or 3) in the
  tiles of `plan`, as float32 bands (first row, rows). The canvas is the image
  reflect-padded (centred) to the generator's multiple, as a whole-image pass pads it.
  Tile k draws its dropout key from index * TILE_KEY_STRIDE + k (mod 2**32)."""
  h, w = image.shape[:2]
  offset = ((-h % generator.multiple) // 2, (-w % generator.multiple) // 2)

  def to_input(window):  # as a whole-image pass converts it (the method's conversion)
    return generator.image_to_model_input(window)[0]

  def apply_tile(k, x):
    key_index = (int(index) * TILE_KEY_STRIDE + k) % 2 ** 32
    return generator.apply(x[None], seed=seed, indices=[key_index])[0]

  return translate_tiled(apply_tile, image, plan, offset, to_input)
