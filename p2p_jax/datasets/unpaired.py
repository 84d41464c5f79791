"""TFDS builder for unpaired data (CycleGAN): the reference's zips and your own folders.

Layout, as the reference's datasets: one folder per split and domain, `trainA/`, `trainB/`,
`testA/`, `testB/` (any `<split>A` / `<split>B` pair of folders: `valA/ valB/` too), any
image sizes; or an archive of that. Every TFDS split is one such folder ('trainA', ...) of
examples {'image': image, 'name': file name}, stored as lossless PNG in ArrayRecord files
like the paired datasets (pix2pix_aligned.py, whose preparation, atomicity, bad-file rules
and offline behaviour this builder shares).

Builder configs:
  apple2orange, summer2winter_yosemite, horse2zebra, monet2photo, cezanne2photo,
  ukiyoe2photo, vangogh2photo, iphone2dslr_flower, maps, cityscapes, facades
      The reference's zips (`http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/<name>.zip`,
      catalog.UNPAIRED_OFFICIAL), found in the manual dir (config.data.source) as the zip or
      its extracted folder, else downloaded after a reachability check (offline: one line
      naming the URL and the folder at once).
  unpaired_<folder>_<hash>_c<a><b>
      Your folders (config.data.dataset = 'unpaired_folders', config.data.source).
Grayscale images where 3 channels are wanted become RGB, as the reference's loader does
(`Image.convert('RGB')`; the official horse2zebra has a few): counted, not refused, since the
domains are collections of photos, not pixel-aligned pairs.
"""

import dataclasses
import logging
import os
import re

import tensorflow_datasets as tfds

from p2p_jax.datasets import catalog, pix2pix_aligned, sources
from p2p_jax.datasets.sources import DataError

_CITATION = """@inproceedings{CycleGAN2017,
  title={Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks},
  author={Zhu, Jun-Yan and Park, Taesung and Isola, Phillip and Efros, Alexei A},
  booktitle={ICCV}, year={2017}}"""
_DOMAIN_DIR = re.compile(r'^([A-Za-z0-9_]+)([AB])$')


def split_dirs(root: str) -> dict[str, str]:
  """{'trainA': folder, 'trainB': folder, ...}: every `<split>A` / `<split>B` folder of
  images under `root`; raises DataError when a split lacks one of its two domains."""
  if not os.path.isdir(root):
    raise DataError(f'{root}: not a folder; expected trainA/ and trainB/ folders of images '
                    '(or an archive of them)')
  found = {}
  for name in sorted(os.listdir(root)):
    path = os.path.join(root, name)
    if os.path.isdir(path) and _DOMAIN_DIR.match(name) and sources.list_images(path):
      found[name] = path
  if not found:
    raise DataError(f'{root}: no trainA/ and trainB/ folders of images ('
                    f'{", ".join(sources.IMAGE_EXTENSIONS)}); an unpaired dataset has one '
                    'folder per split and domain (trainA, trainB, testA, testB)')
  for name in found:
    split, domain = _DOMAIN_DIR.match(name).groups()
    other = split + ('B' if domain == 'A' else 'A')
    if other not in found:
      raise DataError(f'{found[name]}: has no {other}/ beside it ({root}); an unpaired split '
                      f'needs both domains, {split}A/ and {split}B/')
  return found


def examples(folder: str, channels: int, store: int, bad: sources.BadFiles, converted: list):
  """Yields (key, {'image': png of `store` channels, 'name': file}) for every good image in
  `folder` of a domain with `channels`; grayscale images of a 3-channel domain are turned
  RGB, and their paths appended to `converted`."""
  for f in sources.list_images(folder):
    path = os.path.join(folder, f)
    try:
      image = sources.open_image(path)
    except DataError as e:
      bad(e)
      continue
    if channels == 3 and image.mode in sources.image_io.GRAY_MODES:
      converted.append(path)
    image = image.convert('L' if channels == 1 else 'RGB')
    yield f, {'image': sources.png_bytes(image.convert('L' if store == 1 else 'RGB')),
              'name': f}


@dataclasses.dataclass(eq=False)
class UnpairedConfig(tfds.core.BuilderConfig):
  """An unpaired dataset: where its images are and how many channels each domain keeps."""
  source: str = ''  # Folder or archive; '' for an official zip (manual dir or URL).
  a_channels: int = 3
  b_channels: int = 3


