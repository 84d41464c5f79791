"""Checkpointing: round trip, retention, resharding, incompatible and damaged checkpoints."""

import gc
import glob
import logging
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P, SingleDeviceSharding

from p2p_jax import checkpointing as C
from p2p_jax import config_schema, networks, workdirs
from p2p_jax import state as S


def make_state(seed=0, generator='unet_32', width=4, norm='batch'):
  """A real TrainState's structure (jax.eval_shape: nothing compiles) filled with random
  values, so every leaf (Adam mu/nu/count, step, key, BatchNorm stats) is distinct."""
  config = config_schema.get_config()
  config.model.generator, config.model.norm = generator, norm
  config.model.ngf = config.model.ndf = width
  g, d = networks.create_generator(config), networks.create_discriminator(config)
  tx_g, tx_d, _ = S.create_optimizers(config, 10)
  abstract = jax.eval_shape(
      lambda k: S.create_train_state(k, g, d, tx_g, tx_d, 64), jax.random.PRNGKey(0))
  rs = np.random.RandomState(seed)

  def fill(x):
    if np.issubdtype(x.dtype, np.floating):
      return jnp.asarray(rs.standard_normal(x.shape).astype(x.dtype))
    return jnp.asarray(rs.randint(1, 2**31 - 1, size=x.shape).astype(x.dtype))
  return jax.tree.map(fill, abstract)


@pytest.fixture(scope='module')
def state():
  return make_state()


@pytest.fixture(scope='module')
def other():
  """A second state of the same structure, with other values."""
  return make_state(seed=2)


def assert_same(restored, expected):
  """Same tree (type, paths) and bit-identical leaves of the same dtype."""
  assert jax.tree.structure(restored) == jax.tree.structure(expected)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(restored)[0],
                          jax.tree.leaves(expected)):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, jax.tree_util.keystr(path)
    assert a.tobytes() == b.tobytes(), jax.tree_util.keystr(path)


def host(tree):
  return jax.tree.map(np.array, tree)


@pytest.mark.parametrize('norm', ['batch', 'instance'])   # instance: empty batch_stats
def test_round_trip_restores_every_part_bit_exactly(tmp_path, norm):
  st = make_state(seed=1, norm=norm)
  with C.Checkpointer(tmp_path) as ckpt:
    assert ckpt.save(7, st, {'val_l1': 0.5})
  with C.Checkpointer(tmp_path) as ckpt:      # a new run resumes from the directory
    assert ckpt.latest_step() == 7
    restored = ckpt.restore(C.abstract_like(st))
    # Shapes alone (as jax.eval_shape gives them): placed on the first local device.
    bare = ckpt.restore(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), st))
  assert_same(bare, st)
  assert {x.sharding for x in jax.tree.leaves(bare)} == {SingleDeviceSharding(jax.devices()[0])}
  assert isinstance(restored, S.TrainState)
  assert_same(restored, st)
  adam = restored.g.opt_state[0]
  assert int(adam.count) == int(st.g.opt_state[0].count) != 0     # filled, not init zeros
  assert_same((adam.mu, adam.nu), (st.g.opt_state[0].mu, st.g.opt_state[0].nu))
  assert restored.rng.dtype == jnp.uint32 and restored.step.dtype == jnp.int32


def test_async_save_survives_deleting_the_state_right_after(tmp_path, state):
  """The trainer donates the state to the next step while the write is still running."""
  st = jax.tree.map(jnp.copy, state)
  expected = host(st)
  with C.Checkpointer(tmp_path, async_save=True) as ckpt:
    ckpt.save(1, st)
    jax.tree.map(lambda x: x.delete(), st)
    ckpt.wait()
    assert_same(ckpt.restore(C.abstract_like(state)), expected)


def test_the_data_stream_is_saved_beside_the_state(tmp_path, state):
  stream = {'version': 2, 'seed': 3, 'dataset': 'facades'}
  with C.Checkpointer(tmp_path) as ckpt:
    assert ckpt.save(1, state, data_stream=stream)
    assert ckpt.save(2, state)                  # as checkpoints of earlier versions
  with C.Checkpointer(tmp_path, read_only=True) as ckpt:
    assert ckpt.data_stream(1) == stream and ckpt.data_stream(2) is None
    assert_same(ckpt.restore(C.abstract_like(state), step=1), state)


