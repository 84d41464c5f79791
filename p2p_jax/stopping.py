"""Stop requests: signals turned into a flag that the trainer checks at safe points.

What is a stop request: SIGINT (Ctrl-C) and SIGTERM, which is the preemption notice of
Cloud TPU and GCE VMs, Kubernetes (and so GKE), Docker, systemd and SLURM (`scancel`,
and before a preemption or the time limit with `--signal=TERM@...`). The handler is
installed for the whole run, set-up and the final checkpoint's write included, so a
signal at any moment only sets the flag; the trainer then finishes the step (or the
validation) it is in, saves a checkpoint of that step, waits until it is written, and
returns. A second Ctrl-C raises KeyboardInterrupt at once, without waiting for the save (the
next run removes the unfinished folder); a second SIGTERM is ignored, because it usually
comes from the same scheduler that sent the first and will send SIGKILL when its grace
period ends.

Exit codes of `python -m p2p_jax.main` (`exit_code`): 0 when the run reached its last step
or was stopped by Ctrl-C; EXIT_PREEMPTED (75, EX_TEMPFAIL of sysexits.h: "try again
later") when SIGTERM stopped it, so that schedulers that restart failed jobs (Kubernetes
`restartPolicy: OnFailure`) or a loop that reruns the command while it exits with 75
restart it, and it resumes, while a plain exit 0 would mark an unfinished run complete.

Several processes (multi-host): a signal may reach only some of them, and they must stop at
the same step, or the others would wait forever in the next collective. `agreed()` is a
collective (call it on every process at the same points) that gives every process the same
answer. JAX's own preemption service (`multihost_utils.reached_preemption_sync_point`)
listens to SIGTERM too, from C++; the handler here replaces it (Python's handler is
installed after `jax.distributed.initialize`), so that SIGINT and SIGTERM take one path.

The command (`python -m p2p_jax.main`, one process) also stops at once when there is nothing
to save yet, so that a preemption notice's grace period (30 s on Kubernetes) is not spent
waiting for imports or a compilation (a minute or more at 256 px):
  * from its first line until the trainer's handler takes over (`stop_early`, the first
    thing main.py does): the imports, the flags, the checks of the config and the workdir,
    and across host_memory's re-execution of the process (the signals stay blocked through
    execve, so one that comes then waits, pending, for the new process's handler);
  * during set-up (`StopRequest`, until the first step starts): the data, the networks,
    the compilation, the restore. The main thread may be inside a C++ call that runs no
    Python handler (XLA compiling the step), so a watcher thread woken by the signal
    itself (`signal.set_wakeup_fd`) ends the process, after releasing the trainer lock.
Either ends at once with one line, `p2p_jax: stopped by SIGTERM while starting (no new step
to save)`, and the usual exit status (75 for SIGTERM). Nothing is raised into the code that
was running (a raise inside an import, a garbage-collection callback or a C extension can
be lost, or crash the interpreter), and set-up writes nothing that a hard exit damages
(its writes are atomic; a dataset being prepared is prepared again). Only the first ~0.1 s
of the interpreter, before main.py runs, is left to the default action (exit 143). In a
notebook or a test (train_and_evaluate in a Python process that goes on), a signal during
set-up only sets the flag, as before, and the run returns at its start step; so does a run
of several processes, which must agree on where they stop.
"""

import logging
import os
import signal
import sys
import threading

from p2p_jax import host_memory  # light: no jax, no numpy (this module is imported first)

EXIT_PREEMPTED = 75
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_ANOTHER_PROCESS = 'a stop request on another process'
_COMMAND = {'early': False}  # stop_early() ran: this process is the command, not a notebook
_EXITING = threading.Lock()  # held, never released, by the thread that ends the process


class OtherProcessError(RuntimeError):
  """Another process of a multi-host run stopped it with an error (`agreed`)."""


def exit_code(stopped_by: str | None) -> int:
  """The exit status of a run that ended normally, `stopped_by` a signal's name or None."""
  return 0 if stopped_by in (None, 'SIGINT') else EXIT_PREEMPTED


def _exit(line: str, status: int, cleanups=(), file=None) -> None:
  """`cleanups()`, `line`, then the process ends with `status`. From any thread; the first
  caller wins, the others wait for the end."""
  _EXITING.acquire()  # pylint: disable=consider-using-with
  try:
    for cleanup in cleanups:
      try:
        cleanup()
      except Exception:  # pylint: disable=broad-except  # exiting anyway
        pass
    print(line, file=file or sys.stdout, flush=True)
    sys.stderr.flush()
  finally:
    os._exit(status)  # pylint: disable=protected-access


