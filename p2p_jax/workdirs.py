"""A workdir: the folder of one training run, and what can be read back from it.

  WORKDIR/config.json        the run's full config (inference rebuilds the model from it)
  WORKDIR/checkpoints/<step> Orbax checkpoints of the whole training state
  WORKDIR/samples/           input | output | target grids written during training
  WORKDIR/tensorboard/       TensorBoard events
  WORKDIR/eval/              what `python -m p2p_jax.evaluate` writes by default
  WORKDIR/trainer.lock       who trains in it now (host, pid), while a trainer runs (deleted
                             when it ends; a killed one's is taken over as stale)
  WORKDIR/pytorch_import.json  what `python -m p2p_jax.convert` made it from (converted
                             workdirs only): each network's .pth file, or null where the
                             network was initialised from the seed

A workdir holds one model: `check_same_model` refuses another architecture before anything
in it is touched. It has one trainer at a time: `TrainerLock` refuses a second one.
Paths may be relative to the current folder: every function here resolves them first
(`absolute_path`), since Orbax accepts only absolute ones.
"""

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import threading
import time
from typing import Any

from etils import epath
import numpy as np

from p2p_jax import (checkpoint_files, checkpointing, config_schema, inference, methods, parallel,
                     stopping)
from p2p_jax.datasets import catalog

CONFIG_FILE = 'config.json'
CHECKPOINTS = 'checkpoints'
SAMPLES = 'samples'
TENSORBOARD = 'tensorboard'
EVAL = 'eval'
LOCK_FILE = 'trainer.lock'
IMPORT_FILE = 'pytorch_import.json'
# The lock's owner touches it this often; a lock of another host whose file has not been
# touched for STALE_AFTER_S belongs to a trainer that is gone (see TrainerLock).
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0


def absolute_path(path: str) -> str:
  """`path` (relative to the current folder, or with ~) as an absolute path; URLs as given."""
  path = os.fspath(path)
  return path if '://' in path else os.path.abspath(os.path.expanduser(path))


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(absolute_path(workdir), CHECKPOINTS)


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
  if '://' not in str(directory):
    # Named as what it is (a file, a link to nothing) rather than by an OS error about a
    # path inside it.
    existing = os.path.abspath(str(directory))
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
      existing = os.path.dirname(existing)
    try:
      stopping.check_folder(existing)
    except ValueError as e:
      where = '' if existing == os.path.abspath(str(directory)) else f'cannot make {path}: '
      raise checkpointing.CheckpointError(f'{where}{e}') from None
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


def raise_if_storage_error(workdir: str, error: OSError,
                           save_error: Exception | None = None) -> None:
  """Raises an OSError met while writing into `workdir` (a sample, the curves) again as a
  CheckpointError of one line when its cause is the workdir's storage: the workdir gone,
  its disk full, read-only, no permission; `save_error` (a failed save's, which says more)
  when there is one. Returns for other errors."""
  if save_error is not None:
    raise save_error from error
  if checkpoint_files.is_local(workdir) and not os.path.isdir(absolute_path(workdir)):
    raise checkpointing.CheckpointError(
        f'the workdir {absolute_path(workdir)} is gone (deleted or moved while training): '
        f'stopped ({error.strerror or error})') from error
  if checkpoint_files.os_errno(error) in checkpoint_files.STORAGE_ERRNOS:
    why = checkpoint_files.write_failure(checkpoint_dir(workdir), error)
    what = getattr(error, 'filename', None) or f'into {workdir}'
    raise checkpointing.CheckpointError(
        f'cannot write {what}: {why}. Stopped; fix the cause and run the same command to '
        'resume from the newest checkpoint') from error


def save_config(config, workdir: str) -> str:
  """Writes the run's config as JSON into `workdir` (atomically: a kill leaves the old one)."""
  path = os.path.join(absolute_path(workdir), CONFIG_FILE)
  tmp = path + '.tmp'
  with stopping.temporary(tmp):  # no config.json.tmp left by a full disk either
    with open(tmp, 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, path)
  return path


def load_config(workdir: str):
  """The config a workdir was trained with (keys renamed since then moved); raises
  FileNotFoundError naming the file when there is none."""
  path = os.path.join(absolute_path(workdir), CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: {workdir!r} is not a p2p_jax workdir '
                            '(train into it with python -m p2p_jax.main first)')
  with open(path) as f:
    return config_schema.from_dict(json.load(f))


def check_same_model(config, workdir: str) -> None:
  """Raises CheckpointError if `workdir` holds a run of another method or architecture.

  The architecture is what the method says fixes its networks (`Method.architecture`; for
  pix2pix `config.model` and whether D sees x); everything else (`compute`, the objective's
  weights, the data, the schedule) may change on resume.
  """
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return
  saved = load_config(workdir)
  if saved.method != config.method:
    raise checkpointing.CheckpointError(
        f'{workdir} holds a {saved.method} run, not {config.method} (config.method); use a '
        'new --workdir')
  method = methods.get(config)
  before, now = method.architecture(saved), method.architecture(config)
  differ = [f'{k}: {before.get(k)!r} in the workdir, {v!r} now'
            for k, v in now.items() if before.get(k) != v]
  if differ:
    raise checkpointing.CheckpointError(
        f'{workdir} holds a run with another architecture ({"; ".join(differ)}); use a new '
        '--workdir or the same model settings')


