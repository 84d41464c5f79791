"""The README's picture of the demo: every test tile of an evaluation, whole, in a grid.

  PYTHONPATH=. python benchmarks/demo_figure.py \
      --eval_dir=WORKDIR/eval/test_step1700_paper [--eval_dir=WORKDIR/eval/test_step1700_eval] \
      --out=notebooks/images/demo_samples.jpg

Reads what `python -m p2p_jax.evaluate` wrote (metrics.csv and images/) and draws each
image as input | output | target, or with several --eval_dir (of the same split: e.g. paper
and eval mode) input | the output of each, in the order given | target; `--columns` such
rows side by side, in the order of the image names (the order of
`benchmarks/trivial_baselines.py --markdown`'s table), at their own size: nothing is cropped
or resized. A .jpg --out is written at quality 90 (a fraction of the PNG's size).
"""

import argparse
import csv
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from p2p_jax import evaluate, results_page  # noqa: E402

SPACER = 10  # white pixels between two images' groups in a row


def triples(eval_dir: str) -> list[tuple[str, list[np.ndarray]]]:
  """(name, [input, output, target]) of every image of metrics.csv, sorted by name."""
  path = os.path.join(eval_dir, 'metrics.csv')
  if not os.path.isfile(path):
    raise SystemExit(f'{path}: not found (run python -m p2p_jax.evaluate first)')
  with open(path, newline='') as f:
    names = [row['name'] for row in csv.DictReader(f)]
  taken = set()
  # The file stems evaluate gave the images, in its order (a repeated stem gets a suffix).
  stems = [evaluate._safe_name(n, taken) for n in names]  # pylint: disable=protected-access
  out = []
  for name, stem in sorted(zip(names, stems)):
    images = []
    for kind in ('input', 'output', 'target'):
      file = os.path.join(eval_dir, 'images', f'{stem}_{kind}.png')
      if not os.path.isfile(file):
        raise SystemExit(f'{file}: not found (the evaluation folder is incomplete)')
      images.append(np.asarray(Image.open(file).convert('RGB')))
    out.append((name, images))
  return out


def merge(evaluations: list[list[tuple[str, list[np.ndarray]]]]
          ) -> list[tuple[str, list[np.ndarray]]]:
  """(name, [input, output of each evaluation, target]) from several `triples` lists, which
  must hold the same images."""
  first = evaluations[0]
  for other in evaluations[1:]:
    if [n for n, _ in other] != [n for n, _ in first]:
      raise SystemExit('the --eval_dir folders hold different images: give evaluations of '
                       'the same split')
  return [(name, [images[0], *(e[i][1][1] for e in evaluations), images[2]])
          for i, (name, images) in enumerate(first)]


def figure(rows: list[tuple[str, list[np.ndarray]]], columns: int) -> np.ndarray:
  """uint8 RGB grid: `columns` input | output(s) | target groups per row."""
  lines = []
  for i in range(0, len(rows), columns):
    line = []
    for j, (_, images) in enumerate(rows[i:i + columns]):
      if j:
        line.append(np.full((images[0].shape[0], SPACER, 3), 255, np.uint8))
      line.extend(images)
    lines.append(tuple(line))
  return results_page.make_grid(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--eval_dir', required=True, action='append',
                      help="evaluate's --out_dir; repeat it for one output column each")
  parser.add_argument('--out', required=True, help='PNG or JPEG to write')
  parser.add_argument('--columns', type=int, default=2, help='images (groups) per row')
  args = parser.parse_args()
  rows = merge([triples(d) for d in args.eval_dir])
  options = ({'quality': 90} if args.out.lower().endswith(('.jpg', '.jpeg')) else {})
  Image.fromarray(figure(rows, args.columns)).save(args.out, optimize=True, **options)
  print(f'{len(rows)} images, {args.columns} per row -> {args.out}: '
        + ', '.join(name for name, _ in rows))


if __name__ == '__main__':
  main()
