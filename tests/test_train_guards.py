"""What the trainer refuses or stops on: non-finite states and validations, a missing split,
a second trainer; and a workdir given relative to the current folder.

Tiny in-process runs with tests/test_train.py's helpers (the same compiled programs).
"""

import os
import re

import jax
import numpy as np
import pytest

from p2p_jax import train, workdirs
from p2p_jax.datasets.catalog import DataError
from test_train import (BATCH, SIZE, make_config, run, snapshot, steps_on_disk,  # noqa: F401
                        synthetic)


def never(step):
  raise AssertionError(f'trained step {step}')


def huge_batch(at, scale=1e20):
  """synthetic() with batch `at` scaled by `scale`: BatchNorm's running variances overflow
  to inf while the losses stay finite (normalisation by the batch's own statistics)."""
  base = synthetic()

  def batches(start):
    for i, batch in enumerate(base(start), start):
      yield dict(batch, input=batch['input'] * scale) if i == at else batch
  return batches


def test_a_nonfinite_state_with_finite_losses_is_never_saved(tmp_path):
  with pytest.raises(train.NonFiniteError,
                     match=r'training state at step 4 .*batch_stats/\S+/var'):
    run(make_config(), tmp_path, data=huge_batch(at=2))       # batch 2 = step 3
  assert steps_on_disk(tmp_path) == [2]                         # the newest finite one
  _, variables = workdirs.load_generator_variables(str(tmp_path))
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(variables))


def test_a_nonfinite_validation_stops_the_run_naming_the_step(tmp_path):
  def nan_eval_batches():
    return iter([{'input': np.full((BATCH, SIZE, SIZE, 3), np.nan, np.float32),
                  'target': np.zeros((BATCH, SIZE, SIZE, 3), np.float32)}])
  with pytest.raises(train.NonFiniteError, match=r'validation val_l1 nan.* at step 2'):
    run(make_config(), tmp_path, eval_batches=nan_eval_batches)
  assert steps_on_disk(tmp_path) == []


def test_a_missing_eval_split_is_found_before_the_first_step(tmp_path, blue_marble_data_dir):
  config = make_config()
  config.data.dataset, config.data.data_dir = 'blue_marble', blue_marble_data_dir
  config.data.eval_split = 'validation'
  with pytest.raises(DataError, match=r"no split 'validation'; it has test, train"):
    train.train_and_evaluate(config, str(tmp_path / 'new' / 'run'), devices=jax.devices()[:1],
                             step_hook=never)
  assert os.listdir(tmp_path) == []  # a first run that failed leaves no folder it made


def test_a_second_trainer_is_refused_before_it_touches_the_workdir(tmp_path):
  run(make_config(num_train_steps=2), tmp_path)
  before = snapshot(tmp_path)
  with workdirs.TrainerLock(tmp_path):          # another trainer holds the workdir
    with pytest.raises(workdirs.WorkdirLockedError,
                       match=rf'in use by another trainer: pid {os.getpid()} on host'):
      run(make_config(), tmp_path, step_hook=never)
  assert snapshot(tmp_path) == before
  assert steps_on_disk(tmp_path) == [2]


def test_a_relative_workdir_and_data_dir_from_another_folder(tmp_path, monkeypatch):
  """Orbax refuses relative paths in its background save thread: the run must resolve
  them first, and record absolute data paths for evaluate run from elsewhere."""
  (tmp_path / 'here').mkdir()
  monkeypatch.chdir(tmp_path / 'here')
  config = make_config()
  config.data.data_dir = '../tfds'
  run(config, '../runs/one')
  workdir = tmp_path / 'runs' / 'one'
  assert steps_on_disk(workdir) == [2, 4]
  saved = workdirs.load_config(str(workdir))
  assert saved.data.data_dir == str(tmp_path / 'tfds')
  assert config.data.data_dir == '../tfds'                      # the caller's is untouched
  monkeypatch.chdir(tmp_path / 'runs')
  generator = workdirs.load_generator('one', mode='eval', devices=jax.devices()[:1])
  assert generator.step == 4
  assert re.search(r'/runs/one/checkpoints/4$', generator.metadata['p2p_jax.checkpoint'])
