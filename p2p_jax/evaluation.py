"""Scoring a generator on a dataset split: the one loop of validation and evaluation.

The trainer's periodic validation and `python -m p2p_jax.evaluate` both run `score`: the
same images in the same order get the same dropout keys (image i: fold_in(PRNGKey(seed),
i), see p2p_jax.inference), so a checkpoint's validation L1 and its evaluated L1 agree.
What each caller does with the outputs (sample grids, result pages) it does in `on_batch`.
"""

import functools
from typing import Callable, Iterable

import jax
import numpy as np

from p2p_jax import metrics as metrics_lib, parallel

METRICS = ('l1', 'psnr', 'ssim')
_METRIC_FNS = {'l1': metrics_lib.l1, 'psnr': metrics_lib.psnr, 'ssim': metrics_lib.ssim}


@functools.partial(jax.jit, static_argnames='names')
def _per_image(output, target, names):
  return {name: _METRIC_FNS[name](output, target) for name in names}


def model_input(generator, batch: dict):
  """What `generator.apply` takes for a batch: the method's (TrainedGenerator.model_input),
  or the batch's 'input' for any other object with an `apply`."""
  fn = getattr(generator, 'model_input', None)
  return batch['input'] if fn is None else fn(batch)


def shown_input(generator, batch: dict):
  """The batch's input as an image for grids and pages (TrainedGenerator.shown_input), or
  its 'input'."""
  fn = getattr(generator, 'shown_input', None)
  return batch['input'] if fn is None else fn(batch)


def score(generator, batches: Iterable[dict], *, limit: int = -1, seed: int = 0,
          metrics: tuple[str, ...] = METRICS,
          on_batch: Callable[[int, dict, np.ndarray, dict], None] | None = None) -> dict:
  """Translates and scores every batch; returns the mean of each metric and the count.

  generator: an inference.TrainedGenerator.
  batches: {'input': [B,H,W,Cin], 'target': [B,H,W,Cout]} in [-1, 1] (any other keys, e.g.
    'name', are cut to the same images and passed on), e.g. input_pipeline.numpy_batches;
    for pix2pixHD {'label', 'instance', 'target'} (generator.model_input says what the
    generator takes).
  limit: stop after this many images of this process (-1: all).
  on_batch(index of its first image, batch, outputs, per-image scores as numpy arrays).
  With several processes each scores its own batches and the means are over the images of
  all processes, so every process returns the same numbers ({'num_images': 0} if none).
  """
  sums, index = np.zeros(len(metrics), np.float64), 0
  for batch in batches:
    if 0 <= limit <= index:
      break
    x = model_input(generator, batch)  # the batch's 'input', or what the method makes of it
    n = len(x) if limit < 0 else min(len(x), limit - index)
    batch = {k: v[:n] for k, v in batch.items()}
    out = generator.apply(x[:n], seed=seed, indices=np.arange(index, index + n))
    per_image = {k: np.asarray(v) for k, v in
                 _per_image(out, np.asarray(batch['target'], np.float32), metrics).items()}
    sums += [per_image[name].sum() for name in metrics]
    if on_batch is not None:
      on_batch(index, batch, out, per_image)
    index += n
  # All processes must agree: the scores rank checkpoints, a decision taken on every process.
  totals = parallel.sum_over_processes(np.append(sums, index))
  count = int(totals[-1])
  if not count:
    return {'num_images': 0}
  return {'num_images': count, **{name: float(totals[i] / count)
                                  for i, name in enumerate(metrics)}}


def score_cycle(forward, backward, batches: Iterable[dict], *, key: str = 'input',
                target_key: str | None = None, limit: int = -1, seed: int = 0,
                on_batch: Callable[[int, dict, np.ndarray, np.ndarray, dict], None] | None = None
                ) -> dict:
  """Cycle consistency of a pair of generators: per image L1 between x and
  backward(forward(x)) ([-1, 1] units, as the cycle loss), for the images batch[key]; where
  the batches also hold forward's targets (`target_key`, a paired split), L1, PSNR and SSIM
  of forward(x) against them as well.

  forward, backward: inference.TrainedGenerator (CycleGAN's G_A and G_B, or the reverse).
  Batches without `key` are skipped (an unpaired split gives its two domains' images in
  separate batches). Image i uses the dropout keys of index i in both passes.
  on_batch(index of its first image, batch cut to the images scored, forward(x),
  backward(forward(x)), per-image scores as numpy arrays).
  Returns {'num_images', 'cycle_l1', ...} as means over the images of all processes.
  """
  names = ('cycle_l1',) + (METRICS if target_key else ())
  sums, index = np.zeros(len(names), np.float64), 0
  for batch in batches:
    if key not in batch:
      continue
    if 0 <= limit <= index:
      break
    n = len(batch[key]) if limit < 0 else min(len(batch[key]), limit - index)
    batch = {k: v[:n] for k, v in batch.items()}
    x = np.asarray(batch[key], np.float32)
    indices = np.arange(index, index + n)
    fake = forward.apply(x, seed=seed, indices=indices)
    rec = backward.apply(fake, seed=seed, indices=indices)
    per_image = {'cycle_l1': np.asarray(metrics_lib.l1(rec, x))}
    if target_key:
      per_image.update({k: np.asarray(v) for k, v in _per_image(
          fake, np.asarray(batch[target_key], np.float32), METRICS).items()})
    sums += [per_image[name].sum() for name in names]
    if on_batch is not None:
      on_batch(index, batch, fake, rec, per_image)
    index += n
  totals = parallel.sum_over_processes(np.append(sums, index))
  count = int(totals[-1])
  if not count:
    return {'num_images': 0}
  return {'num_images': count, **{name: float(totals[i] / count)
                                  for i, name in enumerate(names)}}
