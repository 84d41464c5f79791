"""What one example becomes: images resized with Pillow, cropped, flipped and scaled.

As the paper and the PyTorch references (Isola et al. 2017, section 6.2; the references'
transforms on PIL images): every image is resized with Pillow's filter on the 8-bit image
(antialiased when shrinking), then one crop window at a random position and one random
horizontal flip are cut from it. Transforms return uint8 photos (a quarter of float32's
bytes to move between processes); the keys they list in `float_keys` are scaled from
[0, 255] to [-1, 1] float32 (`to_float`) when the batch is handed over (p2p_jax/batches.py).
Label and instance maps keep their integer ids (resized NEAREST, never scaled), so that
one-hot encoding happens on the device.

Three kinds of examples, one transform each; `records` is the tuple of records the sampler
read for the example (p2p_jax/batches.py), `rng` a numpy Generator (None: no randomness, as
in evaluation):
  Paired     pix2pix:   ({'a', 'b', 'name'},) -> {'input', 'target', 'name'}: one window
             and one flip for A and B.
  Unpaired   CycleGAN:  ({'image', 'name'} of A, {'image', 'name'} of B) -> {'input': A,
             'target': B, 'name': A's}: A and B each get their own window and flip.
  Labelled   pix2pixHD: ({'label' (or 'input': an image, label_nc 0), 'instance'
             (optional), 'image', 'name'},) -> {'label' [H, W] uint8 or int32 (or
             'input'), 'instance' [H, W] int32 (when the record has one), 'target'
             [H, W, 3], 'name'}: one window and flip for all three.
Images in records are uint8 [H, W, C] (C = 1 or 3, or [H, W]); label maps uint8 or int32
[H, W] (or [H, W, 1]), instance maps integer [H, W] (or [H, W, 1]).
"""

import dataclasses

import numpy as np
from PIL import Image

from p2p_jax.datasets.catalog import DataError

FILTERS = {'bicubic': Image.Resampling.BICUBIC, 'bilinear': Image.Resampling.BILINEAR,
           'nearest': Image.Resampling.NEAREST, 'area': Image.Resampling.BOX}
