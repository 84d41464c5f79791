"""Image files: which ones are images, decoding them, channels, scaling, writing PNGs.

Pillow + numpy, no TensorFlow; used by dataset preparation and by inference alike, so both
accept the same files. Images in memory are uint8 arrays [H, W, C] (C = 1 or 3) or float32
in [-1, 1], the model's space. Written images are PNGs whose text chunks carry how they
were made (inference mode, seed, checkpoint), so an output file documents itself.
"""

import os
import struct
import zlib

import numpy as np
from PIL import Image, PngImagePlugin

from p2p_jax import stopping

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff',
                    '.webp', '.gif')
# Pixels per band when converting a decoded image to an array (see `_pixels`).
BAND_PIXELS = 2 ** 22
# Pillow modes of single-channel images.
GRAY_MODES = ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'F')


class ImageError(ValueError):
  """An image that cannot be used; the message names the file."""


def list_images(folder: str) -> list[str]:
  """Names of the image files directly in `folder` (not its sub-folders; hidden files
  ignored), sorted."""
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'{folder} is not a folder')
  return sorted(n for n in os.listdir(folder)
                if not n.startswith('.') and n.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(folder, n)))


def open_image(path: str) -> Image.Image:
  """Opens and fully decodes `path` (a truncated file fails here, not later).

  Raises ImageError naming the file when it is missing or cannot be decoded.
  """
  if not os.path.isfile(path):
    raise ImageError(f'{path}: no such file')
  try:
    image = Image.open(path)
    image.load()
  except Exception as e:  # pylint: disable=broad-except  # Pillow raises many types.
    detail = str(e)
    for form in (repr(str(path)), f'"{path}"', str(path)):  # the path is named once, first
      detail = detail.replace(form, '')
    detail = ' '.join(detail.split()).rstrip(' :')
    raise ImageError(f'{path}: cannot decode image ({type(e).__name__}: {detail}); expected '
                     'a complete image file') from e
  return image


def has_alpha(image: Image.Image) -> bool:
  """Whether a Pillow image has transparency (an alpha channel, or a palette/colour key
  marked transparent), which reading it as RGB or gray drops."""
  return image.mode in ('RGBA', 'LA', 'La', 'RGBa', 'PA') or 'transparency' in image.info


def read_image(path: str, info: dict | None = None) -> np.ndarray:
  """Decodes `path` to uint8 [H, W, 1] (grayscale files) or [H, W, 3] (all others).

  Alpha is dropped (the colour under transparent pixels is kept as it is) and palettes
  expanded; 16-bit grayscale is scaled to 8 bits. `info`, if given, receives 'alpha'
  (whether the file had transparency). Raises ImageError naming the file when it is
  missing or cannot be decoded.
  """
  with open_image(path) as im:
    if info is not None:
      info['alpha'] = has_alpha(im)
    if im.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
      a = np.asarray(im, np.float64)
      a = a / 257.0 if a.max() > 255 else a
      return np.clip(np.round(a), 0, 255).astype(np.uint8)[..., None]
    if im.mode in GRAY_MODES:
      return _pixels(im, 'L')[..., None]
    return _pixels(im, 'RGB')


