"""CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017): unpaired translation with two generators.

As the PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix, models/cycle_gan_model.py;
its names, which differ from the paper's): G_A maps domain A to B (the paper's G), G_B maps
B to A (F); D_A judges domain B images (D_Y), D_B domain A images (D_X). The defaults
(configs/cyclegan.py): ResNet generators (resnet_9blocks), 70x70 PatchGANs that see one
image, instance norm, no dropout, LSGAN, lambda_A = lambda_B = 10, identity 0.5, pools of
50, Adam 2e-4 / 0.5 for 100 + 100 epochs, batch 1.

One iteration, in the reference's order (`optimize_parameters`):
  forward   fake_B = G_A(A), rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A)
  G step    one Adam step on both generators (D frozen) on
              GAN(D_A(fake_B), real) + GAN(D_B(fake_A), real)
              + lambda_A |rec_A - A| + lambda_B |rec_B - B|
              + lambda_identity (lambda_B |G_A(B) - B| + lambda_A |G_B(A) - A|)
  D step    one Adam step on both discriminators on
              0.5 (GAN(D_A(B), real) + GAN(D_A(pool_B(fake_B)), fake))
              + 0.5 (GAN(D_B(A), real) + GAN(D_B(pool_A(fake_A)), fake)),
            the fakes being those of the forward (G before its update); the B pool is
            queried before the A pool.
The forward is computed once: its VJP gives the G step's gradient, and its fakes (as the
reference's detached `self.fake_B`) feed the pools.

State (CycleGANState, p2p_jax/methods/base.py's convention): g holds {'G_A', 'G_B'} and one
Adam state over both (the reference's one Adam over itertools.chain of their parameters;
Adam acts per parameter, so this is the same as its two); d likewise {'D_A', 'D_B'}; the two
image pools (image_pool.py) live in the state, so checkpoints hold them and a resumed run
is exact.

Several devices: each device translates its share of the batch; the fakes of all devices
are gathered and the pools queried with the same draws on every device, image by image in
the global batch's order, so the pools stay replicated (one pool, as with one device) and
each device takes its share of the pooled fakes back.
"""

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from p2p_jax import losses, networks, state as state_lib
from p2p_jax.methods import base, image_pool
from p2p_jax.methods.base import apply_net
from p2p_jax.state import NetState

G_NAMES = ('G_A', 'G_B')
D_NAMES = ('D_A', 'D_B')


@flax.struct.dataclass
class CycleGANState:
  """Everything that changes while training CycleGAN; saved whole in each checkpoint."""
  step: jax.Array          # int32 scalar: train steps done
  g: NetState              # {'G_A': A -> B, 'G_B': B -> A}, one optimiser over both
  d: NetState              # {'D_A': judges B, 'D_B': judges A}, one optimiser over both
  rng: jax.Array           # uint32[2]: base key of dropout and the pools' draws
  pools: dict              # {'fake_A': image_pool.Pool, 'fake_B': image_pool.Pool}


def create_networks(config, axis_name: str | None = None) -> dict:
  """{'G_A', 'G_B', 'D_A', 'D_B'}: G_B maps back (out -> in channels); each D sees one
  image of its domain (D_A: B images, out_channels; D_B: A images, in_channels)."""
  cin, cout = config.model.in_channels, config.model.out_channels
  return {
      'G_A': networks.create_generator(config, axis_name),
      'G_B': networks.create_generator(config, axis_name, in_channels=cout, out_channels=cin),
      'D_A': networks.create_discriminator(config, axis_name, x_channels=0, y_channels=cout),
      'D_B': networks.create_discriminator(config, axis_name, x_channels=0, y_channels=cin),
  }


def create_train_state(key, nets: dict, tx_g, tx_d, config) -> CycleGANState:
  """Step 0: the four networks initialised from independent keys, fresh Adam, empty pools."""
  size = config.data.crop_size
  keys = dict(zip(G_NAMES + D_NAMES + ('rng',), jax.random.split(key, 5)))
  cin, cout = config.model.in_channels, config.model.out_channels
  images = {'A': jnp.zeros((1, size, size, cin)), 'B': jnp.zeros((1, size, size, cout))}
  inputs = {'G_A': images['A'], 'G_B': images['B'], 'D_A': images['B'], 'D_B': images['A']}

  def init(name):
    args = (inputs[name],) if name in G_NAMES else (None, inputs[name])
    variables = nets[name].init({'params': keys[name], 'dropout': keys[name]}, *args,
                                train=False)
    return variables['params'], variables.get('batch_stats', {})

  def net_state(names, tx):
    made = {n: init(n) for n in names}
    params = {n: p for n, (p, _) in made.items()}
    stats = {n: s for n, (_, s) in made.items()}
    return NetState(params, stats, tx.init(params))

  pool_size = config.cyclegan.pool_size
  return CycleGANState(
      step=jnp.zeros((), jnp.int32), g=net_state(G_NAMES, tx_g), d=net_state(D_NAMES, tx_d),
      rng=keys['rng'],
      pools={'fake_A': image_pool.empty(pool_size, (size, size, cin)),
             'fake_B': image_pool.empty(pool_size, (size, size, cout))})


