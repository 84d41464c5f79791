"""A reference model as a p2p_jax workdir, and a workdir's model as reference .pth files.

This file: pix2pix's G (and D), and what every method's import shares. CycleGAN's four
networks: cyclegan_workdir.py; which method a set of files is: runs.py.

Import (`import_weights`): the reference's G (and optionally D) state dicts become a
workdir as p2p_jax's trainer would have left it at step 0: config.json (the given or
default config with the `model` block the tensors imply), an Orbax checkpoint of a full
TrainState (state.create_train_state with the converted networks in place of the init,
fresh Adam states, the seed's dropout key) and WORKDIR/pytorch_import.json (which network
came from which file; workdirs.IMPORT_FILE). `translate`, `evaluate`, `export` and
`python -m p2p_jax.main` (fine-tuning: it resumes from step 0) then use it as their own.
Everything is converted and checked in memory first; a bad file or a workdir that already
holds a model changes nothing on disk.

Export (`export_weights`): a checkpoint's G (and D) as the reference's state dicts, which
its networks load with load_state_dict(strict=True).
"""

import contextlib
import json
import os

import jax
import numpy as np

from p2p_jax import (checkpointing, config_schema, networks, state as state_lib, stopping,
                     workdirs)
from p2p_jax.pytorch import weights
from p2p_jax.pytorch.weights import StateDictError


def _config_for(arch: dict, config=None, *, with_d: bool, seed: int | None = None):
  """`config` (default: the schema's) with the model block the tensors imply."""
  config = config_schema.get_config() if config is None else config.copy_and_resolve_references()
  config.method = 'pix2pix'
  for field, value in arch.items():  # G's fields, and D's when it was given
    config.model[field] = value
  if with_d:
    config.loss.conditional = True  # the reference's pix2pix D sees x and G(x)
  if seed is not None:
    config.seed = seed
  config_schema.validate(config)
  return config


def check_target(config, workdir: str) -> None:
  """Refuses a workdir that holds checkpoints, or the config of another model."""
  ckpt_dir = workdirs.checkpoint_dir(workdir)
  if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
    raise checkpointing.CheckpointError(
        f'{workdir} already holds checkpoints ({ckpt_dir}); converting into it would mix two '
        'models: use a new --workdir')
  workdirs.check_same_model(config, workdir)


def same_layout(expected, got, what: str) -> None:
  """Raises StateDictError at the first leaf whose path or shape differs from the init's."""
  want = jax.tree_util.tree_flatten_with_path(expected)[0]
  have = dict((jax.tree_util.keystr(p), np.shape(x))
              for p, x in jax.tree_util.tree_flatten_with_path(got)[0])
  for path, leaf in want:
    key = jax.tree_util.keystr(path)
    if have.get(key) != tuple(leaf.shape):
      raise StateDictError(f'{what}: {key} is {have.get(key)}, the config builds '
                           f'{tuple(leaf.shape)}')
  if len(have) != len(want):
    raise StateDictError(f'{what}: {len(have)} arrays, the config builds {len(want)}')


def build_state(config, g_variables, d_variables=None) -> state_lib.TrainState:
  """The TrainState p2p_jax's trainer would start from, with G (and D, if given) replaced.

  D, when not given, is initialised from config.seed as the trainer would. Raises
  StateDictError if the variables do not have the shapes the config builds.
  """
  generator = networks.create_generator(config)
  discriminator = networks.create_discriminator(config)
  # The schedule changes no optimiser state, so any epoch length gives the same state.
  tx_g, tx_d, _ = state_lib.create_optimizers(config, steps_per_epoch=1)
  key = jax.random.PRNGKey(config.seed)
  make = lambda g, d: state_lib.create_train_state(
      key, generator, discriminator, tx_g, tx_d, config.data.crop_size,
      g_variables=g, d_variables=d)
  expected = jax.eval_shape(lambda: make(None, None))
  for name, given, want in (('generator', g_variables, expected.g),
                            ('discriminator', d_variables, expected.d)):
    if given is not None:
      same_layout({'params': want.params, 'batch_stats': want.batch_stats},
                   {'params': given['params'], 'batch_stats': given.get('batch_stats', {})},
                   name)
  return jax.jit(make)(g_variables, d_variables)


def import_record(method: str, sources: dict, seed: int, **extra) -> dict:
  """What WORKDIR/pytorch_import.json says: each network's file (None: initialised from
  the seed), and `untrained` ({direction: why}) for generators no file gave (their
  checkpoint-0 weights are not a model: workdirs.check_generator_trained)."""
  return {'converted_by': 'python -m p2p_jax.convert', 'method': method,
          'networks': {k: (os.path.abspath(v) if v and os.path.exists(v) else v)
                       for k, v in sources.items()},
          'seed': int(seed), 'untrained': {}, **extra}