RESIZE_METHODS = tuple(FILTERS)
# Geometry.scale: 'square' resizes to load_size x load_size (pix2pix and CycleGAN's
# resize_and_crop); 'width' to a width of load_size, keeping the aspect ratio (pix2pixHD's
# scale_width: height int(load_size * h / w)); 'none'
# keeps the stored size (rounded to Geometry.multiple, pix2pixHD's resize_or_crop none).
SCALES = ('square', 'width', 'none')


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Where every image of an example goes: resized (`scale`, `load_size`), then a square
  `crop_size` window (None: no crop) and, with `flip`, a horizontal flip half the time.
  multiple: with scale 'none', sides are rounded to a multiple of it (pix2pixHD's
  __make_power_2, the generator's size multiple); other scales keep their sizes."""
  load_size: int
  crop_size: int | None = None
  flip: bool = False
  scale: str = 'square'
  multiple: int = 1

  def resized(self, height: int, width: int) -> tuple[int, int]:
    """(height, width) of a height x width image after the resize."""
    if self.scale == 'square':
      return self.load_size, self.load_size
    if self.scale == 'width':
      return int(self.load_size * height / width), self.load_size
    if self.scale == 'none':
      m = self.multiple
      return max(int(round(height / m) * m), m), max(int(round(width / m) * m), m)
    raise ValueError(f'Geometry.scale must be one of {SCALES}, got {self.scale!r}')


@dataclasses.dataclass(frozen=True)
class Window:
  """One draw of the jitter: the crop's top-left corner and whether to flip."""
  top: int = 0
  left: int = 0
  flip: bool = False


def draw(geometry: Geometry, size: tuple[int, int], rng: np.random.Generator | None,
         name=b'') -> Window:
  """The window of an example whose images are `size` (height, width) after resizing.

  Always three draws from `rng` (top, left, flip), so a stream does not shift when flip or
  crop is turned off. Without rng: the centred window, no flip.
  """
  crop = geometry.crop_size
  height, width = size
  if crop is not None and (crop > height or crop > width):
    raise DataError(f'{text(name)}: {height}x{width} after resizing is smaller than the '
                    f'crop ({crop}x{crop}); raise load_size or lower crop_size')
  spare_h, spare_w = (0, 0) if crop is None else (height - crop, width - crop)
  if rng is None:
    return Window(spare_h // 2, spare_w // 2, False)
  top, left = int(rng.integers(0, spare_h + 1)), int(rng.integers(0, spare_w + 1))
  flip = rng.random() < 0.5
  return Window(top, left, bool(geometry.flip and flip))


def resize(array: np.ndarray, size: tuple[int, int], method: str, channels: int | None = None
           ) -> np.ndarray:
  """uint8 or int32 [H, W(, C)] -> the same kind, `size` (height, width), through Pillow
  (the 8-bit image, as the reference's transforms.Resize). channels=1 turns RGB into luma
  (Pillow's ITU-R 601 'L', as the reference's grayscale) first. [H, W, C] stays [H, W, C]."""
  if array.shape[:2] == tuple(size) and (
      channels is None if array.ndim == 2 else channels in (None, array.shape[-1])):
    return array  # already there (e.g. resized once, datasets/resized.py)
  squeeze = array.ndim == 3 and array.shape[-1] == 1
  image = Image.fromarray(array[..., 0] if squeeze else array)
  if channels == 1 and image.mode == 'RGB':
    image = image.convert('L')
  if image.size != (size[1], size[0]):
    image = image.resize((size[1], size[0]), FILTERS[method])
  out = np.asarray(image)
  return out[..., None] if out.ndim == 2 and (array.ndim == 3 or channels) else out


def cut(array: np.ndarray, window: Window, crop: int | None) -> np.ndarray:
  """The window (and flip) of an [H, W, ...] array, as a view."""
  if crop is not None:
    array = array[window.top:window.top + crop, window.left:window.left + crop]
  return array[:, ::-1] if window.flip else array


def to_float(image: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]: x / 127.5 - 1 in float32 (the values of the
  reference's ToTensor + Normalize(0.5, 0.5) up to float32 rounding), computed in place in
  one new array (2-3x faster than with temporaries or a lookup table)."""
  image = np.asarray(image)  # a plain view: ufuncs on subclasses (shared memory) are slower
  out = np.empty(image.shape, np.float32)
  np.divide(image, np.float32(127.5), out=out, dtype=np.float32)
  return np.subtract(out, np.float32(1), out=out)


def text(name) -> str:
  """An example's name (bytes or str) as text."""
  return name.decode(errors='replace') if isinstance(name, bytes) else str(name)


def _photo(array, geometry: Geometry, method: str, channels: int | None, rng, name):
  """One image with its own window: resized and cut."""
  array = np.asarray(array)
  size = geometry.resized(*array.shape[:2])
  window = draw(geometry, size, rng, name)
  return cut(resize(array, size, method, channels), window, geometry.crop_size)


@dataclasses.dataclass(frozen=True)
class Paired:
  """pix2pix: A and B of one record, one window and flip for both. channels: what the model
  wants of A and B (RGB becomes luma for 1); a_to_b False swaps input and target."""
  geometry: Geometry
  method: str = 'bicubic'
  a_channels: int = 3
  b_channels: int = 3
  a_to_b: bool = True
  float_keys = ('input', 'target')

  def __call__(self, records, rng):
    record, = records
    a, b = np.asarray(record['a']), np.asarray(record['b'])
    size = self.geometry.resized(*a.shape[:2])
    window = draw(self.geometry, size, rng, record['name'])
    a, b = (cut(resize(x, size, self.method, c), window, self.geometry.crop_size)
            for x, c in ((a, self.a_channels), (b, self.b_channels)))
    source, target = (a, b) if self.a_to_b else (b, a)
    return {'input': source, 'target': target, 'name': record['name']}


@dataclasses.dataclass(frozen=True)
class Unpaired:
  """CycleGAN: an A record and a B record ({'image', 'name'}), each with its own window and
  flip (drawn one after the other from the example's rng)."""
  geometry: Geometry
  method: str = 'bicubic'
  a_channels: int | None = None
  b_channels: int | None = None
  float_keys = ('input', 'target')

  def __call__(self, records, rng):
    a, b = records
    return {'input': _photo(a['image'], self.geometry, self.method, self.a_channels, rng,
                            a['name']),
            'target': _photo(b['image'], self.geometry, self.method, self.b_channels, rng,
                             b['name']),
            'name': a['name']}


@dataclasses.dataclass(frozen=True)
class OneDomain:
  """One domain's images ({'image', 'name'} records) under one key: the evaluation pass of
  an unpaired split, whose two domains are read one after the other ('input' for A,
  'target' for B)."""
  geometry: Geometry
  method: str = 'bicubic'
  channels: int | None = None
  key: str = 'input'

  @property
  def float_keys(self):
    return (self.key,)

  def __call__(self, records, rng):
    record, = records
    return {self.key: _photo(record['image'], self.geometry, self.method, self.channels, rng,
                             record['name']),
            'name': record['name']}


@dataclasses.dataclass(frozen=True)
class Labelled:
  """pix2pixHD: a label map (or, with label_nc 0, an input image under 'input'), an
  optional instance map and a photo, one window and flip for all. Maps are resized NEAREST
  and keep their ids; images use `method`. multiple: every output side must be a multiple
  of it (the generator's), else a DataError names the file."""
  geometry: Geometry
  method: str = 'bicubic'
  multiple: int = 1

  float_keys = ('input', 'target')   # 'input' only where the records hold images

  def __call__(self, records, rng):
    record, = records
    name = record['name']
    if 'label' in record:
      first = np.asarray(record['label'])
      first = first[..., 0] if first.ndim == 3 else first
      if first.dtype != np.uint8:
        first = first.astype(np.int32)
      what = 'label map'
    else:
      first, what = np.asarray(record['input']), 'input image'
    shape = first.shape[:2]
    size = self.geometry.resized(*shape)
    window = draw(self.geometry, size, rng, name)
    crop = self.geometry.crop_size
    out_size = (crop, crop) if crop is not None else size
    if out_size[0] % self.multiple or out_size[1] % self.multiple:
      raise DataError(f'{text(name)}: {out_size[0]}x{out_size[1]} after resizing '
                      f'({self.geometry.scale}, load_size {self.geometry.load_size}), but the '
                      f'generator takes multiples of {self.multiple}; change data.load_size '
                      'or crop (data.resize_or_crop)')
    photo = np.asarray(record['image'])
    instance = record.get('instance')
    others = [('photo', photo)] + ([] if instance is None else [('instance map', instance)])
    for other, array in others:
      if np.shape(array)[:2] != shape:
        raise DataError(f'{text(name)}: {other} {np.shape(array)[0]}x{np.shape(array)[1]} '
                        f'and {what} {shape[0]}x{shape[1]} differ in size')
    if 'label' in record:
      out = {'label': np.ascontiguousarray(cut(resize(first, size, 'nearest'), window, crop))}
    else:
      out = {'input': cut(resize(first, size, self.method), window, crop)}
    if instance is not None:
      instance = np.asarray(instance)
      instance = (instance[..., 0] if instance.ndim == 3 else instance).astype(np.int32)
      out['instance'] = np.ascontiguousarray(cut(resize(instance, size, 'nearest'), window,
                                                 crop))
    out['target'] = cut(resize(photo, size, self.method), window, crop)
    out['name'] = name
    return out
