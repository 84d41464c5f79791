"""The TFDS builder: offline preparation, every source layout, bad files, atomicity."""

import glob
import os
import shutil
import socket
import time
import zipfile

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

import data_fixtures as fx
from p2p_jax import config_schema, input_pipeline
from p2p_jax.datasets import pix2pix_aligned
from p2p_jax.datasets import sources
from p2p_jax.datasets.sources import DataError


REAL_UNREACHABLE = pix2pix_aligned.unreachable


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  """Any attempt to reach the official server or download fails the test."""
  def forbidden(*args, **kwargs):
    raise AssertionError('the data tests must never touch the network')
  monkeypatch.setattr(pix2pix_aligned, 'unreachable', forbidden)
  monkeypatch.setattr(tfds.download.DownloadManager, 'download', forbidden)


def examples(builder, split):
  source = builder.as_data_source(split=split)
  return [source[i] for i in range(len(source))]


def prepared_dirs(data_dir):
  """Version folders that TFDS would treat as a complete dataset."""
  return glob.glob(os.path.join(data_dir, 'pix2pix_aligned', '*', str(pix2pix_aligned.Pix2PixAligned.VERSION), 'dataset_info.json'))


def test_blue_marble_prepares_offline_from_the_shipped_tiles(tmp_path, capsys):
  shipped = {s: len(sources.list_images(os.path.join(pix2pix_aligned.EMBEDDED_DIR, s)))
             for s in ('train', 'test')}
  size = sum(os.path.getsize(f) for f in glob.glob(
      os.path.join(pix2pix_aligned.EMBEDDED_DIR, '**'), recursive=True) if os.path.isfile(f))
  assert size < 10 * 2**20 and shipped['train'] >= 100 and shipped['test'] >= 8
  assert os.path.exists(os.path.join(pix2pix_aligned.EMBEDDED_DIR, 'PROVENANCE.md'))
  builder = pix2pix_aligned.prepare(fx.data_config(tmp_path, dataset='blue_marble'))
  assert {s: builder.info.splits[s].num_examples for s in shipped} == shipped
  said = capsys.readouterr().out
  assert 'preparing blue_marble' in said and 'Subsequent calls' not in said, said
  assert 'Downloading and preparing' not in said, said
  assert builder.version == pix2pix_aligned.EMBEDDED_VERSION
  tests = examples(builder, 'test')
  assert all(e['a'].shape == e['b'].shape == (128, 128, 3) for e in tests)
  assert all(e['a'].shape == (144, 144, 3) for e in examples(builder, 'train')[:5])
  assert tests[0]['name'].decode().endswith('.jpg')
  for e in tests:  # A is B in grey (its luma), up to JPEG's rounding; B is in colour.
    luma = np.asarray(PIL.Image.fromarray(e['b']).convert('L'), np.float64)
    assert np.abs(e['a'][..., 0] - luma).mean() < 1
    assert np.abs(e['a'][:, :-1, 0].astype(int) - e['a'][:, :-1, 2]).max() <= 2
    assert np.abs(e['b'][..., 0].astype(int) - e['b'][..., 2]).mean() > 10
  # The demo's path: 144 px tiles cropped to 128, 1-channel grey -> colour in [-1, 1].
  config = fx.data_config(tmp_path, dataset='blue_marble', direction='AtoB', load_size=144,
                          crop_size=128)
  batch = next(input_pipeline.numpy_batches(config, 'train', batch_size=2, train=True, seed=0,
                                            process_index=0, process_count=1, in_channels=1))
  assert batch['input'].shape == (2, 128, 128, 1) and batch['target'].shape == (2, 128, 128, 3)
  assert abs(batch['input'].mean() - batch['target'].mean()) < 0.2


