"""Inference with a trained generator: the two test-time modes, made explicit.

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

Sizes (`Translator.translate`): the U-Net needs height and width divisible by 2**depth
(32 for unet_32 ... 256 for unet_256). Any other image is padded by reflection, centred,
up to the next multiple, translated, and cropped back: outputs have the input's size and
pixels map 1:1 (no resampling); in paper mode the reflected border is part of the image's
statistics. Channels: a grayscale image given to a 3-channel model has
its gray channel repeated; an RGB image given to a 1-channel model is converted to luma.

Devices: a batch is split over as many local devices as divide its size evenly (one
device for a single image), through p2p_jax.parallel.DataParallel; use batch sizes that
are multiples of the device count for throughput. Single-process only.

Notebook use:
  translator = inference.load_translator('/tmp/p2p_facades', which='latest', mode='paper')
  output = translator.translate(image_uint8)   # any size, same size back
"""

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from p2p_jax import config_lib, image_io, parallel
from p2p_jax.models import factory

MODES = ('paper', 'eval')
BN_SCOPES = ('image', 'batch')
CHECKPOINT_DIR = 'checkpoints'


def check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"inference mode must be 'paper' or 'eval', got {mode!r}")


def _variables(variables) -> dict:
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
  check_mode(mode)
  if bn_scope not in BN_SCOPES:
    raise ValueError(f"bn_scope must be one of {BN_SCOPES}, got {bn_scope!r}")

  def paper(variables, x, key):
    out, _ = generator.apply(variables, x, train=True, rngs={'dropout': key},
                             mutable=['batch_stats'])
    return out

  def fn(variables, x, keys):
    variables = _variables(variables)
    if mode == 'eval':
      return generator.apply(variables, x, train=False)
    if bn_scope == 'batch':
      return paper(variables, x, keys[0])
    # One image at a time as a batch of one; vmap keeps the batch for throughput.
    return jax.vmap(lambda xi, ki: paper(variables, xi[None], ki)[0])(x, keys)

  return fn


def pad_to_multiple(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple]:
  """Reflect-pads [H, W, C] (centred) to multiples of `multiple`; returns it and the crop box.

  The crop box (top, left, height, width) cuts the original back out of the padded image.
  """
  h, w = image.shape[:2]
  if not h or not w:
    raise ValueError(f'cannot translate an empty image of shape {image.shape}')
  ph, pw = -h % multiple, -w % multiple  # Also pads images smaller than one tile up to it.
  top, left = ph // 2, pw // 2
  pads = ((top, ph - top), (left, pw - left), (0, 0))
  # 'reflect' needs at least 2 pixels along an axis; a 1-pixel line is repeated instead.
  mode = 'reflect' if min(h, w) > 1 else 'edge'
  return np.pad(image, pads, mode=mode), (top, left, h, w)


def _largest_divisor(n: int, at_most: int) -> int:
  return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