def eval_is_paired(config) -> bool:
  """Whether the validation split of `config`'s dataset pairs each input with its target
  (always for pix2pix; for CycleGAN only on a paired dataset read unpaired)."""
  kind = methods.get(config).data_kind_for(config)
  return not catalog.is_unpaired(config.data.dataset, kind)


def best_metric(eval_paired: bool) -> str:
  """What ranks a run's checkpoints as 'best': the validation L1 of input -> output against
  the target where validation is paired, else (unpaired data) the cycle L1."""
  return 'val_l1' if eval_paired else 'val_cycle_l1'


def load_generator_variables(workdir: str, which: Any = 'latest') -> tuple[int, dict]:
  """(step, {'params', 'batch_stats'}) of the generator in WORKDIR/checkpoints.

  which: 'latest' (damaged steps skipped with a warning), 'best' (lowest validation L1) or
  a step number. Raises checkpointing.CheckpointError (a ValueError) naming the folder when
  there is no such checkpoint.
  """
  has_config = os.path.exists(os.path.join(absolute_path(workdir), CONFIG_FILE))
  metric = best_metric(not has_config or eval_is_paired(load_config(workdir)))
  with checkpointing.Checkpointer(checkpoint_dir(workdir), read_only=True,
                                  best_metric=metric) as ckpt:
    return ckpt.restore_generator(which)


def check_generator_trained(workdir: str, step: int, direction: str) -> None:
  """Raises ValueError when the `direction` generator of checkpoint `step` is one that a
  conversion initialised from the seed (step 0 of a workdir converted from a published
  CycleGAN generator, which is one G: its G_B is no model). After training it is one."""
  path = os.path.join(absolute_path(workdir), IMPORT_FILE)
  if step != 0 or not os.path.exists(path):
    return
  with open(path) as f:
    why = (json.load(f).get('untrained') or {}).get(direction)
  if why:
    raise ValueError(f'{workdir} has no trained {direction} generator at checkpoint step 0: '
                     f'{why}')


def load_generator(workdir: str, which: Any = 'latest', mode: str | None = None,
                   direction: str = 'AtoB', *, for_files: bool = False, seed: int = 0,
                   **kwargs) -> inference.TrainedGenerator:
  """The trained generator of a workdir (its config + a checkpoint), ready for inference.

  mode: 'paper' or 'eval'; None takes the config's `inference_mode`. direction: which of
  the method's generators ('AtoB', or 'BtoA' for CycleGAN's G_B). for_files: the
  generator translates a user's files (`translate`), not dataset batches (what the method
  needs for that, with the command's `seed`: Method.file_inference_config). Other keyword
  arguments go to
  inference.TrainedGenerator (bn_scope, devices).
  """
  workdir = absolute_path(workdir)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'workdir {workdir} does not exist')
  config = load_config(workdir)
  method = methods.get(config)
  if for_files:
    config = method.file_inference_config(config, workdir, seed)
  method.check_direction(direction)  # before reading any checkpoint
  step, variables = load_generator_variables(workdir, which)
  check_generator_trained(workdir, step, direction)
  source = os.path.join(checkpoint_dir(workdir), str(step))
  return inference.TrainedGenerator(config, method.generator_variables(variables, direction),
                                    mode, step=step, source=source, direction=direction,
                                    **kwargs)


# ------------------------------------------------------------------ one trainer at a time

class WorkdirLockedError(checkpointing.CheckpointError):
  """Another trainer that is still running holds the workdir."""


def _boot_id() -> str | None:
  try:
    with open('/proc/sys/kernel/random/boot_id') as f:
      return f.read().strip()
  except OSError:
    return None