def test_blue_marble_tiles_of_an_earlier_revision_are_not_reused(tmp_path):
  """A data_dir where an earlier package prepared its other embedded tiles under the same
  name (revision 0: day | night, as 1.1.0) does not count as holding the shipped ones."""
  data_dir = tmp_path / 'tfds'
  old_tiles = fx.aligned_folder(tmp_path / 'old', {'train': 3, 'test': 1})

  class OldPackage(pix2pix_aligned.Pix2PixAligned, skip_registration=True):
    name = pix2pix_aligned.Pix2PixAligned.name  # the same folder: data_dir/pix2pix_aligned/
    BUILDER_CONFIGS = [pix2pix_aligned.Pix2PixConfig(name='blue_marble', source=old_tiles,
                                                     version='1.1.0')]

  old = OldPackage(config='blue_marble', data_dir=str(data_dir))
  old.download_and_prepare(file_format=tfds.core.FileFormat.ARRAY_RECORD)
  assert old.info.splits['train'].num_examples == 3
  assert os.path.isfile(data_dir / 'pix2pix_aligned' / 'blue_marble' / '1.1.0' / 'dataset_info.json')
  # So `prepare` prepares the shipped tiles rather than reading the old ones.
  assert not pix2pix_aligned.builder_for(
      fx.data_config(data_dir, dataset='blue_marble')).is_prepared()


@pytest.mark.parametrize('packed', ['tar.gz', 'folder', 'archive_path'])
def test_official_dataset_prepares_from_the_manual_dir(tmp_path, packed):
  root = fx.aligned_folder(tmp_path / 'src' / 'facades', {'train': 3, 'val': 2, 'test': 1})
  manual = tmp_path / 'manual'
  manual.mkdir()
  if packed == 'folder':
    shutil.move(root, manual / 'facades')
    source = manual
  else:
    source = fx.tar_gz(root, manual / 'facades.tar.gz')
    source = source if packed == 'archive_path' else manual
  builder = pix2pix_aligned.prepare(fx.data_config(tmp_path / 'tfds', dataset='facades',
                                                   source=str(source)))
  counts = {s: i.num_examples for s, i in builder.info.splits.items()}
  assert counts == {'train': 3, 'val': 2, 'test': 1}
  assert not glob.glob(str(tmp_path / 'tfds' / 'downloads' / 'extracted' / '*'))


def test_official_default_manual_dir_is_under_data_dir(tmp_path):
  root = fx.aligned_folder(tmp_path / 'src' / 'maps', {'train': 2, 'val': 1})
  manual = tmp_path / 'tfds' / 'downloads' / 'manual'
  manual.mkdir(parents=True)
  fx.tar_gz(root, manual / 'maps.tar.gz')
  builder = pix2pix_aligned.prepare(fx.data_config(tmp_path / 'tfds', dataset='maps'))
  assert builder.info.splits['val'].num_examples == 1


@pytest.mark.parametrize('download', [False, True])
def test_official_dataset_missing_offline_fails_fast_with_instructions(
    tmp_path, monkeypatch, download):
  monkeypatch.setattr(pix2pix_aligned, 'unreachable', lambda url: 'OSError: no route to host')
  config = fx.data_config(tmp_path, dataset='night2day', download=download,
                          source=str(tmp_path / 'manual'))
  start = time.time()
  with pytest.raises(DataError) as error:
    pix2pix_aligned.prepare(config)
  assert time.time() - start < 10
  message = str(error.value)
  for expected in ('night2day.tar.gz', str(tmp_path / 'manual'),
                   'http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/night2day.tar.gz'):
    assert expected in message
  assert ('no route to host' in message) == download
  assert not prepared_dirs(tmp_path)


def test_official_archive_without_a_split_is_rejected(tmp_path):
  root = fx.aligned_folder(tmp_path / 'facades', {'train': 2, 'test': 1})
  config = fx.data_config(tmp_path / 'tfds', dataset='facades', source=str(tmp_path))
  with pytest.raises(DataError, match='no val folder'):
    pix2pix_aligned.prepare(config)
  assert root and not prepared_dirs(tmp_path / 'tfds')


