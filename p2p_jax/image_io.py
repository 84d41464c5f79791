"""Image files: which ones are images, decoding them, channels, scaling, writing PNGs.

Pillow + numpy, no TensorFlow; used by dataset preparation and by inference alike, so both
accept the same files. Images in memory are uint8 arrays [H, W, C] (C = 1 or 3) or float32
in [-1, 1], the model's space. Written images are PNGs whose text chunks carry how they
were made (inference mode, seed, checkpoint), so an output file documents itself.
"""

import os

import numpy as np
from PIL import Image, PngImagePlugin

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff',
                    '.webp', '.gif')
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
      return np.asarray(im.convert('L'), np.uint8)[..., None]
    return np.asarray(im.convert('RGB'), np.uint8)


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
  Image.fromarray(image).save(tmp, format='PNG', pnginfo=info)
  os.replace(tmp, path)  # No half-written PNG if the run is killed.


def read_png_metadata(path: str) -> dict:
  """The text chunks written by `write_png`."""
  with Image.open(path) as im:
    return dict(getattr(im, 'text', {}))
