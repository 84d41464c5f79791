"""What the trainer shows: a console progress line with ETA, TensorBoard events, sample
PNGs, the loss curves as a PNG, and optionally Weights & Biases.

Only process 0 writes (the writer of other processes is a no-op). TensorBoard files are
written with tensorboardX, which needs no TensorFlow.
"""

import hashlib
import logging
import os
import shlex
import sys
import threading
import time

import numpy as np

from p2p_jax import config_schema, image_io, loss_plot, results_page, workdirs


# Library warnings a user cannot act on (TFDS naming our builder configs "custom", the
# OpenCV it could use instead of Pillow, a version folder it scans before preparing).
_NOISE = ('Using custom data configuration', 'OpenCV is not installed',
          'has no dataset_info.json')


class _DropNoise(logging.Filter):

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or not any(
        n in record.getMessage() for n in _NOISE)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _ConsoleFormatter(logging.Formatter):
  """p2p_jax's own log records as its other console lines: `p2p_jax: resumed from step 4`,
  `p2p_jax: warning: ...`; library records as `base` formats them (absl's `I1206 ...`)."""

  def __init__(self, base: logging.Formatter | None):
    super().__init__()
    self.base = base or logging.Formatter('%(message)s')

  def format(self, record: logging.LogRecord) -> str:
    if not os.path.abspath(record.pathname).startswith(_PACKAGE_DIR):
      return self.base.format(record)
    level = '' if record.levelno < logging.WARNING else f'{record.levelname.lower()}: '
    text = f'p2p_jax: {level}{record.getMessage()}'
    if record.exc_info:
      text += '\n' + self.formatException(record.exc_info)
    return text


class _StderrHandler(logging.StreamHandler):
  """A handler on whatever sys.stderr is when a record comes (tests and notebooks replace
  it), at WARNING, as Python's last-resort handler it stands in for."""
  p2p_jax_console = True

  def __init__(self):
    super().__init__()
    self.setLevel(logging.WARNING)

  @property
  def stream(self):
    return sys.stderr

  @stream.setter
  def stream(self, value):
    del value


def quiet_console(verbose: bool = False) -> None:
  """Keeps library chatter off the console: JAX's and absl's INFO lines (Orbax, TFDS) and
  the warnings in _NOISE. Errors always show; verbose=True (--verbosity >= 0 given by hand)
  shows everything. p2p_jax's own log lines read `p2p_jax: ...` (`console_format`)."""
  console_format()
  if verbose:
    return
  for name in ('absl', 'jax'):
    logging.getLogger(name).setLevel(logging.WARNING)
  logging.getLogger('absl').addFilter(_DropNoise())


