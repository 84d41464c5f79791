"""A workdir: the folder of one training run, and what can be read back from it.

  WORKDIR/config.json        the run's full config (inference rebuilds the model from it)
  WORKDIR/checkpoints/<step> Orbax checkpoints of the whole training state
  WORKDIR/samples/           input | output | target grids written during training
  WORKDIR/tensorboard/       TensorBoard events
  WORKDIR/eval/              what `python -m p2p_jax.evaluate` writes by default

A workdir holds one model: `check_same_model` refuses another architecture before anything
in it is touched.
"""

import json
import os
import shutil
import socket
from typing import Any

from etils import epath

from p2p_jax import checkpointing, config_schema, inference

CONFIG_FILE = 'config.json'
CHECKPOINTS = 'checkpoints'
SAMPLES = 'samples'
TENSORBOARD = 'tensorboard'
EVAL = 'eval'


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, CHECKPOINTS)


def _probe_path(directory: epath.Path) -> epath.Path:
  return directory / f'.write_probe.{socket.gethostname()}.{os.getpid()}'


def check_writable(directory, min_free_bytes: int = 0) -> None:
  """Creates `directory` if needed and proves it writable by writing and deleting a file.

  Called before training starts (every process may call it): a read-only, missing-permission
  or full workdir then fails at once with a CheckpointError naming the directory and the OS
  error, instead of an Orbax trace at the first save hours later. `min_free_bytes` (local
  disks only) also demands that much free space, e.g. twice the size of the state.
  """
  path = epath.Path(directory)
  probe = _probe_path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
    with probe.open('wb') as f:
      f.write(b'\0' * 4096)
      f.flush()
      if hasattr(f, 'fileno'):
        os.fsync(f.fileno())
  except OSError as e:
    raise checkpointing.CheckpointError(f'{path} is not writable: {e}') from e
  finally:
    try:
      probe.unlink(missing_ok=True)
    except OSError:
      pass
  if min_free_bytes and os.path.isdir(str(path)):
    free = shutil.disk_usage(str(path)).free
    if free < min_free_bytes:
      raise checkpointing.CheckpointError(
          f'{path} has {free / 2**20:.0f} MiB free; checkpoints need at least '
          f'{min_free_bytes / 2**20:.0f} MiB')


def save_config(config, workdir: str) -> str:
  """Writes the run's config as JSON into `workdir` (atomically: a kill leaves the old one)."""
  path = os.path.join(workdir, CONFIG_FILE)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(tmp, path)
  return path


def load_config(workdir: str):
  """The config a workdir was trained with (keys renamed since then moved); raises
  FileNotFoundError naming the file when there is none."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: {workdir!r} is not a p2p_jax workdir '
                            '(train into it with python -m p2p_jax.main first)')
  with open(path) as f:
    return config_schema.from_dict(json.load(f))


def check_same_model(config, workdir: str) -> None:
  """Raises CheckpointError if `workdir` holds a run of another architecture.

  The architecture is `config.model` and whether D sees x (`loss.conditional`); everything
  else (`compute`, the objective's weights, the data, the schedule) may change on resume.
  """
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return
  saved = load_config(workdir)
  differ = [f'model.{k}: {saved.model[k]!r} in the workdir, {config.model[k]!r} now'
            for k in config.model if saved.model.get(k) != config.model[k]]
  if saved.loss.conditional != config.loss.conditional:
    differ.append(f'loss.conditional: {saved.loss.conditional} in the workdir, '
                  f'{config.loss.conditional} now')
  if differ:
    raise checkpointing.CheckpointError(
        f'{workdir} holds a run with another architecture ({"; ".join(differ)}); use a new '
        '--workdir or the same model settings')


def load_generator_variables(workdir: str, which: Any = 'latest') -> tuple[int, dict]:
  """(step, {'params', 'batch_stats'}) of the generator in WORKDIR/checkpoints.

  which: 'latest' (damaged steps skipped with a warning), 'best' (lowest validation L1) or
  a step number. Raises checkpointing.CheckpointError (a ValueError) naming the folder when
  there is no such checkpoint.
  """
  with checkpointing.Checkpointer(checkpoint_dir(workdir), read_only=True) as ckpt:
    return ckpt.restore_generator(which)


def load_generator(workdir: str, which: Any = 'latest', mode: str | None = None,
                   **kwargs) -> inference.TrainedGenerator:
  """The trained generator of a workdir (its config + a checkpoint), ready for inference.

  mode: 'paper' or 'eval'; None takes the config's `inference_mode`. Other keyword
  arguments go to inference.TrainedGenerator (bn_scope, devices).
  """
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'workdir {workdir} does not exist')
  config = load_config(workdir)
  step, variables = load_generator_variables(workdir, which)
  source = os.path.join(os.path.abspath(checkpoint_dir(workdir)), str(step))
  return inference.TrainedGenerator(config, variables, mode, step=step, source=source,
                                    **kwargs)