def _start_time(pid: int) -> str | None:
  """When process `pid` started (Linux clock ticks since boot), or None: with the pid and
  the boot id it names one process, even after its pid is reused."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _running(owner: dict) -> bool:
  """Whether the process `owner` names (on this host) still runs."""
  pid = owner.get('pid')
  if not isinstance(pid, int) or pid <= 0:
    return False
  if owner.get('boot_id') and _boot_id() and owner['boot_id'] != _boot_id():
    return False  # The host rebooted since.
  if owner.get('start_time') and _start_time(pid) is not None:
    return _start_time(pid) == owner['start_time']
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # Someone else's process: it exists.
  return True


class TrainerLock:
  """WORKDIR/trainer.lock: exclusive use of a workdir by one trainer, released at exit.

  The file names its owner (host, pid, start time) and is held with an OS lock (flock),
  which the kernel releases when the owner dies, so a crashed or killed run never leaves
  the workdir stuck. Another trainer is refused with a message naming the owner; a lock
  whose owner is gone is stale, and taken over with a warning:
    * same host: the owner's pid no longer runs (or is another process now);
    * another host: its file has not been touched for STALE_AFTER_S (the owner touches it
      every HEARTBEAT_S), since that host's processes cannot be seen from here. A trainer
      on another host that died less than STALE_AFTER_S ago therefore still blocks.
  Where the file system has no flock (some FUSE mounts) only these content checks apply,
  and two trainers started at the same instant might both start.
  """

  def __init__(self, workdir: str, *, heartbeat_s: float = HEARTBEAT_S,
               stale_after_s: float = STALE_AFTER_S):
    self.path = os.path.join(absolute_path(workdir), LOCK_FILE)
    self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
    self.owner = {'host': socket.gethostname(), 'pid': os.getpid(),
                  'start_time': _start_time(os.getpid()), 'boot_id': _boot_id(),
                  'since': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
    self._fd = None
    self._stop = threading.Event()
    self._thread = None
    self._release_lock = threading.Lock()

  def _read(self) -> dict:
    os.lseek(self._fd, 0, os.SEEK_SET)
    text = os.read(self._fd, 1 << 16).decode('utf-8', 'replace').strip()
    try:
      owner = json.loads(text) if text else {}
    except ValueError:
      owner = {'host': '?', 'pid': '?', 'unreadable': text[:80]}
    return owner if isinstance(owner, dict) else {}

  def _describe(self, owner: dict) -> str:
    age = time.time() - os.stat(self.path).st_mtime
    return (f'pid {owner.get("pid")} on host {owner.get("host")} (since '
            f'{owner.get("since", "?")}; lock file {self.path}, touched {age:.0f} s ago)')

  def _fail(self, message: str):
    os.close(self._fd)
    self._fd = None
    raise WorkdirLockedError(message)

  def _open_locked(self) -> None:
    """Opens the file and flocks it (or raises WorkdirLockedError). Its owner deletes it on
    release, so a lock won on a file that was deleted meanwhile (or replaced) is tried
    again on the file that is there now."""
    while True:
      self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        self._fail(f'{os.path.dirname(self.path)} is in use by another trainer: '
                   f'{self._describe(self._read())}. Stop it first, or use another workdir')
      except OSError:
        return  # No flock on this file system: the owner's identity decides alone.
      try:
        same = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
      except FileNotFoundError:
        same = False
      if same:
        return
      os.close(self._fd)

  def acquire(self) -> 'TrainerLock':
    """Takes the lock or raises WorkdirLockedError naming the trainer that holds it."""
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    self._open_locked()
    owner = self._read()
    if owner and owner.get('host') == self.owner['host']:
      alive = _running(owner)
    elif owner:
      alive = time.time() - os.stat(self.path).st_mtime < self.stale_after_s
    else:
      alive = False
    if alive:
      self._fail(f'{os.path.dirname(self.path)} is in use by another trainer: '
                 f'{self._describe(owner)}. Stop it first, or use another workdir; a lock '
                 f'of another host counts as stale {self.stale_after_s:.0f} s after its '
                 'last touch')
    if owner:
      logging.warning('Taking over the stale lock of a trainer that is gone: %s.',
                      self._describe(owner))
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, json.dumps(self.owner).encode(), 0)
    os.fsync(self._fd)
    self._thread = threading.Thread(target=self._heartbeat, name='p2p_jax-lock',
                                    daemon=True)
    self._thread.start()
    return self

  def _heartbeat(self):
    while not self._stop.wait(self.heartbeat_s):
      try:
        os.utime(self.path)
      except OSError:
        pass  # A workdir on a flaky file system: the next beat may succeed.

  def release(self) -> None:
    """Deletes the file (nothing is left behind) and lets the OS lock go; idempotent, and
    safe from another thread (stopping.StopRequest's exit during set-up)."""
    with self._release_lock:
      if self._fd is None:
        return
      # A first run that failed (or stopped) before saving leaves no empty folder behind.
      _remove_if_empty(os.path.join(os.path.dirname(self.path), CHECKPOINTS))
      self._stop.set()
      if self._thread is not None and self._thread is not threading.current_thread():
        self._thread.join()
      try:
        if self._read().get('pid') == os.getpid():
          os.unlink(self.path)  # while holding the flock: see _open_locked
      except OSError:
        pass
      os.close(self._fd)  # Releases the flock.
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()


@contextlib.contextmanager
def trainer_lock(workdir: str, **kwargs):
  """TrainerLock held by process 0 for the whole run; every process raises if it fails.

  A collective with several processes (all call it): they are one trainer, and one of them
  holds the lock for all.
  """
  lock, error = TrainerLock(workdir, **kwargs), None
  if parallel.is_main_process():
    try:
      lock.acquire()
    except WorkdirLockedError as e:
      error = e
  if parallel.process_count() > 1:
    if parallel.sum_over_processes(np.int32(error is not None)) and error is None:
      lock.release()
      error = WorkdirLockedError(f'process 0 could not lock {workdir}; see its message')
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    lock.release()


def _remove_if_empty(directory: str) -> None:
  try:
    os.rmdir(directory)  # only ever removes an empty folder
  except OSError:
    pass