def step_keys(rng: jax.Array, step: jax.Array) -> dict:
  """The keys of one step: 'dropout' (folded with the device index by the step), and the
  draws of the B pool and the A pool (the same on every device)."""
  k_dropout, k_pool_b, k_pool_a = jax.random.split(jax.random.fold_in(rng, step), 3)
  return {'dropout': k_dropout, 'pool_B': k_pool_b, 'pool_A': k_pool_a}


def make_train_step(nets: dict, tx_g: optax.GradientTransformation,
                    tx_d: optax.GradientTransformation, config,
                    schedule: Callable[[Any], Any] | None = None,
                    axis_name: str = 'batch') -> Callable:
  """Returns train_step(state, batch) -> (state, metrics) for one replica.

  batch: {'input': real A [b, H, W, Cin], 'target': real B [b, H, W, Cout]} in [-1, 1],
  unpaired (B is not A's translation).
  """
  mode = config.loss.gan_mode
  lambda_a, lambda_b = config.cyclegan.lambda_a, config.cyclegan.lambda_b
  lambda_idt = config.cyclegan.lambda_identity
  pool_size = config.cyclegan.pool_size
  one_device, pmean, per_replica = base.replica_collectives(axis_name)

  def pooled(pool, fakes, key):
    """The pool's answer for this device's fakes, the pool updated with the whole batch."""
    n = fakes.shape[0]
    if one_device():
      batch = fakes
    else:
      # Every device's fakes in their place, summed with zeros: the whole batch, exactly,
      # and (unlike all_gather's) provably the same on every device.
      batch = jnp.zeros((n * jax.lax.axis_size(axis_name),) + fakes.shape[1:], fakes.dtype)
      batch = jax.lax.psum(jax.lax.dynamic_update_slice_in_dim(
          batch, fakes, jax.lax.axis_index(axis_name) * n, 0), axis_name)
    coin, pick = image_pool.draws(key, batch.shape[0], pool_size)
    out, pool = image_pool.query(pool, batch, coin, pick)
    if not one_device():
      out = jax.lax.dynamic_slice_in_dim(out, jax.lax.axis_index(axis_name) * n, n)
    return out, pool

  def train_step(state: CycleGANState, batch) -> tuple[CycleGANState, dict]:
    real_a, real_b = batch['input'], batch['target']
    keys = step_keys(state.rng, state.step)
    dropout = jax.random.fold_in(keys['dropout'], jax.lax.axis_index(axis_name))
    g_stats, d_stats = dict(state.g.batch_stats), dict(state.d.batch_stats)

    def run(name, params, stats, x, rng_index):
      """One network call in train mode; BatchNorm statistics (if any) thread through."""
      net = nets[name]
      args = (x,) if name in G_NAMES else (None, x)
      rngs = {'dropout': jax.random.fold_in(dropout, rng_index)}
      out, stats[name] = apply_net(net, params[name], stats[name], *args, train=True,
                                   rngs=rngs)
      return out

    # ------------------------------------------------------------------ G step
    def g_loss_fn(g_params):
      stats = dict(g_stats)
      d_stats_g = dict(d_stats)
      fake_b = run('G_A', g_params, stats, real_a, 0)
      rec_a = run('G_B', g_params, stats, fake_b, 1)
      fake_a = run('G_B', g_params, stats, real_b, 2)
      rec_b = run('G_A', g_params, stats, fake_a, 3)
      parts = {}
      if lambda_idt > 0:
        idt_a = run('G_A', g_params, stats, real_b, 4)
        idt_b = run('G_B', g_params, stats, real_a, 5)
        parts['idt_A'] = losses.reconstruction_loss(idt_a, real_b) * lambda_b * lambda_idt
        parts['idt_B'] = losses.reconstruction_loss(idt_b, real_a) * lambda_a * lambda_idt
      d_params = jax.lax.stop_gradient(state.d.params)
      parts['G_A'] = losses.generator_gan_loss(run('D_A', d_params, d_stats_g, fake_b, 0),
                                               mode)
      parts['G_B'] = losses.generator_gan_loss(run('D_B', d_params, d_stats_g, fake_a, 0),
                                               mode)
      parts['cycle_A'] = losses.reconstruction_loss(rec_a, real_a) * lambda_a
      parts['cycle_B'] = losses.reconstruction_loss(rec_b, real_b) * lambda_b
      total = sum(parts.values())
      fakes = {'fake_A': jax.lax.stop_gradient(fake_a), 'fake_B': jax.lax.stop_gradient(fake_b)}
      return total, (parts, fakes, stats, d_stats_g)

    (g_total, (g_parts, fakes, new_g_stats, d_stats_after_g)), g_grads = jax.value_and_grad(
        g_loss_fn, has_aux=True)(per_replica(state.g.params))
    g_updates, g_opt = tx_g.update(pmean(g_grads), state.g.opt_state, state.g.params)
    g_params = optax.apply_updates(state.g.params, g_updates)

    # ------------------------------------------------------------------ D step
    fake_b, pool_b = pooled(state.pools['fake_B'], fakes['fake_B'], keys['pool_B'])
    fake_a, pool_a = pooled(state.pools['fake_A'], fakes['fake_A'], keys['pool_A'])

    def d_loss_fn(d_params):
      stats = dict(d_stats_after_g)
      parts = {}
      for name, real, fake in (('D_A', real_b, fake_b), ('D_B', real_a, fake_a)):
        loss, _ = losses.discriminator_loss(run(name, d_params, stats, real, 0),
                                            run(name, d_params, stats, fake, 0), mode)
        parts[name] = loss
      return parts['D_A'] + parts['D_B'], (parts, stats)

    (_, (d_parts, new_d_stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
        per_replica(state.d.params))
    d_updates, d_opt = tx_d.update(pmean(d_grads), state.d.opt_state, state.d.params)
    d_params = optax.apply_updates(state.d.params, d_updates)

    metrics = {**g_parts, 'G_total': g_total, **d_parts}
    if schedule is not None:
      metrics['lr'] = jnp.asarray(schedule(state.step), jnp.float32)
    new_state = state.replace(
        step=state.step + 1,
        g=NetState(g_params, pmean(new_g_stats), g_opt),
        d=NetState(d_params, pmean(new_d_stats), d_opt),
        pools={'fake_A': pool_a, 'fake_B': pool_b})
    return new_state, pmean(metrics)

  return train_step


class CycleGAN(base.Method):
  """CycleGAN as a method of the shared trainer (p2p_jax/methods/base.py)."""
  name = 'cyclegan'
  data_kind = 'unpaired'
  directions = ('AtoB', 'BtoA')

  def validate(self, config) -> None:
    if config.cyclegan.lambda_identity > 0 and (
        config.model.in_channels != config.model.out_channels):
      raise ValueError(
          f'config.cyclegan.lambda_identity ({config.cyclegan.lambda_identity}) needs '
          f'model.in_channels == model.out_channels (got {config.model.in_channels} and '
          f'{config.model.out_channels}): G_A(B) must be an A-shaped image; set it to 0')
    if int(config.cyclegan.pool_size) != config.cyclegan.pool_size:
      raise ValueError(f'config.cyclegan.pool_size must be a whole number, got '
                       f'{config.cyclegan.pool_size!r}')

  def architecture(self, config) -> dict[str, Any]:
    return {f'model.{k}': v for k, v in config.model.items()}

  def setup(self, config, steps_per_epoch: int, axis_name: str) -> base.Setup:
    nets = create_networks(config, axis_name)
    tx_g, tx_d, schedule = state_lib.create_optimizers(config, steps_per_epoch)
    step = make_train_step(nets, tx_g, tx_d, config, schedule, axis_name)
    init = lambda: create_train_state(jax.random.PRNGKey(config.seed), nets, tx_g, tx_d,
                                      config)
    size = config.data.crop_size
    shapes = {'input': ((size, size, config.model.in_channels), np.float32),
              'target': ((size, size, config.model.out_channels), np.float32)}
    return base.Setup(init, step, lambda n: base.zeros_batch(shapes, n))

  def describe(self, config, state) -> str:
    count = lambda tree, name: state_lib.param_count(tree[name])
    return (f'{config.model.generator} G_A + G_B ({count(state.g.params, "G_A"):,} + '
            f'{count(state.g.params, "G_B"):,} params) + {config.model.d_layers}-layer '
            f'PatchGAN D_A + D_B ({count(state.d.params, "D_A"):,} + '
            f'{count(state.d.params, "D_B"):,}); image pools of '
            f'{config.cyclegan.pool_size}')

  def generator(self, config, direction: str = 'AtoB', axis_name: str | None = None):
    self.check_direction(direction)
    if direction == 'AtoB':
      return networks.create_generator(config, axis_name)
    return networks.create_generator(config, axis_name, in_channels=config.model.out_channels,
                                     out_channels=config.model.in_channels)

  def generator_variables(self, g_variables: dict, direction: str = 'AtoB') -> dict:
    self.check_direction(direction)
    name = 'G_A' if direction == 'AtoB' else 'G_B'
    stats = g_variables.get('batch_stats') or {}
    return {'params': g_variables['params'][name], 'batch_stats': stats.get(name, {})}


METHOD = CycleGAN()
