"""The two inference modes, and loading a trained generator from a workdir."""

import functools

import jax
import numpy as np
import pytest

from conftest import tiny_config
from p2p_jax import checkpointing, inference, networks, state as state_lib, workdirs


def _fill(path, leaf, rng):
  """A plausible value for one variable, from numpy (compiling JAX's RNG is slow on CPU)."""
  name = str(path[-1])
  if 'scale' in name or 'var' in name:  # BatchNorm scale / running variance
    return rng.uniform(0.7, 1.3, leaf.shape).astype(leaf.dtype)
  if 'count' in name or leaf.dtype.kind in 'iu':
    return np.zeros(leaf.shape, leaf.dtype)
  return rng.normal(0.0, 0.2, leaf.shape).astype(leaf.dtype)


def fake_variables(config, size, seed=0):
  """Generator variables with random weights and non-trivial running averages."""
  g = networks.create_generator(config)
  x = jax.ShapeDtypeStruct((1, size, size, config.model.in_channels), np.float32)
  shapes = jax.eval_shape(lambda x: g.init({'params': jax.random.PRNGKey(0)}, x, train=False), x)
  rng = np.random.default_rng(seed)
  v = jax.tree_util.tree_map_with_path(lambda p, l: _fill(p, l, rng), shapes)
  return {'params': v['params'], 'batch_stats': v.get('batch_stats', {})}


def fake_state(config, size, step=0, seed=0):
  """A TrainState of numpy arrays shaped as `create_train_state` makes it."""
  g, d = networks.create_generator(config), networks.create_discriminator(config)
  tx_g, tx_d, _ = state_lib.create_optimizers(config, 10)
  shapes = jax.eval_shape(lambda: state_lib.create_train_state(
      jax.random.PRNGKey(0), g, d, tx_g, tx_d, size))
  rng = np.random.default_rng(seed)
  state = jax.tree_util.tree_map_with_path(lambda p, l: _fill(p, l, rng), shapes)
  return state.replace(step=np.asarray(step, np.int32))


def make_workdir(path, config, size, steps=(7,)):
  """WORKDIR with config.json and one checkpoint per step; returns (workdir, last state)."""
  path.mkdir(parents=True, exist_ok=True)
  workdirs.save_config(config, str(path))
  ckpt = checkpointing.Checkpointer(workdirs.checkpoint_dir(str(path)))
  for step in steps:
    state = fake_state(config, size, step, seed=step)
    ckpt.save(step, state)
  ckpt.wait()
  ckpt.close()
  return str(path), state


def _images(n, size, channels=3, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, channels)).astype(
      np.float32)


@functools.lru_cache(maxsize=None)
def unet64():
  """(config, variables, paper generator, eval generator), shared by the test files so
  their compiled programs are too. unet_64 has one dropout layer (unet_32 has none)."""
  config = tiny_config('unet_64', width=2)
  variables = fake_variables(config, 64)
  make = lambda mode: inference.TrainedGenerator(config, variables, mode,
                                                 devices=jax.devices()[:2])
  return config, variables, make('paper'), make('eval')


def test_paper_mode_differs_between_keys_eval_mode_does_not():
  _, _, paper, evalm = unet64()
  x = _images(2, 64)
  p0, p1, p0_again = (paper.apply(x, seed=s) for s in (0, 1, 0))
  assert np.abs(p0 - p1).max() > 1e-2          # dropout differs with the key
  np.testing.assert_array_equal(p0, p0_again)  # and is fixed by it
  e0, e1 = evalm.apply(x, seed=0), evalm.apply(x, seed=1)
  np.testing.assert_array_equal(e0, e1)
  assert np.abs(p0 - e0).max() > 1e-2          # running averages != test statistics
  assert paper.metadata['p2p_jax.mode'] == 'paper'
  assert evalm.metadata['p2p_jax.mode'] == 'eval'
  # Per-image keys and statistics: an image's output does not depend on the rest of its
  # batch nor on its position there (same shapes as above: nothing new to compile).
  other = np.stack([_images(1, 64, seed=9)[0], x[1]])
  np.testing.assert_allclose(paper.apply(other, seed=1, indices=[5, 1])[1], p1[1], atol=1e-5)


def test_paper_mode_is_batchnorm_with_test_statistics():
  config = tiny_config('unet_32', width=2)  # no dropout: only the statistics matter
  variables = fake_variables(config, 32)
  g = networks.create_generator(config)
  x = _images(4, 32)
  train_apply = jax.jit(
      lambda xs: g.apply(variables, xs, train=True, mutable=['batch_stats'])[0])
  devices = jax.devices()[:2]

  # 'image': each image normalised on its own, as a test batch of one.
  per_image = inference.TrainedGenerator(config, variables, 'paper', devices=devices)
  expected = np.concatenate([train_apply(x[j:j + 1]) for j in range(4)])
  np.testing.assert_allclose(per_image.apply(x), expected, atol=1e-5)
  # 'batch': statistics of the whole batch, also when it is split over 2 devices
  # (config.model.sync_batch_stats averages them across devices).
  whole = inference.TrainedGenerator(config, variables, 'paper', bn_scope='batch',
                                     devices=devices)
  np.testing.assert_allclose(whole.apply(x), train_apply(x), atol=1e-5)
  assert np.abs(expected - train_apply(x)).max() > 1e-3


def test_load_generator_from_a_workdir(tmp_path):
  config = tiny_config('unet_32', width=2)
  workdir = tmp_path / 'run'
  workdir.mkdir()
  workdirs.save_config(config, str(workdir))
  # A workdir without checkpoints: an error naming the folder.
  with pytest.raises(checkpointing.CheckpointError, match=str(workdir)):
    workdirs.load_generator(str(workdir))
  with pytest.raises(FileNotFoundError, match='nope'):
    workdirs.load_generator(str(tmp_path / 'nope'))

  _, state = make_workdir(workdir, config, 32)
  loaded = workdirs.load_generator(str(workdir), 'latest', mode='eval',
                                   devices=jax.devices()[:1])
  direct = inference.TrainedGenerator.from_state(config, state, mode='eval',
                                                 devices=jax.devices()[:1])
  assert loaded.step == 7 and loaded.metadata['p2p_jax.checkpoint_step'] == '7'
  x = _images(1, 32)
  np.testing.assert_allclose(loaded.apply(x), direct.apply(x), atol=1e-6)
  # No mode given: the workdir config's inference_mode (default: the paper's).
  assert workdirs.load_generator(str(workdir)).mode == 'paper'


def test_bad_arguments_are_named():
  config = tiny_config('unet_32', width=2)
  variables = fake_variables(config, 32)
  with pytest.raises(ValueError, match="'paper' or 'eval'"):
    inference.TrainedGenerator(config, variables, 'test')
  generator = inference.TrainedGenerator(config, variables, devices=jax.devices()[:1])
  with pytest.raises(ValueError, match='multiples of 2\\*\\*5 = 32'):
    generator.apply(np.zeros((1, 40, 32, 3), np.float32))
