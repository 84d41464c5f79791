"""Where pix2pixHD's examples come from: the two layouts of label maps, instance maps and photos.

Pure Python + Pillow, no TensorFlow: the TFDS builder (datasets/labelled.py, whose
docstring describes the layouts and the records) calls these from its `_generate_examples`.
`folder_splits` and `cityscapes_splits` list each split's examples (`Example`: where its
files are, in a folder or inside a zip, `Files`); `make_example` reads one, checks it and
returns its record, raising a one-line DataError that names the file for a bad one.
"""

import dataclasses
import io
import logging
import os
import re
import zipfile

import numpy as np
from PIL import Image

from p2p_jax.datasets import sources
from p2p_jax.datasets.sources import DataError

CITYSCAPES_PARTS = {'label': ('gtFine', 'gtFine_trainvaltest.zip', '_gtFine_labelIds.png'),
                    'instance': ('gtFine', 'gtFine_trainvaltest.zip',
                                 '_gtFine_instanceIds.png'),
                    'image': ('leftImg8bit', 'leftImg8bit_trainvaltest.zip',
                              '_leftImg8bit.png')}
CITYSCAPES_SPLITS = ('train', 'val')
CITYSCAPES_URL = 'https://www.cityscapes-dataset.com/downloads/'
SUFFIXES = ('_gtFine_labelIds', '_gtFine_instanceIds', '_leftImg8bit')
ID_MODES = ('L', 'P', 'I', 'I;16', 'I;16B', 'I;16L')
MAX_INSTANCE = 2**24   # ids inference packs into float32 exactly (label_maps.pack)


def key_of(name: str) -> str:
  """A file's name without extension and Cityscapes' suffixes: what pairs it."""
  stem = os.path.splitext(os.path.basename(name))[0]
  for suffix in SUFFIXES:
    if stem.endswith(suffix):
      return stem[:-len(suffix)]
  return stem


class Files:
  """Image files under a folder or inside a zip, by their path relative to it ('/')."""

  def __init__(self, path: str):
    self.path = path
    self._zip = zipfile.ZipFile(path) if zipfile.is_zipfile(path) else None

  def names(self) -> list[str]:
    if self._zip is not None:
      return sorted(n for n in self._zip.namelist() if not n.endswith('/'))
    out = []
    for folder, dirs, files in os.walk(self.path):
      dirs.sort()
      rel = os.path.relpath(folder, self.path)
      out += [f if rel == '.' else f'{rel}/{f}'.replace(os.sep, '/') for f in sorted(files)]
    return out

  def where(self, name: str) -> str:
    return (f'{self.path}:{name}' if self._zip is not None
            else os.path.join(self.path, *name.split('/')))

  def read(self, name: str) -> bytes:
    """The file's bytes."""
    if self._zip is not None:
      return self._zip.read(name)
    with open(self.where(name), 'rb') as f:
      return f.read()

  def open(self, name: str) -> Image.Image:
    """The decoded image; DataError naming the file when it cannot be read."""
    if self._zip is None:
      return sources.open_image(self.where(name))
    try:
      image = Image.open(io.BytesIO(self._zip.read(name)))
      image.load()
    except Exception as e:  # pylint: disable=broad-except  # zipfile, Pillow
      raise DataError(f'{self.where(name)}: cannot decode image ({type(e).__name__}: '
                      f'{e}); expected a complete image file') from e
    return image


def read_ids(image: Image.Image, where: str, what: str) -> np.ndarray:
  """A label or instance map's ids [H, W] (int64); a colour image is a bad file."""
  if image.mode not in ID_MODES:
    raise DataError(f'{where}: {what} is a {image.mode} image, but it must hold one id per '
                    'pixel (a gray or palette PNG, e.g. Cityscapes\' *_labelIds.png)')
  return np.asarray(image).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Example:
  """Where one example's files are: a label map (or input image), its instance map (or
  None), its photo; each a (_Files, name) pair."""
  label: tuple
  instance: tuple | None
  image: tuple


