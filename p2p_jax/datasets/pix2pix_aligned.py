"""TFDS builder for aligned pix2pix data: the official datasets, the embedded tiles, your folders.

Every example is {'a': image, 'b': image, 'name': file name}; images are stored as lossless
PNG (an A|B JPEG is cut in two once, at preparation; re-encoding the halves as JPEG would
compress them twice), in ArrayRecord files, which the input pipeline reads by index
through `builder.as_data_source` without TensorFlow (neither preparation nor reading
imports it). Builder configs:
  facades, cityscapes, maps, edges2shoes, edges2handbags, night2day
      Official archives `<name>.tar.gz`. Preparation looks in the manual dir first
      (config.data.source, default <data_dir>/downloads/manual) for the archive or its
      extracted folder; only if neither is there does it try the official URL, after a
      10-second check that the server answers, so an offline machine fails at once with a
      message that says where to put the file (TFDS itself would retry for minutes).
  blue_marble
      The embedded tiles shipped in this package (offline, seconds): NASA Blue Marble photos
      of the Earth by day in grey (A) | in colour (B). Prepared as version 1.1.<revision of the
      tiles> (EMBEDDED_VERSION), so tiles of another package version are prepared afresh
      rather than read from a copy an earlier version prepared in the same data_dir.
  aligned_<folder>_<hash>_c<a><b>, paired_<folder>_<hash>_c<a><b>
      Your own data (config.data.dataset 'aligned_folder' / 'paired_folders'), made on the fly
      by `builder_for`. The name holds a hash of the source path and of its files' names, sizes
      and times, plus the channel counts, so two folders (or an edited folder) never share a
      prepared copy. Folder data goes through TFDS too, so preparation, caching, sharding and
      splits work the same for every source.

Preparation is atomic: TFDS writes into `incomplete.XXXXXX_1.1.0/` beside the final version
folder and renames it only after every split and dataset_info.json are written; on an error
the temporary folder is deleted, and after a hard kill the leftover `incomplete.*` folder is
never mistaken for a dataset (TFDS looks for `1.1.0/dataset_info.json`). Datasets prepared
by earlier versions (1.0.0, TFRecord files, read through tf.data) are left where they are
and prepared once more as 1.1.0.
"""

import dataclasses
import logging
import os
import re
import shutil
import tempfile

import tensorflow_datasets as tfds

from p2p_jax.datasets import child_process, sources
# A module-level name (tests replace it): the one reachability probe, shared with the
# pretrained-model downloads.
from p2p_jax.downloads import unreachable
from p2p_jax.datasets.sources import DataError

EMBEDDED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), sources.EMBEDDED)
_CITATION = """@inproceedings{isola2017image,
  title={Image-to-Image Translation with Conditional Adversarial Networks},
  author={Isola, Phillip and Zhu, Jun-Yan and Zhou, Tinghui and Efros, Alexei A},
  booktitle={CVPR}, year={2017}}"""


@dataclasses.dataclass(eq=False)
class Pix2PixConfig(tfds.core.BuilderConfig):
  """A dataset: its layout, where its images are, and how many channels A and B keep."""
  layout: str = 'aligned'  # 'aligned' (A|B in one image) or 'paired' (A/ and B/ folders).
  source: str = ''  # Folder or archive of images; '' for official data (manual dir or URL).
  a_channels: int = 3
  b_channels: int = 3


_VERSION = tfds.core.Version('1.1.0')
# The embedded tiles' revision is the patch number of their prepared version (major.minor
# stay the storage format's): a data_dir that holds the tiles of an earlier package, prepared
# under the same name, is not mistaken for these. Bump it whenever the tiles change.
# 0: Blue Marble day | city lights at night, 256 px; 1: Blue Marble grey | colour, 128 px.
EMBEDDED_REVISION = 1
EMBEDDED_VERSION = tfds.core.Version(f'{_VERSION.major}.{_VERSION.minor}.{EMBEDDED_REVISION}')


