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
  * A save that fails stops the trainer, never hangs it. Orbax writes in the background and
    says nothing until the next save waits for it; if the step's folder could not be made,
    that next save waited 5 minutes for a signal that never came. Here the step folder is
    made in the foreground (an error raises at once), `failure()` lets the trainer look at
    every step, without blocking, whether a save has ended in an error, and every error
    becomes a CheckpointSaveError of one line (`checkpoint_files.write_failure`: the folder
    gone, no space with the sizes, read-only, ...). A save that cannot fit in the free space
    is refused before it starts. Orbax's own tracebacks of a failed save are dropped unless
    absl logs at INFO (--verbosity): the trainer reports the failure itself.

Multi-host: create the Checkpointer and call `save`, `restore`, `wait` and `close` on EVERY
process, with the same arguments; Orbax writes each array once and synchronises processes.
"""

import errno
import logging as std_logging
import math
import os
import warnings

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


class CheckpointSaveError(CheckpointError):
  """A save that failed or cannot succeed: that step is not on disk, the run must stop."""


class _DropSaveTracebacks(std_logging.Filter):
  """Orbax's ERROR records (with tracebacks, from its background threads) about a save that
  failed: the trainer raises CheckpointSaveError for it, in one line. Shown when absl logs
  at INFO or below (--verbosity)."""

  def filter(self, record):
    if record.levelno < std_logging.ERROR or _ORBAX_DIR not in record.pathname:
      return True
    return logging.get_absl_logger().getEffectiveLevel() <= std_logging.INFO


_ORBAX_DIR = os.path.dirname(ocp.__file__)


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
    self._pending = None  # (step, bytes) of the save that may still be writing
    if not read_only:
      checkpoint_files.quiet_orphaned_tasks(self.directory)
      absl_logger = logging.get_absl_logger()
      if not any(isinstance(f, _DropSaveTracebacks) for f in absl_logger.filters):
        absl_logger.addFilter(_DropSaveTracebacks())
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
        # The step folder made in the foreground: when that fails, Orbax's background
        # writers would otherwise wait 5 minutes for it (the next save with them).
        async_options=ocp.AsyncOptions(create_directories_asynchronously=False),
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
    self._keep = keep
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
    best = None if read_only or not keep_best else self.best_step()
    self._best_value = None if best is None else self._score(self._mgr.metrics(best))

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

  def improves(self, metrics: dict | None) -> bool:
    """Whether `metrics` has a finite `best_metric` better than every kept checkpoint's (or
    there is none yet): saving such a step keeps 'best' the best validated step, not only
    the best of the periodic checkpoints. False without keep_best."""
    value = self._score(metrics)
    if not self._keep_best or not math.isfinite(value):
      return False
    return self._best_value is None or value < self._best_value

  def save(self, step: int, state, metrics: dict | None = None,
           data_stream: dict | None = None) -> bool:
    """Starts saving `state` as `step` (async: returns after copying it off the device).

    The caller may then donate or delete `state`. A step that already exists (even a
    damaged one) is never overwritten: it is skipped with a warning and False is returned.
    data_stream: a small JSON-able dict saved beside the state (`data_stream`).
    Raises CheckpointSaveError (one line) when the previous save failed, or this one cannot
    start: the folder is gone, the state does not fit in the free space, Orbax fails.
    Call on every process.
    """
    step = int(step)
    self.wait()  # the previous save, and its error if it failed
    step_dir = self.directory / str(step)
    if step in self._mgr.all_steps() or step in self._names.skip or step_dir.exists():
      logging.warning('Not saving step %d: %s already exists and is kept as it is.',
                      step, step_dir)
      return False
    needed = tree_bytes(state)
    free = checkpoint_files.free_bytes(self.directory)
    # Refused before Orbax starts: it would make a vanished workdir again (with its parents),
    # and a save that cannot fit fails only after filling the disk.
    if checkpoint_files.missing_folder(self.directory) or (free is not None and free < needed):
      raise self._save_error(step, OSError(errno.ENOSPC, 'not enough free space'), needed)
    metrics = {k: float(v) for k, v in (metrics or {}).items()}
    if self.improves(metrics):  # known now: the step's metrics reach the disk only later
      self._best_value = self._score(metrics)
    self._pending = (step, needed)
    try:
      items = {_ITEM: ocp.args.PyTreeSave(state)}
      if data_stream is not None:
        items[_STREAM] = ocp.args.JsonSave(data_stream)
      return self._mgr.save(step, args=ocp.args.Composite(**items),
                            metrics=metrics if self._keep_best else None, force=True)
    except Exception as e:  # pylint: disable=broad-except  # Orbax/TensorStore/OS errors
      self._pending = None
      raise self._save_error(step, e, needed) from e

  def _save_error(self, step: int, error: BaseException, needed: int | None):
    """CheckpointSaveError: which save, which folder, why; and where a rerun resumes."""
    why = checkpoint_files.write_failure(self.directory, error, needed)
    try:
      latest = max((s for s in self._mgr.all_steps() if s != step), default=None)
    except Exception:  # pylint: disable=broad-except  # the folder itself may be gone
      latest = None
    resume = (f'the newest checkpoint is step {latest}' if latest is not None else
              'no checkpoint was saved before it')
    error = CheckpointSaveError(f'saving step {step} into {self.directory} failed: {why}. '
                                f'Stopped; {resume}: fix the cause and run the same command '
                                'to resume')
    error.why = why  # for a command that is not a training run (convert)
    return error

  def failure(self, wait: bool = False) -> CheckpointSaveError | None:
    """The error of the last save if it has finished and failed, or the checkpoint folder
    (or the workdir) gone, else None; never blocks (the trainer asks at every step) unless
    `wait`: then a save in progress is waited for first (after another write into the
    workdir failed, the save's error, if it fails too, says more). Local to this process
    (stopping.StopRequest.agreed makes every process stop)."""
    gone = checkpoint_files.missing_folder(self.directory)
    if self._pending is not None and (wait or gone or not self._mgr.is_saving_in_progress()):
      try:
        self.wait()  # finished (or cannot finish: its folder is gone)
      except CheckpointSaveError as e:
        return e
    if gone:
      latest = self._mgr.latest_step()
      return CheckpointSaveError(
          f'{gone}: no checkpoint can be saved there. Stopped' +
          (f'; the newest checkpoint was step {latest}' if latest is not None else ''))
    return None

  def check_space(self, abstract_state) -> None:
    """Before training: raises CheckpointSaveError when not even one checkpoint of a state
    of this shape fits in the free space; warns when the checkpoints the run keeps (the
    newest `keep`, the best, one being written) will not (local disks only)."""
    free = checkpoint_files.free_bytes(self.directory)
    if free is None:
      return
    needed = tree_bytes(abstract_state)
    if free < needed:
      raise CheckpointSaveError(
          f'{self.directory} has {checkpoint_files.size_text(free)} free; a checkpoint of '
          f'this model needs about {checkpoint_files.size_text(needed)}: free some space or '
          'use another --workdir')
    kept = self._keep + (1 if self._keep_best else 0) + 1 - len(self.all_steps())
    if free < kept * needed:
      logging.warning(
          'Short of disk space: %s has %s free; each checkpoint needs about %s and the run '
          'may write %d more (the newest %d kept, the best, one being written). The save '
          'that does not fit stops the run.', self.directory,
          checkpoint_files.size_text(free), checkpoint_files.size_text(needed), kept,
          self._keep)

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
    """Blocks until the pending save is on disk; CheckpointSaveError if it failed."""
    pending, self._pending = self._pending, None
    try:
      self._mgr.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  # Orbax/TensorStore/OS errors
      if pending is None:
        raise
      raise self._save_error(pending[0], e, pending[1]) from e

  def close(self) -> None:
    """Waits for the pending save (CheckpointSaveError if it failed) and closes."""
    try:
      self.wait()
    finally:
      self._mgr.close()

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *exc):
    if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
      # Asked to stop at once (a second Ctrl-C): do not wait for the save in progress.
      # Its unfinished folder is removed by the next trainer.
      return
    if exc_type is None:
      self.close()
      return
    # Already failing: the error on its way out is the one to report; a pending save that
    # fails too (the same full disk) would only hide it.
    try:
      self.close()
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('While stopping: %s', ' '.join(str(e).split())[:300])


def tree_bytes(tree) -> int:
  """Bytes of the arrays of `tree` (jax/numpy arrays or ShapeDtypeStructs): what a
  checkpoint of it needs, give or take a few KiB of metadata."""
  return int(sum(math.prod(np.shape(x)) * np.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(tree) if hasattr(x, 'dtype')))


def _absolute(directory) -> epath.Path:
  """`directory` as an absolute path (Orbax refuses relative ones); URLs (gs://) as given."""
  path = os.fspath(directory)
  return epath.Path(path if '://' in path else os.path.abspath(os.path.expanduser(path)))
