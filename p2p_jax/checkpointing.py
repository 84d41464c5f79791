"""Checkpoints of the training state: the one module that knows the Orbax API.

Why Orbax's v0 `CheckpointManager` and not the v1 API: in orbax-checkpoint 0.12 the v1 API
still lives under `orbax.checkpoint.experimental`, while the manager is the documented,
stable way to get what the trainer needs in one object: async saves (`save` returns after
the device-to-host copy, the write runs in a background thread), retention policies
(`LatestN` + `BestN` preservation policies; `max_to_keep` is deprecated), saves
coordinated across processes, and restores onto any sharding. Switching to v1 later means
rewriting this file only.

Layout: DIRECTORY/<step>/state (the whole TrainState, OCDBT), DIRECTORY/<step>/metrics
(JSON, e.g. {"val_l1": 0.21}) and DIRECTORY/<step>/data_stream (JSON: what besides the step
fixes the input stream, input_pipeline.stream_descriptor; the step alone says where the
stream resumes, so no iterator state is saved); a save is written into a temporary folder
renamed when complete (on-disk details and checks: checkpoint_files.py).

Robustness on top of Orbax (each one a pitfall found while writing this file):
  * Paths are made absolute: Orbax refuses relative ones, only in its first save's
    background thread (or, reading, with an error that looks like a damaged step).
  * Damaged steps are never deleted: a truncated `_CHECKPOINT_METADATA` or metrics file
    makes Orbax's manager fail while opening the directory, so steps are checked first
    (checkpoint_files.py). A trainer moves a damaged step aside (`<step>.damaged-<time>`,
    so the step is saved again when training gets there) and removes unfinished saves;
    read-only users hide damaged steps from Orbax. Truncated array data shows only when
    read: `restore` then does the same and falls back to the previous step.
  * Metrics: Orbax writes them to disk only when `best_fn` is set; without it a reopened
    manager forgets which step was best and `BestN` garbage-collects it. `BestN` keeps the
    LARGEST values unless reverse=True; we keep the smallest validation L1.
  * A save never replaces an existing step (Orbax's default silently skips any step at or
    below the newest one; we save those, except steps that exist).
  * Shapes are compared with the checkpoint's metadata before restoring, so an incompatible
    config gives a list of differing leaves instead of a TensorStore trace.
  * The first save of a state replicated over N devices is slow (Orbax splits each array
    over the replicas and compiles one slice per leaf and device: ~12 s for 140 leaves on 8
    fake CPU devices); later saves reuse the compiled slices (~0.4 s).

Multi-host: create the Checkpointer and call `save`, `restore`, `wait` and `close` on EVERY
process, with the same arguments; Orbax writes each array once and synchronises processes.
"""

import logging as std_logging
import math
import os
import warnings
from typing import Any

from absl import logging
from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from p2p_jax import checkpoint_files, parallel

_ITEM = checkpoint_files.ITEM
_STREAM = 'data_stream'
_MAX_LISTED = 20


class CheckpointError(ValueError):
  """A checkpoint directory that cannot be written, read, or used for this model."""


class _SkipSteps(ocp.path.step.NameFormat):
  """Orbax's standard step naming, blind to the steps in `skip` (damaged ones)."""

  def __init__(self, skip: set[int]):
    self._base = ocp.path.step.standard_name_format()
    self.skip = skip

  def build_name(self, step: int) -> str:
    return self._base.build_name(step)

  def find_all(self, base_path):
    return (m for m in self._base.find_all(base_path) if m.step not in self.skip)

  def find_step(self, base_path, step: int):
    if step in self.skip:
      raise ValueError(f'step {step} in {base_path} is damaged')
    return self._base.find_step(base_path, step)


# ---------------------------------------------------------------------------- trees

def abstract_like(tree, sharding=None):
  """ShapeDtypeStruct tree of `tree`, placed by `sharding` (default: each leaf's own)."""
  def one(x):
    s = sharding if sharding is not None else getattr(x, 'sharding', None)
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s)
  return jax.tree.map(one, tree)


def _leaf_table(tree) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p, simple=True, separator='/'):
          (tuple(getattr(x, 'shape', ())), np.dtype(x.dtype)) for p, x in leaves}


