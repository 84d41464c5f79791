"""What a user is told: 'best' is the best validated step, warnings about images that are
changed without a word otherwise (transparency, tiny sizes), and the small lines a run and
translate print.
"""

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from p2p_jax import checkpointing, image_io, train, train_logging, translate, workdirs
from p2p_jax.datasets import sources
from test_inference import make_workdir
from test_train import make_config, run


# ---------------------------------------------------------------------------- "best"

def test_best_is_the_best_validated_step_not_the_best_checkpoint_step(tmp_path, capsys,
                                                                      monkeypatch):
  """Validation every step, periodic checkpoints every 4: the validations score as scripted
  below (lowest at step 2, between checkpoints), and a validation that improves on the best
  so far is saved too, so 'best' is step 2, not the best of steps 4 and 8."""
  val_l1 = {1: 0.5, 2: 0.3, 3: 0.4, 4: 0.45, 5: 0.6, 6: 0.35, 7: 0.8, 8: 0.9}
  step = [0]

  def scripted_score(*args, **kwargs):
    del args, kwargs
    step[0] += 1
    return {'l1': val_l1[step[0]], 'psnr': 10.0, 'num_images': 8}

  monkeypatch.setattr(train.evaluation, 'score', scripted_score)
  config = make_config(num_train_steps=8)
  config.eval_every_steps = config.sample_every_steps = 1
  config.checkpoint_every_steps = 4
  config.keep_checkpoints = 1
  run(config, tmp_path)
  with open(tmp_path / 'scalars.jsonl') as f:
    logged = {r['step']: r['val_l1'] for r in map(json.loads, f) if 'val_l1' in r}
  assert logged == pytest.approx(val_l1)
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(str(tmp_path)),
                                  read_only=True) as ckpt:
    assert ckpt.all_steps() == [2, 8]            # the best and the newest (keep 1)
    assert ckpt.step_for('best') == 2
  out = capsys.readouterr().out
  assert ('checkpoints  checkpoints/ (latest 8; best 2: the lowest validation L1 of all '
          'validations)') in out


def test_improves_ranks_against_the_kept_checkpoints(tmp_path):
  state = {'w': np.zeros(3, np.float32)}
  with checkpointing.Checkpointer(tmp_path / 'c', keep=1) as ckpt:
    assert ckpt.improves({'val_l1': 0.5})         # nothing kept yet
    assert not ckpt.improves({'val_l1': float('nan')}) and not ckpt.improves({})
    ckpt.save(1, state, {'val_l1': 0.5})
    ckpt.wait()
    assert not ckpt.improves({'val_l1': 0.5}) and ckpt.improves({'val_l1': 0.4})
    ckpt.save(2, state, {'val_l1': 0.7})         # newer, worse: 1 stays as the best
    ckpt.wait()
    assert ckpt.best_step() == 1 and not ckpt.improves({'val_l1': 0.6})


# ---------------------------------------------------------------------------- the run's lines

def test_own_log_lines_read_like_the_printed_ones(capsys):
  """The resume line used to come as absl's `I1206 06:14:03.77 ... train.py:167] resumed`."""
  logger = logging.getLogger()
  handlers = list(logger.handlers)
  try:
    train_logging.console_format()
    record = logging.LogRecord('root', logging.INFO, workdirs.__file__, 1,
                               'resumed from step %d in %s', (4, '/w'), None)
    warning = logging.LogRecord('root', logging.WARNING, workdirs.__file__, 1,
                                'Taking over the stale lock', (), None)
    library = logging.LogRecord('absl', logging.WARNING, '/venv/orbax/x.py', 1, 'orbax says',
                                (), None)
    handler = next(h for h in logger.handlers if getattr(h, 'p2p_jax_console', False))
    assert handler.format(record) == 'p2p_jax: resumed from step 4 in /w'
    assert handler.format(warning) == 'p2p_jax: warning: Taking over the stale lock'
    assert handler.format(library) == 'orbax says'
  finally:
    logger.handlers[:] = handlers


