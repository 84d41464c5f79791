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
the ids they store (8- or 16-bit gray, 32-bit integer or palette PNGs). The layouts and
the checks are datasets/label_sources.py (no TensorFlow); this module is the builder.
"""

import dataclasses
import logging
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from p2p_jax.datasets import catalog, label_sources, pix2pix_aligned, sources
from p2p_jax.datasets.sources import DataError

_CITATION = """@inproceedings{wang2018pix2pixHD,
  title={High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs},
  author={Wang, Ting-Chun and Liu, Ming-Yu and Zhu, Jun-Yan and Tao, Andrew and Kautz, Jan
          and Catanzaro, Bryan}, booktitle={CVPR}, year={2018}}"""
# Where Cityscapes' files are: (folder in the zip or manual dir, zip, suffix of its files).

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
      f'Cityscapes (registration required, {label_sources.CITYSCAPES_URL}): put '
      'gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip (or their extracted gtFine/ '
      'and leftImg8bit/ folders) into the manual dir (config.data.source).')

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
        splits = label_sources.folder_splits(root, config.label_nc, config.instances)
      else:
        parts = label_sources.cityscapes_parts(root)
        missing = [zip_name for folder, zip_name, _
                   in label_sources.CITYSCAPES_PARTS.values() if folder not in (parts or {})]
        if missing:
          raise DataError(
              f'cityscapes: no {" and no ".join(sorted(set(missing)))} (nor the extracted '
              f'folder) in {root}. Cityscapes needs registration, so p2p_jax does not '
              f'download it: get gtFine_trainvaltest.zip (241 MB) and '
              f'leftImg8bit_trainvaltest.zip (11 GB) from {label_sources.CITYSCAPES_URL} and '
              f'put them in {root} (or set config.data.source to the folder that holds them)')
        splits = label_sources.cityscapes_splits(parts, config.instances)
    else:
      splits = label_sources.folder_splits(self._locate(dl_manager), config.label_nc,
                                           config.instances)
    return {split: self._generate_examples(split, examples)
            for split, examples in splits.items()}

  def _generate_examples(self, split: str, examples):
    config = self.builder_config
    bad = sources.BadFiles(self._on_bad_file)
    count = 0
    for example in examples:
      try:
        if isinstance(example, label_sources.Missing):
          raise DataError(example.message)
        record = label_sources.make_example(example, config.label_nc, config.instances,
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