def _saved_tree(item_dir: epath.Path):
  """The checkpoint's tree of ArrayMetadata (shapes and dtypes), read without the data."""
  tree = ocp.handlers.StandardCheckpointHandler().metadata(item_dir).tree
  if not tree:
    raise ValueError(f'{item_dir} holds no arrays')
  return tree


def _check_compatible(saved, expected, where: epath.Path) -> None:
  """Raises CheckpointError listing the leaves whose shape/dtype differ, are missing or extra.

  Listed in tree order (step, g, d, rng), so the generator's params come first.
  """
  s, e = _leaf_table(saved), _leaf_table(expected)
  fmt = lambda v: f'{v[0]} {v[1]}'
  sections = [
      ('shape or dtype differs (path: saved -> expected)',
       [f'{k}: {fmt(s[k])} -> {fmt(e[k])}' for k in e if k in s and s[k] != e[k]]),
      ('expected but missing from the checkpoint',
       [f'{k}: {fmt(e[k])}' for k in e if k not in s]),
      ('in the checkpoint but not expected', [f'{k}: {fmt(s[k])}' for k in s if k not in e]),
  ]
  lines = []
  for title, items in sections:
    if items:
      lines.append(f'  {title}: {len(items)}')
      lines += [f'    {x}' for x in items[:_MAX_LISTED]]
      if len(items) > _MAX_LISTED:
        lines.append(f'    ... and {len(items) - _MAX_LISTED} more')
  if lines:
    raise CheckpointError(
        f'checkpoint {where} does not fit the model being restored (written with another '
        'config?):\n' + '\n'.join(lines) +
        '\nUse a new workdir, or the config the checkpoint was written with.')


def _score(metric: str):
  """Orbax metrics -> number, smaller is better; absent or non-finite values rank last."""
  def score(metrics) -> float:
    value = (metrics or {}).get(metric)
    return float(value) if value is not None and math.isfinite(value) else math.inf
  return score


# ---------------------------------------------------------------------------- the manager