@pytest.mark.parametrize('packing', ['folder', 'flat', 'tar.gz', 'zip'])
def test_aligned_folder_layouts(tmp_path, packing):
  if packing == 'flat':
    source = fx.aligned_folder(tmp_path / 'mine', {'': 3})
    expected = {'train': 3}
  else:
    source = fx.aligned_folder(tmp_path / 'mine', {'train': 3, 'val': 1})
    expected = {'train': 3, 'val': 1}
  if packing == 'tar.gz':
    source = fx.tar_gz(source, tmp_path / 'mine.tar.gz')
  elif packing == 'zip':
    with zipfile.ZipFile(tmp_path / 'mine.zip', 'w') as archive:
      for path in glob.glob(os.path.join(source, '**', '*.png'), recursive=True):
        archive.write(path, os.path.relpath(path, tmp_path))
    source = str(tmp_path / 'mine.zip')
  builder = pix2pix_aligned.prepare(
      fx.data_config(tmp_path / 'tfds', dataset='aligned_folder', source=source))
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == expected
  example = examples(builder, 'train')[0]
  np.testing.assert_array_equal(example['b'], 255 - example['a'])  # Lossless halves.


@pytest.mark.parametrize('splits', [('train',), ('train', 'test')])
def test_paired_folders(tmp_path, splits):
  source = fx.paired_folder(tmp_path / 'pairs', splits=splits, count=3)
  builder = pix2pix_aligned.prepare(
      fx.data_config(tmp_path / 'tfds', dataset='paired_folders', source=source))
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {s: 3 for s in splits}
  example = sorted(examples(builder, splits[0]), key=lambda e: e['name'])[0]
  assert example['name'] == b'0.png'
  np.testing.assert_array_equal(example['a'], fx.texture(0))


def test_folders_with_the_same_name_do_not_collide(tmp_path):
  first = fx.aligned_folder(tmp_path / 'x' / 'data', {'train': 2})
  second = fx.aligned_folder(tmp_path / 'y' / 'data', {'train': 3})
  sizes = [pix2pix_aligned.prepare(fx.data_config(
      tmp_path / 'tfds', dataset='aligned_folder', source=s)).info.splits['train'].num_examples
           for s in (first, second)]
  assert sizes == [2, 3] and len(prepared_dirs(tmp_path / 'tfds')) == 2


def _corrupt(path):
  with open(path, 'wb') as f:
    f.write(b'this is not an image at all')


def _truncate(path):
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])


def _wrong_shape(path):
  fx.save(path, fx.texture(0, 32), quality=95)  # Square: no A|B halves.


def _grayscale(path):
  gray = fx.texture(0, 32, channels=1)
  fx.save(path, np.concatenate([gray, 255 - gray], axis=1), quality=95)


BAD_ALIGNED = {  # problem: (how to make the file bad, what the message must say)
    'corrupt': (_corrupt, 'cannot decode'),
    'truncated': (_truncate, 'truncated'),
    'not_2_to_1': (_wrong_shape, 'twice as wide'),
    'grayscale': (_grayscale, 'grayscale'),
}


@pytest.mark.parametrize('on_bad_file', ['error', 'skip'])
@pytest.mark.parametrize('problem', sorted(BAD_ALIGNED))
def test_bad_aligned_file(tmp_path, problem, on_bad_file):
  source = fx.aligned_folder(tmp_path / 'mine', {'train': 3}, ext='jpg')
  bad_file = os.path.join(source, 'train', '1.jpg')
  make_bad, reason = BAD_ALIGNED[problem]
  make_bad(bad_file)
  config = fx.data_config(tmp_path / 'tfds', dataset='aligned_folder', source=source,
                          on_bad_file=on_bad_file)
  if on_bad_file == 'error':
    with pytest.raises(DataError) as error:
      pix2pix_aligned.prepare(config)
    assert bad_file in str(error.value) and reason in str(error.value)
    assert not prepared_dirs(tmp_path / 'tfds')
    assert not glob.glob(str(tmp_path / 'tfds' / 'pix2pix_aligned' / '*' / 'incomplete*'))
  else:
    builder = pix2pix_aligned.prepare(config)
    assert builder.info.splits['train'].num_examples == 2
    assert builder.info.metadata['skipped'] == {'train': 1}
    assert bad_file in builder.info.metadata['skipped_files']['train'][0]


