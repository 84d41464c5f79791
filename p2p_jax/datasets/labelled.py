"""TFDS builder for pix2pixHD's data: label maps (+ instance maps) and photos, as it reads them.

Two sources (config.data.dataset), prepared once into ArrayRecord files like the paired and
unpaired datasets (pix2pix_aligned.py, whose preparation, atomicity, bad-file rules and
child process this builder shares) and read by index without TensorFlow:
  cityscapes     Cityscapes as pix2pixHD uses it: gtFine `*_gtFine_labelIds.png` (label
                 ids 0..33) and `*_gtFine_instanceIds.png` (instance ids, e.g. 26001 for
                 the first car) with leftImg8bit `*_leftImg8bit.png` (2048x1024 photos),
                 splits train (2,975) and val (500); gtFine's test maps are placeholders
                 and are left out. Registration is required
                 (https://www.cityscapes-dataset.com/downloads/), so nothing is downloaded:
                 `gtFine_trainvaltest.zip` and `leftImg8bit_trainvaltest.zip`, or their
                 extracted `gtFine/` and `leftImg8bit/` folders, go into the manual dir
                 (config.data.source, default <data_dir>/downloads/manual); the zips are
                 read as they are, not extracted. A manual dir laid out as pix2pixHD's
                 datasets/cityscapes/ (train_label/ train_inst/ train_img/) is read as that.
                 TFDS's own `cityscapes` builder reads the same zips but keeps only the label
                 ids (no instance ids, which pix2pixHD's boundary map needs), and stores
                 TFRecords read through tf.data; so it is not used.
  label_folders  The official folder layout (its data/aligned_dataset.py), read as it is:
                 per split `<split>_label/` (label maps), `<split>_inst/` (instance maps,
                 read when pix2pixhd.instance_map is on) and `<split>_img/` (photos); with
                 label_nc 0, `<split>_A/` (input images) and `<split>_B/` (photos). Files
                 belong together by name up to the extension and Cityscapes' suffixes
                 (`_gtFine_labelIds`, `_gtFine_instanceIds`, `_leftImg8bit`): the pairs the
                 official loader forms from sorted lists when the names match, and an error
                 naming the file, not a silent shift, when one is missing. A split without
                 photos (the official test_label/ test_inst/) is left out with a warning.

Records: {'label': ids [H, W] (uint8 for label_nc <= 256, else uint16; zlib-compressed), or
'input': image (label_nc 0), 'instance': ids [H, W] int32 (only when instance maps are
on), 'image': photo, 'name': the label map's file name}. Checked at preparation, each a
one-line DataError naming the file (config.data.on_bad_file 'skip' leaves it out instead):
a label id >= label_nc, a colour label map, a missing instance map when they are on, and a
label, instance map and photo that differ in size. Label and instance maps are read as
the ids they store (8- or 16-bit gray, 32-bit integer or palette PNGs).
"""

import dataclasses
import io
import logging
import os
import re
import zipfile

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from p2p_jax.datasets import catalog, pix2pix_aligned, sources
from p2p_jax.datasets.sources import DataError

_CITATION = """@inproceedings{wang2018pix2pixHD,
  title={High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs},
  author={Wang, Ting-Chun and Liu, Ming-Yu and Zhu, Jun-Yan and Tao, Andrew and Kautz, Jan
          and Catanzaro, Bryan}, booktitle={CVPR}, year={2018}}"""
# Where Cityscapes' files are: (folder in the zip or manual dir, zip, suffix of its files).
CITYSCAPES_PARTS = {'label': ('gtFine', 'gtFine_trainvaltest.zip', '_gtFine_labelIds.png'),
                    'instance': ('gtFine', 'gtFine_trainvaltest.zip',
                                 '_gtFine_instanceIds.png'),
                    'image': ('leftImg8bit', 'leftImg8bit_trainvaltest.zip',
                              '_leftImg8bit.png')}
CITYSCAPES_SPLITS = ('train', 'val')
CITYSCAPES_URL = 'https://www.cityscapes-dataset.com/downloads/'
_SUFFIXES = ('_gtFine_labelIds', '_gtFine_instanceIds', '_leftImg8bit')
_ID_MODES = ('L', 'P', 'I', 'I;16', 'I;16B', 'I;16L')
_MAX_INSTANCE = 2**24   # ids inference packs into float32 exactly (label_maps.pack)


def key_of(name: str) -> str:
  """A file's name without extension and Cityscapes' suffixes: what pairs it."""
  stem = os.path.splitext(os.path.basename(name))[0]
  for suffix in _SUFFIXES:
    if stem.endswith(suffix):
      return stem[:-len(suffix)]
  return stem