def make_example(example: Example, label_nc: int, instances: bool, in_channels: int,
                 out_channels: int) -> dict:
  """The record of one example, after the checks of the module docstring."""
  files, name = example.label
  where = files.where(name)
  if label_nc:
    label = read_ids(files.open(name), where, 'the label map')
    if label.min() < 0:
      raise DataError(f'{where}: negative label ids ({label.min()}); ids must be '
                      f'0..{label_nc - 1}')
    if label.max() >= label_nc:
      bad = np.unique(label[label >= label_nc])
      raise DataError(f'{where}: label ids {", ".join(map(str, bad[:5]))}'
                      f'{" ..." if len(bad) > 5 else ""} >= pix2pixhd.label_nc ({label_nc}); '
                      f'ids must be 0..{label_nc - 1} (raise label_nc or fix the map)')
    size = label.shape
    record = {'label': label.astype(np.uint8 if label_nc <= 256 else np.uint16)}
  else:
    image = files.open(name)
    size = image.size[::-1]
    record = {'input': image_bytes(files, name, image, in_channels, 'input image')}
  if instances:
    if example.instance is None:
      expected = '*_gtFine_instanceIds.png' if 'labelIds' in name else 'a file of that name'
      raise DataError(f'{where}: no instance map (expected {expected} in the instance '
                      'folder); set pix2pixhd.instance_map=False to train without instance '
                      'boundaries')
    i_files, i_name = example.instance
    instance = read_ids(i_files.open(i_name), i_files.where(i_name), 'the instance map')
    if instance.shape != size:
      raise DataError(f'{i_files.where(i_name)}: instance map is {instance.shape[1]}x'
                      f'{instance.shape[0]} but its label map {where} is {size[1]}x{size[0]}')
    if instance.max() >= MAX_INSTANCE:
      raise DataError(f'{i_files.where(i_name)}: instance ids up to {instance.max()}; at '
                      f'most {MAX_INSTANCE - 1} are supported')
    record['instance'] = instance.astype(np.int32)
  p_files, p_name = example.image
  photo = p_files.open(p_name)
  if photo.size[::-1] != tuple(size):
    raise DataError(f'{p_files.where(p_name)}: photo is {photo.size[0]}x{photo.size[1]} but '
                    f'its {"label map" if label_nc else "input image"} {where} is '
                    f'{size[1]}x{size[0]}; they must have the same size')
  record['image'] = image_bytes(p_files, p_name, photo, out_channels, 'photo')
  record['name'] = os.path.basename(name)
  return record


def image_bytes(files: Files, name: str, image: Image.Image, channels: int, what: str) -> bytes:
  """The PNG an image is stored as: the file itself when it is already a PNG of the wanted
  channels without transparency (Cityscapes' photos: re-encoding a 2048x1024 PNG took 0.7
  of the 0.9 s an example took to prepare), else `channels` re-encoded losslessly."""
  converted = sources.to_channels(image, channels, files.where(name), what)
  if (image.format == 'PNG' and image.mode == converted.mode
      and 'transparency' not in image.info):
    return files.read(name)
  return sources.png_bytes(converted)


# ------------------------------------------------------------------ the two layouts