class UnpairedImages(pix2pix_aligned.Pix2PixAligned, skip_registration=True):
  """Two domains of images per split (not registered: build it with `builder_for`)."""

  name = 'unpaired_images'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'One split per domain, images as PNG, ArrayRecord files.'}
  BUILDER_CONFIGS = [UnpairedConfig(name=o.name, description=o.description)
                     for o in catalog.UNPAIRED_OFFICIAL.values()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put <name>.zip (from http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/) or its '
      'extracted folder into the manual dir (config.data.source).')
  SPLIT_MARKER = 'trainA'

  def _official(self):
    return catalog.UNPAIRED_OFFICIAL.get(self.builder_config.name)

  def _channels(self) -> int:
    # One image feature serves both domains: RGB unless both are gray. A gray domain kept as
    # RGB is R = G = B, which the input pipeline's luma conversion maps back exactly.
    config = self.builder_config
    return 1 if config.a_channels == config.b_channels == 1 else 3

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='Unpaired images of two domains (A, B) for CycleGAN.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, self._channels()),
                                         encoding_format='png'),
            'name': tfds.features.Text(),
        }),
        homepage='https://junyanz.github.io/CycleGAN/',
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    root = self._locate(dl_manager)
    folders = split_dirs(root)
    if self._official() and not {'trainA', 'trainB'} <= set(folders):
      raise DataError(f'{root}: has no trainA/ and trainB/; is the '
                      f'{self.builder_config.name} archive complete?')
    return {name: self._generate_examples(name, (path,)) for name, path in folders.items()}

  def _generate_examples(self, split: str, dirs: tuple[str, ...]):
    config = self.builder_config
    channels = config.a_channels if split.endswith('A') else config.b_channels
    # A gray domain beside an RGB one is checked as gray, stored as RGB (see _channels).
    store = self._channels()
    bad, converted = sources.BadFiles(self._on_bad_file), []
    count = 0
    for key, example in examples(dirs[0], channels, store, bad, converted):
      count += 1
      yield key, example
    if not count:
      raise DataError(f'{dirs[0]}: every file of split {split!r} was bad ({len(bad.skipped)} '
                      f'skipped; first: {bad.skipped[0] if bad.skipped else "-"})')
    if converted:
      logging.warning('%s/%s: %d grayscale image(s) read as RGB, as the reference does '
                      '(first: %s)', config.name, split, len(converted), converted[0])
    self.info.metadata['on_bad_file'] = self._on_bad_file
    self.info.metadata.setdefault('skipped', {})[split] = len(bad.skipped)
    self.info.metadata.setdefault('gray_to_rgb', {})[split] = len(converted)
    if bad.skipped:
      self.info.metadata.setdefault('skipped_files', {})[split] = bad.skipped[:100]
      logging.warning('%s/%s: skipped %d bad file(s), kept %d (on_bad_file=skip)',
                      config.name, split, len(bad.skipped), count)


def builder_for(data_config, *, in_channels: int = 3, out_channels: int = 3) -> UnpairedImages:
  """The builder for an unpaired `config.data` (not prepared yet; see `prepare`)."""
  dataset = data_config.dataset
  if dataset in catalog.UNPAIRED_OFFICIAL:
    config = dataset
  elif dataset == catalog.UNPAIRED_FOLDERS:
    source, a_channels, b_channels, stem = pix2pix_aligned.folder_source(
        data_config, 'trainA/ and trainB/', in_channels, out_channels)
    config = UnpairedConfig(
        name=f'unpaired_{stem.strip("_") or "data"}_{sources.fingerprint(source)}'
        f'_c{a_channels}{b_channels}', source=source, a_channels=a_channels,
        b_channels=b_channels, description=f'Your unpaired images from {source}.')
  else:
    raise DataError(f'config.data.dataset is {dataset!r}, not an unpaired dataset; expected '
                    f'one of {", ".join([*catalog.UNPAIRED_OFFICIAL, catalog.UNPAIRED_FOLDERS])}')
  manual_dir = None
  if dataset in catalog.UNPAIRED_OFFICIAL and data_config.source:
    manual_dir = os.path.abspath(os.path.expanduser(data_config.source))
  return UnpairedImages(
      config=config, data_dir=data_config.data_dir or None, manual_dir=manual_dir,
      download=data_config.get('download', True), on_bad_file=data_config.on_bad_file)


def prepare(data_config, *, in_channels: int = 3, out_channels: int = 3,
            in_process: bool = False) -> UnpairedImages:
  """Returns the builder for an unpaired `config.data`, preparing it first if needed (in a
  child process where TensorFlow is installed, unless `in_process`: child_process.py)."""
  builder = builder_for(data_config, in_channels=in_channels, out_channels=out_channels)
  return pix2pix_aligned.prepare_builder(builder, data_config, in_channels=in_channels,
                                         out_channels=out_channels, in_process=in_process,
                                         builder_for=builder_for)
