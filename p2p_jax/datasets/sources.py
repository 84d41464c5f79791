"""Where pix2pix examples come from, and how a bad file is found and named.

Pure Python + Pillow, no TensorFlow: the TFDS builder (`pix2pix_aligned.py`) calls these
functions from its `_generate_examples`, and they are easy to test on their own.

Two layouts are understood, both with one sub-folder per split (`train/`, `val/`, ...) or,
when there are no sub-folders, a single 'train' split:
  aligned: every image holds A and B side by side (A left, B right), width = 2 * height;
           the official datasets and the embedded Blue Marble tiles are in this format.
  paired:  `A/` and `B/` folders (each with the same split sub-folders), where the files that
           belong together have the same name up to the extension (A/train/1.png, B/train/1.jpg).

Images may be any size; the input pipeline resizes them (`ImageNotes` warns, counted, about
images so small that they are enlarged more than 2x, and about transparency, which is
dropped). The two images of a pair must have the same size (a different one is a bad file:
pix2pix needs pixel-aligned pairs, and resizing one of them would hide a mismatched pair).
Colour images are decoded as RGB (alpha dropped, palettes expanded). Where a config wants
1 channel, RGB becomes luma (ITU-R 601 weights). Where it wants 3, a grayscale image is a
bad file: repeating the gray channel three times would silently hide a wrong dataset or a
wrong `model.in_channels`.
"""

import hashlib
import io
import logging
import os
import re

from PIL import Image

from p2p_jax import image_io
from p2p_jax.datasets.catalog import (BAD_FILE_POLICIES, DATASETS, EMBEDDED,  # noqa: F401
                                      FOLDER_LAYOUTS, OFFICIAL, DataError, Official)
from p2p_jax.image_io import IMAGE_EXTENSIONS, list_images

_SPLIT_NAME = re.compile(r'^[A-Za-z0-9_]+$')
# Folders that archivers add and that are never splits.
_IGNORED_DIRS = ('__MACOSX',)


class BadFiles:
  """Applies config.data.on_bad_file: 'error' raises at once, 'skip' counts and goes on."""

  def __init__(self, on_bad_file: str):
    self.on_bad_file = on_bad_file
    self.skipped: list[str] = []  # One 'file: problem' line per skipped file.

  def __call__(self, error: DataError) -> None:
    if self.on_bad_file == 'error':
      raise error
    logging.warning('Skipping bad file: %s', error)
    self.skipped.append(str(error))


class ImageNotes:
  """What preparation does to images without refusing them, counted for one warning line
  each (`lines`): transparency dropped (the colour under transparent pixels is kept as it
  is), and images so small that training enlarges them more than 2x (a side under half of
  config.data.load_size: an 8x4 A|B pair becomes 286x286 halves, 71x)."""

  def __init__(self, load_size: int | None):
    self.load_size = load_size
    self.seen = 0
    self.alpha: list[str] = []
    self.small: list[tuple[int, str, int, int]] = []  # (shorter side, path, width, height)

  def see(self, path: str, images, width: int, height: int) -> None:
    """One example: its Pillow image(s) and the size of one half (A or B)."""
    self.seen += 1
    if any(image_io.has_alpha(image) for image in images):
      self.alpha.append(path)
    if self.load_size and 2 * min(width, height) < self.load_size:
      self.small.append((min(width, height), path, width, height))

  def lines(self, where: str) -> list[str]:
    out = []
    if self.alpha:
      out.append(f'{where}: {len(self.alpha)} of {self.seen} image(s) had transparency; it is '
                 f'dropped and the colour under transparent pixels used as it is (e.g. '
                 f'{self.alpha[0]}); flatten them onto a background first if that matters')
    if self.small:
      side, path, width, height = min(self.small)
      out.append(f'{where}: {len(self.small)} of {self.seen} image(s) are smaller than half of '
                 f'data.load_size ({self.load_size}) on a side: training enlarges them up to '
                 f'{self.load_size / side:.0f}x (the smallest: {path}, {width}x{height} per '
                 'half)')
    return out


def is_archive(path: str) -> bool:
  return os.path.isfile(path) and path.lower().endswith(
      ('.tar', '.tar.gz', '.tgz', '.tar.bz2', '.tbz2', '.tar.xz', '.zip'))