def test_keeps_last_k_and_the_smallest_val_l1_across_runs(tmp_path, state):
  metrics = {1: 0.5, 2: 0.1, 3: None, 4: 0.3, 5: float('nan'), 6: 0.4}
  with C.Checkpointer(tmp_path, keep=2) as ckpt:       # first run
    for step in (1, 2):
      ckpt.save(step, state, {'val_l1': metrics[step]})
  with C.Checkpointer(tmp_path, keep=2) as ckpt:       # resumed run: step 2 must stay best
    assert ckpt.best_step() == 2
    for step in (3, 4, 5, 6):
      m = metrics[step]
      ckpt.save(step, state, None if m is None else {'val_l1': m})
    ckpt.wait()
    assert ckpt.all_steps() == [2, 5, 6]
    assert (ckpt.latest_step(), ckpt.best_step()) == (6, 2)
  assert sorted(int(p) for p in os.listdir(tmp_path) if p.isdigit()) == [2, 5, 6]
  with C.Checkpointer(tmp_path, read_only=True) as ckpt:
    assert ckpt.restore_generator('best')[0] == 2


def test_existing_step_is_never_overwritten(tmp_path, state, other, caplog):
  with C.Checkpointer(tmp_path) as ckpt:
    assert ckpt.save(3, state)
  with C.Checkpointer(tmp_path) as ckpt:
    with caplog.at_level(logging.WARNING):
      assert not ckpt.save(3, other)
    assert str(tmp_path / '3') in caplog.text
    assert ckpt.save(2, other)                 # an older, free step may still be written
    assert_same(ckpt.restore(C.abstract_like(state)), state)
    assert ckpt.all_steps() == [2, 3]


@pytest.mark.skipif(jax.device_count() < 8, reason='needs 8 (fake) devices')
def test_restore_onto_a_different_number_of_devices(tmp_path, state):
  devices = jax.devices()
  on8 = NamedSharding(Mesh(np.array(devices), ('batch',)), P())
  on2 = NamedSharding(Mesh(np.array(devices[2:4]), ('batch',)), P())
  one = SingleDeviceSharding(devices[5])
  with C.Checkpointer(tmp_path / 'a') as ckpt:       # 8 replicas -> 1 device and 2 devices
    ckpt.save(1, jax.device_put(state, on8))
    ckpt.wait()
    for sharding in (one, on2):
      restored = ckpt.restore(C.abstract_like(state, sharding))
      assert_same(restored, state)
      assert all(x.sharding == sharding for x in jax.tree.leaves(restored))
  with C.Checkpointer(tmp_path / 'b') as ckpt:       # 1 device -> 8 replicas
    ckpt.save(1, jax.device_put(state, one))
    ckpt.wait()
    restored = ckpt.restore(C.abstract_like(state, on8))
    assert_same(restored, state)
    assert all(x.sharding == on8 for x in jax.tree.leaves(restored))


def test_incompatible_checkpoint_lists_the_leaves_that_differ(tmp_path, state):
  with C.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state)
  with C.Checkpointer(tmp_path) as ckpt:
    with pytest.raises(C.CheckpointError) as wider:            # ngf 8 instead of 4
      ckpt.restore(jax.eval_shape(lambda: make_state(width=8)))
    with pytest.raises(C.CheckpointError) as deeper:           # other layer names
      ckpt.restore(jax.eval_shape(lambda: make_state(generator='unet_64')))
  message = str(wider.value)
  assert str(tmp_path / '1') in message
  assert 'g/params/enc1/kernel: (4, 4, 3, 4) float32 -> (4, 4, 3, 8) float32' in message
  differ = sum(a.shape != b.shape for a, b in zip(
      jax.tree.leaves(state), jax.tree.leaves(jax.eval_shape(lambda: make_state(width=8)))))
  assert f'shape or dtype differs (path: saved -> expected): {differ}\n' in message
  assert f'and {differ - 20} more' in message and len(message.splitlines()) < 30
  assert isinstance(wider.value, ValueError)
  assert 'expected but missing from the checkpoint' in str(deeper.value)
  assert 'g/params/enc6/kernel' in str(deeper.value)


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


DAMAGE = {
    # a crash while files were being flushed: every file cut in half
    'truncated_files': lambda d: [_truncate(p) for p in glob.glob(f'{d}/**', recursive=True)
                                  if os.path.isfile(p)],
    # only the array data cut: looks complete until it is read
    'truncated_data': lambda d: [_truncate(p) for p in glob.glob(f'{d}/state/ocdbt.process_*/d/*')],
    'missing_metadata': lambda d: os.remove(f'{d}/_CHECKPOINT_METADATA'),
    'empty_array_metadata': lambda d: open(f'{d}/state/_METADATA', 'w').close(),
}