def write(config, state, workdir: str, record: dict) -> None:
  """config.json, checkpoint step 0 and the import record, made in a temporary folder and
  moved into place whole, so that a failure or a stop leaves no half-made workdir: a new
  workdir is that folder renamed; into an existing empty one (a symlink, `.`, a mount point
  too) the folder is made inside it and its entries moved out."""
  new = not os.path.exists(workdir)
  empty = not new and os.path.isdir(workdir) and not os.listdir(workdir)
  if new:
    target = f'{os.path.abspath(workdir)}.converting-{os.getpid()}'
  elif empty:
    target = os.path.join(workdir, f'.converting-{os.getpid()}')
  else:
    target = workdir
  # The folder being made is gone at the end (an error, a stop request: with what it
  # holds), and so are the new workdir's parent folders it made, if left empty; a stop
  # request waits for the moves into place.
  with (stopping.temporary(target, made=stopping.missing_folders(workdir)) if new or empty
        else contextlib.nullcontext()):
    workdirs.check_writable(target)
    try:
      with checkpointing.Checkpointer(workdirs.checkpoint_dir(target),
                                      keep=config.keep_checkpoints, async_save=False) as ckpt:
        ckpt.save(0, state)
    except checkpointing.CheckpointSaveError as e:
      # The trainer's words ("resume", a folder named .converting-<pid>) do not fit here.
      raise checkpointing.CheckpointSaveError(
          f'writing the checkpoint into {workdir} failed: {getattr(e, "why", e)}; nothing '
          'was written') from e
    try:
      workdirs.save_config(config, target)
      with open(os.path.join(target, workdirs.IMPORT_FILE), 'w') as f:
        json.dump(record, f, indent=2, sort_keys=True)
    except OSError as e:  # a full disk: named by the workdir, not the folder being made
      e.filename = workdir if e.filename is None else str(e.filename).replace(target, workdir)
      raise
    with stopping.writing():
      if new:
        os.rename(target, workdir)
      elif empty:
        for name in os.listdir(target):
          os.rename(os.path.join(target, name), os.path.join(workdir, name))


def import_weights(g_state_dict, workdir: str, *, d_state_dict=None, config=None,
                   norm: str | None = None, seed: int | None = None,
                   g_source: str | None = None, d_source: str | None = None,
                   record: dict | None = None) -> dict:
  """Writes the reference's G (and D) into `workdir` as a p2p_jax run at step 0.

  config: where the non-model fields come from (data, optim, ...; default: the schema's
    defaults); its `model` block is replaced by what the tensors imply (and
    dropout_placement='pytorch'). norm: see weights.generator_from_torch. seed: overrides
    config.seed (D's init when no D is given, and the dropout stream). record: extra
    fields of the import record (e.g. the published model's name).
  Returns a summary: the config, the architecture, and whether D was converted.
  Raises StateDictError / ValueError (nothing written) for input that does not fit.
  """
  g, d, arch = weights.from_torch(g_state_dict, d_state_dict, norm, g_source, d_source)
  config = _config_for(arch, config, with_d=d is not None, seed=seed)
  check_target(config, workdir)
  state = build_state(config, g, d)
  write(config, state, workdir, import_record(
      'pix2pix', {'G': g_source or '(in memory)', 'D': d_source if d is not None else None},
      config.seed, **(record or {})))
  return {'config': config, 'arch': arch, 'd_converted': d is not None,
          'g_params': state_lib.param_count(state.g.params),
          'd_params': state_lib.param_count(state.d.params)}


NETWORKS = ('G', 'D')  # pix2pix's, as the reference names its files (latest_net_G.pth)


def read_checkpoint(workdir: str, which='latest', *, discriminators: bool = False):
  """(config, step, g variables, d variables or None) of a workdir's checkpoint `which`
  ('latest', 'best' or a step): the state's `g` / `d` {'params', 'batch_stats'}."""
  config = workdirs.load_config(workdir)
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir), read_only=True) as ckpt:
    step, g = ckpt.restore_generator(which)
    d = ckpt.restore_generator(step, network='d')[1] if discriminators else None
  return config, step, g, d


def export_weights(workdir: str, which='latest', names=NETWORKS) -> tuple[int, dict]:
  """(step, {name: state dict}) of a pix2pix workdir's checkpoint `which`: 'G' and/or 'D'
  in the reference's key names and layouts."""
  config, step, g, d = read_checkpoint(workdir, which, discriminators='D' in names)
  out = {}
  if 'G' in names:
    out['G'] = weights.generator_to_torch(g, config.model)
  if 'D' in names:
    out['D'] = weights.discriminator_to_torch(d, config.model)
  return step, out