def extract_archive(path: str, into: str) -> str:
  """Extracts a .tar(.gz|.bz2|.xz) or .zip archive into a new folder under `into`; returns it.

  Done here, not by TFDS, whose extractor imports TensorFlow (for its file API): with
  TensorFlow installed it would load into the trainer's process, and without it the
  extraction fails. Members that would land outside the folder (absolute paths, '..',
  links out of it) are refused with a DataError naming the archive.
  """
  import tarfile  # pylint: disable=g-import-not-at-top
  import zipfile  # pylint: disable=g-import-not-at-top
  target = os.path.join(into, os.path.basename(path) + '.extracted')
  os.makedirs(target, exist_ok=True)
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
          resolved = os.path.realpath(os.path.join(target, name))
          if not resolved.startswith(os.path.realpath(target) + os.sep):
            raise DataError(f'{path}: member {name!r} would be extracted outside its folder')
        archive.extractall(target)
    else:
      with tarfile.open(path) as archive:
        archive.extractall(target, filter='data')  # refuses members outside `target`
  except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
    raise DataError(f'{path}: cannot extract the archive ({type(e).__name__}: {e})') from e
  return target


def _subdirs(folder: str) -> list[str]:
  return sorted(d for d in os.listdir(folder)
                if os.path.isdir(os.path.join(folder, d))
                and not d.startswith('.') and d not in _IGNORED_DIRS)


def unwrap(root: str) -> str:
  """Descends through wrapper folders (archives usually hold one top folder): a folder
  with no images and exactly one sub-folder that itself holds no images directly."""
  while not list_images(root) and len(_subdirs(root)) == 1:
    child = os.path.join(root, _subdirs(root)[0])
    if list_images(child) or os.path.basename(child) in ('A', 'B'):
      break  # `child` is a split folder (or half of a paired layout), not a wrapper.
    root = child
  return root


def split_dirs(root: str) -> dict[str, str]:
  """Maps split name -> folder of images under `root` (see the module docstring)."""
  if not os.path.isdir(root):
    raise DataError(f'{root}: not a folder; expected a folder of images (or an archive of one)')
  splits = {d: os.path.join(root, d) for d in _subdirs(root)
            if list_images(os.path.join(root, d))}
  if not splits:
    if not list_images(root):
      raise DataError(f'{root}: no images ({", ".join(IMAGE_EXTENSIONS)}) in it nor in its '
                      'split sub-folders; expected e.g. train/*.jpg')
    splits = {'train': root}
  for name in splits:
    if not _SPLIT_NAME.match(name):
      raise DataError(f'{splits[name]}: split folder names may use only letters, digits and _')
  return splits


def paired_split_dirs(root: str) -> dict[str, tuple[str, str]]:
  """Maps split name -> (A folder, B folder) for the paired layout."""
  a_root, b_root = os.path.join(root, 'A'), os.path.join(root, 'B')
  for folder in (a_root, b_root):
    if not os.path.isdir(folder):
      raise DataError(f'{folder}: missing; paired_folders expects {root}/A and {root}/B')
  a_splits = split_dirs(a_root)
  if set(a_splits) == {'train'} and a_splits['train'] == a_root:
    return {'train': (a_root, b_root)}
  return {s: (a, os.path.join(b_root, s)) for s, a in a_splits.items()}


def fingerprint(path: str) -> str:
  """Short hash of a folder's file names, sizes and times (or an archive's): a changed
  source gets a fresh prepared dataset instead of a stale one."""
  digest = hashlib.sha256(os.path.abspath(path).encode())
  if os.path.isfile(path):
    stat = os.stat(path)
    digest.update(f'{stat.st_size}:{stat.st_mtime_ns}'.encode())
  else:
    for dirpath, dirnames, filenames in os.walk(path):
      dirnames.sort()
      for f in sorted(filenames):
        stat = os.stat(os.path.join(dirpath, f))
        rel = os.path.relpath(os.path.join(dirpath, f), path)
        digest.update(f'{rel}:{stat.st_size}:{stat.st_mtime_ns}\n'.encode())
  return digest.hexdigest()[:10]


def open_image(path: str) -> Image.Image:
  """Decodes an image fully (a truncated file fails here, not later in tf.data)."""
  try:
    return image_io.open_image(path)
  except image_io.ImageError as e:
    raise DataError(str(e)) from e