class _Files:
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
  if image.mode not in _ID_MODES:
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
    image = sources.to_channels(files.open(name), in_channels, where, 'input image')
    size = image.size[::-1]
    record = {'input': sources.png_bytes(image)}
  if instances:
    if example.instance is None:
      raise DataError(f'{where}: no instance map (expected '
                      f'{"*_gtFine_instanceIds.png" if "labelIds" in name else "a file of the same name"}'
                      ' in the instance folder); set pix2pixhd.instance_map=False to train '
                      'without instance boundaries')
    i_files, i_name = example.instance
    instance = read_ids(i_files.open(i_name), i_files.where(i_name), 'the instance map')
    if instance.shape != size:
      raise DataError(f'{i_files.where(i_name)}: instance map is {instance.shape[1]}x'
                      f'{instance.shape[0]} but its label map {where} is {size[1]}x{size[0]}')
    if instance.max() >= _MAX_INSTANCE:
      raise DataError(f'{i_files.where(i_name)}: instance ids up to {instance.max()}; at '
                      f'most {_MAX_INSTANCE - 1} are supported')
    record['instance'] = instance.astype(np.int32)
  p_files, p_name = example.image
  photo = sources.to_channels(p_files.open(p_name), out_channels, p_files.where(p_name),
                              'photo')
  if photo.size[::-1] != tuple(size):
    raise DataError(f'{p_files.where(p_name)}: photo is {photo.size[0]}x{photo.size[1]} but '
                    f'its {"label map" if label_nc else "input image"} {where} is '
                    f'{size[1]}x{size[0]}; they must have the same size')
  record['image'] = sources.png_bytes(photo)
  record['name'] = os.path.basename(name)
  return record


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
    labels, photo_files = _Files(os.path.join(root, in_dir)), _Files(photo_dir)
    inst_files = _Files(inst_dir) if instances else None
    by_key = {}
    for what, files in (('photo', photo_files), ('instance', inst_files)):
      if files is not None:
        by_key[what] = (files, {key_of(n): n for n in reversed(sources.list_images(files.path))})
    examples = []
    for n in sources.list_images(labels.path):
      key = key_of(n)
      parts = {}
      for what, (files, keys) in by_key.items():
        parts[what] = (files, keys[key]) if key in keys else None
      if parts['photo'] is None:
        examples.append(_Missing(f'{labels.where(n)}: no photo named {key}.* (or '
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
class _Missing:
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
  trees = {folder: _Files(path) for folder, path in parts.items()}
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
        examples.append(_Missing(f'{label[0].where(label[1])}: no {key}_leftImg8bit.png in '
                                 f'{parts["leftImg8bit"]} ({split}/)'))
        continue
      instance = index.get(('instance', split, key)) if instances else None
      examples.append(Example(label, instance, image))
    splits[split] = examples
  return splits


# ------------------------------------------------------------------ the builder


@dataclasses.dataclass(eq=False)
class LabelledConfig(tfds.core.BuilderConfig):
  """Labelled data: where it is, and what each example keeps and is checked against."""
  layout: str = 'folders'   # 'folders' or 'cityscapes'
  source: str = ''          # the folder (or archive); '' for Cityscapes (the manual dir)
  label_nc: int = 35        # ids must be below it; 0: the input is an image
  instances: bool = True    # instance maps read and required
  in_channels: int = 3      # of the input image (label_nc 0)
  out_channels: int = 3     # of the photo


class LabelledMaps(pix2pix_aligned.Pix2PixAligned, skip_registration=True):
  """Label maps, instance maps and photos (not registered: build it with `builder_for`)."""

  name = 'labelled_maps'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Label and instance ids zlib-compressed, photos as PNG, '
                            'ArrayRecord files.'}
  BUILDER_CONFIGS = []
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Cityscapes (registration required, {CITYSCAPES_URL}): put gtFine_trainvaltest.zip '
      'and leftImg8bit_trainvaltest.zip (or their extracted gtFine/ and leftImg8bit/ '
      'folders) into the manual dir (config.data.source).')

  def _official(self):
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    features = {}
    if config.label_nc:
      features['label'] = tfds.features.Tensor(
          shape=(None, None), dtype=np.uint8 if config.label_nc <= 256 else np.uint16,
          encoding=tfds.features.Encoding.ZLIB)
    else:
      features['input'] = tfds.features.Image(shape=(None, None, config.in_channels),
                                              encoding_format='png')
    if config.instances:
      features['instance'] = tfds.features.Tensor(shape=(None, None), dtype=np.int32,
                                                  encoding=tfds.features.Encoding.ZLIB)
    features['image'] = tfds.features.Image(shape=(None, None, config.out_channels),
                                            encoding_format='png')
    features['name'] = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self, description='Label maps, instance maps and photos for pix2pixHD.',
        features=tfds.features.FeaturesDict(features),
        homepage='https://tcwang0509.github.io/pix2pixHD/', citation=_CITATION,
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    config = self.builder_config
    if config.layout == 'cityscapes':
      root = self.manual_dir
      if os.path.isdir(os.path.join(root, 'train_label')):   # pix2pixHD's datasets/cityscapes
        splits = folder_splits(root, config.label_nc, config.instances)
      else:
        parts = cityscapes_parts(root)
        missing = [zip_name for folder, zip_name, _ in CITYSCAPES_PARTS.values()
                   if folder not in (parts or {})]
        if missing:
          raise DataError(
              f'cityscapes: no {" and no ".join(sorted(set(missing)))} (nor the extracted '
              f'folder) in {root}. Cityscapes needs registration, so p2p_jax does not '
              f'download it: get gtFine_trainvaltest.zip (241 MB) and '
              f'leftImg8bit_trainvaltest.zip (11 GB) from {CITYSCAPES_URL} and put them in '
              f'{root} (or set config.data.source to the folder that holds them)')
        splits = cityscapes_splits(parts, config.instances)
    else:
      splits = folder_splits(self._locate(dl_manager), config.label_nc, config.instances)
    return {split: self._generate_examples(split, examples)
            for split, examples in splits.items()}

  def _generate_examples(self, split: str, examples):
    config = self.builder_config
    bad = sources.BadFiles(self._on_bad_file)
    count = 0
    for example in examples:
      try:
        if isinstance(example, _Missing):
          raise DataError(example.message)
        record = make_example(example, config.label_nc, config.instances,
                              config.in_channels, config.out_channels)
      except DataError as e:
        bad(e)
        continue
      count += 1
      yield f'{count:07d}_{record["name"]}', record
    if not count:
      raise DataError(f'{config.name}: every file of split {split!r} was bad '
                      f'({len(bad.skipped)} skipped; first: '
                      f'{bad.skipped[0] if bad.skipped else "-"})')
    self.info.metadata['on_bad_file'] = self._on_bad_file
    self.info.metadata.setdefault('skipped', {})[split] = len(bad.skipped)
    if bad.skipped:
      self.info.metadata.setdefault('skipped_files', {})[split] = bad.skipped[:100]
      logging.warning('%s/%s: skipped %d bad file(s), kept %d (on_bad_file=skip)',
                      config.name, split, len(bad.skipped), count)


