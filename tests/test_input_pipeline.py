"""The input pipeline: shapes, range, aligned jitter, determinism, direction, sharding."""

import os
import subprocess
import sys

import numpy as np
import pytest

import data_fixtures as fx
from p2p_jax import input_pipeline
from p2p_jax.input_pipeline import DataError

SMALL = dict(load_size=36, crop_size=32)  # Fixture halves are 32x32: fast, still jittered.


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  """An aligned folder whose B halves are 255 - A: after scaling, target == -input."""
  root = tmp_path_factory.mktemp('data')
  return fx.aligned_folder(root / 'pairs', {'train': 6, 'test': 5}), root / 'tfds'


def config(folder, **overrides):
  source, data_dir = folder
  return fx.data_config(data_dir, dataset='aligned_folder', source=source,
                        **{'direction': 'AtoB', **SMALL, **overrides})


def take(data_config, n, split='train', train=True, seed=0, batch_size=2, **kwargs):
  kwargs = {'process_index': 0, 'process_count': 1, **kwargs}
  batches = input_pipeline.numpy_batches(data_config, split, batch_size=batch_size, train=train,
                                         seed=seed, **kwargs)
  return [b for b, _ in zip(batches, range(n))]


def test_batches_have_the_promised_shapes_dtypes_and_range(folder):
  for train in (True, False):
    batch = take(config(folder), 1, split='train' if train else 'test', train=train)[0]
    assert batch['input'].shape == batch['target'].shape == (2, 32, 32, 3)
    assert batch['input'].dtype == batch['target'].dtype == np.float32
    assert -1.0 <= batch['input'].min() < batch['input'].max() <= 1.0
    assert batch['name'].shape == (2,) and batch['name'][0].endswith(b'.png')


@pytest.mark.parametrize('method', ['bicubic', 'nearest', 'bilinear', 'area'])
def test_jitter_is_identical_for_input_and_target(folder, method):
  batches = take(config(folder, resize_method=method), 12)
  for batch in batches:  # B = 255 - A survives only an identical crop and flip (up to the
    # 8-bit rounding of Pillow's two resize passes: two grey levels; a misaligned crop is
    # off by far more).
    np.testing.assert_allclose(batch['target'], -batch['input'], atol=2.01 / 127.5)
  # ...and there is jitter: the same image comes out differently across epochs.
  by_name = {}
  for batch in batches:
    for name, image in zip(batch['name'], batch['input']):
      by_name.setdefault(name, []).append(image)
  assert any(len(v) > 1 and not np.allclose(v[0], v[1]) for v in by_name.values())


def test_no_flip_and_no_crop_when_load_equals_crop_means_no_jitter(folder):
  data_config = config(folder, load_size=32, flip=False)
  train = {n: x for b in take(data_config, 6) for n, x in zip(b['name'], b['input'])}
  evaluation = {n: x for b in take(data_config, 3, train=False, split='train')
                for n, x in zip(b['name'], b['input'])}
  for name, image in train.items():
    np.testing.assert_allclose(image, evaluation[name], atol=1e-5)


def test_same_seed_same_batches_other_seed_other_batches(folder):
  first, again, other = (take(config(folder), 4, seed=s) for s in (7, 7, 8))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['input'], b['input'])
    np.testing.assert_array_equal(a['name'], b['name'])
  assert any(not np.array_equal(a['input'], b['input']) for a, b in zip(first, other))


def test_epochs_visit_every_example_once(folder):
  names = [n for b in take(config(folder), 6, batch_size=2) for n in b['name']]
  assert sorted(names[:6]) == sorted(names[6:]) == sorted(set(names))  # 6 train examples.
  assert names[:6] != names[6:]  # ...in a new order each epoch.


def test_evaluation_is_one_fixed_pass_that_keeps_the_remainder(folder):
  data_config = config(folder)
  passes = [take(data_config, 10, split='test', train=False) for _ in range(2)]
  assert [len(b['name']) for b in passes[0]] == [2, 2, 1]
  for a, b in zip(*passes):
    np.testing.assert_array_equal(a['input'], b['input'])
  assert input_pipeline.num_examples(data_config, 'test') == 5
  # Resizing 32 -> 32 changes nothing: evaluation shows the stored image itself.
  batch = passes[0][0]
  index = int(batch['name'][0].decode().split('.')[0])
  a = fx.texture(fx.zlib.crc32(f'test/{index}'.encode()))
  np.testing.assert_allclose(batch['input'][0], a / 127.5 - 1.0, atol=1e-5)


