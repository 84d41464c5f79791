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

import argparse
import csv
import json
import os
import re
import sys
from typing import Iterable

import numpy as np

from p2p_jax import config_lib, host_memory, image_io, inference, metrics, results_page

METRICS = ('l1', 'psnr', 'ssim')


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


def evaluate_batches(translator: inference.Translator, batches: Iterable[dict], out_dir: str,
                     *, seed: int = 0, max_images: int = -1, header: dict | None = None,
                     grid_rows: int = 16) -> dict:
  """Translates every batch, scores it, and writes the results into `out_dir`.

  batches: any iterator of {'input': [B,H,W,Cin], 'target': [B,H,W,Cout] (float [-1, 1]),
    'name': [B] (str or bytes)}, e.g. input_pipeline.numpy_batches(..., train=False).
  max_images: stop after this many images (-1: all).
  header: extra lines for metrics.json and the page (split, dataset, ...).
  Returns the summary written to metrics.json.
  """
  image_dir = os.path.join(out_dir, 'images')
  os.makedirs(image_dir, exist_ok=True)
  out_meta = dict(translator.metadata, **{'p2p_jax.seed': str(seed)})
  rows, grid, taken, index = [], [], set(), 0
  for batch in batches:
    x, y = np.asarray(batch['input']), np.asarray(batch['target'])
    names = list(batch['name'])
    if max_images >= 0:
      x, y, names = x[:max_images - index], y[:max_images - index], names[:max_images - index]
    if not len(x):
      break
    out = translator.apply(x, seed=seed, indices=range(index, index + len(x)))
    scores = {k: np.asarray(v) for k, v in metrics.all_metrics(out, y).items()}
    for j, name in enumerate(names):
      stem = _safe_name(name, taken)
      row = {'name': name.decode('utf-8', 'replace') if isinstance(name, bytes) else name}
      for kind, image, meta in (('input', x[j], None), ('output', out[j], out_meta),
                                ('target', y[j], None)):
        rel = os.path.join('images', f'{stem}_{kind}.png')
        image_io.write_png(os.path.join(out_dir, rel), image, meta)
        row[kind] = rel
      row.update({k: float(scores[k][j]) for k in METRICS})
      rows.append(row)
      if len(grid) < grid_rows:
        grid.append((x[j], out[j], y[j]))
    index += len(x)
    if 0 <= max_images <= index:
      break
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
      'mode': translator.mode,
      'bn_scope': translator.metadata['p2p_jax.bn_scope'],
      'generator': translator.model_config.generator,
      'checkpoint_step': translator.step,
      'checkpoint': translator.metadata['p2p_jax.checkpoint'],
      'seed': seed,
      'units': 'l1 on [-1, 1] images; psnr (dB) and ssim on [0, 1] images',
      **(header or {}),
  }
  with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  results_page.write_results_page(
      out_dir, rows, summary,
      title=f'p2p_jax: {summary.get("split", "evaluation")} ({translator.mode} mode)')
  results_page.write_grid(os.path.join(out_dir, results_page.GRID), grid, out_meta)
  return summary


def _parse_checkpoint(value: str):
  return int(value) if value.isdigit() else value


def parse_args(argv):
  p = argparse.ArgumentParser(
      prog='python -m p2p_jax.evaluate', description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='workdir the model was trained into')
  p.add_argument('--checkpoint', default='latest', type=_parse_checkpoint,
                 help="'latest', 'best' (lowest validation L1) or a step number")
  p.add_argument('--split', default=None,
                 help="dataset split (default: the config's data.eval_split)")
  p.add_argument('--mode', choices=inference.MODES, default=None,
                 help="'paper' (dropout on, test-batch BatchNorm statistics) or 'eval' "
                      "(running averages, no dropout); default: the config's inference_mode")
  p.add_argument('--bn_scope', choices=inference.BN_SCOPES, default='image',
                 help="paper mode: statistics of each 'image' (as the reference's batch-1 "
                      "test) or of the whole 'batch'")
  p.add_argument('--seed', type=int, default=0, help='seed of the dropout keys')
  p.add_argument('--batch_size', type=int, default=8)
  p.add_argument('--num_images', type=int, default=-1, help='-1: the whole split')
  p.add_argument('--grid_rows', type=int, default=16)
  p.add_argument('--out_dir', default=None)
  return p.parse_args(argv)


def run(args) -> dict:
  """Loads the workdir's model and dataset split and calls `evaluate_batches`."""
  translator = inference.load_translator(args.workdir, args.checkpoint, args.mode,
                                         bn_scope=args.bn_scope)
  config = config_lib.load_workdir_config(args.workdir)
  split = args.split or config.data.eval_split
  out_dir = args.out_dir or os.path.join(
      args.workdir, 'eval', f'{split}_step{translator.step}_{translator.mode}')
  from p2p_jax import input_pipeline  # pylint: disable=import-outside-toplevel (pulls TF)
  batches = input_pipeline.numpy_batches(
      config.data, split, batch_size=args.batch_size, train=False, seed=args.seed,
      process_index=0, process_count=1, in_channels=config.model.in_channels,
      out_channels=config.model.out_channels)
  header = {'split': split, 'dataset': config.data.dataset, 'direction': config.data.direction,
            'workdir': os.path.abspath(args.workdir)}
  summary = evaluate_batches(translator, batches, out_dir, seed=args.seed,
                             max_images=args.num_images, header=header,
                             grid_rows=args.grid_rows)
  summary['out_dir'] = out_dir
  return summary


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    summary = run(args)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'{summary["num_images"]} images of {summary["split"]}, {summary["mode"]} mode, '
        f'checkpoint step {summary["checkpoint_step"]}: L1 {summary["l1"]:.4f}  '
        f'PSNR {summary["psnr"]:.2f} dB  SSIM {summary["ssim"]:.4f}')
  print(f'results: {os.path.join(summary["out_dir"], results_page.PAGE)}')
  return 0


if __name__ == '__main__':
  # Faster XLA:CPU (see host_memory.py); re-imports this module once, which costs ~2 s.
  host_memory.reexec_with_hugepage_malloc()
  sys.exit(main())
