"""The trainer end to end: what a run writes, exact resume, other devices, NaN, bad workdirs.

Every run here is the tiny model (tests/conftest.py) at batch 8 for a few steps, fed by a
synthetic stream whose batch i depends only on (seed, i), as the real pipeline's does.
Compilation dominates: each train_and_evaluate builds new jitted closures, so JAX's
in-memory cache misses, but their programs are the same, so the session's persistent
compilation cache (tests/conftest.py) turns every compile after the first into a load: keep
the model, batch, seed and devices of these runs the same.
"""

import glob
import hashlib
import json
import logging
import os
import re
import shutil
import signal

import jax
import numpy as np
import pytest

from conftest import tiny_config
from p2p_jax import checkpointing, train, workdirs

BATCH = 8
SIZE = 32
ONE_DEVICE = jax.devices()[:1]


def make_config(mapping='pmap', **top):
  """Tiny model, batch 8, 4 steps; logs, validates, samples and saves every 2 steps."""
  config = tiny_config()
  config.batch_size = BATCH
  config.num_train_steps = 4
  config.optim.schedule = 'constant'
  config.log_every_steps = config.sample_every_steps = config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.keep_checkpoints = 2
  config.num_eval_examples = BATCH
  config.compute.mapping = mapping
  for key, value in top.items():
    config[key] = value
  return config


def synthetic(seed=0, nan_batch=None):
  """train_batches(start): batch i is a function of (seed, i) only; NaN inputs at nan_batch."""
  def batches(start):
    i = start
    while True:
      rng = np.random.default_rng([seed, i])
      x = rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
      y = np.tanh(2 * x[..., ::-1])     # something learnable
      if i == nan_batch:
        x[:] = np.nan
      yield {'input': x, 'target': y}
      i += 1
  return batches


def eval_batches():
  return iter([next(synthetic(seed=1000)(0))])


def run(config, workdir, *, data=None, devices=ONE_DEVICE, **kwargs):
  kwargs.setdefault('eval_batches', eval_batches)
  return train.train_and_evaluate(config, str(workdir), train_batches=data or synthetic(),
                                  num_train_examples=64, devices=devices, **kwargs)


def host(tree):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def assert_bit_equal(a, b):
  a, b = host(a), host(b)
  assert len(a) == len(b)
  differ = [i for i, (x, y) in enumerate(zip(a, b)) if not np.array_equal(x, y)]
  assert not differ, f'{len(differ)} of {len(a)} leaves differ, e.g. leaf {differ[0]}'


def steps_on_disk(workdir):
  folder = os.path.join(workdir, 'checkpoints')  # a run that saved nothing removes it
  return sorted(int(p) for p in os.listdir(folder) if p.isdigit()) if os.path.isdir(
      folder) else []