def _files(folder):
  """{relative path: bytes} of every file under folder."""
  out = {}
  for path in glob.glob(f'{folder}/**', recursive=True):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        out[os.path.relpath(path, folder)] = f.read()
  return out


@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_damaged_newest_checkpoint_is_skipped_then_moved_aside_and_saved_again(
    tmp_path, state, other, damage, caplog):
  with C.Checkpointer(tmp_path) as ckpt:
    ckpt.save(10, state, {'val_l1': 0.2})
    ckpt.save(20, other, {'val_l1': 0.1})
  DAMAGE[damage](tmp_path / '20')
  damaged_files = _files(tmp_path / '20')
  os.makedirs(tmp_path / '30.orbax-checkpoint-tmp-1234567' / 'state')   # an interrupted save

  # Read-only users (evaluate, translate, export) skip it and change nothing.
  listing = sorted(os.listdir(tmp_path))
  with caplog.at_level(logging.WARNING):
    with C.Checkpointer(tmp_path, read_only=True) as ckpt:
      with pytest.raises(C.CheckpointError, match='20'):
        ckpt.restore(C.abstract_like(state), step=20)
      step, variables = ckpt.restore_generator()
      # Reading G alone may succeed when only D's or the optimiser's bytes were cut.
      expected = {10: state, 20: other}[step].g
      assert_same(variables, {'params': expected.params, 'batch_stats': expected.batch_stats})
  # Skipped steps are named. (Which arrays a cut data file holds varies from save to save:
  # Orbax writes them from several threads, so G may be whole in step 20 and read from it.)
  assert step == 20 or str(tmp_path / '20') in caplog.text
  assert '30.orbax-checkpoint-tmp-1234567' in caplog.text
  assert sorted(os.listdir(tmp_path)) == listing
  caplog.clear()

  # A trainer falls back to step 10, moves step 20 aside (nothing deleted) and removes the
  # unfinished save, so that the retrained step 20 is saved again.
  with caplog.at_level(logging.WARNING):
    with C.Checkpointer(tmp_path) as ckpt:
      assert_same(ckpt.restore(C.abstract_like(state)), state)
      assert ckpt.latest_step() == 10
      assert ckpt.save(20, other, {'val_l1': 0.1})
  aside = [p for p in os.listdir(tmp_path) if p.startswith('20.damaged-')]
  assert len(aside) == 1 and aside[0] in caplog.text
  assert _files(tmp_path / aside[0]) == damaged_files
  assert sorted(p for p in os.listdir(tmp_path) if p != aside[0]) == ['10', '20']
  assert 'Removing' in caplog.text and '30.orbax-checkpoint-tmp-1234567' in caplog.text
  assert 'Not saving' not in caplog.text
  with C.Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() == 20
    assert_same(ckpt.restore(C.abstract_like(state)), other)


def test_missing_ocdbt_manifest_is_found_without_reading_the_arrays(tmp_path, state, caplog):
  """Reading a step without its manifest.ocdbt leaves TensorStore reads behind for an event
  loop Orbax has closed, which print "Event loop is closed" tracebacks later; the cheap
  check finds such a step before any array is read."""
  with C.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state)
    ckpt.save(2, state)
  os.remove(tmp_path / '2' / 'state' / 'manifest.ocdbt')
  gc.collect()   # the reads earlier tests left behind report now, not inside this test
  with caplog.at_level(logging.DEBUG):
    with C.Checkpointer(tmp_path, read_only=True) as ckpt:
      assert ckpt.all_steps() == [1]
      assert ckpt.restore_generator()[0] == 1
  assert 'state/manifest.ocdbt is missing' in caplog.text
  assert 'NOT_FOUND' not in caplog.text           # no array of step 2 was opened
  assert not [r for r in caplog.records if r.name == 'asyncio' and r.levelno >= logging.WARNING
              and str(tmp_path) in r.getMessage()]


def test_a_relative_directory_saves_and_restores(tmp_path, state, monkeypatch):
  """Orbax refuses relative paths (in the background thread of its first save)."""
  monkeypatch.chdir(tmp_path)
  with C.Checkpointer('ckpt') as ckpt:
    assert ckpt.directory == tmp_path / 'ckpt'
    ckpt.save(1, state)
  monkeypatch.chdir(tmp_path / 'ckpt')
  with C.Checkpointer('.', read_only=True) as ckpt:
    assert ckpt.restore_generator()[0] == 1


def test_restore_without_checkpoint_is_a_clear_error(tmp_path, state):
  with C.Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() is None and ckpt.best_step() is None
    with pytest.raises(C.CheckpointError, match=str(tmp_path)):
      ckpt.restore(C.abstract_like(state))


