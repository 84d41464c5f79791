"""pix2pix (Isola et al., CVPR 2017): a U-Net G and a PatchGAN D trained on aligned pairs.

The method in one place: its networks (p2p_jax.networks builds them from `config.model`),
its state (state.TrainState: G and D with their Adam states, the step, the dropout key;
p2p_jax/state.py) and its training iteration, written once, per replica:

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
import numpy as np
import optax

from p2p_jax import losses, networks, state as state_lib
from p2p_jax.methods import base
from p2p_jax.methods.base import apply_net
from p2p_jax.state import NetState, TrainState


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
  _, pmean, per_replica = base.replica_collectives(axis_name)

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


class Pix2Pix(base.Method):
  """pix2pix as a method of the shared trainer (p2p_jax/methods/base.py)."""
  name = 'pix2pix'
  data_kind = 'paired'

  def architecture(self, config) -> dict[str, Any]:
    # Whether D sees x changes its first layer's input channels.
    fields = {f'model.{k}': v for k, v in config.model.items()}
    fields['loss.conditional'] = config.loss.conditional
    return fields

  def setup(self, config, steps_per_epoch: int, axis_name: str) -> base.Setup:
    generator = networks.create_generator(config, axis_name)
    discriminator = networks.create_discriminator(config, axis_name)
    tx_g, tx_d, schedule = state_lib.create_optimizers(config, steps_per_epoch)
    step = make_train_step(generator, discriminator, tx_g, tx_d, config.loss, schedule,
                           axis_name)
    init = lambda: state_lib.create_train_state(
        jax.random.PRNGKey(config.seed), generator, discriminator, tx_g, tx_d,
        config.data.crop_size)
    size = config.data.crop_size
    shapes = {'input': ((size, size, config.model.in_channels), np.float32),
              'target': ((size, size, config.model.out_channels), np.float32)}
    return base.Setup(init, step, lambda n: base.zeros_batch(shapes, n))

  def describe(self, config, state) -> str:
    return (f'{config.model.generator} G ({state_lib.param_count(state.g.params):,} '
            f'params) + {config.model.d_layers}-layer PatchGAN D '
            f'({state_lib.param_count(state.d.params):,})')

  def generator(self, config, direction: str = 'AtoB', axis_name: str | None = None):
    self.check_direction(direction)
    return networks.create_generator(config, axis_name=axis_name)


METHOD = Pix2Pix()