class Translator:
  """A generator with its variables and an inference mode, ready to translate images.

  Attributes:
    model_config: the config's `model` block.
    mode: 'paper' or 'eval' (see module docstring).
    bn_scope: 'image' or 'batch' (paper mode only).
    step: training step of the checkpoint (metadata only), or None.
    metadata: dict written next to every output (mode, scope, generator, step).
  """

  def __init__(self, model_config, variables, mode: str = 'paper', *,
               bn_scope: str = 'image', parallel_mode: str = 'pmap', devices=None,
               step: int | None = None, source: str | None = None):
    check_mode(mode)
    self.model_config = model_config
    self.mode, self.bn_scope, self.step = mode, bn_scope, step
    self.parallel_mode = parallel_mode
    self.devices = list(devices) if devices is not None else jax.local_devices()
    if bn_scope not in BN_SCOPES:
      raise ValueError(f"bn_scope must be one of {BN_SCOPES}, got {bn_scope!r}")
    # Only 'batch' scope shares statistics across devices; per-image statistics must not
    # be averaged over the device axis.
    axis = parallel.AXIS if (mode == 'paper' and bn_scope == 'batch') else None
    self.generator = factory.create_generator(model_config, axis_name=axis)
    self.variables = jax.tree.map(jnp.asarray, _variables(variables))
    self._fn = make_generator_fn(self.generator, mode, bn_scope)
    self._mapped = {}
    self.metadata = {
        'p2p_jax.mode': mode,
        'p2p_jax.bn_scope': bn_scope if mode == 'paper' else 'running_average',
        'p2p_jax.generator': model_config.generator,
        'p2p_jax.checkpoint_step': '' if step is None else str(int(step)),
        'p2p_jax.checkpoint': source or '',
    }

  @classmethod
  def from_state(cls, config, state, mode: str | None = None, **kwargs) -> 'Translator':
    """From a full config and a TrainState (e.g. inside the trainer)."""
    mode = config.inference_mode if mode is None else mode
    kwargs.setdefault('parallel_mode', config.parallel)
    kwargs.setdefault('step', int(state.step))
    return cls(config.model, {'params': state.g.params, 'batch_stats': state.g.batch_stats},
               mode, **kwargs)

  def set_variables(self, variables, step: int | None = None) -> None:
    """Swaps in new weights (same architecture), keeping the compiled functions."""
    self.variables = jax.tree.map(jnp.asarray, _variables(variables))
    self.step = step
    self.metadata['p2p_jax.checkpoint_step'] = '' if step is None else str(int(step))
    for _, placed in self._mapped.values():
      placed.clear()

  @property
  def multiple(self) -> int:
    """Height and width of `apply`'s inputs must be multiples of this (2**depth)."""
    return 2 ** self.generator.depth

  @property
  def in_channels(self) -> int:
    return self.generator.in_channels

  def _runner(self, n: int):
    """The mapped function for a batch of n: over the most devices that divide n evenly."""
    k = _largest_divisor(n, len(self.devices))
    if k not in self._mapped:
      def fn(state, batch):
        variables, base_key = state
        keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(batch['index'])
        return self._fn(variables, batch['x'], keys)
      dp = parallel.DataParallel(fn, self.parallel_mode, devices=self.devices[:k],
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

  def translate(self, images, *, seed: int = 0, indices: Sequence[int] | None = None,
                batch_size: int = 8):
    """Translates one image or a list of images of any size; outputs keep each input's size.

    images: [H, W], [H, W, 1] or [H, W, 3] arrays, uint8 in [0, 255] or float in [-1, 1]
      (or a list of them, sizes may differ).
    indices: each image's number in the run, for its dropout key (default 0, 1, ...).
      A stacked [N, H, W, C] array is a list of N images.
    Returns the same structure: uint8 outputs for uint8 inputs, float32 [-1, 1] otherwise.
    """
    stacked = hasattr(images, 'shape') and len(images.shape) == 4
    single = hasattr(images, 'shape') and not stacked
    items = [images] if single else list(images)
    indices = list(range(len(items))) if indices is None else list(indices)
    if len(indices) != len(items):
      raise ValueError(f'{len(indices)} indices for {len(items)} images')
    prepared, boxes, is_uint8 = [], [], []
    for image in items:
      image = np.asarray(image)
      if image.ndim == 2:
        image = image[..., None]
      if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f'translate expects [H, W], [H, W, 1] or [H, W, 3] images, got '
                         f'shape {image.shape}')
      image = image[..., :3]  # Drop alpha.
      is_uint8.append(image.dtype == np.uint8)
      image = image_io.to_float(image) if image.dtype == np.uint8 else image.astype(np.float32)
      padded, box = pad_to_multiple(image_io.to_channels(image, self.in_channels),
                                    self.multiple)
      prepared.append(padded)
      boxes.append(box)
    # Same padded size -> same batch; order within a size is kept for the keys.
    outputs = [None] * len(items)
    by_shape = {}
    for j, p in enumerate(prepared):
      by_shape.setdefault(p.shape, []).append(j)
    for group in by_shape.values():
      for start in range(0, len(group), batch_size):
        chunk = group[start:start + batch_size]
        out = self.apply(np.stack([prepared[j] for j in chunk]), seed=seed,
                         indices=[indices[j] for j in chunk])
        for j, o in zip(chunk, out):
          top, left, h, w = boxes[j]
          o = o[top:top + h, left:left + w]
          outputs[j] = image_io.to_uint8(o) if is_uint8[j] else o
    if stacked:
      return np.stack(outputs)
    return outputs[0] if single else outputs


# ------------------------------------------------------------------ loading from a workdir


def load_variables(workdir: str, which: Any = 'latest') -> tuple[int, dict]:
  """(step, {'params', 'batch_stats'}) of the generator in WORKDIR/checkpoints.

  which: 'latest', 'best' (lowest validation L1) or a step number. Raises
  checkpointing.CheckpointError (a ValueError) naming the folder when there is none.
  """
  from p2p_jax import checkpointing  # pylint: disable=import-outside-toplevel
  return checkpointing.load_generator_variables(os.path.join(workdir, CHECKPOINT_DIR), which)


def load_translator(workdir: str, which: Any = 'latest', mode: str | None = None,
                    **kwargs) -> Translator:
  """A Translator for the generator a workdir was trained into (config + checkpoint).

  mode: 'paper' or 'eval'; None takes the workdir config's `inference_mode` (default
  'paper'). Other keyword arguments go to Translator (bn_scope, devices, parallel_mode).
  """
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'workdir {workdir} does not exist')
  config = config_lib.load_workdir_config(workdir)
  mode = config.inference_mode if mode is None else mode
  check_mode(mode)
  step, variables = load_variables(workdir, which)
  kwargs.setdefault('parallel_mode', config.parallel)
  return Translator(config.model, variables, mode, step=step,
                    source=os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR, str(step)),
                    **kwargs)
