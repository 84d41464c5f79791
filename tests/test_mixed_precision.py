"""Mixed precision (config.compute.dtype='bfloat16'): bf16 compute, float32 parameters,
BatchNorm statistics and losses; a short run stays close to float32."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from p2p_jax import networks, parallel, state as state_lib
from p2p_jax.methods import pix2pix

CONV_PRIMITIVES = ('conv_general_dilated', 'dot_general')


def conv_input_dtypes(jaxpr):
  """dtypes of the operands of every conv / matmul in a jaxpr, nested jaxprs included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in CONV_PRIMITIVES:
      found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
    for param in eqn.params.values():
      for sub in (param if isinstance(param, (tuple, list)) else [param]):
        if hasattr(sub, 'jaxpr'):  # ClosedJaxpr
          found += conv_input_dtypes(sub.jaxpr)
        elif hasattr(sub, 'eqns'):  # Jaxpr
          found += conv_input_dtypes(sub)
  return found


@pytest.mark.parametrize('impl', ['xla', 'xla_gemmgrad', 'gemm'])
def test_bf16_networks_compute_in_bf16_and_keep_f32_params(impl):
  config = tiny_config('unet_32', width=4)
  config.compute.dtype = 'bfloat16'
  config.compute.conv_impl = impl
  g = networks.create_generator(config)
  d = networks.create_discriminator(config)
  x = jnp.zeros((2, 32, 32, 3), jnp.float32)
  g_vars = jax.eval_shape(functools.partial(g.init, train=False), jax.random.PRNGKey(0), x)
  d_vars = jax.eval_shape(functools.partial(d.init, train=False), jax.random.PRNGKey(0), x, x)
  for tree in (g_vars, d_vars):
    assert {a.dtype for a in jax.tree.leaves(tree)} == {jnp.dtype(jnp.float32)}

  def g_loss(params, stats, x):  # forward and backward, as in training
    out, _ = g.apply({'params': params, 'batch_stats': stats}, x, train=True,
                     mutable=['batch_stats'], rngs={'dropout': jax.random.PRNGKey(1)})
    return jnp.mean(out), out

  g_args = (g_vars['params'], g_vars['batch_stats'], x)
  closed = jax.make_jaxpr(jax.grad(g_loss, has_aux=True))(*g_args)
  dtypes = conv_input_dtypes(closed.jaxpr)
  assert len(dtypes) >= 10, dtypes  # forward and backward convs were found
  assert all(set(ops) == {'bfloat16'} for ops in dtypes), dtypes
  grads, out = jax.eval_shape(jax.grad(g_loss, has_aux=True), *g_args)
  assert out.dtype == jnp.float32  # tanh output (and so the losses) in float32
  assert {a.dtype for a in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
  logits = jax.eval_shape(functools.partial(d.apply, train=False), d_vars, x, x)
  assert logits.dtype == jnp.float32


def run_steps(dtype, steps=3):
  config = tiny_config('unet_32', width=4)
  config.compute.dtype = dtype
  g = networks.create_generator(config, parallel.AXIS)
  d = networks.create_discriminator(config, parallel.AXIS)
  tx_g, tx_d, schedule = state_lib.create_optimizers(config, steps_per_epoch=10)
  # jitted: one compilation instead of one per operation of the eager init
  state = jax.jit(state_lib.create_train_state, static_argnums=(1, 2, 3, 4, 5))(
      jax.random.PRNGKey(0), g, d, tx_g, tx_d, 32)
  step = pix2pix.make_train_step(g, d, tx_g, tx_d, config.loss, schedule)
  runner = parallel.DataParallel(step, 'pmap', devices=jax.devices()[:1])
  state = runner.put_state(state)
  initial = state.g.params
  rng = np.random.default_rng(0)
  # A smooth target, so L1 is learnable and the losses move over the run.
  x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  batch = {'input': x, 'target': np.tanh(0.5 * x[..., ::-1]).astype(np.float32)}
  history = []
  for _ in range(steps):
    state, metrics = runner(state, batch)
    history.append(jax.tree.map(float, parallel.fetch(metrics)))
  return initial, state, history


def test_bf16_train_step_close_to_f32():
  """Same seed, same data: bf16 losses track f32 ones (bf16 has ~3 significant digits, so
  a few per cent), and everything stored in the state stays float32."""
  initial, state32, hist32 = run_steps('float32')
  _, state16, hist16 = run_steps('bfloat16')
  stored = [a for a in jax.tree.leaves((state16.g, state16.d))
            if jnp.issubdtype(a.dtype, jnp.inexact)]  # Adam's step count is int32
  assert {a.dtype for a in stored} == {jnp.dtype(jnp.float32)}
  for m32, m16 in zip(hist32, hist16):
    assert set(m32) == set(m16)
    for name, v32 in m32.items():
      assert np.isfinite(m16[name]), (name, m16)
      assert abs(m16[name] - v32) <= 0.03 * abs(v32) + 0.02, (name, v32, m16[name])
  # G's parameters moved the same way (Adam's first steps are nearly sign(grad) * lr, so
  # this compares gradient signs): cosine similarity of the two updates.
  flat = lambda tree: np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])
  u32 = flat(state32.g.params) - flat(initial)
  u16 = flat(state16.g.params) - flat(initial)
  cosine = float(u32 @ u16 / np.linalg.norm(u32) / np.linalg.norm(u16))
  assert cosine > 0.8, cosine
