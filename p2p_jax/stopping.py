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
"""

import logging
import signal
import threading

import numpy as np

from p2p_jax import parallel

EXIT_PREEMPTED = 75


class OtherProcessError(RuntimeError):
  """Another process of a multi-host run stopped it with an error (`agreed`)."""
_ANOTHER_PROCESS = 'a stop request on another process'


class StopRequest:
  """SIGTERM / SIGINT -> `requested` (the signal's name), for as long as the `with` lasts.

  Installs handlers only in the main thread (Python delivers signals there); elsewhere
  (a notebook's worker thread) it is a flag that nothing sets. The previous handlers are
  restored on exit.
  """

  def __init__(self):
    self.requested = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.requested not in (None, _ANOTHER_PROCESS):
      if signum == signal.SIGINT:
        raise KeyboardInterrupt  # Second Ctrl-C: stop now, without the final checkpoint.
      logging.warning('%s received: already stopping; the checkpoint is being written '
                      '(Ctrl-C stops at once, without it)', name)
      return
    self.requested = name
    logging.warning('%s received: stopping after this step and saving a checkpoint', name)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      # None: the previous handler was not installed from Python (JAX's C++ preemption
      # notifier); it cannot be put back, so the default takes its place.
      signal.signal(sig, signal.SIG_DFL if handler is None else handler)

  def agreed(self, error: Exception | None = None) -> str | None:
    """Why the run stops, the same on every process, or None to go on.

    error: a failure this process found that must end the run (a checkpoint that could not
    be written, a workdir that is gone). When any process has one, every process raises:
    that process its own error, the others OtherProcessError. A collective with several
    processes: every process calls it at the same points.
    """
    if parallel.process_count() == 1:
      if error is not None:
        raise error
      return self.requested
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


def exit_code(stopped_by: str | None) -> int:
  """The exit status of a run that ended normally, `stopped_by` a signal's name or None."""
  return 0 if stopped_by in (None, 'SIGINT') else EXIT_PREEMPTED
