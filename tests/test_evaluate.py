"""Evaluation: metrics per image and averaged, the HTML page, the grid, the CLI."""

import csv
import errno
import json
import os
import re

import jax
import numpy as np
import pytest

import data_fixtures as fx
from conftest import tiny_config
from p2p_jax import evaluate, image_io, inference, metrics
from test_inference import fake_variables, make_workdir

NAMES = [b'0', b'1', b'a/b c.jpg', b'3', b'4']


def _batches(n=5, batch=2, size=32, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
  y = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
  for i in range(0, n, batch):
    yield {'input': x[i:i + batch], 'target': y[i:i + batch], 'name': NAMES[i:i + batch]}


def _read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def generator():
  config = tiny_config('unet_32', width=2)
  return inference.TrainedGenerator(config, fake_variables(config, 32), 'paper',
                                    devices=jax.devices()[:2])


def test_a_failed_evaluation_leaves_the_earlier_results_as_they_were(generator, tmp_path):
  """Results are made beside the folder and moved in whole: an evaluation that fails half
  way (here a split whose third image is bad) leaves no new image beside older metrics."""
  out = tmp_path / 'eval'
  evaluate.evaluate_batches(generator, _batches(), str(out), seed=3)
  before = {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}

  def failing():
    for i, batch in enumerate(_batches(batch=1, seed=1)):
      if i == 2:
        raise ValueError('data/3.jpg: not a JPEG')
      yield batch
  with pytest.raises(ValueError, match='3.jpg'):
    evaluate.evaluate_batches(generator, failing(), str(out), seed=4)
  assert {p: p.read_bytes() for p in out.rglob('*') if p.is_file()} == before
  assert sorted(os.listdir(tmp_path)) == ['eval']  # nothing left beside it
  with pytest.raises(ValueError, match='3.jpg'):   # new folders: not left behind
    evaluate.evaluate_batches(generator, failing(), str(tmp_path / 'new' / 'deeper'), seed=4)
  assert sorted(os.listdir(tmp_path)) == ['eval']
  # A complete one replaces them (and leaves a file of the user's in the folder alone).
  (out / 'notes.txt').write_text('mine')
  evaluate.evaluate_batches(generator, _batches(seed=1), str(out), seed=4)
  assert json.loads((out / 'metrics.json').read_text())['seed'] == 4
  assert (out / 'notes.txt').read_text() == 'mine'
  assert sorted(os.listdir(tmp_path)) == ['eval']



def test_an_out_dir_that_cannot_be_a_folder_is_named(generator, tmp_path):
  """A file, or a symbolic link whose target is gone: one error naming it (not an OS error
  about a hidden folder inside it), before any image is computed; nothing else is made."""
  (tmp_path / 'a_file').write_text('mine')
  os.symlink(tmp_path / 'gone', tmp_path / 'link')
  with pytest.raises(ValueError, match=r'a_file is a file'):
    evaluate.evaluate_batches(generator, _batches(), str(tmp_path / 'a_file'))
  with pytest.raises(ValueError, match=r'link is a symbolic link to .*gone, which does not'):
    evaluate.evaluate_batches(generator, _batches(), str(tmp_path / 'link'))
  assert sorted(os.listdir(tmp_path)) == ['a_file', 'link']
  assert (tmp_path / 'a_file').read_text() == 'mine'

def test_a_full_disk_names_the_file_in_out_dir(generator, tmp_path, monkeypatch):
  """The one-line error of a failed write names the file where the user will look for it
  (not the hidden folder it was being made in); the new folder goes again."""
  from PIL import Image  # pylint: disable=import-outside-toplevel

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(Image.Image, 'save', full)
  out = tmp_path / 'new'
  with pytest.raises(OSError, match='No space left') as e:
    evaluate.evaluate_batches(generator, _batches(), str(out))
  assert e.value.filename.startswith(str(out / 'images') + os.sep), e.value.filename
  assert os.listdir(tmp_path) == []


def test_page_lists_every_image_with_its_metrics(generator, tmp_path):
  summary = evaluate.evaluate_batches(generator, _batches(), str(tmp_path), seed=3,
                                      header={'split': 'test'})
  rows = _read_csv(tmp_path / 'metrics.csv')
  assert [r['name'] for r in rows] == [n.decode() for n in NAMES]
  assert summary['num_images'] == 5 and summary['mode'] == 'paper'
  np.testing.assert_allclose(summary['ssim'], np.mean([float(r['ssim']) for r in rows]),
                             atol=1e-6)
  assert json.loads((tmp_path / 'metrics.json').read_text())['seed'] == 3

  page = (tmp_path / 'index.html').read_text()
  assert 'paper' in page
  for name in NAMES:
    assert name.decode() in page
  sources = re.findall(r'<img src="([^"]+)"', page)
  assert len(sources) == 3 * len(NAMES)
  for src in sources:
    assert (tmp_path / src).is_file(), src
  out_png = [s for s in sources if s.endswith('_output.png')][0]
  assert image_io.read_png_metadata(tmp_path / out_png)['p2p_jax.mode'] == 'paper'
  grid = image_io.read_image(str(tmp_path / 'grid.png'))
  assert grid.shape == (5 * (32 + 2), 3 * (32 + 2), 3)  # 5 rows of input|output|target

  # Same seed, same results, also with another batch size (per-image keys and statistics).
  evaluate.evaluate_batches(generator, _batches(batch=5), str(tmp_path / 'again'), seed=3)
  again = _read_csv(tmp_path / 'again' / 'metrics.csv')
  for a, b in zip(rows, again):
    for k in evaluate.METRICS:
      assert abs(float(a[k]) - float(b[k])) < 1e-5


class _Identity:
  """Stands in for a TrainedGenerator whose output is exactly the target."""
  mode, step = 'eval', 0
  metadata = {'p2p_jax.mode': 'eval', 'p2p_jax.bn_scope': 'running_average',
              'p2p_jax.checkpoint': ''}
  config = tiny_config()
  config.model.generator = 'identity'

  def apply(self, x, seed=0, indices=None):
    del seed, indices
    return x


def test_perfect_outputs_score_the_documented_limits(tmp_path):
  def same():
    for b in _batches():
      yield dict(b, target=b['input'])
  summary = evaluate.evaluate_batches(_Identity(), same(), str(tmp_path), max_images=4)
  assert summary['num_images'] == 4 and summary['l1'] == 0.0
  assert summary['psnr'] == metrics.PSNR_CAP_DB and summary['num_psnr_capped'] == 4
  assert abs(summary['ssim'] - 1) < 1e-6


def test_cli_on_a_dataset_split(tmp_path, capsys, monkeypatch):
  config = tiny_config('unet_32', width=2)
  config.data.dataset = 'aligned_folder'
  config.data.source = fx.aligned_folder(tmp_path / 'pairs', {'train': 2, 'test': 3})
  config.data.data_dir = str(tmp_path / 'tfds')
  config.data.direction = 'AtoB'
  workdir, _ = make_workdir(tmp_path / 'run', config, 32)

  monkeypatch.chdir(tmp_path)   # a workdir relative to the current folder works too
  rc = evaluate.main(['--workdir', 'run', '--split', 'test', '--mode', 'eval',
                      '--batch_size', '2'])
  assert rc == 0, capsys.readouterr().err
  out_dir = os.path.join(workdir, 'eval', 'test_step7_eval')
  rows = _read_csv(os.path.join(out_dir, 'metrics.csv'))
  assert len(rows) == 3
  summary = json.load(open(os.path.join(out_dir, 'metrics.json')))
  assert summary['mode'] == 'eval' and summary['checkpoint_step'] == 7
  assert summary['split'] == 'test'
  page = open(os.path.join(out_dir, 'index.html')).read()
  for row in rows:
    assert row['name'] in page

  missing = str(tmp_path / 'empty')
  os.makedirs(missing)
  assert evaluate.main(['--workdir', missing]) == 2
  assert 'config.json' in capsys.readouterr().err
