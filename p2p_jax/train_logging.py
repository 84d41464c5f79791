"""What the trainer shows: a console progress line with ETA, TensorBoard events, sample PNGs.

Only process 0 writes (the writer of other processes is a no-op). TensorBoard files are
written with tensorboardX, which needs no TensorFlow, so logging works on machines that
train without it.
"""

import logging
import os
import sys
import time

import numpy as np

from p2p_jax import image_io, results_page, workdirs


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


class Writer:
  """TensorBoard scalars and images plus sample PNGs under the workdir (process 0 only)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.sample_dir = os.path.join(workdir, workdirs.SAMPLES)
    self._tb = None
    if enabled:
      os.makedirs(self.sample_dir, exist_ok=True)
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(os.path.join(workdir, workdirs.TENSORBOARD))
      except ImportError:
        logging.warning('tensorboardX is not installed: no TensorBoard events are written '
                        '(pip install tensorboardX)')

  def scalars(self, step: int, values: dict) -> None:
    if self._tb is not None:
      for name, value in values.items():
        self._tb.add_scalar(name, float(value), step)

  def samples(self, step: int, inputs, outputs, targets, metadata: dict) -> str | None:
    """Writes the grid input | output | target (one row per example) as PNG and image."""
    if not self.enabled:
      return None
    triples = [tuple(image_io.to_uint8(a) for a in t) for t in zip(inputs, outputs, targets)]
    path = os.path.join(self.sample_dir, f'step_{step:07d}.png')
    results_page.write_grid(path, triples, metadata)
    if self._tb is not None:
      grid = results_page.make_grid(triples)
      self._tb.add_image('samples/input_output_target', grid, step, dataformats='HWC')
    return path

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