def folder_splits(root: str, label_nc: int, instances: bool) -> dict[str, list]:
  """{split: [Example]} of the official folder layout under `root`; DataError naming the
  folder or file that is missing."""
  inputs, photos = ('label', 'img') if label_nc else ('A', 'B')
  if not os.path.isdir(root):
    raise DataError(f'{root}: not a folder; expected train_{inputs}/ and train_{photos}/ '
                    'folders (or an archive of them)')
  found = {}
  for name in sorted(os.listdir(root)):
    match = re.fullmatch(rf'([A-Za-z0-9]+(?:_[A-Za-z0-9]+)*)_{inputs}', name)
    if match and os.path.isdir(os.path.join(root, name)):
      found[match.group(1)] = name
  if not found:
    other = ('train_A/ and train_B/ (label_nc 0)' if label_nc else
             'train_label/ and train_img/ (label_nc > 0)')
    raise DataError(f'{root}: no train_{inputs}/ folder; pix2pixhd.label_nc {label_nc} reads '
                    f'<split>_{inputs}/ and <split>_{photos}/ (this layout would be {other}'
                    ' if that is what the folder holds)')
  splits = {}
  for split, in_dir in found.items():
    photo_dir = os.path.join(root, f'{split}_{photos}')
    if not os.path.isdir(photo_dir):
      logging.warning('%s: no %s_%s/ beside it: split %r left out (photos are needed to '
                      'train or validate)', os.path.join(root, in_dir), split, photos, split)
      continue
    inst_dir = os.path.join(root, f'{split}_inst')
    if instances and not os.path.isdir(inst_dir):
      raise DataError(f'{inst_dir}: missing; pix2pixhd.instance_map is on, so every split '
                      f'needs its instance maps (or set pix2pixhd.instance_map=False)')
    labels, photo_files = Files(os.path.join(root, in_dir)), Files(photo_dir)
    inst_files = Files(inst_dir) if instances else None
    by_key = {}
    for what, files in (('photo', photo_files), ('instance', inst_files)):
      if files is not None:
        names = sources.list_images(files.path)
        by_key[what] = (files, {key_of(n): n for n in reversed(names)})   # the first wins
    examples = []
    for n in sources.list_images(labels.path):
      key = key_of(n)
      parts = {}
      for what, (files, keys) in by_key.items():
        parts[what] = (files, keys[key]) if key in keys else None
      if parts['photo'] is None:
        examples.append(Missing(f'{labels.where(n)}: no photo named {key}.* (or '
                                 f'{key}_leftImg8bit.*) in {photo_dir}'))
        continue
      examples.append(Example((labels, n), parts.get('instance'), parts['photo']))
    if not examples:
      raise DataError(f'{os.path.join(root, in_dir)}: no images '
                      f'({", ".join(sources.IMAGE_EXTENSIONS)})')
    splits[split] = examples
  if 'train' not in splits:
    raise DataError(f'{root}: no train_{inputs}/ with train_{photos}/ beside it')
  return splits


@dataclasses.dataclass(frozen=True)
class Missing:
  """An example whose photo is missing: a bad file, reported where the others are read."""
  message: str


def cityscapes_parts(manual_dir: str) -> dict[str, str] | None:
  """{'gtFine': folder or zip, 'leftImg8bit': ...} found in `manual_dir` (or its
  cityscapes/ folder); None when neither part is there."""
  found = {}
  for folder, zip_name, _ in CITYSCAPES_PARTS.values():
    for base in (manual_dir, os.path.join(manual_dir, 'cityscapes')):
      if os.path.isdir(os.path.join(base, folder, 'train')):
        found[folder] = os.path.join(base, folder)
        break
      if os.path.isfile(os.path.join(base, zip_name)):
        found[folder] = os.path.join(base, zip_name)
        break
  return found or None


def cityscapes_splits(parts: dict[str, str], instances: bool) -> dict[str, list]:
  """{split: [Example]} of Cityscapes' gtFine and leftImg8bit (zips or folders)."""
  trees = {folder: Files(path) for folder, path in parts.items()}
  index = {}   # (kind, split, key) -> (tree, name)
  for kind, (folder, _, suffix) in CITYSCAPES_PARTS.items():
    tree = trees[folder]
    prefix = f'{folder}/' if tree._zip is not None else ''  # pylint: disable=protected-access
    for n in tree.names():
      if not n.startswith(prefix) or not n.endswith(suffix):
        continue
      split = n[len(prefix):].split('/')[0]
      if split in CITYSCAPES_SPLITS:
        index[kind, split, key_of(n)] = (tree, n)
  splits = {}
  for split in CITYSCAPES_SPLITS:
    keys = sorted(k for kind, s, k in index if kind == 'label' and s == split)
    if not keys:
      raise DataError(f'{parts["gtFine"]}: no {split}/*/*_gtFine_labelIds.png; is '
                      'gtFine_trainvaltest.zip complete?')
    examples = []
    for key in keys:
      label = index['label', split, key]
      image = index.get(('image', split, key))
      if image is None:
        examples.append(Missing(f'{label[0].where(label[1])}: no {key}_leftImg8bit.png in '
                                 f'{parts["leftImg8bit"]} ({split}/)'))
        continue
      instance = index.get(('instance', split, key)) if instances else None
      examples.append(Example(label, instance, image))
    splits[split] = examples
  return splits
