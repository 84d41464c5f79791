"""What a checkpoint folder holds on disk: complete steps, damaged ones, unfinished saves.

Orbax's API stays in checkpointing.py; this module knows only the files Orbax (0.12) leaves:

  DIRECTORY/<step>/_CHECKPOINT_METADATA           written when the step is finalised
  DIRECTORY/<step>/state/_METADATA                the tree of arrays (JSON, says use_ocdbt)
  DIRECTORY/<step>/state/manifest.ocdbt           the OCDBT root: without it no array opens
  DIRECTORY/<step>/metrics/metrics                JSON, when metrics were given
  DIRECTORY/<step>.orbax-checkpoint-tmp*/         a save in progress, or one never finished

The checks are cheap (a few small files per step, no array data), so a damaged step is
found before Orbax tries to read it: a failed read leaves TensorStore reads running for an
event loop Orbax has already closed, which print dozens of "Event loop is closed" tracebacks
later. Damage only the data itself shows (truncated array files) still needs a failed read;
`quiet_failed_reads` then drops those tracebacks, and nothing else.

A trainer tidies the folder before it starts (`tidy`): a damaged step is moved aside to
`<step>.damaged-<UTC time>` (kept for a human, and out of the way, so that the step can be
saved again when training reaches it), and the folder of an unfinished save is removed (it
never was a checkpoint). Read-only users (evaluate, translate, export) only skip them.

A save that fails (a full disk, a read-only or vanished folder) is described in one line by
`write_failure`, from the OS error behind Orbax's or TensorStore's exception; the noise
such a save leaves (orphaned asyncio tasks, TensorStore callbacks on a closed event loop,
coroutines never awaited) is dropped by `quiet_orphaned_tasks`, as after a failed read.
"""

import errno
import json
import logging as std_logging
import os
import re
import shutil
import sys
import time
import warnings

from absl import logging
from etils import epath

TMP_MARK = '.orbax-checkpoint-tmp'
DAMAGED_MARK = '.damaged-'
ITEM = 'state'  # The item of the training state inside a step folder.


def _read_json(path: epath.Path):
  return json.loads(path.read_text())


def damage(step_dir: epath.Path) -> str | None:
  """Why `step_dir` cannot be a complete checkpoint (cheap checks only), or None."""
  found = {}
  for required in ('_CHECKPOINT_METADATA', f'{ITEM}/_METADATA'):
    try:
      found[required] = _read_json(step_dir / required)
    except FileNotFoundError:
      return f'{required} is missing'
    except (OSError, ValueError) as e:
      return f'{required} is unreadable ({e})'
  array_metadata = found[f'{ITEM}/_METADATA']
  if isinstance(array_metadata, dict) and array_metadata.get('use_ocdbt'):
    manifest = step_dir / ITEM / 'manifest.ocdbt'
    try:
      if not manifest.stat().length:
        return f'{ITEM}/manifest.ocdbt is empty'
    except (FileNotFoundError, OSError):
      return f'{ITEM}/manifest.ocdbt is missing'
  metrics = step_dir / 'metrics' / 'metrics'
  if metrics.exists():
    try:
      _read_json(metrics)
    except (OSError, ValueError) as e:
      return f'metrics/metrics is unreadable ({e})'
  return None


def scan(directory: epath.Path) -> tuple[dict[int, str], list[epath.Path]]:
  """({damaged step: why}, [folders of unfinished saves]) in `directory` (no logging)."""
  damaged, unfinished = {}, []
  for path in directory.iterdir() if directory.exists() else ():
    if TMP_MARK in path.name:
      unfinished.append(path)
    elif path.name.isdigit() and path.is_dir():
      reason = damage(path)
      if reason:
        damaged[int(path.name)] = reason
  return damaged, sorted(unfinished)


def report(damaged: dict[int, str], unfinished: list[epath.Path],
           directory: epath.Path) -> None:
  """Warns about what a read-only user skips."""
  for path in unfinished:
    logging.warning('Ignoring %s: a save in progress or one that did not finish.', path)
  for step, reason in sorted(damaged.items()):
    logging.warning('Skipping damaged checkpoint %s: %s.', directory / str(step), reason)


