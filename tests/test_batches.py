"""The Grain batcher (p2p_jax/batches.py): paired and unpaired sampling, seeds, resume,
process shares, workers (same stream, errors, restarts) and the pix2pixHD batch dict.

Sources here are lists of dicts (what a source must provide: len, getitem, pickling).
Tests with worker processes spawn Python processes: a few seconds each, so few of them.
"""

import collections
import os
import signal

import numpy as np
import pytest

import data_fixtures as fx
from p2p_jax import batches, jitter
from p2p_jax.datasets.catalog import DataError


def worker_pids(parent: int) -> list[int]:
  """Live input-pipeline worker processes (spawned Python, not the resource tracker) whose
  parent is `parent`."""
  found = []
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
      with open(f'/proc/{entry}/cmdline', 'rb') as f:
        command = f.read()
    except OSError:
      continue
    if (int(fields[1]) == parent and fields[0] != 'Z' and b'spawn_main' in command
        and b'resource_tracker' not in command):
      found.append(int(entry))
  return sorted(found)


def indexed(n, prefix='r'):
  """A source of n records that say which they are."""
  return [{'i': i, 'name': f'{prefix}{i}'.encode()} for i in range(n)]


def which(records, rng):
  """A transform that shows the sampler's choices and the example's random draw."""
  return {'a': np.int64(records[0]['i']),
          'b': np.int64(records[1]['i'] if len(records) > 1 else -1),
          'draw': np.int64(rng.integers(1 << 40) if rng is not None else -1),
          'name': records[0]['name']}


class Broken(list):
  """A source whose record 3 is a bad file."""

  def __getitem__(self, index):
    if index == 3:
      raise DataError('/data/bad/3.png: cannot decode image (truncated)')
    return super().__getitem__(index)


def take(sources, n, sampling='paired', **kwargs):
  kwargs = {'batch_size': 2, 'train': True, 'seed': 0, **kwargs}
  with batches.batch_iterator(sources, which, sampling=sampling, **kwargs) as it:
    return [b for b, _ in zip(it, range(n))]


def column(bs, key):
  return [int(x) for b in bs for x in b[key]]


def test_default_workers_none_on_a_cpu_run_else_the_cores_but_one():
  cores = len(os.sched_getaffinity(0))
  assert batches.default_workers(accelerator=False) == 0
  assert batches.default_workers(accelerator=True) == min(cores - 1, batches.MAX_WORKERS)


def test_paired_epochs_visit_every_record_once_in_new_orders():
  got = column(take((indexed(6),), 9, batch_size=2), 'a')
  epochs = [got[i:i + 6] for i in range(0, 18, 6)]
  assert all(sorted(e) == list(range(6)) for e in epochs)
  assert len({tuple(e) for e in epochs}) == 3


def test_seed_fixes_the_stream_and_resuming_is_reading_from_the_step():
  source = (indexed(5),)
  first, again, other = (take(source, 8, seed=s) for s in (3, 3, 4))
  assert column(first, 'a') == column(again, 'a') and column(first, 'draw') == column(
      again, 'draw')
  assert column(first, 'a') != column(other, 'a')
  resumed = take(source, 3, seed=3, start_batch=5)
  for a, b in zip(first[5:], resumed):
    assert list(a['a']) == list(b['a']) and list(a['draw']) == list(b['draw'])
  assert len(set(column(first, 'draw'))) == 16  # every position its own draw


def test_process_shares_are_disjoint_contiguous_and_equal_in_training():
  shares = [set(column(take((indexed(7),), 3, batch_size=1, process_index=p,
                            process_count=2), 'a')) for p in range(2)]
  assert shares == [{0, 1, 2}, {3, 4, 5}]  # remainder (6) dropped in training
  evaluation = [column(take((indexed(7),), 9, train=False, process_index=p,
                            process_count=2), 'a') for p in range(2)]
  assert evaluation == [[0, 1, 2], [3, 4, 5, 6]]
  with pytest.raises(DataError, match='no examples for process 2 of 3'):
    take((indexed(2),), 1, process_index=2, process_count=3)


def test_unpaired_epoch_is_the_longer_source_with_b_drawn_at_random():
  a, b = indexed(3, 'a'), indexed(5, 'b')
  bs = take((a, b), 50, sampling='unpaired', batch_size=2)  # 100 positions, 20 epochs
  got_a, got_b = column(bs, 'a'), column(bs, 'b')
  for e in range(20):  # an epoch: max(3, 5) = 5 positions, A cycling over a permutation
    assert sorted(collections.Counter(got_a[5 * e:5 * e + 5]).values()) == [1, 2, 2]
  counts = collections.Counter(got_b)
  assert sorted(counts) == list(range(5)) and min(counts.values()) >= 10  # uniform-ish
  assert bs[0]['name'][0].startswith(b'a')
  # A longer than B: every A once per epoch, B still at random.
  long_a = column(take((indexed(6, 'a'), indexed(2, 'b')), 3, sampling='unpaired'), 'a')
  assert sorted(long_a) == list(range(6))
  # Evaluation: one pass of max(|A|, |B|), A and B in order, cycling.
  evaluation = take((a, b), 9, sampling='unpaired', train=False)
  assert column(evaluation, 'a') == [0, 1, 2, 0, 1] and column(evaluation, 'b') == [0, 1, 2,
                                                                                    3, 4]


