"""One pix2pix training iteration, written once, per replica.

Order (as the PyTorch reference): G generates G(x) once; D takes one Adam step on
0.5 * (BCE(D(x, y), real) + BCE(D(x, G(x)), fake)); then G takes one Adam step on
GAN + lambda * L1 computed against the *updated* D. G(x) is computed once: its VJP is kept
and G's gradient is pulled back through it, so dropout masks and BatchNorm statistics of the
G step are the ones D was trained on, and no second forward pass is spent.

The function sees one device's shard of the batch. Gradients, metrics and BatchNorm running
averages are averaged over the mapped axis `axis_name`; `p2p_jax.parallel` maps it over
devices with pmap or shard_map. Dropout keys are folded from the state's key with the step
number and the device index, so a seed fixes the whole run.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from p2p_jax import losses
from p2p_jax.state import NetState, TrainState


def apply_net(module, params, batch_stats, *args, train: bool, rngs=None):
  """Runs a network; in train mode also returns its updated BatchNorm statistics."""
  variables = {'params': params}
  if batch_stats:
    variables['batch_stats'] = batch_stats
  if not train or not batch_stats:
    return module.apply(variables, *args, train=train, rngs=rngs), batch_stats
  out, mutated = module.apply(variables, *args, train=train, rngs=rngs,
                              mutable=['batch_stats'])
  return out, mutated['batch_stats']


def make_train_step(generator, discriminator, tx_g: optax.GradientTransformation,
                    tx_d: optax.GradientTransformation, loss_config,
                    schedule: Callable[[Any], Any] | None = None,
                    axis_name: str = 'batch') -> Callable:
  """Returns train_step(state, batch) -> (state, metrics) for one replica.

  batch: {'input': x [b, H, W, Cin], 'target': y [b, H, W, Cout]} in [-1, 1].
  loss_config: the config's `loss` block. With gan_weight 0 (the "L1 only" ablation) D is
  neither evaluated nor updated.
  """
  use_gan = loss_config.gan_weight > 0
  conditional = loss_config.conditional
  mode = loss_config.gan_mode
  # On one device, cross-device means are the identity and nothing needs marking per
  # device; XLA:CPU would still copy every gradient through an all-reduce (about 2% of a
  # U-Net-256 step). Known at trace time.
  one_device = lambda: jax.lax.axis_size(axis_name) == 1

  def pmean(tree):
    return tree if one_device() else jax.lax.pmean(tree, axis_name)

  def per_replica(tree):
    # Under shard_map, the gradient w.r.t. a replicated (device-invariant) input is summed
    # over devices implicitly. Marking the parameters as per-device makes the explicit pmean
    # below the one reduction, as under pmap, and lets shard_map's check catch a missing one.
    if one_device():
      return tree
    return jax.tree.map(lambda a: jax.lax.pcast(a, axis_name, to='varying'), tree)

  def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
    x, y = batch['input'], batch['target']
    d_x = x if conditional else None
    key = jax.random.fold_in(state.rng, state.step)
    key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))

    def g_forward(g_params):
      return apply_net(generator, g_params, state.g.batch_stats, x, train=True,
                       rngs={'dropout': key})

    fake, g_vjp, g_stats = jax.vjp(g_forward, per_replica(state.g.params), has_aux=True)
    metrics = {}

    # D step on the detached G(x).
    d_params, d_stats, d_opt = state.d.params, state.d.batch_stats, state.d.opt_state
    if use_gan:
      def d_loss_fn(params):
        fake_logits, stats = apply_net(discriminator, params, d_stats, d_x,
                                       jax.lax.stop_gradient(fake), train=True)
        real_logits, stats = apply_net(discriminator, params, stats, d_x, y, train=True)
        loss, parts = losses.discriminator_loss(real_logits, fake_logits, mode)
        return loss, (parts, stats)

      (d_loss, (d_parts, d_stats)), d_grads = jax.value_and_grad(
          d_loss_fn, has_aux=True)(per_replica(d_params))
      d_updates, d_opt = tx_d.update(pmean(d_grads), d_opt, d_params)
      d_params = optax.apply_updates(d_params, d_updates)
      metrics.update(d_parts, D_total=d_loss)

    # G step against the updated D: gradient w.r.t. G(x), pulled back through G.
    def g_loss_fn(output):
      logits, stats = None, d_stats
      if use_gan:
        logits, stats = apply_net(discriminator, d_params, d_stats, d_x, output, train=True)
      loss, parts = losses.generator_loss(logits, output, y, loss_config)
      return loss, (parts, stats)

    (_, (g_parts, d_stats)), d_output = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
    (g_grads,) = g_vjp(d_output)
    g_updates, g_opt = tx_g.update(pmean(g_grads), state.g.opt_state, state.g.params)
    g_params = optax.apply_updates(state.g.params, g_updates)
    metrics.update(g_parts)
    if schedule is not None:
      metrics['lr'] = jnp.asarray(schedule(state.step), jnp.float32)

    new_state = state.replace(
        step=state.step + 1,
        g=NetState(g_params, pmean(g_stats), g_opt),
        d=NetState(d_params, pmean(d_stats), d_opt))
    return new_state, pmean(metrics)

  return train_step
