"""Evaluates a trained generator on a dataset split: metrics, a CSV, an HTML page, a grid.

  python -m p2p_jax.evaluate --workdir=/tmp/p2p_facades --split=test \
      [--checkpoint=latest|best|STEP] [--mode=paper|eval] [--seed=0] [--out_dir=DIR]

Writes into --out_dir (default WORKDIR/eval/<split>_step<step>_<mode>):
  metrics.csv    one row per image: name, l1, psnr, ssim (see p2p_jax.metrics for units)
  metrics.json   averages, image count, and how the outputs were made (mode, seed, ...)
  index.html     input | output | target per image, as the PyTorch reference's results page
  grid.png       the first --grid_rows images as input | output | target rows
  images/        the PNGs the page shows; outputs carry the mode etc. in PNG text chunks
Image i of the split uses dropout key fold_in(PRNGKey(seed), i), so a seed fixes the result
(in paper mode with the default per-image statistics, independently of the batch size and
the number of devices).
"""

import csv
import json
import os
import re
import shutil
import sys
from typing import Iterable

from absl import flags
import numpy as np

from p2p_jax import (cli, evaluation, host_memory, image_io, inference, input_pipeline,
                     loss_plot, metrics, results_page, workdirs)

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
  image_dir = os.path.join(out_dir, 'images')
  os.makedirs(image_dir, exist_ok=True)
  out_meta = dict(generator.metadata, **{'p2p_jax.seed': str(seed)})
  rows, grid, taken = [], [], set()

  def write(_, batch, out, scores):
    shown = evaluation.shown_input(generator, batch)
    for j, name in enumerate(batch['name']):
      x, y = shown[j], batch['target'][j]
      stem = _safe_name(name, taken)
      row = {'name': name.decode('utf-8', 'replace') if isinstance(name, bytes) else name}
      for kind, image, meta in (('input', x, None), ('output', out[j], out_meta),
                                ('target', y, None)):
        rel = os.path.join('images', f'{stem}_{kind}.png')
        image_io.write_png(os.path.join(out_dir, rel), image, meta)
        row[kind] = rel
      row.update({k: float(scores[k][j]) for k in METRICS})
      rows.append(row)
      if len(grid) < grid_rows:
        grid.append((x, out[j], y))

  evaluation.score(generator, batches, limit=max_images, seed=seed, on_batch=write)
  if not rows:
    raise ValueError('evaluate: the dataset split gave no images')

  with open(os.path.join(out_dir, 'metrics.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(('name',) + METRICS)
    for row in rows:
      writer.writerow([row['name']] + [f'{row[k]:.6f}' for k in METRICS])

  summary = {
      'num_images': len(rows),
      **{k: float(np.mean([r[k] for r in rows])) for k in METRICS},
      # PSNR is capped for identical images (metrics.PSNR_CAP_DB); say how often.
      'num_psnr_capped': int(sum(r['psnr'] >= metrics.PSNR_CAP_DB for r in rows)),
      'psnr_cap_db': metrics.PSNR_CAP_DB,
      'mode': generator.mode,
      'bn_scope': generator.metadata['p2p_jax.bn_scope'],
      'generator': generator.config.model.generator,
      'checkpoint_step': generator.step,
      'checkpoint': generator.metadata['p2p_jax.checkpoint'],
      'seed': seed,
      'units': 'l1 on [-1, 1] images; psnr (dB) and ssim on [0, 1] images',
      **(header or {}),
  }
  with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  figures = ()
  if curves and os.path.exists(curves):
    shutil.copyfile(curves, os.path.join(out_dir, loss_plot.PLOT_FILE))
    figures = (loss_plot.PLOT_FILE,)
  results_page.write_results_page(
      out_dir, rows, summary,
      title=f'p2p_jax: {summary.get("split", "evaluation")} ({generator.mode} mode)',
      figures=figures)
  results_page.write_grid(os.path.join(out_dir, results_page.GRID), grid, out_meta)
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
  """Loads the workdir's model and dataset split and calls `evaluate_batches`."""
  workdir = cli.workdir_of(args)
  generator = cli.load_generator(args, workdir)
  config = workdirs.load_config(workdir)
  split = args.split or config.data.eval_split
  out_dir = args.out_dir or os.path.join(
      workdir, workdirs.EVAL, f'{split}_step{generator.step}_{generator.mode}')
  batches = input_pipeline.numpy_batches(
      config.data, split, batch_size=args.batch_size, train=False, seed=args.seed,
      process_index=0, process_count=1, in_channels=config.model.in_channels,
      out_channels=config.model.out_channels)
  header = {'split': split, 'dataset': config.data.dataset, 'direction': config.data.direction,
            'workdir': os.path.abspath(workdir)}
  summary = evaluate_batches(generator, batches, out_dir, seed=args.seed,
                             max_images=args.num_images, header=header,
                             grid_rows=args.grid_rows,
                             curves=os.path.join(workdir, loss_plot.PLOT_FILE))
  summary['out_dir'] = out_dir
  return summary


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)

  def report():
    summary = run(args)
    print(f'{summary["num_images"]} images of {summary["split"]}, {summary["mode"]} mode, '
          f'checkpoint step {summary["checkpoint_step"]}: L1 {summary["l1"]:.4f}  '
          f'PSNR {summary["psnr"]:.2f} dB  SSIM {summary["ssim"]:.4f}')
    print(f'results: {os.path.join(summary["out_dir"], results_page.PAGE)}')
    return 0
  return cli.run('p2p_jax.evaluate', report)


if __name__ == '__main__':
  # Faster XLA:CPU (see host_memory.py); re-imports this module once, which costs ~2 s.
  host_memory.reexec_with_hugepage_malloc()
  sys.exit(main())