def console_format() -> None:
  """Formats p2p_jax's log records like its printed lines (_ConsoleFormatter): on absl's
  handler where absl's app installed it (main), else on a stderr handler of its own."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  handler = absl_logging.get_absl_handler()
  if handler in logging.root.handlers:
    target = handler.python_handler
  else:
    target = next((h for h in logging.root.handlers if getattr(h, 'p2p_jax_console', False)),
                  None)
    if target is None:
      target = _StderrHandler()
      logging.root.addHandler(target)
  if not isinstance(target.formatter, _ConsoleFormatter):
    target.setFormatter(_ConsoleFormatter(target.formatter))


def seconds_since_process_start() -> float:
  """Seconds since this process was started (before any re-execution: execve keeps the
  start time), so start-up reports include the interpreter and the imports. Linux; elsewhere
  the seconds since this module was imported."""
  try:
    with open('/proc/self/stat') as f:
      start_ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/uptime') as f:
      uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, IndexError):
    return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'


class Progress:
  """Steps/s, images/s and ETA since the run (re)started; prints one line per report."""

  def __init__(self, start_step: int, total_steps: int, batch_size: int, stream=None):
    self.start_step, self.total, self.batch_size = start_step, total_steps, batch_size
    self.stream = stream or sys.stdout
    self._t0 = self._last_t = time.perf_counter()
    self._last_step = start_step

  def rate(self, step: int) -> float:
    """Images per second since the previous call."""
    now = time.perf_counter()
    rate = (step - self._last_step) * self.batch_size / max(now - self._last_t, 1e-9)
    self._last_t, self._last_step = now, step
    return rate

  def line(self, step: int, img_per_s: float, scalars: dict) -> str:
    done = step - self.start_step
    elapsed = time.perf_counter() - self._t0
    eta = elapsed / done * (self.total - step) if done else float('nan')
    width = 20
    filled = int(width * step / max(self.total, 1))
    bar = '#' * filled + '.' * (width - filled)
    parts = ' '.join(f'{k} {v:.3f}' for k, v in sorted(scalars.items()) if k != 'lr')
    eta_text = _format_duration(eta) if np.isfinite(eta) else '?'
    return (f'[{bar}] step {step}/{self.total} {100 * step / max(self.total, 1):3.0f}% '
            f'{img_per_s:.2f} img/s ETA {eta_text} | {parts}')

  def report(self, step: int, img_per_s: float, scalars: dict) -> None:
    print(self.line(step, img_per_s, scalars), file=self.stream, flush=True)


# What ranks the 'best' checkpoint, in words (workdirs.best_metric).
BEST_METRIC_WORDS = {'val_l1': 'the lowest validation L1',
                     'val_cycle_l1': 'the lowest validation cycle L1 (A -> B -> A and '
                                     'B -> A -> B)'}


def print_summary(workdir: str, latest: int | None, best: int | None, split: str,
                  stream=None, *, best_metric: str = 'val_l1',
                  caption: str = 'input | output | target',
                  before_translate: tuple[str, ...] = ()) -> None:
  """Where a finished run's results are, and the commands that use them. best_metric: what
  ranked the best checkpoint; caption: what a sample grid's columns are; before_translate:
  commands translate needs run first (the method's commands_before_translate)."""
  workdir = os.path.abspath(workdir)
  samples = sorted(f for f in os.listdir(os.path.join(workdir, workdirs.SAMPLES))
                   if f.endswith('.png')) if os.path.isdir(
                       os.path.join(workdir, workdirs.SAMPLES)) else []
  quoted = shlex.quote(workdir)  # a path with spaces still pastes as one argument
  lines = [f'p2p_jax: finished. In {workdir}:']
  if samples:
    lines.append(f'  samples      {workdirs.SAMPLES}/{samples[-1]} ({caption}, '
                 f'{split} split; {len(samples)} in all)')
  lines.append(f'  curves       {loss_plot.PLOT_FILE}')
  lines.append(f'  checkpoints  {workdirs.CHECKPOINTS}/ (latest {latest}' +
               (f'; best {best}: '
                f'{BEST_METRIC_WORDS.get(best_metric, best_metric)} of all validations)'
                if best is not None else ')'))
  # TensorBoard shows 10 images per tag unless told otherwise (0: all of them).
  lines.append('  TensorBoard  tensorboard --logdir '
               f'{shlex.quote(os.path.join(workdir, workdirs.TENSORBOARD))} '
               '--samples_per_plugin=images=0')
  which = 'best' if best is not None else 'latest'
  lines += ['Next:',
            f'  python -m p2p_jax.evaluate --workdir={quoted} --checkpoint={which}',
            *(f'  {c}    # once, before translate' for c in before_translate),
            f'  python -m p2p_jax.translate --workdir={quoted} --checkpoint={which} '
            '--input=IMAGE_OR_FOLDER --output=OUT']
  print('\n'.join(lines), file=stream or sys.stdout, flush=True)


# Errors of tensorboardX's writer threads (a full disk), kept here instead of printed as a
# thread's traceback, and raised in the trainer's thread at its next write, where a storage
# error becomes one line (train.py). Without this, a writer thread that died leaves its
# bounded queue unread and add_scalar blocks for ever: seen on a full 1 MB tmpfs.
_WRITER_THREAD_ERRORS: list = []
_EVENT_WRITERS: dict = {}  # a writer thread -> the EventFileWriter it writes for


def _keep_writer_thread_errors() -> None:
  previous = threading.excepthook
  if getattr(previous, 'p2p_jax_writer_errors', False):
    return

  def hook(args):
    if not (type(args.thread).__module__.startswith('tensorboardX')
            and isinstance(args.exc_value, Exception)):
      previous(args)
      return
    _WRITER_THREAD_ERRORS.append(args.exc_value)
    # Its writer takes no more events, and a put that waits on the full queue returns: the
    # trainer's thread goes on to its next write, which raises the error.
    event_writer = _EVENT_WRITERS.pop(args.thread, None)
    if event_writer is not None:
      event_writer._closed = True  # pylint: disable=protected-access
    events = getattr(args.thread, '_queue', None)
    try:
      while events is not None:
        events.get_nowait()
    except Exception:  # pylint: disable=broad-except  # queue.Empty: drained
      pass
  hook.p2p_jax_writer_errors = True
  threading.excepthook = hook


class Writer:
  """What a run leaves to look at, written by process 0 only: TensorBoard scalars, sample
  grids and the config as hyperparameters (tensorboardX: no TensorFlow needed), sample PNGs,
  the curves as WORKDIR/losses.png (loss_plot), and optionally Weights & Biases.

  config: the run's config (TensorBoard's hyperparameters; `config.wandb_project` turns W&B
  on, imported only then). start_step: where the run (re)starts; the scalar log drops what
  an interrupted earlier run logged past it.
  """

  def __init__(self, workdir: str, enabled: bool = True, *, config=None, start_step: int = 0):
    self.enabled = enabled
    self.workdir = workdir
    self.sample_dir = os.path.join(workdir, workdirs.SAMPLES)
    self._tb = self._wandb = self._log = None
    if not enabled:
      return
    os.makedirs(self.sample_dir, exist_ok=True)
    self._log = loss_plot.ScalarLog(workdir, start_step)
    self._hparams = {} if config is None else {
        k: v if isinstance(v, (bool, int, float, str)) else str(v)
        for k, v in config_schema.flatten(config).items()}
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    _keep_writer_thread_errors()
    _WRITER_THREAD_ERRORS.clear()  # one Writer at a time: an earlier one's are not its own
    self._tb = SummaryWriter(os.path.join(workdir, workdirs.TENSORBOARD))
    for file_writer in self._tb.all_writers.values():
      event_writer = file_writer.event_writer
      _EVENT_WRITERS[event_writer._worker] = event_writer  # pylint: disable=protected-access
    if self._hparams:
      self._tb.add_hparams(self._hparams, {}, name='hparams')
    if config is not None and config.wandb_project:
      self._wandb = _start_wandb(config, workdir, self._hparams)

  def _check_writer_threads(self) -> None:
    """Raises the error a TensorBoard writer thread died of (an OSError: the workdir's disk
    full...), once its files are left alone (neither close() nor tensorboardX's exit hook
    flushes them again: another error, or a wait on the dead thread)."""
    if not _WRITER_THREAD_ERRORS:
      return
    if self._tb is not None:
      for file_writer in getattr(self._tb, 'all_writers', {}).values():
        event_writer = getattr(file_writer, 'event_writer', None)
        if event_writer is not None:
          event_writer._closed = True  # pylint: disable=protected-access
      self._tb = None
    raise _WRITER_THREAD_ERRORS[0]

  def scalars(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    self._check_writer_threads()
    for name, value in values.items():
      self._tb.add_scalar(name, float(value), step)
    self._log.append(step, values)
    if self._wandb is not None:
      self._wandb.log({k: float(v) for k, v in values.items()}, step=step)
    if any(k.startswith('val_') for k in values) and self._hparams:
      # The hyperparameter table shows each run's latest validation scores.
      self._tb.add_hparams(self._hparams, {k: float(v) for k, v in values.items()
                                           if k.startswith('val_')},
                           name='hparams', global_step=step)

  def plot(self) -> str | None:
    """Redraws WORKDIR/losses.png from everything logged so far."""
    return loss_plot.draw(self.workdir) if self.enabled else None

  def samples(self, step: int, inputs, outputs, targets, metadata: dict,
              caption: str = 'input | output | target') -> str | None:
    """Writes the grid input | output | target (one row per example; other columns as
    `caption` says) as PNG and image."""
    if not self.enabled:
      return None
    self._check_writer_threads()
    triples = [tuple(image_io.to_uint8(a) for a in t) for t in zip(inputs, outputs, targets)]
    path = os.path.join(self.sample_dir, f'step_{step:07d}.png')
    results_page.write_grid(path, triples, metadata)
    grid = results_page.make_grid(triples)
    self._tb.add_image('samples/input_output_target', grid, step, dataformats='HWC')
    if self._wandb is not None:
      import wandb  # pylint: disable=g-import-not-at-top
      self._wandb.log({'samples': wandb.Image(grid, caption=caption)},
                      step=step)
    return path

  def flush(self) -> None:
    self._check_writer_threads()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    try:
      self._check_writer_threads()
    except Exception:  # pylint: disable=broad-except  # said at the write that met it
      pass
    if self._tb is not None:
      self._tb.close()
    if self._wandb is not None:
      self._wandb.finish()


def _start_wandb(config, workdir: str, hparams: dict):
  """A W&B run for this workdir (one run id per workdir, so a resume continues it)."""
  try:
    import wandb  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(f'config.wandb_project is {config.wandb_project!r} but wandb is not '
                      'installed: pip install wandb (or leave wandb_project empty)') from None
  run_id = 'p2p-' + hashlib.sha256(os.path.abspath(workdir).encode()).hexdigest()[:12]
  return wandb.init(project=config.wandb_project, id=run_id, resume='allow', config=hparams,
                    dir=workdir, name=os.path.basename(os.path.abspath(workdir)))
