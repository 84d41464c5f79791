"""The train split resized once (datasets/resized.py): the same batches, bit for bit, made
once per load size and channels, and a pipeline that still works where it cannot be kept."""

import glob
import os
import socket
import tempfile

import numpy as np
import pytest

import data_fixtures as fx
from p2p_jax import input_pipeline
from p2p_jax.datasets import resized


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp('data')
  return fx.aligned_folder(root / 'pairs', {'train': 5, 'test': 2}, size=40), root / 'tfds'


def config(folder, **overrides):
  source, data_dir = folder
  return fx.data_config(data_dir, dataset='aligned_folder', source=source,
                        **{'direction': 'BtoA', 'load_size': 36, 'crop_size': 32, **overrides})


def take(data_config, n=6, **kwargs):
  it = input_pipeline.numpy_batches(data_config, 'train', batch_size=2, train=True, seed=3,
                                    process_index=0, process_count=1, workers=0, **kwargs)
  with it:
    return [b for b, _ in zip(it, range(n))]


def copies(folder):
  return sorted(os.path.basename(p) for p in glob.glob(
      f'{folder[1]}/**/{resized.FOLDER}/*', recursive=True))


@pytest.mark.parametrize('in_channels', [3, 1])
def test_resized_once_gives_the_same_batches_bit_for_bit(folder, in_channels, capsys):
  on_the_fly = take(config(folder, resized_cache=0), in_channels=in_channels)
  kept = take(config(folder, resized_cache=1), in_channels=in_channels)
  assert 'resizing aligned_folder/train to 36x36 once (5 pairs' in capsys.readouterr().out
  for a, b in zip(on_the_fly, kept):
    for key in ('input', 'target'):
      np.testing.assert_array_equal(a[key], b[key])
    assert list(a['name']) == list(b['name'])
  again = take(config(folder, resized_cache=1), in_channels=in_channels)
  assert 'resizing' not in capsys.readouterr().out  # made once, then reused
  np.testing.assert_array_equal(again[-1]['input'], kept[-1]['input'])


def test_one_copy_per_load_size_method_and_channels(folder):
  # What a build killed on this host leaves (its pid is no process): removed by the next.
  builder = input_pipeline._builder(config(folder), 'train', 3, 3)  # pylint: disable=protected-access
  parent = os.path.join(builder.data_dir, resized.FOLDER)
  abandoned = os.path.join(parent, f'train_34_bicubic_c33.tmp-{socket.gethostname()}-'
                           f'{2**22 + 7}-x')
  os.makedirs(abandoned)
  take(config(folder, resized_cache=1), 1)
  take(config(folder, resized_cache=1, load_size=34), 1)
  take(config(folder, resized_cache=1, resize_method='nearest'), 1)
  take(config(folder, resized_cache=1), 1, out_channels=1)  # B is the input (BtoA)
  assert {'train_36_bicubic_c33', 'train_34_bicubic_c33', 'train_36_nearest_c33',
          'train_36_bicubic_c31'} <= set(copies(folder))
  assert not [c for c in copies(folder) if '.tmp-' in c]


def test_auto_keeps_none_without_workers_and_a_failed_write_falls_back(folder, monkeypatch,
                                                                       caplog):
  before = copies(folder)
  take(config(folder, load_size=38), 1)  # default -1 on a CPU: no workers, no copy
  assert copies(folder) == before

  def full_disk(*args, **kwargs):
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(tempfile, 'mkdtemp', full_disk)
  fallback = take(config(folder, load_size=38, resized_cache=1), 2)
  assert 'resizing them every epoch instead' in caplog.text
  reference = take(config(folder, load_size=38, resized_cache=0), 2)
  np.testing.assert_array_equal(fallback[1]['input'], reference[1]['input'])
  assert copies(folder) == before
