"""benchmarks/trivial_baselines.py's per-image comparison and benchmarks/demo_figure.py, the
two scripts behind the README's demo table and picture. On made-up arrays and files: no
dataset, nothing compiled beyond the L1 of a few small arrays."""

import csv
import os
import sys

import numpy as np
from PIL import Image
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'benchmarks'))

import demo_figure  # noqa: E402  (benchmarks/demo_figure.py)
import trivial_baselines as tb  # noqa: E402  (benchmarks/trivial_baselines.py)


def _targets():
  """Two 4x4 test targets (one black, one mid-grey) and a train split of mid-grey ones."""
  test = np.stack([-np.ones((4, 4, 3)), np.zeros((4, 4, 3))]).astype(np.float32)
  train = np.zeros((3, 4, 4, 3), np.float32)
  train[0] += 0.5  # the mean (1/6) and the median (0) differ
  return train, test


def test_each_image_gets_its_own_best_baseline_and_the_model_is_judged_against_it():
  train, test = _targets()
  rows = tb.per_image_rows(['z_dark.jpg', 'a_grey.jpg'], test, tb.baseline_outputs(train, test),
                           {'z_dark.jpg': 0.01, 'a_grey.jpg': 0.1})
  assert [r['name'] for r in rows] == ['a_grey.jpg', 'z_dark.jpg']  # sorted by name
  grey, dark = rows
  assert dark['black'] == 0 and dark['best_baseline'] == 'black'
  assert dark['model'] == 0.01 and not dark['beats']  # black is perfect there
  assert grey['median_train'] == 0 and grey['best_baseline'] == 'median_train'
  assert grey['mean_train'] == pytest.approx(1 / 6, abs=1e-4) and grey['black'] == 1
  assert not grey['beats']  # 0.1 against the median's 0
  rows = tb.per_image_rows(['z_dark.jpg', 'a_grey.jpg'], test, tb.baseline_outputs(train, test),
                           {'z_dark.jpg': 0.0, 'a_grey.jpg': 0.0})
  assert not any(r['beats'] for r in rows)  # a tie is not a win


def test_a_model_row_missing_from_the_csv_is_named(tmp_path):
  train, test = _targets()
  with pytest.raises(ValueError, match="'z_dark.jpg'"):
    tb.per_image_rows(['z_dark.jpg', 'a_grey.jpg'], test, tb.baseline_outputs(train, test),
                      {'a_grey.jpg': 0.1})
  bad = tmp_path / 'metrics.csv'
  bad.write_text('image,score\nx,1\n')
  with pytest.raises(ValueError, match='metrics.csv: expected the columns name and l1'):
    tb.read_metrics_csv(str(bad))


def test_identity_is_reported_but_not_counted_as_a_baseline():
  train = np.zeros((3, 4, 4, 3), np.float32)  # black, mean and median all miss by 0.6
  test = np.full((1, 4, 4, 3), 0.6, np.float32)
  grey_inputs = np.full((1, 4, 4, 1), 0.6, np.float32)  # ... the input is the target
  identity = tb.identity_output(grey_inputs, test)
  assert identity.shape == test.shape and (identity == test).all()
  row, = tb.per_image_rows(['a.jpg'], test, tb.baseline_outputs(train, test), {'a.jpg': 0.3},
                           {'identity': identity})
  assert row['identity'] == 0 and row['best_baseline'] == 'mean_train'
  assert row['beats']  # judged against the three baselines (0.6), not against identity (0)
  assert tb.markdown([row]).splitlines()[0] == (
      '| image | black | mean train | median train | identity | model | model < best baseline |')


def test_markdown_table_bolds_the_lowest_l1_of_each_row():
  rows = [{'name': 'a.jpg', 'black': 0.5, 'mean_train': 0.2, 'median_train': 0.3, 'model': 0.1,
           'beats': True},
          {'name': 'b.jpg', 'black': 0.05, 'mean_train': 0.2, 'median_train': 0.3,
           'model': 0.1, 'beats': False}]
  lines = tb.markdown(rows).splitlines()
  assert lines[0] == '| image | black | mean train | median train | model | model < best baseline |'
  assert lines[2] == '| a.jpg | 0.5000 | 0.2000 | 0.3000 | **0.1000** | yes |'
  assert lines[3] == '| b.jpg | **0.0500** | 0.2000 | 0.3000 | 0.1000 | no |'
  assert tb.markdown([{k: v for k, v in rows[0].items() if k not in ('model', 'beats')}]
                     ).splitlines()[0] == '| image | black | mean train | median train |'


def _eval_dir(root, names, size=8):
  """What evaluate writes for `names`: metrics.csv (in that order) and images/<stem>_*.png,
  each image a flat colour that says which image and kind it is."""
  os.makedirs(root / 'images')
  with open(root / 'metrics.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(('name', 'l1', 'psnr', 'ssim'))
    for i, name in enumerate(names):
      writer.writerow((name, 0.1, 20, 0.5))
      for k, kind in enumerate(('input', 'output', 'target')):
        Image.new('RGB', (size, size), (10 * i, 100 + k, 0)).save(
            root / 'images' / f'{os.path.splitext(name)[0]}_{kind}.png')
  return str(root)


def test_demo_figure_draws_every_image_whole_in_name_order(tmp_path):
  names = ['S10.jpg', 'N20.jpg', 'N10.jpg']  # evaluate's order is the dataset's
  rows = demo_figure.triples(_eval_dir(tmp_path, names))
  assert [n for n, _ in rows] == ['N10.jpg', 'N20.jpg', 'S10.jpg']
  assert rows[0][1][0][0, 0, 0] == 10 * names.index('N10.jpg')  # its own pictures
  grid = demo_figure.figure(rows, columns=2)
  gap = 2  # results_page.make_grid's white gap after every image and row
  # Two rows; the first holds two triples (six images) and the spacer between them.
  assert grid.shape == (2 * (8 + gap), 6 * (8 + gap) + demo_figure.SPACER + gap, 3)
  assert (grid[:8, :8] == rows[0][1][0]).all()  # the first input, whole, at the top left
  assert (grid[10:18, :8] == rows[2][1][0]).all()  # the third triple starts row two


def test_demo_figure_says_what_is_missing(tmp_path):
  root = _eval_dir(tmp_path, ['a.jpg'])
  os.remove(os.path.join(root, 'images', 'a_target.png'))
  with pytest.raises(SystemExit, match='a_target.png: not found'):
    demo_figure.triples(root)
  with pytest.raises(SystemExit, match='run python -m p2p_jax.evaluate first'):
    demo_figure.triples(str(tmp_path / 'nowhere'))


def test_demo_figure_puts_each_evaluations_output_between_input_and_target(tmp_path):
  paper = demo_figure.triples(_eval_dir(tmp_path / 'paper', ['b.jpg', 'a.jpg']))
  other = _eval_dir(tmp_path / 'eval', ['a.jpg', 'b.jpg'])
  Image.new('RGB', (8, 8), (7, 7, 7)).save(os.path.join(other, 'images', 'a_output.png'))
  rows = demo_figure.merge([paper, demo_figure.triples(other)])
  assert [n for n, _ in rows] == ['a.jpg', 'b.jpg'] and len(rows[0][1]) == 4
  assert rows[0][1][0] is paper[0][1][0] and rows[0][1][1] is paper[0][1][1]
  assert (rows[0][1][2] == 7).all() and rows[0][1][3] is paper[0][1][2]
  with pytest.raises(SystemExit, match='different images'):
    demo_figure.merge([paper, demo_figure.triples(_eval_dir(tmp_path / 'c', ['a.jpg']))])