class Checkpointer:
  """Saves the TrainState every time it is asked, keeps the newest `keep` and the best.

  Attributes:
    directory: where the steps live (WORKDIR/checkpoints); created if needed.
    keep: number of newest checkpoints kept.
    keep_best: also keep the checkpoint with the smallest `best_metric` (validation L1).
    best_metric: name of the metric in `save(..., metrics=)` that ranks checkpoints.
    async_save: write in a background thread (`wait()` / `close()` before exiting).
    read_only: only read (inference): nothing is created, written or deleted.
  """

  def __init__(self, directory, *, keep: int = 3, keep_best: bool = True,
               best_metric: str = 'val_l1', async_save: bool = True, read_only: bool = False):
    self.directory = _absolute(directory)
    if read_only and not self.directory.is_dir():
      raise CheckpointError(f'no checkpoint in {self.directory}: the folder does not exist')
    self.best_metric = best_metric
    self.read_only = read_only
    self._score = _score(best_metric)
    if not read_only:
      # A trainer starts from a tidy folder: damaged steps moved aside, unfinished saves
      # removed (by one process; the others wait, then see the result).
      if parallel.is_main_process():
        checkpoint_files.tidy(self.directory)
      parallel.barrier('p2p_jax_checkpoints_tidied')
    damaged, unfinished = checkpoint_files.scan(self.directory)
    if read_only:
      checkpoint_files.report(damaged, unfinished, self.directory)
    self._names = _SkipSteps(set(damaged))  # For a trainer: those that could not be moved.
    policy = ocp.checkpoint_managers.LatestN(n=keep)
    if keep_best:
      policy = ocp.checkpoint_managers.AnyPreservationPolicy([policy, ocp.checkpoint_managers.BestN(
          get_metric_fn=self._score, reverse=True, n=1, keep_checkpoints_without_metrics=False)])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        # best_fn only makes Orbax write the metrics to disk (and rank them the same way).
        best_fn=self._score if keep_best else None, best_mode='min',
        enable_async_checkpointing=async_save,
        step_name_format=self._names, read_only=read_only,
        save_interval_steps=0 if read_only else 1,
        create=not read_only, cleanup_tmp_directories=False)
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    # Saved uncompressed: trained float32 weights shrink by ~10% under zstd, and its buffers
    # for the whole state were the trainer's peak memory (+0.5 GB at 256 px; compressed
    # checkpoints of earlier versions still restore, the codec is in their metadata).
    registry.add(_ITEM, ocp.args.PyTreeSave,
                 ocp.handlers.PyTreeCheckpointHandler(use_compression=False))
    registry.add(_ITEM, ocp.args.StandardRestore, ocp.handlers.StandardCheckpointHandler())
    # The generator alone (inference): a partial restore of the same files.
    registry.add(_ITEM, ocp.args.PyTreeRestore, ocp.handlers.PyTreeCheckpointHandler())
    registry.add(_STREAM, ocp.args.JsonSave, ocp.handlers.JsonCheckpointHandler())
    registry.add(_STREAM, ocp.args.JsonRestore, ocp.handlers.JsonCheckpointHandler())
    self._keep_best = keep_best
    # A read-only manager says so with a warning each time: nothing a user can act on.
    absl_logger = logging.get_absl_logger()
    level = absl_logger.level
    if read_only:
      absl_logger.setLevel(std_logging.ERROR)
    try:
      self._mgr = ocp.CheckpointManager(self.directory, options=options,
                                        handler_registry=registry)
    finally:
      absl_logger.setLevel(level)

  def all_steps(self) -> list[int]:
    """Readable-looking steps, oldest first (damaged ones excluded)."""
    return sorted(self._mgr.all_steps())

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def best_step(self) -> int | None:
    """Step with the smallest finite `best_metric`, or None if no step has one."""
    scored = [(self._score(self._mgr.metrics(s)), s) for s in self.all_steps()]
    scored = [x for x in scored if math.isfinite(x[0])]
    return min(scored)[1] if scored else None

  def save(self, step: int, state, metrics: dict | None = None,
           data_stream: dict | None = None) -> bool:
    """Starts saving `state` as `step` (async: returns after copying it off the device).

    The caller may then donate or delete `state`. A step that already exists (even a
    damaged one) is never overwritten: it is skipped with a warning and False is returned.
    data_stream: a small JSON-able dict saved beside the state (`data_stream`).
    Call on every process.
    """
    step = int(step)
    step_dir = self.directory / str(step)
    if step in self._mgr.all_steps() or step in self._names.skip or step_dir.exists():
      logging.warning('Not saving step %d: %s already exists and is kept as it is.',
                      step, step_dir)
      return False
    metrics = {k: float(v) for k, v in (metrics or {}).items()}
    items = {_ITEM: ocp.args.PyTreeSave(state)}
    if data_stream is not None:
      items[_STREAM] = ocp.args.JsonSave(data_stream)
    return self._mgr.save(step, args=ocp.args.Composite(**items),
                          metrics=metrics if self._keep_best else None, force=True)

  def data_stream(self, step: int) -> dict | None:
    """The `data_stream` dict saved with `step`; None when it has none (saved without one,
    or before p2p_jax saved them) or it cannot be read."""
    self.wait()
    if not (self.directory / str(step) / _STREAM).exists():
      return None
    try:
      args = ocp.args.Composite(**{_STREAM: ocp.args.JsonRestore()})
      return dict(self._mgr.restore(step, args=args)[_STREAM])
    except Exception:  # pylint: disable=broad-except  # a damaged file: treated as none
      return None

  def step_for(self, which='latest') -> int:
    """The step `which` names: 'latest', 'best' (smallest finite `best_metric`) or a step."""
    steps = self.all_steps()
    if not steps:
      raise CheckpointError(f'no checkpoint in {self.directory}')
    if which == 'latest':
      return steps[-1]
    if which == 'best':
      best = self.best_step()
      if best is None:
        raise CheckpointError(f'no checkpoint in {self.directory} has a finite '
                              f'{self.best_metric!r}')
      return best
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
      if int(which) not in steps:
        raise CheckpointError(f'no checkpoint for step {which} in {self.directory}; '
                              f'available: {steps}')
      return int(which)
    raise ValueError(f"which must be 'latest', 'best' or a step number, got {which!r}")

  def _read_first(self, which, read):
    """(step, read(step)) for the step `which` names. For 'latest', a step whose data cannot
    be read is skipped with a warning (and hidden from Orbax: never the latest, never
    deleted) and the one before it is tried."""
    self.wait()
    step = self.step_for(which)
    failures = []
    while True:
      step_dir = self.directory / str(step)
      try:
        return step, read(step)
      except CheckpointError:
        raise  # does not fit the model: another step would not either
      except Exception as e:  # pylint: disable=broad-except  # Orbax/TensorStore errors
        error = e
        checkpoint_files.quiet_failed_reads(step_dir)
      failures.append((step_dir, error))
      if which != 'latest':
        raise CheckpointError(f'cannot read checkpoint {step_dir}: {error}') from error
      reason = f'{type(error).__name__}: {str(error)[:500]}'
      self._put_aside(step, reason)
      self._mgr.reload()
      earlier = [s for s in self.all_steps() if s < step]
      if not earlier:
        raise CheckpointError(f'no readable checkpoint in {self.directory}: ' + '; '.join(
            f'{d}: {type(e).__name__}' for d, e in failures)) from failures[0][1]
      step = earlier[-1]

  def _put_aside(self, step: int, reason: str) -> None:
    """A step found damaged while reading: moved aside by a trainer (every process calls
    this; one renames), hidden from Orbax otherwise (or when it cannot be moved)."""
    step_dir = self.directory / str(step)
    if self.read_only:
      logging.warning('Skipping damaged checkpoint %s (%s); trying the previous one.',
                      step_dir, reason)
      self._names.skip.add(step)
      return
    if parallel.is_main_process():
      checkpoint_files.move_aside(step_dir, reason)
    parallel.barrier(f'p2p_jax_checkpoint_{step}_moved')
    if step_dir.exists():
      self._names.skip.add(step)

  def restore(self, abstract_state, step: int | None = None):
    """The state saved at `step` (default: the newest readable one), placed as `abstract_state`.

    `abstract_state` is a tree of ShapeDtypeStruct (jax.eval_shape of the init, or
    `abstract_like(state)`); each leaf's `.sharding` says where the value goes, so a state
    saved on 8 devices restores onto 1 and vice versa (leaves without a sharding go to the
    first local device). Shapes are checked first: CheckpointError on an incompatible
    checkpoint. With step=None, a step whose data cannot be read is skipped with a warning
    and the previous one is tried.
    """
    target = parallel.on_first_local_device(abstract_state)

    def read(s):
      step_dir = self.directory / str(s)
      _check_compatible(_saved_tree(step_dir / _ITEM), target, step_dir)
      args = ocp.args.Composite(**{_ITEM: ocp.args.StandardRestore(target)})
      return self._mgr.restore(s, args=args)[_ITEM]
    return self._read_first('latest' if step is None else step, read)[1]

  def restore_generator(self, which='latest', network: str = 'g') -> tuple[int, dict]:
    """(step, {'params', 'batch_stats'}) of the generator as host numpy arrays.

    which: see `step_for`. Reads only the generator's arrays (network='d': the
    discriminator's); no model or optimiser is needed, so it serves any checkpoint.
    """
    def read(s):
      net = _saved_tree(self.directory / str(s) / _ITEM)[network]
      wanted = {k: net[k] for k in ('params', 'batch_stats') if net.get(k)}
      target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype),
                            {network: wanted})
      restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
      args = ocp.args.Composite(**{_ITEM: ocp.args.PyTreeRestore(
          item=target, restore_args=restore_args, partial_restore=True)})
      with warnings.catch_warnings():  # host numpy wanted: no sharding to read, on purpose
        warnings.filterwarnings('ignore', message='Sharding info not provided')
        out = self._mgr.restore(s, args=args)[_ITEM][network]
      return {'params': out['params'], 'batch_stats': out.get('batch_stats', {})}
    return self._read_first(which, read)

  def wait(self) -> None:
    """Blocks until the pending save is on disk (raises its error if it failed)."""
    self._mgr.wait_until_finished()

  def close(self) -> None:
    self._mgr.close()

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *exc):
    if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
      # Asked to stop at once (a second Ctrl-C): do not wait for the save in progress.
      # Its unfinished folder is removed by the next trainer.
      return
    self.close()


def _absolute(directory) -> epath.Path:
  """`directory` as an absolute path (Orbax refuses relative ones); URLs (gs://) as given."""
  path = os.fspath(directory)
  return epath.Path(path if '://' in path else os.path.abspath(os.path.expanduser(path)))
