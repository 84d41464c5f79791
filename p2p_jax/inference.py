"""The inference core: a trained generator in one of the two test-time modes.

pix2pix has no noise input; its only randomness is dropout, which the paper keeps on at
test time, and it normalises with the statistics of the test batch instead of the running
averages gathered in training. Hence two modes, named in every output's metadata:

  'paper' (default): dropout on, BatchNorm with test statistics (`G.apply(train=True)`,
      the batch_stats update discarded). Outputs depend on the seed.
  'eval': BatchNorm running averages, no dropout (`G.apply(train=False)`): deterministic,
      the usual deep-learning inference.

Whose statistics, in paper mode (`bn_scope`):
  'image' (default): each image is normalised with its own statistics, as if it were a
      batch of one, which is how the official code tests (its test scripts use batch size
      1; at batch 1 BatchNorm is instance normalisation). Images are still batched and
      spread over devices for throughput (vmap), and the output of an image does not
      depend on the batch size, the device count or the other images in its batch.
  'batch': statistics of the whole batch (all devices together when
      config.model.sync_batch_stats is set), as during training; outputs then depend on
      how images are grouped into batches.

Randomness: image number i of a run (its position in the dataset or the sorted file list)
uses the dropout key fold_in(PRNGKey(seed), i) ('batch' scope: the key of the first image
of each device's shard), so a seed fixes every output.

Devices: a batch is split over as many local devices as divide its size evenly (one
device for a single image), through p2p_jax.parallel.DataParallel; use batch sizes that
are multiples of the device count for throughput. Single-process only.

Used by the trainer's validation, `evaluate`, `translate` (which adds images of any size,
p2p_jax/translate.py) and `export`. Notebook use:
  generator = workdirs.load_generator('/tmp/p2p_facades', which='latest', mode='paper')
  outputs = generator.apply(x)     # x: [N, H, W, C] in [-1, 1], H and W multiples of 2**depth
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from p2p_jax import methods, parallel

MODES = ('paper', 'eval')
BN_SCOPES = ('image', 'batch')


def apply_variables(variables) -> dict:
  """{'params', 'batch_stats'} with an empty batch_stats left out (instance/no norm)."""
  out = {'params': variables['params']}
  if variables.get('batch_stats'):
    out['batch_stats'] = variables['batch_stats']
  return out


def make_generator_fn(generator, mode: str, bn_scope: str = 'image'):
  """fn(variables, x, keys) -> G(x): one replica's inference in `mode`.

  x: [B, H, W, Cin] in [-1, 1]; keys: [B, 2] per-image dropout keys (unused in eval mode).
  The batch_stats mutation of paper mode is computed and thrown away.
  """
  def paper(variables, x, key):
    out, _ = generator.apply(variables, x, train=True, rngs={'dropout': key},
                             mutable=['batch_stats'])
    return out

  def fn(variables, x, keys):
    variables = apply_variables(variables)
    if mode == 'eval':
      return generator.apply(variables, x, train=False)
    if bn_scope == 'batch':
      return paper(variables, x, keys[0])
    # One image at a time as a batch of one; vmap keeps the batch for throughput.
    return jax.vmap(lambda xi, ki: paper(variables, xi[None], ki)[0])(x, keys)

  return fn


def _largest_divisor(n: int, at_most: int) -> int:
  return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


class TrainedGenerator:
  """A generator with its variables and an inference mode: G(x) for model-space batches.

  Attributes:
    config: the run's config (its method, `model` and `compute` blocks build the generator).
    mode: 'paper' or 'eval' (see module docstring); None takes config.inference_mode.
    bn_scope: 'image' or 'batch' (paper mode only).
    direction: which of the method's generators: 'AtoB' (the trained input -> target map;
      pix2pix has only this one) or 'BtoA' (CycleGAN's G_B).
    step: training step of the checkpoint (metadata only), or None.
    metadata: dict written next to every output (mode, scope, generator, step).
  """

  def __init__(self, config, variables, mode: str | None = None, *,
               bn_scope: str = 'image', devices=None, step: int | None = None,
               source: str | None = None, direction: str = 'AtoB'):
    mode = config.inference_mode if mode is None else mode
    if mode not in MODES:
      raise ValueError(f"inference mode must be 'paper' or 'eval', got {mode!r}")
    if bn_scope not in BN_SCOPES:
      raise ValueError(f'bn_scope must be one of {BN_SCOPES}, got {bn_scope!r}')
    self.config = config
    self.mode, self.bn_scope, self.step = mode, bn_scope, step
    self.devices = parallel.local_devices(devices)
    # Only 'batch' scope shares statistics across devices; per-image statistics must not
    # be averaged over the device axis.
    axis = parallel.AXIS if (mode == 'paper' and bn_scope == 'batch') else None
    self.method = methods.get(config)
    self.direction = direction
    self.generator = self.method.generator(config, direction, axis_name=axis)
    self.variables = jax.tree.map(jnp.asarray, apply_variables(variables))
    self._fn = make_generator_fn(self.generator, mode, bn_scope)
    self._mapped = {}
    self.metadata = {
        'p2p_jax.mode': mode,
        'p2p_jax.bn_scope': bn_scope if mode == 'paper' else 'running_average',
        'p2p_jax.generator': config.model.generator,
        **({} if self.method.name == 'pix2pix' else
           {'p2p_jax.method': self.method.name, 'p2p_jax.direction': direction}),
        'p2p_jax.checkpoint_step': '' if step is None else str(int(step)),
        'p2p_jax.checkpoint': source or '',
    }

  @classmethod
  def from_state(cls, config, state, mode: str | None = None, **kwargs):
    """From a full config and a training state (e.g. inside the trainer)."""
    kwargs.setdefault('step', int(state.step))
    variables = methods.get(config).generator_variables(
        {'params': state.g.params, 'batch_stats': state.g.batch_stats},
        kwargs.get('direction', 'AtoB'))
    return cls(config, variables, mode, **kwargs)

  def set_state(self, state, step: int | None = None) -> None:
    """`set_variables` with this generator's variables taken from a training state."""
    self.set_variables(self.method.generator_variables(
        {'params': state.g.params, 'batch_stats': state.g.batch_stats}, self.direction), step)

  def set_variables(self, variables, step: int | None = None) -> None:
    """Swaps in new weights (same architecture), keeping the compiled functions."""
    self.variables = jax.tree.map(jnp.asarray, apply_variables(variables))
    self.step = step
    self.metadata['p2p_jax.checkpoint_step'] = '' if step is None else str(int(step))
    for _, placed in self._mapped.values():
      placed.clear()

  @property
  def multiple(self) -> int:
    """Height and width of `apply`'s inputs must be multiples of this (2**depth for U-Nets)."""
    return self.generator.size_multiple

  @property
  def in_channels(self) -> int:
    return self.generator.in_channels

  # How batches and files become this generator's input: the method says
  # (p2p_jax/methods/base.py; pix2pix and CycleGAN: the batch's 'input' image).

  def model_input(self, batch: dict) -> np.ndarray:
    """What `apply` takes for a host batch (pix2pixHD: its packed label maps)."""
    return self.method.model_input(self.config, batch)

  def shown_input(self, batch: dict) -> np.ndarray:
    """The batch's input as an image [N, H, W, C] in [-1, 1] (sample grids, result pages)."""
    return self.method.shown_input(self.config, batch)

  def read_input(self, path: str, info: dict | None = None) -> np.ndarray:
    """A user's input file as translate reads it (`info`: as image_io.read_image's)."""
    return self.method.read_input(self.config, path, info)

  def image_to_model_input(self, image) -> tuple[np.ndarray, bool]:
    """One user input -> (float32 [H, W, in_channels] for `apply`, outputs as uint8?)."""
    return self.method.image_to_model_input(self.config, image, self.in_channels)

  def _runner(self, n: int):
    """The mapped function for a batch of n: over the most devices that divide n evenly."""
    k = _largest_divisor(n, len(self.devices))
    if k not in self._mapped:
      def fn(state, batch):
        variables, base_key = state
        keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(batch['index'])
        return self._fn(variables, batch['x'], keys)
      dp = parallel.DataParallel(fn, self.config.compute.mapping, devices=self.devices[:k],
                                 batched_out=True)
      self._mapped[k] = (dp, {})
    return self._mapped[k]

  def apply(self, x, *, seed: int = 0, indices: Sequence[int] | None = None) -> np.ndarray:
    """G(x) for x [N, H, W, Cin] in [-1, 1] with H and W multiples of `multiple`.

    indices: each image's number in the run (dropout key fold_in(PRNGKey(seed), i));
    default 0..N-1. Returns float32 [N, H, W, Cout] in [-1, 1].
    """
    x = np.asarray(x, np.float32)
    self.generator.check_input(x.shape)
    indices = np.arange(len(x)) if indices is None else np.asarray(indices)
    if indices.shape != (len(x),):
      raise ValueError(f'{indices.size} indices for {len(x)} images')
    dp, placed = self._runner(len(x))
    if seed not in placed:  # Variables and key placed on the devices once per seed.
      placed.clear()
      placed[seed] = dp.put_state((self.variables, jax.random.PRNGKey(seed)))
    batch = {'x': x, 'index': indices.astype(np.uint32)}
    return np.asarray(dp(placed[seed], batch))