def test_restore_generator_reads_only_the_generator(tmp_path, state, other):
  workdir = tmp_path / 'workdir'
  with C.Checkpointer(workdirs.checkpoint_dir(str(workdir))) as ckpt:
    ckpt.save(1, state, {'val_l1': 0.1})
    ckpt.save(2, other, {'val_l1': 0.3})
  for which, step in (('latest', 2), ('best', 1), (1, 1)):
    got_step, variables = workdirs.load_generator_variables(str(workdir), which)
    assert got_step == step
    expected = state if step == 1 else other
    assert_same(variables, {'params': expected.g.params, 'batch_stats': expected.g.batch_stats})
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(variables))
  with pytest.raises(C.CheckpointError, match='step 5'):
    with C.Checkpointer(workdirs.checkpoint_dir(str(workdir)), read_only=True) as ckpt:
      ckpt.restore_generator(5)
  # Read-only: a missing or empty folder is an error, and nothing is created.
  with pytest.raises(C.CheckpointError, match=str(tmp_path / 'nowhere')):
    C.Checkpointer(tmp_path / 'nowhere', read_only=True)
  assert not (tmp_path / 'nowhere').exists()
  (tmp_path / 'empty').mkdir()
  with pytest.raises(C.CheckpointError, match='no checkpoint'):
    with C.Checkpointer(tmp_path / 'empty', read_only=True) as ckpt:
      ckpt.restore_generator()
  assert not os.listdir(tmp_path / 'empty')


def test_after_a_failed_read_only_its_orphaned_reads_are_silenced(monkeypatch, caplog):
  """The reads of a damaged step that Orbax gave up on finish later, after Orbax closed its
  event loop: "Event loop is closed" (unraisable) and "Future exception was never
  retrieved" (asyncio's log). Those two are dropped; everything else still shows."""
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', seen.append)
  C.checkpoint_files.quiet_failed_reads()
  C.checkpoint_files.quiet_failed_reads()                 # idempotent: one wrapper
  unraisable = lambda e: types.SimpleNamespace(exc_value=e, exc_type=type(e))
  sys.unraisablehook(unraisable(RuntimeError('Event loop is closed')))
  sys.unraisablehook(unraisable(RuntimeError('something else')))
  assert [str(u.exc_value) for u in seen] == ['something else']
  # The writes of a failed save, closed as Python exits (ImportError: sys.meta_path is None).
  coroutine = lambda f: types.SimpleNamespace(cr_code=types.SimpleNamespace(co_filename=f))
  for where in ('/venv/orbax/checkpoint/_src/serialization/serialization.py', '/my/code.py'):
    sys.unraisablehook(types.SimpleNamespace(exc_value=ImportError('sys.meta_path is None'),
                                             exc_type=ImportError, object=coroutine(where)))
  assert [str(u.exc_value) for u in seen] == ['something else', 'sys.meta_path is None']
  with caplog.at_level(logging.ERROR, logger='asyncio'):
    logging.getLogger('asyncio').error(
        'Future exception was never retrieved\nfuture: <Future finished exception='
        "ValueError('NOT_FOUND: ... [tensorstore_spec=...]')>")
    logging.getLogger('asyncio').error(
        "Task exception was never retrieved\nfuture: <Task finished coro=<async_deserialize() "
        "defined at .../orbax/checkpoint/_src/serialization/serialization.py:394> exception="
        "Exception('Encountered error while reading array index. See full TensorStore "
        "details')>")
    logging.getLogger('asyncio').error('Task exception was never retrieved: other')
  assert 'tensorstore' not in caplog.text.lower() and 'other' in caplog.text
  # A TensorStore future's error may name only the step's folder (seen in CI).
  out_of_range = ('Future exception was never retrieved\nfuture: <Future finished exception='
                  'ValueError(\'OUT_OF_RANGE: Error reading "g.params.dec3.kernel/0.0.0.0" in '
                  'OCDBT database at local file "%s/state/": Requested byte range [0, 8) is not '
                  'valid for value of size 4\')>')
  C.checkpoint_files.quiet_failed_reads('/ckpt/20')
  caplog.clear()
  with caplog.at_level(logging.ERROR, logger='asyncio'):
    logging.getLogger('asyncio').error(out_of_range, '/ckpt/20')
    logging.getLogger('asyncio').error(out_of_range, '/ckpt/10')
  assert '/ckpt/20' not in caplog.text and '/ckpt/10/state' in caplog.text