def exit_now(name: str, cleanups=()) -> None:
  """Ends the process for a stop request before the first step: `cleanups()`, one line,
  exit_code(name). What `temporary` holds (a download's partial file) goes too."""
  _exit(f'p2p_jax: stopped by {name} while starting (no new step to save); run the same '
        'command to resume', exit_code(name), tuple(cleanups) + _partial_cleanups())


def _read_signals(read: int, on_signal) -> None:
  """A watcher thread's loop: `on_signal(name)` for each stop signal the wakeup fd `read`
  reports, until it is closed. The thread itself never takes the signals (they stay for
  the C-level handler, which writes them to the fd, also while the main thread is blocked
  in execve or C++)."""
  signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
  while True:
    try:
      data = os.read(read, 64)
    except OSError:
      return
    if not data:
      return
    for signum in data:
      if signum in _SIGNALS:
        on_signal(signal.Signals(signum).name)


# ------------------------------------------------------------------ before the trainer

def _early_handler(signum, frame):
  del frame
  exit_now(signal.Signals(signum).name)


def stop_early(held_env: str = host_memory.SIGNALS_HELD_ENV) -> None:
  """The command's first line: from now on SIGTERM and SIGINT end the process at once with
  one line and exit_code (75 for SIGTERM) until the trainer's StopRequest takes over, and
  StopRequest ends set-up at once too (module docstring). Signals that host_memory held
  blocked across its re-execution (`held_env` set) are let through now, into this handler.
  Main thread only."""
  _COMMAND['early'] = True
  for sig in _SIGNALS:
    signal.signal(sig, _early_handler)
  if os.environ.pop(held_env, None):
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


# ------------------------------------------------------------------ the trainer

class StopRequest:
  """SIGTERM / SIGINT -> `requested` (the signal's name), for as long as the `with` lasts.

  Installs handlers only in the main thread (Python delivers signals there); elsewhere
  (a notebook's worker thread) it is a flag that nothing sets. The previous handlers are
  restored on exit. In the command (`stop_early` ran) with one process, a stop request
  before the first `agreed()` (set-up) ends the process at once (module docstring), after
  the cleanups registered with `on_exit` (the trainer lock).
  """

  def __init__(self):
    self.requested = None
    self._previous = {}
    self._setup = False
    self._setup_lock = threading.RLock()  # the main thread's handler may run inside it
    self._cleanups = []
    self._wakeup = None  # (read fd, write fd, the wakeup fd before ours)
    self._watcher = None

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self
    from p2p_jax import parallel  # pylint: disable=g-import-not-at-top (imports jax)
    self._setup = _COMMAND['early'] and parallel.process_count() == 1
    for sig in _SIGNALS:
      self._previous[sig] = signal.signal(sig, self._handle)
    if self._setup:
      read, write = os.pipe()
      os.set_blocking(write, False)
      self._wakeup = (read, write, signal.set_wakeup_fd(write, warn_on_full_buffer=False))
      self._watcher = threading.Thread(target=self._watch, args=(read,), name='p2p_jax-stop',
                                       daemon=True)
      self._watcher.start()
    return self

  def on_exit(self, cleanup) -> None:
    """Calls `cleanup()` if a stop request ends the process during set-up."""
    self._cleanups.append(cleanup)

  def _exit_if_setup(self, name: str) -> None:
    with self._setup_lock:  # the first step cannot start while this ends the process
      if self._setup:
        exit_now(name, self._cleanups)

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    self._exit_if_setup(name)
    if self.requested not in (None, _ANOTHER_PROCESS):
      if signum == signal.SIGINT:
        raise KeyboardInterrupt  # Second Ctrl-C: stop now, without the final checkpoint.
      logging.warning('%s received: already stopping; the checkpoint is being written '
                      '(Ctrl-C stops at once, without it)', name)
      return
    self.requested = name
    logging.warning('%s received: stopping after this step and saving a checkpoint', name)

  def _watch(self, read: int):
    """Set-up only: a stop signal ends the process from here, whatever the main thread is
    doing (compiling in C++, where no Python handler runs)."""
    _read_signals(read, self._exit_if_setup)

  def __exit__(self, *exc):
    self._end_setup()
    for sig, handler in self._previous.items():
      # None: the previous handler was not installed from Python (JAX's C++ preemption
      # notifier); it cannot be put back, so the default takes its place.
      signal.signal(sig, signal.SIG_DFL if handler is None else handler)

  def _end_setup(self) -> None:
    """The first step starts: from now on a stop request saves the step it ends at."""
    if self._wakeup is None:
      return
    with self._setup_lock:
      self._setup = False
      wakeup, self._wakeup = self._wakeup, None
    if wakeup is None:
      return
    read, write, previous = wakeup
    signal.set_wakeup_fd(previous)
    os.close(write)  # the watcher reads end-of-file and returns
    self._watcher.join(1.0)
    os.close(read)

  def agreed(self, error: Exception | None = None) -> str | None:
    """Why the run stops, the same on every process, or None to go on.

    error: a failure this process found that must end the run (a checkpoint that could not
    be written, a workdir that is gone). When any process has one, every process raises:
    that process its own error, the others OtherProcessError. A collective with several
    processes: every process calls it at the same points. The first call ends set-up.
    """
    self._end_setup()
    from p2p_jax import parallel  # pylint: disable=g-import-not-at-top
    if parallel.process_count() == 1:
      if error is not None:
        raise error
      return self.requested
    import numpy as np  # pylint: disable=g-import-not-at-top
    flags = parallel.sum_over_processes(
        np.asarray([self.requested is not None, error is not None], np.int32))
    if error is not None:
      raise error
    if flags[1]:
      raise OtherProcessError('another process stopped the run with an error (see its '
                              'message); nothing was saved after the newest checkpoint')
    if flags[0] and self.requested is None:
      self.requested = _ANOTHER_PROCESS
    return self.requested


