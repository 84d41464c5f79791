"""The training state of pix2pix: two networks, their optimisers, a step count and a key.

The state is a plain pytree of arrays (no functions inside), so Orbax saves and restores it
as it is and the same state works unreplicated under pmap and shard_map. The optimisers
themselves are rebuilt from the config (`create_optimizers`).
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from p2p_jax import schedules


@flax.struct.dataclass
class NetState:
  """One network: parameters, BatchNorm running averages, and its optimiser's state."""
  params: Any
  batch_stats: Any
  opt_state: Any


@flax.struct.dataclass
class TrainState:
  """Everything that changes while training; saved whole in each checkpoint."""
  step: jax.Array          # int32 scalar: train steps done
  g: NetState              # generator
  d: NetState              # discriminator
  rng: jax.Array           # uint32[2]: base key of dropout (folded per step and device)


def create_optimizers(config, steps_per_epoch: int):
  """Adam for G and for D with the configured schedule (paper: 2e-4, b1 0.5, b2 0.999)."""
  schedule = schedules.create_schedule(config.optim, steps_per_epoch)
  make = lambda: optax.adam(schedule, b1=config.optim.b1, b2=config.optim.b2)
  return make(), make(), schedule


def _variables(module, key, *args):
  variables = module.init({'params': key, 'dropout': key}, *args, train=False)
  return variables['params'], variables.get('batch_stats', {})


def create_train_state(key: jax.Array, generator, discriminator, tx_g, tx_d,
                       image_size: int, *, g_variables=None, d_variables=None) -> TrainState:
  """Initialises both networks for square images of side `image_size`.

  The seed splits into independent keys for G's init, D's init and the dropout stream.
  Init runs on tiny batches of one image; parameter shapes do not depend on the batch.
  g_variables / d_variables: {'params', 'batch_stats'} to start from instead of an init
  (e.g. weights converted from PyTorch, p2p_jax.pytorch); the keys are split the same way.
  """
  kg, kd, kr = jax.random.split(key, 3)
  x = jnp.zeros((1, image_size, image_size, generator.in_channels), jnp.float32)
  y = jnp.zeros((1, image_size, image_size, generator.out_channels), jnp.float32)
  given = lambda v: (v['params'], v.get('batch_stats', {}))
  g_params, g_stats = given(g_variables) if g_variables else _variables(generator, kg, x)
  d_x = x if discriminator.x_channels else None
  d_params, d_stats = (given(d_variables) if d_variables
                       else _variables(discriminator, kd, d_x, y))
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      g=NetState(g_params, g_stats, tx_g.init(g_params)),
      d=NetState(d_params, d_stats, tx_d.init(d_params)),
      rng=kr)


def param_count(params) -> int:
  """Number of trainable scalars (BatchNorm scale/bias included, running stats not)."""
  return int(sum(x.size for x in jax.tree.leaves(params)))


@jax.jit
def _finite_flags(leaves):
  # One program: XLA fuses the per-leaf reductions, and one small vector comes back.
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])


def nonfinite_leaves(tree) -> list[str]:
  """Paths ('g/batch_stats/...') of the floating-point leaves of `tree` holding NaN or inf.

  One jitted reduction over all leaves on their devices; only one flag per leaf is read
  back. The trainer calls it at log steps and before saving a checkpoint, never per step.
  """
  leaves = [(path, x) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  if not leaves:
    return []
  flags = jax.device_get(_finite_flags([x for _, x in leaves]))
  return [jax.tree_util.keystr(path, simple=True, separator='/')
          for (path, _), ok in zip(leaves, flags) if not ok]