@pytest.mark.parametrize('on_bad_file', ['error', 'skip'])
def test_paired_file_without_partner(tmp_path, on_bad_file):
  source = fx.paired_folder(tmp_path / 'pairs', count=3)
  os.remove(os.path.join(source, 'B', '2.jpg'))
  config = fx.data_config(tmp_path / 'tfds', dataset='paired_folders', source=source,
                          on_bad_file=on_bad_file)
  if on_bad_file == 'error':
    with pytest.raises(DataError, match=r'A/2\.png: no file named 2\.\* in'):
      pix2pix_aligned.prepare(config)
  else:
    builder = pix2pix_aligned.prepare(config)
    assert builder.info.splits['train'].num_examples == 2
    assert builder.info.metadata['skipped'] == {'train': 1}


@pytest.mark.parametrize('on_bad_file', ['error', 'skip'])
def test_paired_images_of_different_sizes_are_bad_files(tmp_path, on_bad_file):
  """Pairs must be pixel-aligned: resizing one image to the other would hide a mismatch."""
  source = fx.paired_folder(tmp_path / 'pairs', count=3)
  fx.save(os.path.join(source, 'B', '1.jpg'), fx.texture(101, 48), quality=95)
  config = fx.data_config(tmp_path / 'tfds', dataset='paired_folders', source=source,
                          on_bad_file=on_bad_file)
  if on_bad_file == 'error':
    with pytest.raises(DataError, match=r'A/1\.png: A is 32x32 but its B image \S+B/1\.jpg '
                       r'is 48x48; paired images must have the same size'):
      pix2pix_aligned.prepare(config)
  else:
    builder = pix2pix_aligned.prepare(config)
    assert builder.info.splits['train'].num_examples == 2
    assert builder.info.metadata['skipped'] == {'train': 1}


def test_a_dataset_that_skipped_files_is_not_reused_by_an_error_run(tmp_path):
  source = fx.aligned_folder(tmp_path / 'mine', {'train': 3}, ext='jpg')
  _corrupt(os.path.join(source, 'train', '1.jpg'))
  skip = fx.data_config(tmp_path / 'tfds', dataset='aligned_folder', source=source,
                        on_bad_file='skip')
  builder = pix2pix_aligned.prepare(skip)
  assert builder.info.metadata['on_bad_file'] == 'skip'
  strict = fx.data_config(tmp_path / 'tfds', dataset='aligned_folder', source=source,
                          on_bad_file='error')
  with pytest.raises(DataError, match=r'prepared with on_bad_file=skip and left out 1 bad '
                     r'file\(s\) \(train: 1; first: \S+1\.jpg'):
    pix2pix_aligned.prepare(strict)
  assert pix2pix_aligned.prepare(skip).info.splits['train'].num_examples == 2  # still there
  # Nothing skipped: the same data under either policy, reused.
  clean = fx.aligned_folder(tmp_path / 'clean', {'train': 2}, ext='jpg')
  pix2pix_aligned.prepare(fx.data_config(tmp_path / 'tfds', dataset='aligned_folder',
                                         source=clean, on_bad_file='skip'))
  builder = pix2pix_aligned.prepare(fx.data_config(
      tmp_path / 'tfds', dataset='aligned_folder', source=clean, on_bad_file='error'))
  assert builder.info.splits['train'].num_examples == 2


