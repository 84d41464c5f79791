"""Dataset preparation in a child process: what TFDS loads while preparing stays out of the trainer.

Preparing runs once per dataset, and TFDS imports TensorFlow for some of it where TensorFlow
is installed (Colab, the `[test]` extra): to spill a split of more than 1 GB to disk while
shuffling it (`tf.io.gfile`), and other file work. Imported into the trainer, TensorFlow
stayed resident for the whole run (peak RSS 3.2 GB against 1.95 GB once the dataset was
prepared, unet_256 at batch 1) and printed its oneDNN notice twice; the shuffle buffer
(up to 1 GB of encoded examples) added to the peak as well. So where TensorFlow is
installed and not yet imported, `prepare` runs `python -m p2p_jax.datasets.child_process`
with the data config, and the trainer only reads the prepared files afterwards.

The child says nothing TFDS or TensorFlow would print at INFO (TF_CPP_MIN_LOG_LEVEL=2,
absl at ERROR) but p2p_jax's own warnings (bad files skipped, small or transparent images);
an error the user can fix comes back to the parent as the same one-line exception
(DataError, FileNotFoundError, ...). The child dies with its parent (PR_SET_PDEATHSIG), so
a trainer stopped while it prepares leaves no preparation running; TFDS writes into a
temporary folder, so an interrupted preparation is simply done again next time.
P2P_JAX_PREPARE_IN_PROCESS=1 prepares in the calling process instead (the test suite does,
to save a Python start per preparation).
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile

IN_PROCESS_ENV = 'P2P_JAX_PREPARE_IN_PROCESS'
# Errors that come back to the parent as themselves (main prints them in one line).
_KINDS = ('FileNotFoundError', 'PermissionError', 'ValueError')


def wanted() -> bool:
  """Whether preparing here would load TensorFlow into this process: it is installed, not
  imported yet, and preparing in-process was not asked for."""
  return (os.environ.get(IN_PROCESS_ENV, '') in ('', '0') and 'tensorflow' not in sys.modules
          and importlib.util.find_spec('tensorflow') is not None)


def prepare(data_config, in_channels: int, out_channels: int,
            module: str = 'p2p_jax.datasets.pix2pix_aligned') -> None:
  """Prepares the dataset of `data_config` in a child process with `module`'s `prepare`
  (pix2pix_aligned, unpaired); raises what it raised."""
  from p2p_jax.datasets.catalog import DataError  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                  os.environ.get('PYTHONPATH', '')] if p))
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')   # TensorFlow's oneDNN notice and the like
  verbose = absl_logging.get_absl_logger().getEffectiveLevel() <= absl_logging.INFO
  with tempfile.TemporaryDirectory(prefix='p2p_jax_prepare.') as tmp:
    result = os.path.join(tmp, 'error.json')
    request = json.dumps({'data': data_config.to_dict(), 'in_channels': in_channels,
                          'out_channels': out_channels, 'result': result, 'module': module,
                          'verbose': verbose, 'parent': os.getpid()})
    # Its lines are passed on as they come, through this process's sys.stderr (a
    # notebook's cell shows them there).
    with subprocess.Popen([sys.executable, '-m', __name__, request], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as child:
      try:
        for line in child.stdout:
          print(line, end='', file=sys.stderr, flush=True)
      except BaseException:
        child.kill()
        raise
      rc = child.wait()
    if rc == 0:
      return
    if os.path.exists(result):
      with open(result) as f:
        error = json.load(f)
      exception = {'DataError': DataError, 'FileNotFoundError': FileNotFoundError,
                   'PermissionError': PermissionError, 'ValueError': ValueError}
      raise exception.get(error['kind'], DataError)(error['message'])
    raise DataError(f'preparing {data_config.dataset} failed in a child process (exit '
                    f'{rc}; its error is printed above)')


def _die_with_parent(parent: int) -> None:
  """SIGKILL when the parent goes (Linux); exits at once if it already went."""
  try:
    import ctypes  # pylint: disable=g-import-not-at-top
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    return
  if os.getppid() != parent:
    os._exit(1)  # pylint: disable=protected-access


def _child(request: dict) -> int:
  _die_with_parent(request['parent'])
  # Ctrl-C reaches the whole process group: the parent stops this child (or dies, and so
  # does it); a KeyboardInterrupt trace from here would only add noise.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  import logging  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  if not request['verbose']:
    absl_logging.get_absl_logger().setLevel(logging.ERROR)  # TFDS's INFO and warnings
  handler = logging.StreamHandler(sys.stderr)
  handler.setFormatter(logging.Formatter('p2p_jax: warning: %(message)s'))
  logging.root.addHandler(handler)
  logging.root.setLevel(logging.WARNING)
  import importlib  # pylint: disable=g-import-not-at-top
  from p2p_jax.datasets import pix2pix_aligned  # pylint: disable=g-import-not-at-top
  # The module whose builder the parent uses (pix2pix_aligned, unpaired).
  module = importlib.import_module(request.get('module', pix2pix_aligned.__name__))
  try:
    module.prepare(ml_collections.ConfigDict(request['data']), in_process=True,
                   in_channels=request['in_channels'],
                   out_channels=request['out_channels'])
  except Exception as e:  # pylint: disable=broad-except
    kind = type(e).__name__
    if kind not in _KINDS and not isinstance(e, pix2pix_aligned.DataError):
      raise
    kind = 'DataError' if isinstance(e, pix2pix_aligned.DataError) else kind
    with open(request['result'], 'w') as f:
      json.dump({'kind': kind, 'message': str(e)}, f)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(_child(json.loads(sys.argv[1])))
