r"""Evaluates a trained generator on a dataset split: metrics, a CSV, an HTML page, a grid.

  python -m p2p_jax.evaluate --workdir=/tmp/p2p_facades --split=test \
      [--checkpoint=latest|best|STEP] [--mode=paper|eval] [--seed=0] [--out_dir=DIR]

Writes into --out_dir (default WORKDIR/eval/<split>_step<step>_<mode>[_<direction>]):
  metrics.csv    one row per image: name, l1, psnr, ssim (see p2p_jax.metrics for units);
                 CycleGAN: cycle_l1 (x against G_B(G_A(x)) for --direction=AtoB) and, where
                 the split is paired, l1, psnr, ssim of the translation against the target
  metrics.json   averages, image count, and how the outputs were made (mode, seed, ...)
  index.html     input | output | target per image, as the PyTorch reference's results page
  grid.png       the first --grid_rows images as input | output | target rows
  images/        the PNGs the page shows; outputs carry the mode etc. in PNG text chunks
Image i of the split uses dropout key fold_in(PRNGKey(seed), i), so a seed fixes the result
(in paper mode with the default per-image statistics, independently of the batch size and
the number of devices).
"""

if __name__ == '__main__':
  # First: SIGTERM or Ctrl-C from here on ends the command at once with one line (a
  # KeyboardInterrupt raised during the imports can be lost in a garbage-collection
  # callback, and the command go on); the results appear only whole (stopping.py).
  from p2p_jax import stopping as _stopping  # pylint: disable=g-import-not-at-top
  _stopping.stop_at_once('p2p_jax.evaluate',
                         'no results written; its results folder is as it was')
  # Before JAX and the rest are imported: an offline first use of --pretrained=NAME fails in
  # a second (pytorch/pretrained.py), and the huge-page re-execution (host_memory.py) does
  # not import everything twice; it holds the stop signals through it.
  import sys  # pylint: disable=g-import-not-at-top
  from p2p_jax.pytorch import pretrained as _pretrained  # pylint: disable=g-import-not-at-top
  _pretrained.exit_if_unreachable(sys.argv[1:], 'p2p_jax.evaluate')
  from p2p_jax import host_memory as _host_memory  # pylint: disable=g-import-not-at-top
  _host_memory.reexec_with_hugepage_malloc(hold_signals=True)  # faster XLA:CPU

import csv
import json
import os
import re
import shutil
import sys
from typing import Iterable

from absl import flags
import numpy as np

from p2p_jax import (cli, evaluation, image_io, inference, loss_plot, metrics, results_page,
                     stopping, workdirs)
from p2p_jax.pytorch import pretrained

METRICS = evaluation.METRICS


def _safe_name(name, taken: set) -> str:
  """A file-name-safe, unique version of an example's name."""
  if isinstance(name, bytes):
    name = name.decode('utf-8', 'replace')
  base = re.sub(r'[^A-Za-z0-9._-]+', '_', os.path.splitext(str(name))[0]) or 'image'
  safe, k = base, 1
  while safe in taken:
    k += 1
    safe = f'{base}_{k}'
  taken.add(safe)
  return safe


def evaluate_batches(generator: inference.TrainedGenerator, batches: Iterable[dict],
                     out_dir: str, *, seed: int = 0, max_images: int = -1,
                     header: dict | None = None, grid_rows: int = 16,
                     curves: str | None = None) -> dict:
  """Translates and scores every batch (evaluation.score), and writes the results.

  batches: any iterator of {'input': [B,H,W,Cin], 'target': [B,H,W,Cout] (float [-1, 1]),
    'name': [B] (str or bytes)}, e.g. input_pipeline.numpy_batches(..., train=False).
  max_images: stop after this many images (-1: all).
  header: extra lines for metrics.json and the page (split, dataset, ...).
  curves: the training run's losses.png, copied next to the page and shown on it.
  Returns the summary written to metrics.json.
  """
  with _Results(out_dir, generator, seed, grid_rows) as results:
    evaluation.score(generator, batches, limit=max_images, seed=seed,
                     on_batch=lambda _, batch, out, scores: results.add(
                         batch['name'], {'input': evaluation.shown_input(generator, batch),
                                         'output': out,
                                         'target': batch['target']}, scores))
    return results.write(METRICS, header, curves)