@pytest.mark.parametrize('on_bad_file', ['error', 'skip'])
def test_empty_folder_is_an_error_under_both_policies(tmp_path, on_bad_file):
  (tmp_path / 'empty' / 'train').mkdir(parents=True)
  config = fx.data_config(tmp_path / 'tfds', dataset='aligned_folder',
                          source=str(tmp_path / 'empty'), on_bad_file=on_bad_file)
  with pytest.raises(DataError, match='no images'):
    pix2pix_aligned.prepare(config)


def test_a_split_of_only_bad_files_is_an_error_even_when_skipping(tmp_path):
  source = fx.aligned_folder(tmp_path / 'mine', {'train': 2, 'val': 1}, ext='jpg')
  _corrupt(os.path.join(source, 'val', '0.jpg'))
  config = fx.data_config(tmp_path / 'tfds', dataset='aligned_folder', source=source,
                          on_bad_file='skip')
  with pytest.raises(DataError, match="every file of split 'val' was bad"):
    pix2pix_aligned.prepare(config)
  assert not prepared_dirs(tmp_path / 'tfds')


def test_interrupted_preparation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
  root = fx.aligned_folder(tmp_path / 'src' / 'facades', {'train': 4, 'val': 1, 'test': 1})
  config = fx.data_config(tmp_path / 'tfds', dataset='facades', source=str(root))
  calls = []

  def dies_on_third_image(image):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt  # E.g. Ctrl-C half-way through a split.
    return real(image)

  real = sources.png_bytes
  monkeypatch.setattr(sources, 'png_bytes', dies_on_third_image)
  with pytest.raises(KeyboardInterrupt):
    pix2pix_aligned.prepare(config)
  assert not prepared_dirs(tmp_path / 'tfds')
  # What a hard kill (SIGKILL) leaves behind: a half-written temporary folder.
  stale = tmp_path / 'tfds' / 'pix2pix_aligned' / 'facades' / f'incomplete.ABC123_{pix2pix_aligned.Pix2PixAligned.VERSION}'
  stale.mkdir(parents=True)
  (stale / 'dataset_info.json').write_text('{}')
  monkeypatch.setattr(sources, 'png_bytes', real)
  assert not pix2pix_aligned.builder_for(config).is_prepared()
  builder = pix2pix_aligned.prepare(config)
  assert builder.info.splits['train'].num_examples == 4


def test_unknown_dataset_and_missing_source_are_explained(tmp_path):
  with pytest.raises(DataError, match='expected one of facades'):
    pix2pix_aligned.prepare(fx.data_config(tmp_path, dataset='facade'))
  with pytest.raises(DataError, match='needs config.data.source'):
    pix2pix_aligned.prepare(fx.data_config(tmp_path, dataset='aligned_folder'))
  with pytest.raises(DataError, match='does not exist'):
    pix2pix_aligned.prepare(fx.data_config(tmp_path, dataset='paired_folders',
                                           source=str(tmp_path / 'nope')))


def test_the_server_check_fails_fast_without_the_internet():
  with socket.socket() as listener:  # A loopback port that nobody listens on.
    listener.bind(('127.0.0.1', 0))
    port = listener.getsockname()[1]
  start = time.time()
  assert 'Error' in REAL_UNREACHABLE(f'http://127.0.0.1:{port}/facades.tar.gz', timeout=5)
  assert time.time() - start < 5


@pytest.mark.parametrize('name', ['demo', 'facades', 'cityscapes', 'maps', 'edges2shoes',
                                  'edges2handbags', 'night2day'])
def test_every_config_names_a_dataset_and_splits_it_has(name):
  config = config_schema.load_file(os.path.join(fx.REPO, 'configs', f'{name}.py'))
  splits = (sources.OFFICIAL[config.data.dataset].splits if config.data.dataset != 'blue_marble'
            else ('train', 'test'))
  assert config.data.train_split in splits and config.data.eval_split in splits
  assert config.optim.constant_epochs + config.optim.decay_epochs == config.num_epochs
  assert config.batch_size == (4 if name in ('demo', 'edges2shoes', 'edges2handbags',
                                             'night2day') else 1)
