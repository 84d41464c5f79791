"""CycleGAN's data: unpaired folders and zips, pairs read unpaired, the epoch and the
evaluation passes, bad layouts; and evaluate / translate on an unpaired CycleGAN run."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from p2p_jax import config_schema, evaluate, input_pipeline, train
from p2p_jax.datasets import unpaired
from p2p_jax.datasets.catalog import DataError
from test_cyclegan_train import make_config

BLUE_MARBLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'p2p_jax', 'datasets', 'blue_marble')
COUNTS = {'trainA': 5, 'trainB': 3, 'testA': 2, 'testB': 3}


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
  """trainA/ trainB/ testA/ testB/ of 36 px day (A) and night (B) tiles, none paired; one
  B image grayscale (the reference reads it as RGB)."""
  root = tmp_path_factory.mktemp('unpaired') / 'day2night'
  tiles = sorted(os.listdir(os.path.join(BLUE_MARBLE, 'train')))
  k = 0
  for split, n in COUNTS.items():
    os.makedirs(root / split)
    for i in range(n):
      with Image.open(os.path.join(BLUE_MARBLE, 'train', tiles[k])) as im:
        half = im.crop((0, 0, 256, 256) if split.endswith('A') else (256, 0, 512, 256))
        half = half.resize((36, 36), Image.Resampling.BICUBIC)
        if split == 'trainB' and i == 0:
          half = half.convert('L')
        half.save(root / split / f'{split}_{i}.png')
      k += 1
  return str(root)


def data_config(source, tmp_path):
  config = make_config().data
  config.dataset, config.source = 'unpaired_folders', source
  config.direction = 'AtoB'
  config.data_dir, config.eval_split = str(tmp_path / 'tfds'), 'test'
  return config


def test_folders_prepare_one_split_per_domain(folders, tmp_path):
  builder = unpaired.prepare(data_config(folders, tmp_path))
  assert {s: builder.info.splits[s].num_examples for s in COUNTS} == COUNTS
  assert builder.info.metadata['gray_to_rgb'] == {'trainA': 0, 'trainB': 1, 'testA': 0,
                                                  'testB': 0}
  assert input_pipeline.num_examples(data_config(folders, tmp_path), 'train',
                                     data_kind='unpaired') == 5   # max(|A|, |B|)


def test_training_stream_draws_b_from_all_of_b_and_is_fixed_by_the_seed(folders, tmp_path):
  config = data_config(folders, tmp_path)

  def take(start, n=6):
    it = input_pipeline.numpy_batches(config, 'train', batch_size=1, train=True, seed=3,
                                      start_batch=start, data_kind='unpaired',
                                      process_index=0, process_count=1)
    out = [next(it) for _ in range(n)]
    it.close()
    return out

  first = take(0)
  assert all(b['input'].shape == (1, 32, 32, 3) and b['target'].shape == (1, 32, 32, 3)
             for b in first)
  # Resuming at batch 2 gives batches 2.. of the same stream, bit for bit.
  for a, b in zip(first[2:], take(2)):
    assert np.array_equal(a['input'], b['input']) and np.array_equal(a['target'], b['target'])
  # A: one epoch visits each of the 5 A images once.
  assert sorted(b['name'][0] for b in first[:5]) == sorted(
      f'trainA_{i}.png'.encode() for i in range(5))


def test_evaluation_reads_each_domain_once(folders, tmp_path):
  batches = list(input_pipeline.numpy_batches(
      data_config(folders, tmp_path), 'test', batch_size=2, train=False, seed=0,
      data_kind='unpaired', process_index=0, process_count=1))
  assert [sorted(k for k in b if k != 'name') for b in batches] == [
      ['input'], ['target'], ['target']]
  assert sum(len(b['name']) for b in batches) == COUNTS['testA'] + COUNTS['testB']


def test_a_domain_without_its_other_half_is_one_line(tmp_path):
  os.makedirs(tmp_path / 'src' / 'trainA')
  Image.new('RGB', (8, 8)).save(tmp_path / 'src' / 'trainA' / 'x.png')
  with pytest.raises(DataError, match=r'trainA: has no trainB/ beside it'):
    unpaired.prepare(data_config(str(tmp_path / 'src'), tmp_path))


def test_paired_data_read_unpaired_never_shows_a_pair(tmp_path):
  """Pair k of an aligned folder is A = B = gray level 10 k: the levels of a batch's input
  and target tell which pair each side came from."""
  os.makedirs(tmp_path / 'pairs' / 'train')
  for k in range(12):
    Image.new('RGB', (72, 36), (10 * k,) * 3).save(tmp_path / 'pairs' / 'train' / f'{k}.png')
  config = make_config()
  config.data.dataset, config.data.source = 'aligned_folder', str(tmp_path / 'pairs')
  config.data.data_dir, config.data.direction = str(tmp_path / 'tfds'), 'AtoB'
  with pytest.raises(ValueError, match='pairs_as_unpaired'):
    config_schema.validate(config)
  config.data.pairs_as_unpaired = True
  config_schema.validate(config)
  it = input_pipeline.numpy_batches(config.data, 'train', batch_size=12, train=True, seed=0,
                                    data_kind='unpaired', process_index=0, process_count=1)
  batch = next(it)
  it.close()
  level = lambda x: np.round((x.mean(axis=(1, 2, 3)) + 1) * 127.5 / 10).astype(int)
  a, b = level(batch['input']), level(batch['target'])
  assert sorted(a) == list(range(12))          # an epoch of A: each pair's A side once
  assert set(b) <= set(range(12)) and (a != b).sum() >= 8   # B drawn, not A's partner


def test_a_cyclegan_run_on_unpaired_folders_evaluates_and_translates(folders, tmp_path,
                                                                     capsys):
  config = make_config(num_train_steps=2)
  config.data = data_config(folders, tmp_path)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  assert '"val_cycle_l1"' in open(os.path.join(workdir, 'scalars.jsonl')).read()
  assert '"val_l1"' not in open(os.path.join(workdir, 'scalars.jsonl')).read()
  capsys.readouterr()
  for direction, n in (('AtoB', COUNTS['testA']), ('BtoA', COUNTS['testB'])):
    assert evaluate.main([f'--workdir={workdir}', f'--direction={direction}',
                          '--checkpoint=best']) == 0
    out = capsys.readouterr().out
    assert f'{n} images of test ({direction})' in out and 'cycle L1' in out
    assert 'PSNR' not in out   # unpaired: nothing to compare the translation with