def to_channels(image: Image.Image, channels: int, path: str, what: str) -> Image.Image:
  """Converts to 'L' (1 channel) or 'RGB' (3). A grayscale image where 3 are wanted is a bad
  file: repeating its channel would hide a wrong dataset or a wrong model.in_channels."""
  if channels == 3 and image.mode in image_io.GRAY_MODES:
    raise DataError(f'{path}: {what} is grayscale (mode {image.mode}) but the config expects '
                    '3 channels; set model.in_channels/out_channels to 1 or convert the image')
  return image.convert('L' if channels == 1 else 'RGB')


def png_bytes(image: Image.Image) -> bytes:
  """Lossless storage: halves of a JPEG must not be JPEG-compressed a second time."""
  buffer = io.BytesIO()
  image.save(buffer, format='PNG', compress_level=1)  # Fast; decode speed is the same.
  return buffer.getvalue()


def aligned_example(path: str, a_channels: int, b_channels: int,
                    notes: ImageNotes | None = None) -> dict:
  """Reads one A|B image and returns {'a': png, 'b': png, 'name': file name}."""
  image = open_image(path)
  width, height = image.size
  if width != 2 * height:
    raise DataError(f'{path}: image is {width}x{height}; an aligned A|B image must be twice '
                    'as wide as high (A left, B right). Use paired_folders for separate files')
  a = to_channels(image.crop((0, 0, height, height)), a_channels, path, 'A half')
  b = to_channels(image.crop((height, 0, width, height)), b_channels, path, 'B half')
  if notes is not None:
    notes.see(path, (image,), height, height)
  return {'a': png_bytes(a), 'b': png_bytes(b), 'name': os.path.basename(path)}


def aligned_examples(folder: str, a_channels: int, b_channels: int, bad: BadFiles,
                     notes: ImageNotes | None = None):
  """Yields (key, example) for every good A|B image in `folder`."""
  files = list_images(folder)
  if not files:
    raise DataError(f'{folder}: empty; expected A|B images ({", ".join(IMAGE_EXTENSIONS)})')
  for f in files:
    try:
      yield f, aligned_example(os.path.join(folder, f), a_channels, b_channels, notes)
    except DataError as e:
      bad(e)


def _by_stem(folder: str, bad: BadFiles) -> dict[str, str]:
  stems = {}
  for f in list_images(folder):
    stem = os.path.splitext(f)[0]
    if stem in stems:
      bad(DataError(f'{os.path.join(folder, f)}: same name as {stems[stem]} up to the '
                    'extension; expected one file per name'))
      continue
    stems[stem] = f
  return stems


def paired_examples(a_folder: str, b_folder: str, a_channels: int, b_channels: int,
                    bad: BadFiles, notes: ImageNotes | None = None):
  """Yields (key, example) for every A file whose B file (same name) exists and is good."""
  if not list_images(a_folder):
    raise DataError(f'{a_folder}: empty; expected images ({", ".join(IMAGE_EXTENSIONS)})')
  a_files = _by_stem(a_folder, bad)
  b_files = _by_stem(b_folder, bad) if os.path.isdir(b_folder) else {}
  for stem in sorted(set(b_files) - set(a_files)):
    bad(DataError(f'{os.path.join(b_folder, b_files[stem])}: no file named {stem}.* in '
                  f'{a_folder}; expected A and B files with matching names'))
  for stem, a_file in sorted(a_files.items()):
    a_path = os.path.join(a_folder, a_file)
    if stem not in b_files:
      bad(DataError(f'{a_path}: no file named {stem}.* in {b_folder}; expected A and B '
                    'files with matching names'))
      continue
    b_path = os.path.join(b_folder, b_files[stem])
    try:
      a_image, b_image = open_image(a_path), open_image(b_path)
      a = to_channels(a_image, a_channels, a_path, 'A image')
      b = to_channels(b_image, b_channels, b_path, 'B image')
      if a.size != b.size:
        # Pairs must be pixel-aligned; resizing one would hide a mismatched pair.
        raise DataError(f'{a_path}: A is {a.size[0]}x{a.size[1]} but its B image {b_path} '
                        f'is {b.size[0]}x{b.size[1]}; paired images must have the same size')
    except DataError as e:
      bad(e)
      continue
    if notes is not None:
      notes.see(a_path, (a_image, b_image), *a.size)
    yield a_file, {'a': png_bytes(a), 'b': png_bytes(b), 'name': a_file}
