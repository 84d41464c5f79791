"""How this process gets host memory from the OS: the glibc settings XLA:CPU's speed depends on.

XLA:CPU allocates each execution's temporary buffer with malloc (about 450 MB for one
U-Net-256 training step at batch 1). glibc serves allocations that large with a fresh
mmap and unmaps them on free, so every step faults the whole buffer in again, one 4 KiB
page at a time: about 116,000 page faults per step (counted with getrusage) on our 2-core
VM. glibc's `glibc.malloc.hugetlb=1` tunable makes malloc request transparent huge pages
for such mappings (2 MiB: ~500 faults per step), which made the step 10-25% faster there
in A/B runs, with about the same peak memory (benchmarks/README.md). Tunables are
read only when a process starts, so command-line entry points re-execute themselves once
with it set (`reexec_with_hugepage_malloc`). Nothing changes where it cannot help: other
platforms or C libraries, transparent huge pages disabled, or P2P_JAX_KEEP_MALLOC=1.
In a notebook, start Jupyter with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 for the same gain.

`release_free_memory` hands memory that is free inside malloc back to the OS (XLA's
compilation leaves a few hundred MB of it), so that it does not add to the peak.
"""

import ctypes
import os
import signal
import sys

HUGEPAGE_TUNABLE = 'glibc.malloc.hugetlb=1'
OPT_OUT_ENV = 'P2P_JAX_KEEP_MALLOC'
_THP_SETTING = '/sys/kernel/mm/transparent_hugepage/enabled'


def _libc():
  try:
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, 'malloc_trim') else None  # glibc only
  except (OSError, AttributeError):
    return None


def _thp_available(path: str = _THP_SETTING) -> bool:
  """True where the kernel grants transparent huge pages on request ('always'/'madvise')."""
  try:
    with open(path) as f:
      setting = f.read()
  except OSError:
    return False
  return '[never]' not in setting


def hugepage_command(environ=None, argv=None, executable=None, thp_path: str = _THP_SETTING):
  """(executable, argv, env) to re-execute this command with the tunable, or None if it is
  already set, opted out of, or cannot help here."""
  environ = dict(os.environ if environ is None else environ)
  argv = list(sys.orig_argv if argv is None else argv)
  tunables = environ.get('GLIBC_TUNABLES', '')
  if (environ.get(OPT_OUT_ENV, '') not in ('', '0') or 'glibc.malloc.hugetlb' in tunables
      or not sys.platform.startswith('linux') or _libc() is None
      or not _thp_available(thp_path) or len(argv) < 2):
    return None
  environ['GLIBC_TUNABLES'] = f'{tunables}:{HUGEPAGE_TUNABLE}' if tunables else HUGEPAGE_TUNABLE
  executable = executable or sys.executable
  return executable, [executable] + argv[1:], environ


SIGNALS_HELD_ENV = 'P2P_JAX_SIGNALS_HELD'


def reexec_with_hugepage_malloc(hold_signals: bool = False):
  """Replaces this process by the same command with huge-page malloc (see module doc).

  Call first thing in a command-line entry point, before jax is imported; returns (doing
  nothing) when not applicable. The process id, arguments and environment otherwise stay.
  hold_signals: keep SIGTERM and SIGINT blocked through execve (a signal that comes then
  stays pending) for the new process to let through once its handler is in place
  (stopping.stop_early, which SIGNALS_HELD_ENV tells to do so); otherwise a signal in that
  window would find the default action and kill the process.
  """
  command = hugepage_command()
  if command is None:
    return
  executable, argv, env = command
  sys.stdout.flush()
  sys.stderr.flush()
  held = (signal.SIGTERM, signal.SIGINT)
  if hold_signals:
    env[SIGNALS_HELD_ENV] = '1'
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
  try:
    os.execve(executable, argv, env)
  finally:  # only if execve failed
    if hold_signals:
      signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def release_free_memory() -> bool:
  """Returns malloc's free memory to the OS (glibc malloc_trim); False where unsupported."""
  libc = _libc()
  if libc is None:
    return False
  libc.malloc_trim(ctypes.c_size_t(0))
  return True