# ------------------------------------------------------------------ one-shot commands

class _OneShot:
  """State of `stop_at_once`: the command, whether its output is being written (a stop
  then waits for it) or was written (a stop then says so)."""
  prog = ''
  what = ''
  lock = threading.Lock()
  writing = 0
  written = False
  pending = None
  partial: list = []  # the `temporary` blocks under way


def _remove(path: str) -> None:
  # Renamed first, so that most writes still under way in other threads fail rather than
  # refill the tree under its name (a writer that makes folders as it goes may still leave
  # one behind; never anything of the user's).
  gone = f'{path}.removing-{os.getpid()}'
  try:
    os.rename(path, gone)
  except OSError:
    gone = path
  if os.path.isdir(gone):
    import shutil  # pylint: disable=import-outside-toplevel
    shutil.rmtree(gone, ignore_errors=True)
  elif os.path.lexists(gone):
    os.remove(gone)


def _partial_cleanups() -> tuple:
  # Innermost first, as the blocks would end: an inner output goes before the outer block
  # looks whether the folders it made are empty.
  return tuple(t.remove for t in reversed(_OneShot.partial))


def _end_one_shot(name: str) -> None:
  """Ends the process; called with _OneShot.lock held, so no write starts meanwhile."""
  why = 'after its output was written' if _OneShot.written else _OneShot.what
  _exit(f'{_OneShot.prog}: stopped by {name}; {why}', 128 + signal.Signals[name].value,
        _partial_cleanups(), file=sys.stderr)


def _one_shot_signal(name: str) -> None:
  with _OneShot.lock:
    if _OneShot.writing:
      _OneShot.pending = _OneShot.pending or name
      return
    _end_one_shot(name)


def stop_at_once(prog: str, what: str,
                 held_env: str = host_memory.SIGNALS_HELD_ENV) -> None:
  """For a command whose only output is written at its end (atomically, inside
  `writing()`), e.g. encode_features: from now on SIGTERM and SIGINT end it at once with
  one line, `<prog>: stopped by SIGINT; <what>`, and exit status 128 + the signal's number,
  whatever the main thread is doing (importing, compiling in C++, a garbage-collection
  callback, where a raised KeyboardInterrupt can be lost and the command go on); a signal
  while the output is being written ends it right after. Signals host_memory held blocked
  across its re-execution are let through now. Main thread only."""
  _OneShot.prog, _OneShot.what = prog, what
  read, write = os.pipe()
  os.set_blocking(write, False)
  signal.set_wakeup_fd(write, warn_on_full_buffer=False)
  # SIGINT first: a caught SIGTERM then says, from outside (/proc), that both are.
  for sig in (signal.SIGINT, signal.SIGTERM):
    # The C-level handler writes the signal to the wakeup fd; the watcher thread acts on
    # it. The Python-level one has nothing left to do.
    signal.signal(sig, lambda signum, frame: None)
  threading.Thread(target=_read_signals, args=(read, _one_shot_signal), name='p2p_jax-stop',
                   daemon=True).start()
  if os.environ.pop(held_env, None):
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


