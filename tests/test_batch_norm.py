"""p2p_jax's BatchNorm: PyTorch's running statistics, Flax's variables and train-mode outputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from p2p_jax.models import batch_norm, layers


def _ours(**kw):
  return batch_norm.BatchNorm(momentum=0.9, epsilon=1e-5, scale_init=layers.bn_scale_init, **kw)


def _flax(**kw):
  return nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5,
                      scale_init=layers.bn_scale_init, **kw)


def _batches(shape, steps=3, seed=0):
  rng = np.random.default_rng(seed)
  # An offset and a spread per step, so the running averages move and E[x^2] - E[x]^2
  # has something to cancel.
  return [(rng.normal(size=shape) * (1 + i) + 0.5 * i).astype(np.float32) for i in range(steps)]


def _train(module, variables, xs):
  step = jax.jit(lambda v, x: module.apply(v, x, mutable=['batch_stats']))
  outs = []
  for x in xs:
    y, mutated = step(variables, x)
    variables = {'params': variables['params'], 'batch_stats': mutated['batch_stats']}
    outs.append(np.asarray(y))
  return outs, variables


def test_variables_are_flax_batchnorms():
  """Same names, shapes and init as nn.BatchNorm: checkpoints written before load as they are."""
  x = np.zeros((2, 4, 4, 5), np.float32)
  ours = _ours().init(jax.random.PRNGKey(3), x)
  theirs = _flax().init(jax.random.PRNGKey(3), x)
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  assert jax.tree.all(jax.tree.map(lambda a, b: a.shape == b.shape and a.dtype == b.dtype and
                                   bool(jnp.all(a == b)), ours, theirs))


@pytest.mark.parametrize('shape', [(1, 2, 2, 6), (4, 8, 8, 3)])
def test_train_mode_is_flax_except_the_running_variance(shape):
  """Outputs and running mean as nn.BatchNorm's (to float32 rounding, measured bit-equal
  under jit); the running variance mixes in var * n / (n - 1) instead of var."""
  xs = _batches(shape)
  init = _flax().init(jax.random.PRNGKey(0), xs[0])
  ours, ours_vars = _train(_ours(), init, xs)
  theirs, theirs_vars = _train(_flax(), init, xs)
  for a, b in zip(ours, theirs):
    assert np.abs(a - b).max() <= 1e-6
  np.testing.assert_allclose(ours_vars['batch_stats']['mean'], theirs_vars['batch_stats']['mean'],
                             rtol=0, atol=1e-7)
  var = 1.0
  for x in xs:  # PyTorch's update, written out
    var = 0.9 * var + 0.1 * x.reshape(-1, shape[-1]).var(0, ddof=1)
  np.testing.assert_allclose(ours_vars['batch_stats']['var'], var, rtol=2e-5)
  assert np.abs(theirs_vars['batch_stats']['var'] - var).max() > 1e-3


@pytest.mark.parametrize('shape', [(1, 2, 2, 6), (3, 5, 4, 4)])
def test_matches_torch_batchnorm2d(shape):
  torch = pytest.importorskip('torch')
  xs = _batches(shape, steps=4, seed=1)
  module = _ours()
  variables = module.init(jax.random.PRNGKey(1), xs[0])
  ref = torch.nn.BatchNorm2d(shape[-1])
  with torch.no_grad():
    ref.weight.copy_(torch.from_numpy(np.array(variables['params']['scale'])))
    ref.bias.copy_(torch.from_numpy(np.linspace(-1, 1, shape[-1]).astype(np.float32)))
  variables['params']['bias'] = jnp.asarray(ref.bias.detach().numpy())
  to_torch = lambda x: torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  ours, variables = _train(module, variables, xs)
  for x, y in zip(xs, ours):
    want = ref(to_torch(x)).detach().numpy().transpose(0, 2, 3, 1)
    assert np.abs(y - want).max() < 1e-5
  stats = variables['batch_stats']
  np.testing.assert_allclose(stats['mean'], ref.running_mean.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats['var'], ref.running_var.numpy(), rtol=1e-5, atol=1e-6)
  ref.eval()
  evaluated = batch_norm.BatchNorm(use_running_average=True).apply(variables, xs[0])
  want = ref(to_torch(xs[0])).detach().numpy().transpose(0, 2, 3, 1)
  assert np.abs(np.asarray(evaluated) - want).max() < 1e-5


def test_across_devices_normalises_like_one_device_and_counts_the_global_batch():
  xs = _batches((4, 2, 2, 3), steps=2, seed=2)
  module, mapped = _ours(), _ours(axis_name='batch')
  variables = module.init(jax.random.PRNGKey(2), xs[0])
  whole, whole_vars = _train(module, variables, xs)
  step = jax.pmap(lambda v, x: mapped.apply(v, x, mutable=['batch_stats']), axis_name='batch',
                  in_axes=(None, 0), devices=jax.devices()[:4])
  for x, want in zip(xs, whole):
    y, mutated = step(variables, x.reshape(4, 1, 2, 2, 3))
    variables = {'params': variables['params'],
                 'batch_stats': jax.tree.map(lambda a: a[0], mutated['batch_stats'])}
    assert np.abs(np.asarray(y).reshape(want.shape) - want).max() < 1e-6
  for name in ('mean', 'var'):
    np.testing.assert_allclose(variables['batch_stats'][name], whole_vars['batch_stats'][name],
                               rtol=1e-6, atol=1e-7)


def test_bfloat16_compute_as_flax():
  x = _batches((2, 4, 4, 8), steps=1, seed=3)[0]
  init = _flax().init(jax.random.PRNGKey(4), x)
  ours, _ = _train(_ours(dtype=jnp.bfloat16), init, [jnp.asarray(x, jnp.bfloat16)])
  theirs, _ = _train(_flax(dtype=jnp.bfloat16), init, [jnp.asarray(x, jnp.bfloat16)])
  assert ours[0].dtype == jnp.bfloat16
  assert np.abs(ours[0].astype(np.float32) - theirs[0].astype(np.float32)).max() == 0