def evaluate_cycle(forward: inference.TrainedGenerator, backward: inference.TrainedGenerator,
                   batches: Iterable[dict], out_dir: str, *, key: str = 'input',
                   target_key: str | None = None, seed: int = 0, max_images: int = -1,
                   header: dict | None = None, grid_rows: int = 16,
                   curves: str | None = None) -> dict:
  """CycleGAN's evaluation (evaluation.score_cycle): per image the cycle L1 of x = batch[key]
  through forward then backward and, where the split is paired (`target_key`), L1, PSNR
  and SSIM of forward(x) against batch[target_key]; written as evaluate_batches writes,
  with the columns input | output | reconstructed (| target)."""
  with _Results(out_dir, forward, seed, grid_rows) as results:

    def add(_, batch, fake, rec, scores):
      images = {'input': batch[key], 'output': fake, 'reconstructed': rec}
      if target_key:
        images['target'] = batch[target_key]
      results.add(batch['name'], images, scores)

    evaluation.score_cycle(forward, backward, batches, key=key, target_key=target_key,
                           limit=max_images, seed=seed, on_batch=add)
    names = ('cycle_l1',) + (METRICS if target_key else ())
    return results.write(names, {'backward_generator': backward.direction,
                                 **(header or {})}, curves)


class _Results:
  """Per-image rows (PNG files, scores) and what evaluate writes from them.

  Everything is written into a hidden folder inside out_dir and moved out of it into
  out_dir at the end of `write` (each file in place of the one of that name; one file
  system, so each move is a rename), so that an evaluation that fails or is stopped leaves
  out_dir as it was: no new images beside an older metrics.csv. A context manager: on
  leaving, that folder is gone, and so is out_dir if it was made for nothing.
  """

  def __init__(self, out_dir: str, generator: inference.TrainedGenerator, seed: int,
               grid_rows: int):
    self.out_dir, self.generator, self.seed, self.grid_rows = out_dir, generator, seed, grid_rows
    self.out_meta = dict(generator.metadata, **{'p2p_jax.seed': str(seed)})
    self.rows, self.grid, self.taken, self.columns = [], [], set(), ()
    self.staging = self._temporary = None

  def __enter__(self):
    self.staging = stopping.partial_folder(self.out_dir)
    # The staging folder is gone at the end, and on a stop; so are the folders made for
    # out_dir when nothing was written.
    self._temporary = stopping.temporary(self.staging,
                                         made=stopping.missing_folders(self.out_dir))
    self._temporary.__enter__()
    try:
      os.makedirs(os.path.join(self.staging, 'images'))
    except BaseException:
      self._temporary.__exit__(*sys.exc_info())
      raise
    return self

  def __exit__(self, *exc):
    self._temporary.__exit__(*exc)
    if isinstance(exc[1], OSError):  # a full disk: named where the user looks, not staging
      name = exc[1].filename
      exc[1].filename = (self.out_dir if name is None else
                         str(name).replace(self.staging, self.out_dir.rstrip(os.sep), 1))

  def _publish(self) -> None:
    """Moves the finished results into out_dir (a stop request waits for the moves)."""
    with stopping.writing(completes=True):
      # Bottom-up: the images before the page and metrics.csv that name them.
      for root, _, files in os.walk(self.staging, topdown=False):
        into = os.path.join(self.out_dir, os.path.relpath(root, self.staging))
        os.makedirs(into, exist_ok=True)
        for name in files:
          os.replace(os.path.join(root, name), os.path.join(into, name))

  def add(self, names, images: dict, scores: dict) -> None:
    """One batch: `images` {column: [B, H, W, C]}, `scores` {metric: [B]}."""
    self.columns = tuple(images)
    for j, name in enumerate(names):
      stem = _safe_name(name, self.taken)
      row = {'name': name.decode('utf-8', 'replace') if isinstance(name, bytes) else name}
      for kind, batch in images.items():
        rel = os.path.join('images', f'{stem}_{kind}.png')
        meta = self.out_meta if kind in ('output', 'reconstructed') else None
        image_io.write_png(os.path.join(self.staging, rel), batch[j], meta)
        row[kind] = rel
      row.update({k: float(v[j]) for k, v in scores.items()})
      self.rows.append(row)
      if len(self.grid) < self.grid_rows:
        self.grid.append(tuple(batch[j] for batch in images.values()))

  def write(self, metric_names, header, curves) -> dict:
    rows, generator, out_dir = self.rows, self.generator, self.staging
    if not rows:
      raise ValueError('evaluate: the dataset split gave no images')
    with open(os.path.join(out_dir, 'metrics.csv'), 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(('name',) + tuple(metric_names))
      for row in rows:
        writer.writerow([row['name']] + [f'{row[k]:.6f}' for k in metric_names])
    summary = {
        'num_images': len(rows),
        **{k: float(np.mean([r[k] for r in rows])) for k in metric_names},
        'mode': generator.mode,
        'bn_scope': generator.metadata['p2p_jax.bn_scope'],
        'generator': generator.config.model.generator,
        'checkpoint_step': generator.step,
        'checkpoint': generator.metadata['p2p_jax.checkpoint'],
        'seed': self.seed,
        'units': 'l1 on [-1, 1] images; psnr (dB) and ssim on [0, 1] images',
        **(header or {}),
    }
    if 'psnr' in metric_names:
      # PSNR is capped for identical images (metrics.PSNR_CAP_DB); say how often.
      summary['num_psnr_capped'] = int(sum(r['psnr'] >= metrics.PSNR_CAP_DB for r in rows))
      summary['psnr_cap_db'] = metrics.PSNR_CAP_DB
    method = getattr(generator, 'method', None)
    if method is not None and method.name != 'pix2pix':
      summary.update(method=method.name, direction=generator.direction)
    with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
      json.dump(summary, f, indent=2, sort_keys=True)
    figures = ()
    if curves and os.path.exists(curves):
      shutil.copyfile(curves, os.path.join(out_dir, loss_plot.PLOT_FILE))
      figures = (loss_plot.PLOT_FILE,)
    results_page.write_results_page(
        out_dir, rows, summary,
        title=f'p2p_jax: {summary.get("split", "evaluation")} ({generator.mode} mode)',
        figures=figures, images=self.columns)
    results_page.write_grid(os.path.join(out_dir, results_page.GRID), self.grid,
                            self.out_meta)
    self._publish()
    return summary


def define_flags(fv) -> None:
  cli.define_generator_flags(fv)
  flags.DEFINE_string('split', None, "dataset split; default: the config's data.eval_split",
                      flag_values=fv)
  flags.DEFINE_integer('batch_size', 8, 'images translated together', lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer('num_images', -1, 'images to evaluate; -1: the whole split',
                       flag_values=fv)
  flags.DEFINE_integer('grid_rows', 16, 'rows of grid.png', lower_bound=1, flag_values=fv)
  flags.DEFINE_string('out_dir', None, 'where the results go; default: '
                      'WORKDIR/eval/<split>_step<step>_<mode>', flag_values=fv)


def parse_args(argv):
  return cli.parse(argv, define_flags, 'p2p_jax.evaluate', __doc__)


def run(args) -> dict:
  """Loads the workdir's model and dataset split and calls `evaluate_batches` (or, for a
  method that translates back, `evaluate_cycle`)."""
  if args.pretrained:
    pretrained.check_evaluable(args.pretrained)  # before any download
  workdir = cli.workdir_of(args)
  generator = cli.load_generator(args, workdir)
  config = workdirs.load_config(workdir)
  split = args.split or config.data.eval_split
  suffix = '' if generator.method.name == 'pix2pix' else f'_{generator.direction}'
  out_dir = args.out_dir or os.path.join(
      workdir, workdirs.EVAL, f'{split}_step{generator.step}_{generator.mode}{suffix}')
  batches = cli.split_batches(config, split, args.batch_size, args.seed)
  header = {'split': split, 'dataset': config.data.dataset, 'direction': config.data.direction,
            'workdir': os.path.abspath(workdir)}
  curves = os.path.join(workdir, loss_plot.PLOT_FILE)
  common = dict(seed=args.seed, max_images=args.num_images, header=header,
                grid_rows=args.grid_rows, curves=curves)
  if 'BtoA' in generator.method.directions:
    back = 'BtoA' if generator.direction == 'AtoB' else 'AtoB'
    backward = workdirs.load_generator(workdir, generator.step, generator.mode,
                                       direction=back, **(
                                           {'bn_scope': args.bn_scope} if 'bn_scope' in args
                                           else {}))
    key, other = ('input', 'target') if generator.direction == 'AtoB' else ('target', 'input')
    paired = workdirs.eval_is_paired(config)
    summary = evaluate_cycle(generator, backward, batches, out_dir, key=key,
                             target_key=other if paired else None, **common)
  else:
    summary = evaluate_batches(generator, batches, out_dir, **common)
  summary['out_dir'] = out_dir
  return summary


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)

  def report():
    summary = run(args)
    scores = []
    if 'cycle_l1' in summary:
      scores.append(f'cycle L1 {summary["cycle_l1"]:.4f}')
    if 'l1' in summary:
      scores.append(f'L1 {summary["l1"]:.4f}  PSNR {summary["psnr"]:.2f} dB  '
                    f'SSIM {summary["ssim"]:.4f}')
    which = f' ({summary["direction"]})' if 'direction' in summary else ''
    print(f'{summary["num_images"]} images of {summary["split"]}{which}, {summary["mode"]} '
          f'mode, checkpoint step {summary["checkpoint_step"]}: {"  ".join(scores)}')
    print(f'results: {os.path.join(summary["out_dir"], results_page.PAGE)}')
    return 0
  return cli.run('p2p_jax.evaluate', report)


if __name__ == '__main__':
  sys.exit(main())