class Pix2PixAligned(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Aligned image pairs for pix2pix (not registered: build it with `builder_for`)."""

  name = 'pix2pix_aligned'
  VERSION = _VERSION
  RELEASE_NOTES = {'1.0.0': 'A and B stored as PNG halves, with the source file name.',
                   '1.1.0': 'ArrayRecord files (random access without TensorFlow).'}
  BUILDER_CONFIGS = [Pix2PixConfig(name=o.name, description=o.description)
                     for o in sources.OFFICIAL.values()] + [
                         Pix2PixConfig(name=sources.EMBEDDED, source=EMBEDDED_DIR,
                                       version=EMBEDDED_VERSION,
                                       release_notes={str(EMBEDDED_VERSION): (
                                           'Blue Marble in grey (A) | in colour (B), 128 px '
                                           'tiles.')},
                                       description='NASA Blue Marble tiles in grey (A) | in '
                                       'colour (B), embedded; see blue_marble/PROVENANCE.md.')]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put <name>.tar.gz (from http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/) or its '
      'extracted folder into the manual dir (config.data.source).')

  def __init__(self, *, manual_dir: str | None = None, download: bool = True,
               on_bad_file: str = 'error', load_size: int | None = None, **kwargs):
    """manual_dir: where official archives are looked for; download: whether to try the
    official URL when they are not there; on_bad_file: 'error' or 'skip'; load_size: the
    training size, to warn about images enlarged more than 2x to it."""
    super().__init__(**kwargs)
    self._load_size = load_size
    self.manual_dir = manual_dir or os.path.join(
        os.fspath(self.data_dir_root), 'downloads', 'manual')
    self._download = download
    self._on_bad_file = on_bad_file
    self.extract_dir = None  # where `prepare` has archives extracted (then deleted)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description='Aligned image pairs (A, B) for pix2pix.',
        features=tfds.features.FeaturesDict({
            'a': tfds.features.Image(shape=(None, None, config.a_channels),
                                     encoding_format='png'),
            'b': tfds.features.Image(shape=(None, None, config.b_channels),
                                     encoding_format='png'),
            'name': tfds.features.Text(),
        }),
        homepage='https://phillipi.github.io/pix2pix/',
        citation=_CITATION,
        # Filled during preparation: the on_bad_file policy, and how many bad files were
        # skipped in each split (`prepare` refuses to reuse a dataset that skipped files
        # for a run that says on_bad_file='error').
        metadata=tfds.core.MetadataDict(),
    )

  # TFDS prints "Downloading and preparing dataset Unknown size ..." and "... Subsequent
  # calls will reuse this data." around a preparation; `prepare` says it in one line of its
  # own (where, and that it happens once), so these two stay quiet.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass

  def _split_generators(self, dl_manager):
    root = self._locate(dl_manager)
    if self.builder_config.layout == 'paired':
      folders = sources.paired_split_dirs(root)
    else:
      folders = {s: (d,) for s, d in sources.split_dirs(root).items()}
    official = self._official()
    if official:
      missing = [s for s in official.splits if s not in folders]
      if missing:
        raise DataError(f'{root}: has no {"/".join(missing)} folder; the {official.name} '
                        f'archive has {", ".join(official.splits)}. Is it complete?')
    return {split: self._generate_examples(split, dirs) for split, dirs in folders.items()}

  def _generate_examples(self, split: str, dirs: tuple[str, ...]):
    config = self.builder_config
    bad = sources.BadFiles(self._on_bad_file)
    notes = sources.ImageNotes(self._load_size)
    if config.layout == 'paired':
      examples = sources.paired_examples(*dirs, config.a_channels, config.b_channels, bad,
                                         notes)
    else:
      examples = sources.aligned_examples(*dirs, config.a_channels, config.b_channels, bad,
                                          notes)
    count = 0
    for key, example in examples:
      count += 1
      yield key, example
    for line in notes.lines(dirs[0]):
      logging.warning(line)
    if not count:
      raise DataError(f'{dirs[0]}: every file of split {split!r} was bad ({len(bad.skipped)} '
                      f'skipped; first: {bad.skipped[0] if bad.skipped else "-"})')
    self.info.metadata['on_bad_file'] = self._on_bad_file
    self.info.metadata.setdefault('skipped', {})[split] = len(bad.skipped)
    if bad.skipped:
      self.info.metadata.setdefault('skipped_files', {})[split] = bad.skipped[:100]
      logging.warning('%s/%s: skipped %d bad file(s), kept %d (on_bad_file=skip)',
                      config.name, split, len(bad.skipped), count)

  def _locate(self, dl_manager) -> str:
    """The folder holding the split folders, extracting an archive if that is what we have."""
    config = self.builder_config
    if config.source:
      path = config.source
      if not os.path.exists(path):
        raise DataError(f'{path}: does not exist; config.data.source must name a folder or '
                        'an archive of images')
    else:
      official = self._official()
      path = (find_local(official, self.manual_dir, self.SPLIT_MARKER)
              or self._fetch(dl_manager, official))
    if sources.is_archive(path):
      # Into `prepare`'s temporary folder, without TFDS's extractor (it imports TensorFlow).
      path = sources.extract_archive(path, self.extract_dir or tempfile.mkdtemp())
    return sources.unwrap(path)

  # The folder whose presence marks an extracted dataset (an official one's first split).
  SPLIT_MARKER = 'train'

  def _official(self):
    """The official dataset this builder config names, or None for your own folders."""
    return sources.OFFICIAL.get(self.builder_config.name)

  def _fetch(self, dl_manager, official: sources.Official) -> str:
    """Downloads the official archive, or says at once why not and where to put it."""
    where = (f'{official.name}: no {official.archive} and no extracted {official.name}/ '
             f'folder in {self.manual_dir}')
    fix = (f'Download {official.url} (about {official.size_mb} MB) and put it in '
           f'{self.manual_dir} (or set config.data.source to the folder that holds it).')
    if not self._download:
      raise DataError(f'{where}, and downloading is off (config.data.download=False). {fix}')
    why_not = unreachable(official.url)
    if why_not:
      raise DataError(f'{where}, and the download failed ({why_not}). {fix}')
    return os.fspath(dl_manager.download(official.url))


def find_local(official, manual_dir: str, marker: str = 'train') -> str | None:
  """The archive or extracted folder of an official dataset under `manual_dir`, if any
  (a folder counts when it has a `marker` sub-folder: its first split)."""
  if sources.is_archive(manual_dir):
    return manual_dir  # config.data.source names the archive itself.
  for name in (official.archive, f'{official.name}.tgz', f'{official.name}.tar',
               f'{official.name}.zip'):
    if os.path.isfile(os.path.join(manual_dir, name)):
      return os.path.join(manual_dir, name)
  for folder in (os.path.join(manual_dir, official.name), manual_dir):
    if os.path.isdir(os.path.join(folder, marker)):
      return folder
  return None


def folder_source(data_config, holding: str, in_channels: int, out_channels: int):
  """(absolute source, A's channels, B's channels, a name stem) of a dataset read from the
  user's folder or archive `config.data.source` (which holds `holding`); DataError when it
  is not given or does not exist. The channels follow config.data.direction."""
  dataset = data_config.dataset
  if not data_config.source:
    raise DataError(f"dataset '{dataset}' needs config.data.source: the folder (or archive) "
                    f'holding {holding}')
  source = os.path.abspath(os.path.expanduser(data_config.source))
  if not os.path.exists(source):
    raise DataError(f'{source}: does not exist (config.data.source)')
  a_channels, b_channels = in_channels, out_channels
  if data_config.direction == 'BtoA':
    a_channels, b_channels = b_channels, a_channels
  stem = re.sub(r'[^a-z0-9]+', '_', os.path.basename(source.rstrip('/')).lower())[:32]
  return source, a_channels, b_channels, stem


def builder_for(data_config, *, in_channels: int = 3, out_channels: int = 3) -> Pix2PixAligned:
  """The builder for `config.data` (not prepared yet; see `prepare`)."""
  dataset = data_config.dataset
  if dataset in sources.OFFICIAL or dataset == sources.EMBEDDED:
    config = dataset  # Stored as RGB; the input pipeline converts to 1 channel if asked.
  elif dataset in sources.FOLDER_LAYOUTS:
    source, a_channels, b_channels, stem = folder_source(
        data_config, 'your images', in_channels, out_channels)
    layout = sources.FOLDER_LAYOUTS[dataset]
    config = Pix2PixConfig(
        name=f'{layout}_{stem.strip("_") or "data"}_{sources.fingerprint(source)}'
        f'_c{a_channels}{b_channels}',
        layout=layout, source=source, a_channels=a_channels, b_channels=b_channels,
        description=f'Your {layout} images from {source}.')
  else:
    raise DataError(f'config.data.dataset is {dataset!r}; expected one of '
                    f'{", ".join(sources.DATASETS)}')
  manual_dir = None
  if dataset in sources.OFFICIAL and data_config.source:
    manual_dir = os.path.abspath(os.path.expanduser(data_config.source))
  return Pix2PixAligned(
      config=config, data_dir=data_config.data_dir or None, manual_dir=manual_dir,
      download=data_config.get('download', True), on_bad_file=data_config.on_bad_file,
      load_size=data_config.get('load_size'))


def prepare(data_config, *, in_channels: int = 3, out_channels: int = 3,
            in_process: bool = False) -> Pix2PixAligned:
  """Returns the builder for `config.data`, preparing the dataset first if needed: in a
  child process where TensorFlow is installed (child_process.py), so that TFDS does not
  load it into this one, unless `in_process`."""
  builder = builder_for(data_config, in_channels=in_channels, out_channels=out_channels)
  return prepare_builder(builder, data_config, in_channels=in_channels,
                         out_channels=out_channels, in_process=in_process,
                         builder_for=builder_for)


def prepare_builder(builder, data_config, *, in_channels: int, out_channels: int,
                    in_process: bool, builder_for):
  """Prepares `builder`'s dataset if it is not yet (this module's builders and those of
  p2p_jax/datasets/unpaired.py, made by `builder_for(data_config, ...)`); returns the
  builder. Where TensorFlow is installed, in a child process unless `in_process`."""
  if not builder.is_prepared() and not in_process and child_process.wanted():
    print(f'p2p_jax: preparing {builder.builder_config.name} in {builder.data_dir} '
          '(once; later runs reuse it)', flush=True)
    child_process.prepare(data_config, in_channels, out_channels, builder_for.__module__)
    builder = builder_for(data_config, in_channels=in_channels, out_channels=out_channels)
  if not builder.is_prepared():
    # TFDS names an extraction after the archive's file name only and reuses it when it
    # exists, so a replaced archive, or another one of the same name, would be read from a
    # stale copy. A fresh folder per preparation, deleted afterwards (the prepared records
    # hold everything), avoids that and the disk space of a second copy.
    extracted = os.path.join(os.fspath(builder.data_dir_root), 'downloads', 'extracted')
    os.makedirs(extracted, exist_ok=True)
    extract_dir = tempfile.mkdtemp(prefix=f'{builder.builder_config.name}.', dir=extracted)
    builder.extract_dir = extract_dir
    if not in_process:  # (the parent said it)
      print(f'p2p_jax: preparing {builder.builder_config.name} in {builder.data_dir} '
            '(once; later runs reuse it)', flush=True)
    try:
      # TFDS's per-shard progress bars swamp the console of a training run.
      tfds.display_progress_bar(False)
      builder.download_and_prepare(
          file_format=tfds.core.FileFormat.ARRAY_RECORD,
          download_config=tfds.download.DownloadConfig(
              try_download_gcs=False, manual_dir=builder.manual_dir, extract_dir=extract_dir))
    finally:
      tfds.display_progress_bar(True)
      shutil.rmtree(extract_dir, ignore_errors=True)
  _check_bad_file_policy(builder, data_config.on_bad_file)
  return builder


def _check_bad_file_policy(builder: Pix2PixAligned, on_bad_file: str) -> None:
  """Refuses a dataset prepared with on_bad_file='skip' that left files out, for a run that
  says 'error' (it would train on less data than it asked for, without a word). One that
  skipped nothing is the same data either way and is reused."""
  skipped = builder.info.metadata.get('skipped', {}) or {}
  total = sum(int(n) for n in skipped.values())
  if on_bad_file != 'error' or not total:
    return
  files = builder.info.metadata.get('skipped_files', {}) or {}
  first = next((f[0] for f in files.values() if f), '-')
  raise DataError(
      f'{builder.builder_config.name} in {builder.data_dir} was prepared with '
      f'on_bad_file=skip and left out {total} bad file(s) ('
      + ', '.join(f'{s}: {n}' for s, n in sorted(skipped.items()) if n)
      + f'; first: {first}), but this run says config.data.on_bad_file=error. Set it to '
      f'skip to use that data, or fix the files and delete {builder.data_dir} to prepare '
      'it again')