def test_unpaired_blue_marble_halves_jitter_independently(blue_marble_data_dir):
  """The embedded paired tiles used unpaired: A = day halves, B = night halves."""
  from p2p_jax import input_pipeline  # pylint: disable=import-outside-toplevel
  config = fx.data_config(blue_marble_data_dir, dataset='blue_marble')
  builder = input_pipeline._builder(config, 'train', 3, 3)  # pylint: disable=protected-access
  from p2p_jax.datasets import records  # pylint: disable=import-outside-toplevel
  paired = records.TfdsRecords(builder.data_dir, 'train')
  halves = [Halves(paired, 'a'), Halves(paired, 'b')]
  transform = jitter.Unpaired(jitter.Geometry(36, 32, flip=True))
  runs = [list(zip(batches.batch_iterator(halves, transform, sampling='unpaired',
                                          batch_size=2, train=True, seed=s), range(2)))
          for s in (0, 0, 1)]
  (first, _), (again, _), (other, _) = runs[0][0], runs[1][0], runs[2][0]
  assert first['input'].shape == first['target'].shape == (2, 32, 32, 3)
  assert first['input'].dtype == np.float32 and -1 <= first['input'].min() < first[
      'input'].max() <= 1
  np.testing.assert_array_equal(first['input'], again['input'])
  np.testing.assert_array_equal(first['target'], again['target'])
  assert not np.array_equal(first['input'], other['input'])


class Halves:
  """One half ('a' or 'b') of a paired source, as the {'image', 'name'} records of one
  unpaired domain."""

  def __init__(self, paired, half):
    self.paired, self.half = paired, half

  def __len__(self):
    return len(self.paired)

  def __getitem__(self, index):
    record = self.paired[index]
    return {'image': record[self.half], 'name': record['name']}


def test_labelled_batches_carry_integer_maps_for_the_device():
  photo = fx.texture(9)
  source = [{'label': (photo[..., 0] // 40).astype(np.uint8), 'instance':
             np.full((32, 32), 26001 + i, np.int32), 'image': photo, 'name': f'{i}'.encode()}
            for i in range(3)]
  transform = jitter.Labelled(jitter.Geometry(36, 32, flip=True))
  batch = next(batches.batch_iterator((source,), transform, batch_size=2, train=True, seed=0))
  assert sorted(batch) == ['instance', 'label', 'name', 'target']
  assert batch['label'].dtype == np.uint8 and batch['label'].shape == (2, 32, 32)
  assert batch['instance'].dtype == np.int32 and batch['instance'].shape == (2, 32, 32)
  assert batch['target'].dtype == np.float32 and batch['target'].shape == (2, 32, 32, 3)
  assert batch['name'].dtype == object


def test_a_bad_record_is_the_same_error_in_this_process_and_in_a_worker():
  for workers in (0, 1):
    with pytest.raises(DataError) as error:
      take((Broken(indexed(6)),), 10, workers=workers, train=False)
    assert str(error.value) == '/data/bad/3.png: cannot decode image (truncated)', workers


def test_two_workers_deliver_the_stream_of_none():
  source = (indexed(9),)
  reference = take(source, 8, seed=5)
  got = take(source, 8, seed=5, workers=2)
  for a, b in zip(reference, got):
    assert list(a['a']) == list(b['a']) and list(a['draw']) == list(b['draw'])
  assert not worker_pids(os.getpid())  # closed: none left


def test_a_killed_worker_is_replaced_and_the_stream_goes_on():
  source = (indexed(9),)
  reference = take(source, 16, seed=5)
  with batches.batch_iterator(source, which, batch_size=2, train=True, seed=5,
                              workers=1) as it:
    got = [next(it) for _ in range(2)]
    worker, = worker_pids(os.getpid())
    os.kill(worker, signal.SIGKILL)   # from outside, as the OOM killer would
    got += [next(it) for _ in range(14)]  # beyond what the worker had prepared
    assert it._deaths == 1  # pylint: disable=protected-access
  for a, b in zip(reference, got):
    assert list(a['a']) == list(b['a']) and list(a['draw']) == list(b['draw'])
