"""What a method is: the seam between the shared trainer and pix2pix, CycleGAN, ...

The trainer (train.py), checkpoints, stopping, logging, evaluate, translate, export and the
command lines know no method by name. They ask the method that `config.method` names
(`p2p_jax.methods.get`) for what differs, through this interface:

  * `setup`: the networks it trains, how its state is made (`init`), its train step
    (written per replica, as p2p_jax.parallel maps it) and an example batch to compile for;
  * `data_kind` and `batch_keys`: which input pipeline feeds it and what a batch holds;
  * `validate` and `architecture`: its config checks, and the fields that fix its
    networks (a workdir holds one architecture);
  * `generator` and `generator_variables`: which network translates which direction at
    inference ('AtoB': the config's input domain to its target domain; 'BtoA': back);
  * `model_input`, `shown_input`, `read_input` and `image_to_model_input`: how a batch or
    a user's file becomes the generator's input and what a sample grid shows as the input
    (by default the batch's 'input' image; pix2pixHD's label and instance maps);
    `file_inference_config` and `check_file_input`: the config translating files uses
    (pix2pixHD with the feature encoder: features drawn from clusters), and whether files
    can be translated with it;
  * `data_kind_for` and `batch_keys_for`: as `data_kind` and `batch_keys`, where they
    depend on the config (pix2pixHD trains on pairs of images when label_nc is 0), and
    `pipeline_options`: what else the input pipeline needs (how labels are read);
  * `preflight`: checks of what training needs beyond the config (files it reads), run by
    the trainer before anything is written.

A state is a pytree of arrays with, whatever the method: `step` (int32 scalar, steps
done), `g` and `d` (state.NetState: params, batch_stats, opt_state; a method that trains
several generators keeps them side by side in one NetState under one optimiser, as the
reference's one Adam over itertools.chain of their parameters), and `rng` (the base key of
the step's randomness). Anything else (CycleGAN's image pools) is further fields of the
method's own state class. Checkpoints hold the whole state; inference reads `g` alone.
"""

from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from p2p_jax import image_io

# config.method's data needs: which input pipeline feeds the step.
#   'paired':   {'input', 'target'}, pixel-aligned (pix2pix).
#   'unpaired': {'input', 'target'} drawn independently from the two domains (CycleGAN).
#   'labels':   {'label', 'instance', 'target'}: label maps, instance maps, photos (pix2pixHD).
DATA_KINDS = ('paired', 'unpaired', 'labels')
DIRECTIONS = ('AtoB', 'BtoA')


class Setup(NamedTuple):
  """What the trainer runs for one method and config.

  init: () -> the state at step 0, from config.seed (jit-able, no arguments).
  step: (state, batch) -> (state, metrics), one replica's view (p2p_jax.parallel maps it).
  example_batch: batch_size -> a host batch of zeros with the shapes and dtypes `step`
    takes (what the trainer compiles for before any data is read).
  constants: None, or () -> a pytree of host arrays read once (pix2pixHD's VGG19 weights)
    that every call of `step` gets as a third argument, placed on the devices once
    (p2p_jax.parallel.DataParallel): neither in the state nor in checkpoints, and not
    baked into the compiled program.
  warm_start: None, or state -> state, applied on the host to the step-0 state of a new
    run (not on resume): weights from another run (pix2pixHD's load_pretrain).
  """
  init: Callable[[], Any]
  step: Callable[..., tuple[Any, dict]]
  example_batch: Callable[[int], dict]
  constants: Callable[[], Any] | None = None
  warm_start: Callable[[Any], Any] | None = None


