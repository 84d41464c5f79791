"""Scores of trivial outputs on a dataset split, per image and in all, beside a model's.

  PYTHONPATH=. python benchmarks/trivial_baselines.py --config=configs/demo.py \
      [--config.data.data_dir=DIR] [--split=test] [--per_image] \
      [--metrics_csv=WORKDIR/eval/test_step1700_paper/metrics.csv] [--markdown]

Prints one JSON line per baseline: mean L1 ([-1, 1] images) and PSNR (dB, [0, 1] images)
over the split, with the images read by the evaluation pipeline (resized straight to
crop_size, no jitter), so the numbers compare directly with evaluate's:
  black        every output pixel -1 (all black)
  mean_train   the mean training target: the train split's targets, resized the same way,
               averaged pixel by pixel (what a generator that ignored its input would
               learn under an L2 loss; its median is the L1 optimum, see median_train)
  median_train the per-pixel median of the same targets
A model that does not beat these has not learned the translation, whatever else it shows.
Also scored, but not counted among them (it is not a trivial output for every task):
  identity     the input copied to the output (a 1-channel input repeated to 3 channels):
               for a task whose input is close to its target, as grey -> colour is, the
               score of doing nothing

--per_image adds one JSON line per image: each baseline's L1 (and identity's) and the best
of the three baselines (the lowest L1 on that image). --metrics_csv (the per-image scores `python -m p2p_jax.evaluate`
writes) adds the model's L1 to each line, whether it beats the best baseline on that image
(`beats`: model L1 < best baseline L1; identity is not a baseline here) and a last line counting the images it beats;
`--markdown` prints the same as a table instead (the README's). Exit status 0 either way:
this reports, it does not judge.
"""

import csv
import json
import sys

from absl import app, flags
from ml_collections import config_flags
import numpy as np

from p2p_jax import image_io, input_pipeline, metrics

BASELINES = ('black', 'mean_train', 'median_train')
OTHERS = ('identity',)  # reported beside the baselines, not counted among them


def _images(config, split):
  """(inputs, targets [N,H,W,C], names) of a split, as the evaluation pipeline reads them."""
  batches = list(input_pipeline.numpy_batches(
      config.data, split, batch_size=16, train=False, seed=0, process_index=0,
      process_count=1, in_channels=config.model.in_channels,
      out_channels=config.model.out_channels))
  names = [n.decode('utf-8', 'replace') if isinstance(n, bytes) else str(n)
           for b in batches for n in b['name']]
  return (np.concatenate([b['input'] for b in batches]),
          np.concatenate([b['target'] for b in batches]), names)


def baseline_outputs(train: np.ndarray, test: np.ndarray) -> dict:
  """Each trivial baseline's output for every image of `test`, from the train targets."""
  return {
      'black': -np.ones_like(test),
      'mean_train': np.broadcast_to(train.mean(0), test.shape),
      'median_train': np.broadcast_to(np.median(train, 0), test.shape),
  }


def identity_output(inputs: np.ndarray, test: np.ndarray) -> np.ndarray:
  """The inputs as outputs, with the targets' channels (grey repeated to RGB)."""
  return np.stack([image_io.to_channels(x, test.shape[-1]) for x in inputs])


def per_image_rows(names, test, outputs, model_l1: dict | None = None,
                   others: dict | None = None) -> list[dict]:
  """One dict per image, sorted by name: each baseline's L1 (`outputs`), the best baseline,
  the L1 of `others` (outputs reported but not counted as baselines, e.g. identity) and the
  model's if given."""
  others = others or {}
  l1 = {k: np.asarray(metrics.l1(out, test)) for k, out in {**outputs, **others}.items()}
  rows = []
  for i, name in sorted(enumerate(names), key=lambda item: item[1]):
    row = {'name': name, **{k: round(float(l1[k][i]), 4) for k in [*outputs, *others]}}
    row['best_baseline'] = min(outputs, key=lambda k: l1[k][i])
    if model_l1 is not None:
      if name not in model_l1:
        raise ValueError(f'--metrics_csv has no row for image {name!r} of the split')
      row['model'] = round(model_l1[name], 4)
      row['beats'] = bool(model_l1[name] < float(l1[row['best_baseline']][i]))
    rows.append(row)
  return rows


