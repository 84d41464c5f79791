"""JAX's persistent compilation cache: the second start of a run does not compile again.

XLA compiles the training step (and validation's and inference's programs) at every start:
15-25 s on a CPU before the first step, at every resume, evaluation and translation. With
the cache on, a compiled program is written to disk and a later process that compiles the
same program with the same JAX, XLA flags and devices loads it instead.

Where: `<cache root>/xla/<machine key>/`, the cache root being $P2P_JAX_CACHE_DIR or
$XDG_CACHE_HOME/p2p_jax (default ~/.cache/p2p_jax). The machine key names the JAX and
jaxlib versions and a hash of the host processor's model and feature flags: JAX's own cache
key holds the JAX version, the XLA flags, the backend's version and the devices, but on CPU
not the instruction set, and an executable compiled for AVX-512 crashes on a machine
without it; so a cache copied to another machine (or a home folder shared between machine
types) is never used there. The key is computed without touching a device, so `enable`
may run before jax.distributed.initialize. Deleting the `xla` folder clears the cache.

The command-line tools call `enable()` first; notebooks may too. `enable('none')` (or
--compilation_cache=none, or P2P_JAX_CACHE_DIR=none) leaves it off; a folder set by hand
with JAX_COMPILATION_CACHE_DIR (as the tests do) is left as it is.
"""

import hashlib
import os
import platform

ENV_ROOT = 'P2P_JAX_CACHE_DIR'
OFF = 'none'
# Programs that compile faster than this are not worth a file (JAX's default is 1 s; the
# validation and metric programs of a small run take 0.2-1 s each and add up).
MIN_COMPILE_TIME_S = 0.2


def cache_root() -> str:
  """The folder p2p_jax keeps caches in (compiled programs, downloaded weights)."""
  root = os.environ.get(ENV_ROOT, '').strip()
  if root and root != OFF:
    return os.path.abspath(os.path.expanduser(root))
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'p2p_jax')


def _cpu_fingerprint() -> str:
  """Processor model and instruction-set flags (what XLA:CPU compiles for)."""
  try:
    with open('/proc/cpuinfo') as f:
      lines = [l for l in f if l.startswith(('model name', 'flags', 'Features', 'CPU part'))]
    text = ''.join(sorted(set(lines)))
  except OSError:
    text = ''
  text = text or f'{platform.machine()} {platform.processor()}'
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def machine_key() -> str:
  """'jax0.10.2-jaxlib0.10.2-<cpu hash>': what a cached program is valid for."""
  import jax  # pylint: disable=import-outside-toplevel
  import jaxlib  # pylint: disable=import-outside-toplevel
  return f'jax{jax.__version__}-jaxlib{jaxlib.__version__}-{_cpu_fingerprint()}'


def enable(directory: str | None = None) -> str | None:
  """Turns the persistent compilation cache on; returns its folder (None when off).

  directory: the cache root ('' or None: `cache_root()`; 'none': off). Call before the
  first compilation. A cache folder already set with JAX_COMPILATION_CACHE_DIR wins.
  """
  import jax  # pylint: disable=import-outside-toplevel
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  if directory == OFF or (not directory and os.environ.get(ENV_ROOT, '').strip() == OFF):
    return None
  root = os.path.abspath(os.path.expanduser(directory)) if directory else cache_root()
  folder = os.path.join(root, 'xla', machine_key())
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError:
    return None  # A read-only home: run without the cache rather than fail.
  jax.config.update('jax_compilation_cache_dir', folder)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_TIME_S)
  return folder