class writing:  # pylint: disable=invalid-name  (used as `with stopping.writing():`)
  """Defers `stop_at_once`'s exit while the command writes (or renames into place) an
  output (a no-op without it): a signal in the meantime ends the command once it is whole.
  completes: this write makes the command's whole output (the exit line then says
  'after its output was written')."""

  def __init__(self, completes: bool = False):
    self.completes = completes

  def __enter__(self):
    with _OneShot.lock:
      _OneShot.writing += 1
    return self

  def __exit__(self, *exc):
    with _OneShot.lock:
      _OneShot.writing -= 1
      _OneShot.written = _OneShot.written or (self.completes and exc[0] is None)
      if _OneShot.pending and not _OneShot.writing:
        _end_one_shot(_OneShot.pending)


PARTIAL_PREFIX = '.partial-'  # + the pid: an output being made inside its folder


def check_folder(folder: str) -> None:
  """A ValueError naming `folder` where an output folder cannot be (a file, a symbolic link
  to nothing), instead of the OS's error about a path inside it, later."""
  if os.path.islink(folder) and not os.path.exists(folder):
    raise ValueError(f'{folder} is a symbolic link to {os.readlink(folder)}, which does not '
                     'exist: make that folder, or give another')
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise ValueError(f'{folder} is a file, not a folder: give a folder')


def partial_folder(folder: str) -> str:
  """Where this process makes an output inside `folder` before moving it out (a hidden
  folder); the ones of processes that are gone (killed) are removed first."""
  check_folder(folder)
  for name in os.listdir(folder) if os.path.isdir(folder) else ():
    pid = name[len(PARTIAL_PREFIX):]
    if name.startswith(PARTIAL_PREFIX) and pid.isdigit() and not _alive(int(pid)):
      import shutil  # pylint: disable=import-outside-toplevel
      shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
  return os.path.join(folder, f'{PARTIAL_PREFIX}{os.getpid()}')


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def missing_folders(folder: str) -> tuple:
  """The folders that os.makedirs(folder) would make, outermost first (`temporary`'s
  `made`: a command stopped or failed before it wrote its output leaves none of them)."""
  missing, f = [], os.path.abspath(folder)
  while not os.path.lexists(f) and os.path.dirname(f) != f:
    missing.append(f)
    f = os.path.dirname(f)
  return tuple(reversed(missing))


def _remove_empty_folders(made) -> None:
  """Removes the folders of `made` (`missing_folders`' order), innermost first, while they
  are empty: one that holds anything (an output, another writer's file) stays, and so does
  every folder above it."""
  for folder in reversed(made):
    if not os.path.lexists(folder):  # removed already, or never made
      continue
    try:
      os.rmdir(folder)
    except OSError:
      break


class temporary:  # pylint: disable=invalid-name  (a context manager)
  """`path` (a file or a folder) is an output being made under a temporary name while the
  block runs: the exit of a stop request (`stop_at_once`'s, or the trainer's while
  starting: `exit_now`) removes it first, and the block's end removes what is left of it,
  after an error or (unless keep_on_success) a normal end; what was renamed into place
  (inside `writing()`) is not there any more. made: the folders the command made for its
  output (`missing_folders` before the block), removed too at either exit while they are
  empty: a command that wrote nothing leaves the file system as it was, one that wrote its
  output keeps the folders that hold it. path None: only `made`'s folders (the trainer's
  workdir)."""

  def __init__(self, path: str | None, keep_on_success: bool = False, made: tuple = ()):
    self.path = None if path is None else os.fspath(path)
    self.keep_on_success = keep_on_success
    self.made = tuple(made)

  def remove(self, keep_path: bool = False) -> None:
    """Removes path (unless keep_path), then the empty folders of `made`."""
    if self.path is not None and not keep_path:
      _remove(self.path)
    _remove_empty_folders(self.made)

  def __enter__(self):
    with _OneShot.lock:
      _OneShot.partial.append(self)
    return self

  def __exit__(self, *exc):
    with _OneShot.lock:
      _OneShot.partial.remove(self)
    self.remove(keep_path=exc[0] is None and self.keep_on_success)