def test_direction_swaps_input_and_target(folder):
  a_to_b = take(config(folder, direction='AtoB'), 1, split='test', train=False)[0]
  b_to_a = take(config(folder, direction='BtoA'), 1, split='test', train=False)[0]
  np.testing.assert_array_equal(a_to_b['input'], b_to_a['target'])
  np.testing.assert_array_equal(a_to_b['target'], b_to_a['input'])


def test_processes_read_disjoint_shares(folder):
  shares = [[n for b in input_pipeline.numpy_batches(
      config(folder), 'test', batch_size=2, train=False, seed=0, process_index=i,
      process_count=2) for n in b['name']] for i in range(2)]
  assert sorted(len(s) for s in shares) == [2, 3]  # 5 examples: remainder kept.
  assert not set(shares[0]) & set(shares[1]) and len(set(shares[0] + shares[1])) == 5
  train_shares = [{n for b in take(config(folder), 3, batch_size=1, process_index=i,
                                   process_count=2) for n in b['name']} for i in range(2)]
  assert [len(s) for s in train_shares] == [3, 3] and not train_shares[0] & train_shares[1]


def test_channels_follow_the_model(folder, tmp_path):
  gray_in = take(config(folder), 1, in_channels=1)[0]
  assert gray_in['input'].shape[-1] == 1 and gray_in['target'].shape[-1] == 3
  pairs = fx.paired_folder(tmp_path / 'colorize', a_gray=True)
  data_config = fx.data_config(tmp_path / 'tfds', dataset='paired_folders', source=pairs,
                               direction='AtoB', **SMALL)
  batch = take(data_config, 1, in_channels=1, out_channels=3)[0]
  assert batch['input'].shape[-1] == 1 and batch['target'].shape[-1] == 3
  with pytest.raises(DataError, match='grayscale'):  # Gray A where 3 channels are wanted.
    take(data_config, 1, in_channels=3, out_channels=3)


def test_missing_split_lists_the_available_ones(folder):
  with pytest.raises(DataError, match="no split 'val'; it has test, train"):
    take(config(folder), 1, split='val', train=False)


def test_reading_batches_does_not_import_tensorflow(tmp_path):
  """Preparation and reading go through TFDS alone: TensorFlow (0.7 GB of the trainer's
  memory, seconds of its start, a second copy on a machine that has one) is never loaded."""
  code = ('import sys; import data_fixtures as fx; from p2p_jax import input_pipeline; '
          f'c = fx.data_config({str(tmp_path)!r}, dataset="blue_marble", load_size=36, '
          'crop_size=32, direction="AtoB"); '
          'b = next(input_pipeline.numpy_batches(c, "train", batch_size=2, train=True, '
          'seed=0, process_index=0, process_count=1)); '
          'e = next(input_pipeline.numpy_batches(c, "test", batch_size=2, train=False, '
          'seed=0, process_index=0, process_count=1)); '
          'assert b["input"].shape == e["input"].shape == (2, 32, 32, 3); '
          'assert "tensorflow" not in sys.modules, "tensorflow imported"')
  tests = os.path.dirname(os.path.abspath(__file__))
  subprocess.run([sys.executable, '-c', code], check=True, cwd=tests,
                 env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                     [tests, os.environ.get('PYTHONPATH', '')])))


def test_a_damaged_record_file_is_named_even_when_a_worker_reads_it(folder, tmp_path):
  import glob  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  source, data_dir = folder
  prepared = input_pipeline._builder(config(folder), 'train', 3, 3).data_dir  # pylint: disable=protected-access
  copy = tmp_path / 'tfds'
  shutil.copytree(data_dir, copy)
  path, = glob.glob(f'{prepared}/*-train.array_record-*'.replace(str(data_dir), str(copy)))
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:  # zeros over the records' middle
    f.seek(size // 4)
    f.write(b'\0' * (size // 2))
  damaged = config((source, copy), resized_cache=0)
  with pytest.raises(DataError, match=rf'^{path}: cannot read record \d+ of split .train.*'
                     r'the prepared dataset is damaged: delete .* to prepare it again'):
    take(damaged, 20, workers=1)


def test_resume_notice_names_an_older_or_changed_stream():
  from conftest import tiny_config  # pylint: disable=import-outside-toplevel
  current = input_pipeline.stream_descriptor(tiny_config(), 1)
  assert input_pipeline.resume_notice(dict(current), current) is None
  assert 'trained on data stream 1' in input_pipeline.resume_notice(None, current)
  changed = input_pipeline.resume_notice({**current, 'batch_size': 4}, current)
  assert f'batch_size 4 -> {current["batch_size"]}' in changed