def read_metrics_csv(path: str) -> dict:
  """{image name: l1} from evaluate's metrics.csv."""
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    if not reader.fieldnames or not {'name', 'l1'} <= set(reader.fieldnames):
      raise ValueError(f'{path}: expected the columns name and l1 (evaluate writes them)')
    return {row['name']: float(row['l1']) for row in reader}


def markdown(rows: list[dict]) -> str:
  """The per-image comparison as a Markdown table, the lowest L1 of each row in bold, and
  with a model, whether it beats the best of the baselines (identity not counted)."""
  cols = [c for c in (*BASELINES, *OTHERS, 'model') if c in rows[0]]
  judged = 'beats' in rows[0]
  lines = ['| image | ' + ' | '.join(c.replace('_', ' ') for c in cols)
           + (' | model < best baseline |' if judged else ' |'),
           '|---|' + '---:|' * len(cols) + ('---|' if judged else '')]
  for row in rows:
    best = min(row[c] for c in cols)
    cells = [f'**{row[c]:.4f}**' if row[c] == best else f'{row[c]:.4f}' for c in cols]
    if judged:
      cells.append('yes' if row['beats'] else 'no')
    lines.append(f'| {row["name"]} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _define_flags():
  """The command line (defined when run as a script, so that tests can import the rest)."""
  return (
      config_flags.DEFINE_config_file('config', None, 'training config', lock_config=True),
      flags.DEFINE_string('split', 'test', 'split to score'),
      flags.DEFINE_bool('per_image', False, 'also one line per image'),
      flags.DEFINE_string('metrics_csv', None,
                          "evaluate's metrics.csv for this split: compare the model per image"),
      flags.DEFINE_bool('markdown', False, 'per-image comparison as a Markdown table'))


def main(argv):
  del argv
  config = _CONFIG.value
  _, train, _ = _images(config, config.data.train_split)
  inputs, test, names = _images(config, _SPLIT.value)
  outputs = baseline_outputs(train, test)
  others = {'identity': identity_output(inputs, test)}
  if not _MARKDOWN.value:
    for name, out in {**outputs, **others}.items():
      print(json.dumps({
          'baseline': name, 'split': _SPLIT.value, 'num_images': len(test),
          'size': test.shape[1], 'l1': round(float(np.mean(metrics.l1(out, test))), 4),
          'psnr': round(float(np.mean(metrics.psnr(out, test))), 2)}), flush=True)
  if not (_PER_IMAGE.value or _METRICS_CSV.value or _MARKDOWN.value):
    return 0
  model_l1 = read_metrics_csv(_METRICS_CSV.value) if _METRICS_CSV.value else None
  rows = per_image_rows(names, test, outputs, model_l1, others)
  if _MARKDOWN.value:
    print(markdown(rows))
  else:
    for row in rows:
      print(json.dumps(row))
  if model_l1 is not None:
    margins = [min(r[k] for k in BASELINES) - r['model'] for r in rows]
    beaten = sum(r['beats'] for r in rows)
    identity_lower = sum(r['identity'] < r['model'] for r in rows)
    if _MARKDOWN.value:
      print(f'\nThe model beats the best baseline on {beaten} of {len(rows)} images (smallest '
            f'margin {min(margins):.4f} L1); identity has a lower L1 than the model on '
            f'{identity_lower}.')
    else:
      print(json.dumps({'images_beaten': beaten, 'of': len(rows),
                        'smallest_margin': round(min(margins), 4),
                        'images_where_identity_is_lower': identity_lower}))
  return 0


if __name__ == '__main__':
  _CONFIG, _SPLIT, _PER_IMAGE, _METRICS_CSV, _MARKDOWN = _define_flags()
  sys.exit(app.run(main))