class Method:
  """A training method. Subclasses override what differs; see the module docstring."""
  name: str = ''
  data_kind: str = 'paired'
  batch_keys: tuple[str, ...] = ('input', 'target')
  # Directions `generator` serves ('AtoB' is the trained input -> target map).
  directions: tuple[str, ...] = ('AtoB',)

  def validate(self, config) -> None:
    """Raises ValueError naming the field for a value this method cannot train with."""

  def preflight(self, config) -> None:
    """Raises (FileNotFoundError, ValueError: one line naming the field) when something
    training needs beyond the config is missing; the trainer calls it before it writes."""

  def data_kind_for(self, config) -> str:
    """The data kind (DATA_KINDS) this method trains on with `config`."""
    return self.data_kind

  def batch_keys_for(self, config) -> tuple[str, ...]:
    """The keys of a training batch with `config`."""
    return self.batch_keys

  def pipeline_options(self, config) -> dict[str, Any]:
    """Keyword arguments of input_pipeline.numpy_batches / num_examples beyond config.data
    (pix2pixHD's label_nc, instance_map, size_multiple); none by default."""
    return {}

  def model_input(self, config, batch: dict) -> np.ndarray:
    """What the inference generator (`generator`) takes for a host batch [N, ...]."""
    return batch['input']

  def shown_input(self, config, batch: dict) -> np.ndarray:
    """The input as an image [N, H, W, C] in [-1, 1] for sample grids and result pages."""
    return batch['input']

  def check_file_input(self, config) -> None:
    """Raises ValueError (one line) when this config's generator cannot translate input
    files (`translate` asks before it writes anything)."""

  def commands_before_translate(self, config, workdir: str,
                                checkpoint: str = 'latest') -> list[str]:
    """Commands a finished run needs before `translate --checkpoint=<checkpoint>` of files
    works (the trainer's closing 'Next:' lines show them); none by default."""
    del config, workdir, checkpoint
    return []

  def file_inference_config(self, config, workdir: str, seed: int = 0):
    """The config inference on a user's files uses, for a run in `workdir` and the
    command's --seed (by default the run's own config; pix2pixHD with the feature encoder
    draws features from the workdir's clusters with `seed`)."""
    del workdir, seed
    return config

  def read_input(self, config, path: str, info: dict | None = None) -> np.ndarray:
    """A user's input file (translate) as an array: uint8 [H, W, 1 or 3] by default.
    `info` as image_io.read_image's (whether the file had transparency)."""
    return image_io.read_image(path, info)

  def image_to_model_input(self, config, image: np.ndarray,
                           in_channels: int) -> tuple[np.ndarray, bool]:
    """One input of `read_input` (or a user's array) -> (float32 [H, W, in_channels] as
    `generator` takes it, whether outputs go back as uint8). By default uint8 images are
    scaled to [-1, 1], float ones taken as [-1, 1]; channels as image_io.to_channels."""
    image = np.asarray(image)
    if image.ndim == 2:
      image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
      raise ValueError(f'translate expects [H, W], [H, W, 1] or [H, W, 3] images, got '
                       f'shape {image.shape}')
    image = image[..., :3]  # Drop alpha.
    is_uint8 = image.dtype == np.uint8
    image = image_io.to_float(image) if is_uint8 else image.astype(np.float32)
    return image_io.to_channels(image, in_channels), is_uint8

  def architecture(self, config) -> dict[str, Any]:
    """{'model.ngf': 64, ...}: the fields that fix the networks' parameters."""
    raise NotImplementedError

  def setup(self, config, steps_per_epoch: int, axis_name: str) -> Setup:
    raise NotImplementedError

  def describe(self, config, state) -> str:
    """One line naming the networks and their parameter counts (the trainer's start line)."""
    raise NotImplementedError

  def generator(self, config, direction: str = 'AtoB', axis_name: str | None = None):
    """The flax module that translates `direction` at inference."""
    raise NotImplementedError

  def generator_variables(self, g_variables: dict, direction: str = 'AtoB') -> dict:
    """{'params', 'batch_stats'} of the `direction` generator, from the state's `g`
    ({'params': state.g.params, 'batch_stats': state.g.batch_stats})."""
    self.check_direction(direction)
    return g_variables

  def check_direction(self, direction: str) -> None:
    if direction not in self.directions:
      raise ValueError(
          f'{self.name} translates {" and ".join(self.directions)} only, not {direction!r}'
          + (' (it trains one generator, input -> target)' if self.directions == ('AtoB',)
             else ''))


def zeros_batch(shapes: dict[str, tuple[tuple[int, ...], Any]], batch_size: int) -> dict:
  """{key: zeros [batch_size, *shape] of dtype} for `Setup.example_batch`."""
  return {k: np.zeros((batch_size,) + tuple(shape), dtype) for k, (shape, dtype) in
          shapes.items()}


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


def replica_collectives(axis_name: str):
  """(one_device, pmean, per_replica) for a per-replica train step over `axis_name`.

  On one device, cross-device means are the identity and nothing needs marking per
  device; XLA:CPU would still copy every gradient through an all-reduce (about 2% of a
  U-Net-256 step). Known at trace time. Under shard_map, the gradient w.r.t. a replicated
  (device-invariant) input is summed over devices implicitly; `per_replica` marks the
  parameters as per-device so that the explicit `pmean` is the one reduction, as under
  pmap, and shard_map's check catches a missing one.
  """
  one_device = lambda: jax.lax.axis_size(axis_name) == 1

  def pmean(tree):
    return tree if one_device() else jax.lax.pmean(tree, axis_name)

  def per_replica(tree):
    if one_device():
      return tree
    return jax.tree.map(lambda a: jax.lax.pcast(a, axis_name, to='varying'), tree)

  return one_device, pmean, per_replica