def snapshot(workdir):
  """{relative path: (sha1 of the bytes, mtime)} of every file under workdir but the lock
  (which a trainer takes, and empties when it leaves, whatever happens)."""
  out = {}
  for path in glob.glob(f'{workdir}/**', recursive=True):
    if os.path.isfile(path) and os.path.basename(path) != workdirs.LOCK_FILE:
      with open(path, 'rb') as f:
        out[os.path.relpath(path, workdir)] = (hashlib.sha1(f.read()).hexdigest(),
                                               os.stat(path).st_mtime_ns)
  return out


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted 4-step run: (workdir, final state)."""
  workdir = tmp_path_factory.mktemp('reference')
  state = run(make_config(), workdir)
  return str(workdir), state


# ---------------------------------------------------------------------------- outputs

def test_real_data_run_writes_checkpoints_samples_events_and_config(tmp_path, capsys,
                                                                   blue_marble_data_dir):
  config = make_config(num_train_steps=6)
  config.data.dataset = 'blue_marble'           # embedded in the package: prepares offline
  config.data.data_dir = blue_marble_data_dir
  config.data.eval_split = 'test'
  workdir = tmp_path / 'run'
  state = train.train_and_evaluate(config, str(workdir), devices=ONE_DEVICE)
  out = capsys.readouterr().out

  assert int(state.step) == 6
  assert re.search(r'step 6/6 100% .* img/s ETA', out), out
  scores = {int(s): float(v) for s, v in re.findall(r'validation at step (\d+): val_l1 ([\d.]+)',
                                                     out)}
  assert sorted(scores) == [2, 4, 6]
  best = min(scores, key=scores.get)
  assert steps_on_disk(workdir) == sorted({4, 6, best})        # newest 2 + the best
  assert sorted(os.listdir(workdir / 'samples')) == [
      f'step_{s:07d}.png' for s in (2, 4, 6)]
  assert glob.glob(f'{workdir}/tensorboard/events.out.tfevents.*')
  assert workdirs.load_config(str(workdir)).to_dict() == config.to_dict()


# ---------------------------------------------------------------------------- resume

def test_sigterm_then_ctrl_c_then_resume_matches_an_uninterrupted_run(tmp_path, reference,
                                                                       capsys):
  def send(signum, at_step):
    def hook(step):
      if step == at_step:
        os.kill(os.getpid(), signum)
    return hook

  previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
  config = make_config()
  state = run(config, tmp_path, step_hook=send(signal.SIGTERM, 1))
  assert int(state.step) == 1 and steps_on_disk(tmp_path) == [1]
  assert 'stopped by SIGTERM at step 1' in capsys.readouterr().out
  assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == previous

  state = run(config, tmp_path, step_hook=send(signal.SIGINT, 3))
  assert int(state.step) == 3 and steps_on_disk(tmp_path)[-1] == 3
  assert 'stopped by SIGINT at step 3' in capsys.readouterr().out

  state = run(config, tmp_path)
  assert int(state.step) == 4
  assert_bit_equal(state, reference[1])    # dropout on: the key and data stream resumed too


def test_a_workdir_written_before_methods_existed_resumes_bit_exactly(tmp_path, reference):
  """tests/data/pix2pix_workdir_v0 holds steps 0-2 of `reference`'s run as p2p_jax wrote
  them before config.method and p2p_jax/methods (commit 21427d8): a config.json without
  `method`, the TrainState of then. The refactored trainer resumes it to the same bits."""
  workdir = tmp_path / 'old'
  shutil.copytree(os.path.join(os.path.dirname(__file__), 'data', 'pix2pix_workdir_v0'),
                  workdir)
  assert steps_on_disk(workdir) == [2]
  with open(workdir / workdirs.CONFIG_FILE) as f:
    assert 'method' not in json.load(f)      # written before the field existed
  state = run(make_config(), workdir)
  assert int(state.step) == 4
  assert_bit_equal(state, reference[1])


def test_second_ctrl_c_stops_at_once_without_saving(tmp_path):
  def hook(step):
    if step == 1:
      os.kill(os.getpid(), signal.SIGINT)   # first: stop after this step, saving
      os.kill(os.getpid(), signal.SIGINT)   # second: the user insists

  previous = signal.getsignal(signal.SIGINT)
  with pytest.raises(KeyboardInterrupt):
    run(make_config(), tmp_path, step_hook=hook)
  assert steps_on_disk(tmp_path) == []
  assert signal.getsignal(signal.SIGINT) == previous


def test_truncated_newest_checkpoint_is_skipped_and_the_run_still_exact(tmp_path, reference,
                                                                        caplog):
  intact, damaged = tmp_path / 'intact', tmp_path / 'damaged'
  shutil.copytree(reference[0], intact)
  shutil.copytree(reference[0], damaged)
  assert steps_on_disk(damaged) == [2, 4]
  for path in glob.glob(f'{damaged}/checkpoints/4/state/ocdbt.process_*/d/*'):
    with open(path, 'r+b') as f:     # a crash mid-write: the array data cut in half
      f.truncate(os.path.getsize(path) // 2)
  config = make_config(num_train_steps=6)
  with caplog.at_level(logging.WARNING):
    from_2 = run(config, damaged)
  assert f'{damaged}/checkpoints/4' in caplog.text
  # Kept for a human to look at, out of the way: the retrained step 4 replaced it.
  assert len(glob.glob(f'{damaged}/checkpoints/4.damaged-*/state')) == 1
  assert 'Not saving step 4' not in caplog.text
  from_4 = run(config, intact)
  assert int(from_2.step) == int(from_4.step) == 6
  assert_bit_equal(from_2, from_4)
  assert steps_on_disk(damaged) == steps_on_disk(intact)
  assert_bit_equal(workdirs.load_generator_variables(str(damaged), 4)[1],
                   workdirs.load_generator_variables(str(intact), 4)[1])


@pytest.mark.skipif(jax.device_count() < 8, reason='needs 8 (fake) devices')
def test_resume_on_another_device_count_and_parallel_mode(tmp_path, capsys):
  config = make_config(num_train_steps=2, mapping='shard_map')
  run(config, tmp_path, devices=jax.devices())                          # 8 devices
  state = run(make_config(mapping='pmap'), tmp_path, devices=ONE_DEVICE)  # 1 device
  assert int(state.step) == 4
  state = run(make_config(num_train_steps=6, mapping='shard_map'), tmp_path,
              devices=jax.devices())                                    # 8 again
  assert int(state.step) == 6
  assert all(np.isfinite(x).all() for x in host(state))
  out = capsys.readouterr().out
  assert 'on 8 cpu device(s); steps 0 -> 2' in out
  assert 'on 1 cpu device(s); steps 2 -> 4' in out
  assert 'on 8 cpu device(s); steps 4 -> 6' in out
  assert steps_on_disk(tmp_path)[-2:] == [4, 6]


# ---------------------------------------------------------------------------- failures

def test_nan_loss_stops_the_run_and_keeps_the_checkpoint_before_it(tmp_path, reference):
  with pytest.raises(train.NonFiniteLossError, match=r'at step 3\b'):
    run(make_config(), tmp_path, data=synthetic(nan_batch=2))       # batch 2 = step 3
  assert steps_on_disk(tmp_path) == [2]
  assert not glob.glob(f'{tmp_path}/samples/step_0000004.png')
  step, saved = workdirs.load_generator_variables(str(tmp_path))
  _, expected = workdirs.load_generator_variables(reference[0], 2)
  assert step == 2
  assert_bit_equal(saved, expected)


def test_other_architecture_is_refused_and_the_workdir_left_untouched(tmp_path, reference):
  workdir = tmp_path / 'run'
  shutil.copytree(reference[0], workdir)
  before = snapshot(workdir)
  wider = make_config()
  wider.model.ngf = 8
  with pytest.raises(checkpointing.CheckpointError, match=r"model\.ngf: 4 in the workdir, 8"):
    run(wider, workdir)
  assert snapshot(workdir) == before

  # Without config.json the checkpoint's shapes catch it, and config.json is not written.
  os.remove(workdir / workdirs.CONFIG_FILE)
  before = snapshot(workdir)
  with pytest.raises(checkpointing.CheckpointError, match=r'g/params/\S+: \(4, 4, 3, 4\)'):
    run(wider, workdir)
  assert snapshot(workdir) == before


def test_unwritable_workdir_fails_before_training(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  workdir = blocker / 'run'        # root ignores permission bits, not this

  def hook(step):
    raise AssertionError(f'trained to step {step}')
  with pytest.raises(checkpointing.CheckpointError, match=re.escape(str(workdir))):
    run(make_config(), workdir, step_hook=hook)


def test_implementation_choices_may_change_on_resume_architecture_may_not(tmp_path):
  """The compute block changes how the same parameters are computed, not the parameters."""
  saved = tiny_config()
  workdirs.save_config(saved, str(tmp_path))
  resumed = tiny_config()
  resumed.compute.conv_impl, resumed.compute.dtype = 'xla', 'bfloat16'
  resumed.compute.mapping = 'shard_map'
  workdirs.check_same_model(resumed, str(tmp_path))  # accepted
  resumed.model.ngf = 8
  with pytest.raises(checkpointing.CheckpointError, match='model.ngf: 4 in the workdir, 8 now'):
    workdirs.check_same_model(resumed, str(tmp_path))