# The key of config.data that carries the method's label settings to the builder (and
# through the child process's request, which holds the data config).
LABELS_KEY = 'labels'


def with_labels(data_config, label_nc: int, instance_map: bool):
  """A copy of `data_config` that also says how labels are read (what `prepare` takes)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  data = ml_collections.ConfigDict(data_config.to_dict())
  data[LABELS_KEY] = {'label_nc': int(label_nc), 'instance_map': bool(instance_map)}
  return data


def builder_for(data_config, *, in_channels: int = 3, out_channels: int = 3) -> LabelledMaps:
  """The builder for a labelled `config.data` made by `with_labels` (not prepared yet)."""
  dataset = data_config.dataset
  labels = data_config.get(LABELS_KEY) or {'label_nc': 35, 'instance_map': True}
  label_nc, instances = int(labels['label_nc']), bool(labels['instance_map'])
  tail = (f'l{label_nc}' if label_nc else f'a{in_channels}') + (
      f'_c{out_channels}_i{int(instances)}')
  manual_dir = None
  if dataset in catalog.LABELLED_OFFICIAL:
    layout, source, name = 'cityscapes', '', f'{dataset}_{tail}'
    if data_config.source:
      manual_dir = os.path.abspath(os.path.expanduser(data_config.source))
  elif dataset == catalog.LABEL_FOLDERS:
    if not data_config.source:
      raise DataError(f"dataset '{dataset}' needs config.data.source: the folder (or "
                      'archive) holding train_label/ train_inst/ train_img/ (or train_A/ '
                      'train_B/)')
    source = os.path.abspath(os.path.expanduser(data_config.source))
    if not os.path.exists(source):
      raise DataError(f'{source}: does not exist (config.data.source)')
    stem = re.sub(r'[^a-z0-9]+', '_', os.path.basename(source.rstrip('/')).lower())[:32]
    layout = 'folders'
    name = f'labels_{stem.strip("_") or "data"}_{sources.fingerprint(source)}_{tail}'
  else:
    raise DataError(f'config.data.dataset is {dataset!r}, not a labelled dataset; expected '
                    f'one of {", ".join([*catalog.LABELLED_OFFICIAL, catalog.LABEL_FOLDERS])}')
  config = LabelledConfig(name=name, layout=layout, source=source, label_nc=label_nc,
                          instances=instances, in_channels=in_channels,
                          out_channels=out_channels,
                          description=f'Label maps and photos ({layout}).')
  return LabelledMaps(config=config, data_dir=data_config.data_dir or None,
                      manual_dir=manual_dir, download=False,
                      on_bad_file=data_config.on_bad_file)


def prepare(data_config, *, in_channels: int = 3, out_channels: int = 3,
            in_process: bool = False) -> LabelledMaps:
  """Returns the builder for a labelled `config.data` (`with_labels`), preparing it first
  if needed (in a child process where TensorFlow is installed, unless `in_process`)."""
  builder = builder_for(data_config, in_channels=in_channels, out_channels=out_channels)
  return pix2pix_aligned.prepare_builder(builder, data_config, in_channels=in_channels,
                                         out_channels=out_channels, in_process=in_process,
                                         builder_for=builder_for)
