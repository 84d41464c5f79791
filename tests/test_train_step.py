"""The training step: order of updates, data parallelism, determinism, and learning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import tiny_config
from p2p_jax import losses, networks, parallel, state as state_lib
from p2p_jax.methods import pix2pix


def make(config, tx=None, devices=None, mode='pmap', axis='batch'):
  g = networks.create_generator(config, axis)
  d = networks.create_discriminator(config, axis)
  tx_g, tx_d, schedule = state_lib.create_optimizers(config, steps_per_epoch=10)
  if tx is not None:
    tx_g = tx_d = tx
  state = state_lib.create_train_state(jax.random.PRNGKey(config.seed), g, d, tx_g, tx_d,
                                       config.data.crop_size)
  step = pix2pix.make_train_step(g, d, tx_g, tx_d, config.loss, schedule)
  runner = parallel.DataParallel(step, mode, devices)
  return runner, runner.put_state(state), (g, d, tx_g, tx_d)


def random_batch(n, size=32, seed=0):
  rng = np.random.RandomState(seed)
  return {'input': rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32),
          'target': rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)}


def max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def reference_step(config, nets, state, batch, d_first=True):
  """pix2pix's iteration written plainly on one device: two G forward passes with the same
  dropout mask, D updated first, then G against the updated D (or the old one)."""
  g, d, tx_g, tx_d = nets
  x, y = jnp.asarray(batch['input']), jnp.asarray(batch['target'])
  key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), 0)

  def gen(params):
    return pix2pix.apply_net(g, params, state.g.batch_stats, x, train=True,
                                rngs={'dropout': key})[0]

  def d_loss(params):
    fake_logits, stats = pix2pix.apply_net(d, params, state.d.batch_stats, x,
                                              jax.lax.stop_gradient(gen(state.g.params)),
                                              train=True)
    real_logits, stats = pix2pix.apply_net(d, params, stats, x, y, train=True)
    return losses.discriminator_loss(real_logits, fake_logits)[0], stats

  d_grads, d_stats = jax.grad(d_loss, has_aux=True)(state.d.params)
  updates, _ = tx_d.update(d_grads, state.d.opt_state, state.d.params)
  new_d = optax.apply_updates(state.d.params, updates)
  d_for_g = new_d if d_first else state.d.params

  def g_loss(params):
    fake = gen(params)
    logits, _ = pix2pix.apply_net(d, d_for_g, d_stats, x, fake, train=True)
    return losses.generator_loss(logits, fake, y, config.loss)[0]

  g_grads = jax.grad(g_loss)(state.g.params)
  updates, _ = tx_g.update(g_grads, state.g.opt_state, state.g.params)
  return optax.apply_updates(state.g.params, updates), new_d


def test_d_step_then_g_step_against_the_updated_d(config):
  config.model.sync_batch_stats = False
  sgd = optax.sgd(0.5)
  runner, state, _ = make(config, sgd, jax.devices()[:1])
  _, _, plain = make(config, sgd, jax.devices()[:1], axis=None)
  batch = random_batch(2)
  new_state, _ = runner(state, batch)
  new_state, state = parallel.fetch(new_state), parallel.fetch(state)
  want_g, want_d = jax.jit(lambda s, b: reference_step(config, plain, s, b))(state, batch)
  old_d_g, _ = jax.jit(lambda s, b: reference_step(config, plain, s, b, False))(state, batch)
  assert max_diff(new_state.d.params, want_d) < 1e-6
  assert max_diff(new_state.g.params, want_g) < 1e-6
  assert max_diff(old_d_g, want_g) > 1e-4  # the order matters and is observable


def test_pmap_shard_map_and_one_device_agree(config):
  """8 devices x 1 example == 1 device x 8 examples. With SGD (linear in the gradient) the
  parameters agree to float32 rounding, 1e-5 absolute. Dropout is off because its masks
  are keyed per device and so legitimately differ between layouts."""
  config.model.dropout = False
  batch = random_batch(8)
  results = []
  for mode, devices in [('pmap', jax.devices()), ('shard_map', jax.devices()),
                        ('pmap', jax.devices()[:1]), ('shard_map', jax.devices()[:1])]:
    runner, state, _ = make(config, optax.sgd(0.1), devices, mode)
    for _ in range(2):
      state, metrics = runner(state, batch)
    results.append((parallel.fetch(state), parallel.fetch(metrics)))
  assert jax.device_count() == 8
  for other, other_metrics in results[1:]:
    assert max_diff(results[0][0], other) < 1e-5
    for k, v in results[0][1].items():
      np.testing.assert_allclose(v, other_metrics[k], rtol=1e-5)


def test_unsynced_batch_stats_are_averaged_into_one_state(config):
  config.model.sync_batch_stats = False
  runner, state, _ = make(config, devices=jax.devices()[:2])
  new_state, _ = runner(state, random_batch(2))
  stats = jax.tree.leaves(new_state.g.batch_stats)
  assert stats and all(np.all(np.isfinite(np.asarray(s))) for s in stats)
  assert max_diff(new_state.g.batch_stats, state.g.batch_stats) > 0


def test_same_seed_same_run_and_other_seed_other_run(config):
  batch = random_batch(4)
  runner, _, (g, d, tx_g, tx_d) = make(config, devices=jax.devices()[:4])

  def run(seed):
    state = runner.put_state(state_lib.create_train_state(
        jax.random.PRNGKey(seed), g, d, tx_g, tx_d, config.data.crop_size))
    for _ in range(2):
      state, _ = runner(state, batch)
    return parallel.fetch(state)

  a, b, c = run(0), run(0), run(1)
  assert max_diff(a, b) == 0.0
  assert max_diff(a.g.params, c.g.params) > 0.0


def test_l1_only_ablation_never_touches_d(config):
  losses.apply_ablation(config.loss, 'l1')
  runner, state, _ = make(config, devices=jax.devices()[:1])
  new_state, metrics = runner(state, random_batch(1))
  assert max_diff(new_state.d.params, state.d.params) == 0.0
  assert 'D_real' not in metrics and 'G_GAN' not in metrics and 'G_L1' in metrics


def test_unconditional_d_sees_only_the_output(config):
  losses.apply_ablation(config.loss, 'gan')
  runner, state, _ = make(config, devices=jax.devices()[:1])
  assert state.d.params['conv1']['kernel'].shape[2] == 3  # y only, not concat(x, y)
  _, metrics = runner(state, random_batch(1))
  assert np.isfinite(float(metrics['D_total'])) and 'G_L1' in metrics


@pytest.mark.parametrize('mode', ['pmap', 'shard_map'])
def test_step_compiled_before_the_state_exists_is_the_one_that_runs(config, mode):
  """The trainer compiles the step for jax.eval_shape's state, then creates the state. The
  call with the real state must reuse that executable: a second trace and compile, with
  the state resident, would cost its time and its memory again (it did in the benchmark,
  whose eval_shape leaves carried no sharding: 2.2 GB peak instead of 1.5 at 256 px)."""
  g = networks.create_generator(config, 'batch')
  d = networks.create_discriminator(config, 'batch')
  tx_g, tx_d, schedule = state_lib.create_optimizers(config, steps_per_epoch=10)
  step = pix2pix.make_train_step(g, d, tx_g, tx_d, config.loss, schedule)
  traces = []

  def counted_step(state, batch):
    traces.append(mode)  # runs once per trace, not per call
    return step(state, batch)

  runner = parallel.DataParallel(counted_step, mode, jax.devices()[:2], donate=True)
  init = lambda: state_lib.create_train_state(jax.random.PRNGKey(config.seed), g, d, tx_g,
                                              tx_d, config.data.crop_size)
  batch = random_batch(2)
  assert runner.precompile(jax.eval_shape(init), batch) is not None
  assert len(traces) == 1
  state, _ = runner(runner.put_state(jax.jit(init)()), batch)
  runner(state, random_batch(2, seed=1))
  assert len(traces) == 1


def test_batch_must_split_over_devices(config):
  runner, state, _ = make(config, devices=jax.devices()[:4])
  with pytest.raises(ValueError, match='does not split over 4 local devices'):
    runner(state, random_batch(6))
  with pytest.raises(ValueError, match='batch_size 6 must be divisible by the number of '
                     r'devices \(4\)'):
    parallel.local_batch_size(6, jax.devices()[:4])


def test_tiny_pix2pix_learns_a_fixed_mapping():
  """A few hundred steps on four fixed pairs (y = a colour-shifted, flipped x) must drive
  the L1 term far below where it starts: the whole objective trains G."""
  config = tiny_config(width=8)
  config.optim.lr = 1e-3
  rng = np.random.RandomState(0)
  x = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  x = np.clip(np.cumsum(x, axis=1) / 8, -1, 1)  # smooth images, so there is structure
  y = np.clip(-x[:, :, ::-1, ::-1] * 0.8 + 0.1, -1, 1)
  batch = {'input': x, 'target': y}
  runner, state, _ = make(config, devices=jax.devices()[:4], mode='shard_map')
  l1 = []
  for _ in range(300):
    state, metrics = runner(state, batch)
    l1.append(float(metrics['G_L1']))
  assert np.mean(l1[-10:]) < 0.4 * np.mean(l1[:3]), (l1[:3], l1[-10:])