def _pixels(im: Image.Image, mode: str) -> np.ndarray:
  """`im` in `mode` ('L' or 'RGB') as uint8 [H, W(, 3)], converted a band of rows at a
  time: a 9000x9000 JPEG peaks at Pillow's copy plus the array (about 0.6 GB), not at
  two more full-size copies (1.1 GB)."""
  width, height = im.size
  out = np.empty((height, width) + ((3,) if mode == 'RGB' else ()), np.uint8)
  rows = max(1, BAND_PIXELS // max(width, 1))
  for top in range(0, height, rows):
    out[top:top + rows] = np.asarray(im.crop((0, top, width, min(top + rows, height))
                                            ).convert(mode), np.uint8)
  return out


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """[H, W, 1 or 3] -> [H, W, channels].

  Gray -> RGB repeats the gray channel (a grayscale photo into a colour model);
  RGB -> gray takes the ITU-R 601 luma, as the input pipeline does for 1-channel configs.
  """
  have = image.shape[-1]
  if have == channels:
    return image
  if have == 1 and channels == 3:
    return np.repeat(image, 3, axis=-1)
  if have == 3 and channels == 1:
    rgb = image.astype(np.float32)
    y = rgb @ np.asarray([0.299, 0.587, 0.114], np.float32)
    if image.dtype == np.uint8:
      y = np.clip(np.round(y), 0, 255)
    return y.astype(image.dtype)[..., None]
  raise ValueError(f'cannot convert an image with {have} channels to {channels}')


def to_float(image: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1] (the pipeline's scaling)."""
  return image.astype(np.float32) / 127.5 - 1.0


def to_uint8(x: np.ndarray) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255], rounded."""
  x = np.asarray(x, np.float32)
  return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def write_png(path: str, image: np.ndarray, metadata: dict | None = None) -> None:
  """Writes uint8 or [-1, 1] float [H, W, 1|3] as PNG, with `metadata` as text chunks."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = to_uint8(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  info = PngImagePlugin.PngInfo()
  for key, value in (metadata or {}).items():
    info.add_text(str(key), str(value))
  tmp = path + '.tmp'
  # A command's stop request (stopping.stop_at_once) waits for the file: no .tmp left.
  with stopping.writing():
    try:
      Image.fromarray(image).save(tmp, format='PNG', pnginfo=info)
    except BaseException as e:
      # Pillow removes a file it made and could not write, unless closing it fails too (a
      # full disk fails the last flush): a losses.png.tmp was left so, by hand.
      if os.path.lexists(tmp):
        os.remove(tmp)
      if isinstance(e, OSError):
        _name(e, path)
      raise
    os.replace(tmp, path)  # No half-written PNG if the run is killed.


def _name(error: OSError, path: str) -> None:
  """A failed write (a full disk) names no file; the one-line error should (cli.run)."""
  if error.filename is None:
    error.filename = path


def read_png_metadata(path: str) -> dict:
  """The text chunks written by `write_png`."""
  with Image.open(path) as im:
    return dict(getattr(im, 'text', {}))


class PngWriter:
  """Writes a PNG a band of rows at a time, so a huge output never sits whole in memory.

  Same file as `write_png` makes (8-bit gray or RGB, text chunks from `metadata`, rows
  filtered per row as Pillow and libpng choose: the filter with the least sum of absolute
  differences; zlib level 6), written to PATH.tmp and renamed into place by `close`.
  Use as a context manager: an exception removes the unfinished file.
  """

  def __init__(self, path: str, height: int, width: int, channels: int,
               metadata: dict | None = None):
    if channels not in (1, 3):
      raise ValueError(f'{path}: PNG rows need 1 or 3 channels, got {channels}')
    self.path, self.shape, self.row = path, (height, width, channels), 0
    self._tmp = path + '.tmp'
    self._zip = zlib.compressobj(6)
    self._prev = np.zeros(width * channels, np.uint8)
    self._file = open(self._tmp, 'wb')
    self._file.write(b'\x89PNG\r\n\x1a\n')
    color_type = 0 if channels == 1 else 2
    self._chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, color_type, 0, 0, 0))
    for key, value in (metadata or {}).items():
      key, value = str(key), str(value)
      try:
        self._chunk(b'tEXt', key.encode('latin-1') + b'\0' + value.encode('latin-1'))
      except UnicodeEncodeError:   # as Pillow: international text goes in iTXt
        self._chunk(b'iTXt', key.encode('latin-1') + b'\0\0\0\0\0' + value.encode('utf-8'))

  def _chunk(self, kind: bytes, data: bytes) -> None:
    self._file.write(struct.pack('>I', len(data)) + kind + data +
                     struct.pack('>I', zlib.crc32(kind + data)))

  def write(self, rows: np.ndarray) -> None:
    """Appends rows: uint8 [n, width, channels] (or float in [-1, 1], rounded)."""
    rows = np.asarray(rows)
    rows = rows if rows.dtype == np.uint8 else to_uint8(rows)
    if rows.ndim == 2:
      rows = rows[..., None]
    if rows.shape[1:] != self.shape[1:] or self.row + len(rows) > self.shape[0]:
      raise ValueError(f'{self.path}: rows of shape {rows.shape} do not continue an image '
                       f'of shape {self.shape} at row {self.row}')
    flat = rows.reshape(len(rows), -1)
    for start in range(0, len(flat), 64):      # bounded scratch: 64 rows at a time
      band = flat[start:start + 64]
      filtered = _png_filter(band, self._prev, self.shape[2])
      self._prev = band[-1].copy()
      data = self._zip.compress(filtered.tobytes())
      if data:
        self._chunk(b'IDAT', data)
    self.row += len(rows)

  def close(self) -> None:
    """Finishes the file and moves it into place; raises if rows are missing."""
    if self.row != self.shape[0]:
      raise ValueError(f'{self.path}: {self.row} of {self.shape[0]} rows written')
    self._chunk(b'IDAT', self._zip.flush())
    self._chunk(b'IEND', b'')
    self._file.close()
    os.replace(self._tmp, self.path)

  def __enter__(self):
    return self

  def __exit__(self, kind, value, traceback):
    if kind is None:
      self.close()
    else:
      try:
        self._file.close()
      except OSError:  # a full disk fails the last flush too; the file goes all the same
        pass
      if os.path.exists(self._tmp):
        os.remove(self._tmp)
      if isinstance(value, OSError):
        _name(value, self.path)


def _png_filter(rows: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
  """PNG-filtered scanlines (filter byte + data) of uint8 rows [n, width * bpp], each with
  the filter type (None, Sub, Up, Average, Paeth) whose bytes have the least sum of
  absolute values as signed bytes. prev: the raw row above the first one."""
  x = rows.astype(np.int16)
  up = np.concatenate([prev[None].astype(np.int16), x[:-1]])
  left = np.zeros_like(x)
  left[:, bpp:] = x[:, :-bpp]
  up_left = np.zeros_like(x)
  up_left[:, bpp:] = up[:, :-bpp]
  p = left + up - up_left
  pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
  paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
  candidates = np.stack([x, x - left, x - up, x - (left + up) // 2, x - paeth]) & 0xFF
  cost = np.minimum(candidates, 256 - candidates).sum(axis=-1)      # [5, n]
  best = np.argmin(cost, axis=0)
  chosen = candidates[best, np.arange(len(x))].astype(np.uint8)
  return np.concatenate([best.astype(np.uint8)[:, None], chosen], axis=1)