def move_aside(step_dir: epath.Path, reason: str) -> epath.Path | None:
  """Renames a damaged step to `<step>.damaged-<UTC time>`; returns the new path, or None
  (with a warning) when it cannot be renamed."""
  stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
  target = step_dir.parent / f'{step_dir.name}{DAMAGED_MARK}{stamp}'
  k = 1
  while target.exists():
    k += 1
    target = step_dir.parent / f'{step_dir.name}{DAMAGED_MARK}{stamp}-{k}'
  try:
    step_dir.rename(target)
  except OSError as e:
    logging.warning('Skipping damaged checkpoint %s (%s); it could not be moved aside (%s).',
                    step_dir, reason, e)
    return None
  logging.warning('Damaged checkpoint %s (%s) moved aside to %s; the step is saved again '
                  'when training reaches it.', step_dir, reason, target.name)
  return target


def remove_unfinished(path: epath.Path) -> None:
  """Deletes the folder of a save that never finished (never a checkpoint), with a warning."""
  logging.warning('Removing %s: a save that did not finish (the run was stopped while '
                  'writing it); the step is saved again when training reaches it.', path)
  try:
    if path.is_dir():
      path.rmtree()
    else:
      path.unlink()
  except OSError as e:
    logging.warning('Could not remove %s (%s); it is ignored.', path, e)


def tidy(directory: epath.Path) -> None:
  """A trainer's start: damaged steps moved aside, unfinished saves removed (one process)."""
  damaged, unfinished = scan(directory)
  for path in unfinished:
    remove_unfinished(path)
  for step, reason in sorted(damaged.items()):
    move_aside(directory / str(step), reason)


# ------------------------------------------------------------------ a save that failed

# TensorStore writes the OS error into its messages: "... No space left on device
# [os_error_code='28']"; Python's own OSErrors say "[Errno 28] ...".
_ERRNO_IN_TEXT = re.compile(r"os_error_code='(\d+)'|\[Errno (\d+)\]")
_CAUSES = {
    errno.ENOSPC: 'no space left on the device',
    errno.EDQUOT: 'the disk quota is exceeded',
    errno.EROFS: 'the file system is read-only',
    errno.EACCES: 'permission denied',
    errno.EPERM: 'permission denied',
    errno.EIO: 'input/output error (a failing disk or network file system?)',
}

STORAGE_ERRNOS = tuple(_CAUSES)


def os_errno(error: BaseException | None) -> int | None:
  """The OS error number behind `error`: its own, its causes', or the one TensorStore
  writes into its message; None if there is none."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      return error.errno
    match = _ERRNO_IN_TEXT.search(str(error))
    if match:
      return int(match.group(1) or match.group(2))
    error = error.__cause__ or error.__context__
  return None


def size_text(nbytes: float) -> str:
  """1.5 GiB, 48.0 MiB, 12 KiB."""
  for unit, scale in (('GiB', 2**30), ('MiB', 2**20)):
    if nbytes >= scale:
      return f'{nbytes / scale:.1f} {unit}'
  return f'{max(nbytes, 0) / 2**10:.0f} KiB'


def is_local(directory) -> bool:
  return '://' not in os.fspath(directory)


def free_bytes(directory) -> int | None:
  """Free bytes for an unprivileged writer on the file system of a local `directory`
  (None for URLs or where it cannot be told)."""
  if not is_local(directory):
    return None
  try:
    return shutil.disk_usage(os.fspath(directory)).free
  except OSError:
    return None


def missing_folder(directory) -> str | None:
  """Why `directory` (WORKDIR/checkpoints) cannot receive a save any more, when it is gone
  or replaced by a file; None when it is a folder (or a URL, not checked)."""
  if not is_local(directory):
    return None
  path = os.fspath(directory)
  if os.path.isdir(path):
    return None
  workdir = os.path.dirname(path)
  if not os.path.isdir(workdir):
    return f'the workdir {workdir} is gone (deleted or moved while training)'
  if os.path.exists(path):
    return f'{path} is no longer a folder (replaced by a file while training)'
  return f'{path} is gone (deleted or moved while training)'


def write_failure(directory, error: BaseException, needed: int | None = None) -> str:
  """Why a save into `directory` failed, in words a user can act on: the folder gone, no
  space (with what the checkpoint needs and what is free), read-only, no permission; else
  the library's message, shortened to one line."""
  gone = missing_folder(directory)
  if gone:
    return gone
  code = os_errno(error)
  if code in (errno.ENOSPC, errno.EDQUOT):
    free = free_bytes(directory)
    sizes = [f'the checkpoint needs about {size_text(needed)}' if needed else '',
             f'{size_text(free)} free there' if free is not None else '']
    sizes = '; '.join(x for x in sizes if x)
    return f'{_CAUSES[code]}' + (f' ({sizes})' if sizes else '')
  if code in _CAUSES:
    return _CAUSES[code]
  text = ' '.join(str(error).split())
  text = re.sub(r" \[tensorstore_spec='.*", '', text)  # a JSON spec, hundreds of characters
  return f'{type(error).__name__}: {text[:300]}'