def test_an_unreadable_image_is_named_once_without_it(tmp_path):
  path = tmp_path / 'zz.jpg'
  path.write_bytes(b'not an image')
  with pytest.raises(image_io.ImageError) as e:
    image_io.read_image(str(path))
  assert str(e.value) == (f'{path}: cannot decode image (UnidentifiedImageError: cannot '
                          'identify image file); expected a complete image file')


# ---------------------------------------------------------------------------- images

def _aligned(path, width, mode='RGB'):
  Image.new(mode, (2 * width, width), (10, 200, 30, 0)[:len(mode)]).save(path)


def test_training_data_warns_about_transparency_and_tiny_images(tmp_path, caplog):
  folder = tmp_path / 'train'
  folder.mkdir()
  _aligned(folder / 'a.png', 64)
  _aligned(folder / 'b.png', 64, 'RGBA')
  _aligned(folder / 'c.png', 4)                  # 8x4: 4x4 halves
  _aligned(folder / 'd.png', 16, 'RGBA')
  notes = sources.ImageNotes(load_size=36)
  examples = list(sources.aligned_examples(str(folder), 3, 3, sources.BadFiles('error'),
                                           notes))
  assert len(examples) == 4
  assert notes.lines(str(folder)) == [
      f'{folder}: 2 of 4 image(s) had transparency; it is dropped and the colour under '
      f'transparent pixels used as it is (e.g. {folder}/b.png); flatten them onto a '
      'background first if that matters',
      f'{folder}: 2 of 4 image(s) are smaller than half of data.load_size (36) on a side: '
      f'training enlarges them up to 9x (the smallest: {folder}/c.png, 4x4 per half)']
  # Preparation says them, once per split (through logging: `p2p_jax: warning: ...`).
  from p2p_jax import config_schema  # pylint: disable=import-outside-toplevel
  from p2p_jax.datasets import pix2pix_aligned  # pylint: disable=import-outside-toplevel
  data = config_schema.get_config().data
  data.dataset, data.source, data.data_dir = 'aligned_folder', str(tmp_path), str(
      tmp_path / 'tfds')
  data.load_size, data.crop_size = 36, 32
  with caplog.at_level(logging.WARNING):
    pix2pix_aligned.prepare(data, in_process=True)
  said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(str(folder))]
  assert said == notes.lines(str(folder))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  path, _ = make_workdir(tmp_path_factory.mktemp('w') / 'run', tiny_config('unet_32', 2), 32)
  return path


def test_translate_warns_once_for_transparent_and_tiny_images(workdir, tmp_path, capsys):
  src = tmp_path / 'in'
  src.mkdir()
  Image.new('RGBA', (40, 40), (1, 2, 3, 0)).save(src / 'a.png')
  Image.new('RGBA', (40, 40), (1, 2, 3, 128)).save(src / 'b.png')
  Image.new('RGB', (8, 4)).save(src / 'c.png')
  Image.new('RGB', (40, 40)).save(src / 'd.png')
  assert translate.main(['--workdir', workdir, '--input', str(src), '--output',
                         str(tmp_path / 'out')]) == 0
  out, err = capsys.readouterr()
  assert err.splitlines() == [
      'p2p_jax.translate: warning: 2 of 4 image(s) had transparency, dropped: the colour '
      f'under transparent pixels was translated as it is (e.g. {src}/a.png); flatten them '
      'onto a background first if it matters',
      "p2p_jax.translate: warning: 1 of 4 image(s) are smaller than half the generator's "
      f'32 px tile (the smallest: {src}/c.png, 8x4): reflect-padded to 32 px, what the '
      'generator sees is mostly mirrored padding; enlarge them first for a better result']
  assert out.strip().endswith(f'to {tmp_path}/out')
  # One file: the line names the file written, not its folder.
  assert translate.main(['--workdir', workdir, '--input', str(src / 'd.png'), '--output',
                         str(tmp_path / 'one' / 'd.png')]) == 0
  out, err = capsys.readouterr()
  assert out.startswith(f'wrote {tmp_path}/one/d.png (') and not err