# ------------------------------------------------------------------ after a failed read or write

class _DropOrphanedReads(std_logging.Filter):
  """asyncio's "Future/Task exception was never retrieved" for the reads of a damaged step
  (or the writes of a failed save) that Orbax gave up on (its coroutines and TensorStore
  futures). A TensorStore future's error may name only the step's folder ('OUT_OF_RANGE:
  Error reading ... in OCDBT database at local file ".../20/state/"'), so the folders of
  failed reads are matched too."""

  def __init__(self):
    super().__init__()
    self.folders = set()

  def filter(self, record):
    message = record.getMessage()
    lower = message.lower()
    if 'exception was never retrieved' not in lower:
      return True
    # With the separator: step 2's folder must not match step 20's reads.
    return not ('tensorstore' in lower or 'orbax' in lower or
                any(folder + '/' in message for folder in self.folders))


_LIBRARIES = ('/orbax/', '/tensorstore/')


def _unraisable_hook(previous):
  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
      return  # A TensorStore read of the damaged step finished after Orbax closed its loop.
    code = getattr(getattr(unraisable, 'object', None), 'cr_code', None)
    if code is not None and any(lib in code.co_filename for lib in _LIBRARIES):
      return  # A write of a failed save, closed when Python exits.
    previous(unraisable)
  hook.p2p_jax_quiet = True
  return hook


def quiet_failed_reads(step_dir=None) -> None:
  """Silences, from now on, the two kinds of noise that the reads of a step Orbax failed
  to restore print when they finish after it gave up (they can finish at any later time,
  so the filters stay): for reads of TensorStore/Orbax, and for any read naming `step_dir`.
  Idempotent; other errors pass as before."""
  quiet_orphaned_tasks(step_dir)


def quiet_orphaned_tasks(folder=None) -> None:
  """`quiet_failed_reads` for reads and writes alike: a trainer calls it for its checkpoint
  folder, since a failed save (a full disk) leaves hundreds of orphaned TensorStore writes
  behind, and Python warns at exit about the coroutines Orbax never awaited; the trainer
  reports the failure itself, in one line."""
  warnings.filterwarnings('ignore', message=r"coroutine '.*' was never awaited",
                          category=RuntimeWarning)
  if not getattr(sys.unraisablehook, 'p2p_jax_quiet', False):
    sys.unraisablehook = _unraisable_hook(sys.unraisablehook)
  asyncio_logger = std_logging.getLogger('asyncio')
  drop = next((f for f in asyncio_logger.filters if isinstance(f, _DropOrphanedReads)), None)
  if drop is None:
    drop = _DropOrphanedReads()
    asyncio_logger.addFilter(drop)
  if folder is not None:
    drop.folders.add(str(folder))
