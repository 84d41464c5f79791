"""Translating images of any size and files: sizes kept, bad files skipped and named,
inputs never overwritten."""

import functools
import os

import jax
import numpy as np
import pytest
from PIL import Image

import data_fixtures as fx
from conftest import tiny_config
from p2p_jax import image_io, inference, translate
from test_inference import _images, fake_variables, make_workdir


def test_pad_to_multiple_is_centred_reflection_that_crops_back():
  image = np.arange(5 * 7 * 1, dtype=np.float32).reshape(5, 7, 1)
  padded, (top, left, h, w) = translate.pad_to_multiple(image, 4)
  assert padded.shape == (8, 8, 1) and (top, left) == (1, 0)
  np.testing.assert_array_equal(padded[top:top + h, left:left + w], image)
  np.testing.assert_array_equal(padded[0, :w], image[1])  # reflection, not zeros or edge
  tiny, box = translate.pad_to_multiple(np.ones((3, 40, 3), np.float32), 32)
  assert tiny.shape == (32, 64, 3) and box == (14, 12, 3, 40)


def test_translate_keeps_sizes_and_accepts_gray_and_float():
  config = tiny_config('unet_32', width=2)
  generator = inference.TrainedGenerator(config, fake_variables(config, 32), 'eval',
                                         devices=jax.devices()[:1])
  translator = functools.partial(translate.translate_images, generator)
  rng = np.random.default_rng(0)
  gray = rng.integers(0, 256, (217, 300), dtype=np.uint8)     # odd size, 1 channel
  rgb = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
  out_gray, out_rgb = translator([gray, rgb], batch_size=2)
  assert out_gray.shape == (217, 300, 3) and out_gray.dtype == np.uint8
  assert out_rgb.shape == (33, 47, 3) and out_rgb.dtype == np.uint8
  single = translator(rgb.astype(np.float32) / 127.5 - 1)
  assert single.shape == (33, 47, 3) and single.dtype == np.float32
  assert np.abs(single).max() <= 1.0
  # A gray image is the same as its colour version with three equal channels.
  np.testing.assert_array_equal(
      out_gray, translator(np.repeat(gray[..., None], 3, axis=-1)))
  # Sizes that need no padding give exactly `apply`.
  x = _images(2, 32)
  np.testing.assert_allclose(translator(x), generator.apply(x), atol=1e-6)


def test_translate_names_a_bad_image_shape():
  config = tiny_config('unet_32', width=2)
  generator = inference.TrainedGenerator(config, fake_variables(config, 32),
                                         devices=jax.devices()[:1])
  with pytest.raises(ValueError, match='shape'):
    translate.translate_images(generator, np.zeros((8, 8, 2), np.uint8))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  path, _ = make_workdir(tmp_path_factory.mktemp('w') / 'run', tiny_config('unet_32', 2), 32)
  return path


def _inputs(folder):
  fx.save(os.path.join(folder, 'a.png'), fx.texture(0, 48)[:45, :37])       # odd size, RGB
  fx.save(os.path.join(folder, 'b.jpg'), fx.texture(1, 64, 1)[:50, :33])    # gray
  with open(os.path.join(folder, 'c.png'), 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n this is not a png')                          # undecodable
  with open(os.path.join(folder, 'notes.txt'), 'w') as f:
    f.write('not an image, not an input')
  return folder


def test_folder_run_keeps_sizes_and_reports_skipped_files(workdir, tmp_path, capsys):
  src = _inputs(str(tmp_path / 'in'))
  out = str(tmp_path / 'in' / 'translated')  # inside the input folder is fine
  rc = translate.main(['--workdir', workdir, '--input', src, '--output', out,
                       '--batch_size', '2', '--seed', '4'])
  err = capsys.readouterr().err
  assert rc == 1  # some files skipped
  assert 'c.png' in err and 'cannot decode' in err
  assert err.count('c.png') == 1, err  # each skipped file is named once
  assert sorted(os.listdir(out)) == ['a.png', 'b.png']
  a, b = image_io.read_image(os.path.join(out, 'a.png')), image_io.read_image(
      os.path.join(out, 'b.png'))
  assert a.shape == (45, 37, 3) and b.shape == (50, 33, 3)
  meta = image_io.read_png_metadata(os.path.join(out, 'b.png'))
  assert meta['p2p_jax.mode'] == 'paper' and meta['p2p_jax.seed'] == '4'
  assert meta['p2p_jax.source'].endswith('b.jpg') and meta['p2p_jax.checkpoint_step'] == '7'
  assert meta['p2p_jax.input_channels'] == '1'


def test_single_file_to_a_png_path(workdir, tmp_path, monkeypatch, capsys):
  fx.save(str(tmp_path / 'x.jpg'), fx.texture(3, 40))
  dst = str(tmp_path / 'sub' / 'y.png')
  monkeypatch.chdir(tmp_path)   # every path relative to the current folder
  rel_workdir = os.path.relpath(workdir, tmp_path)
  assert translate.main(['--workdir', rel_workdir, '--input', 'x.jpg', '--output',
                         'sub/y.png', '--mode', 'eval']) == 0, capsys.readouterr().err
  with Image.open(dst) as im:
    assert im.size == (40, 40) and im.text['p2p_jax.mode'] == 'eval'


def test_errors_name_the_file(workdir, tmp_path, capsys):
  src = _inputs(str(tmp_path / 'in'))
  # Output folder = input folder.
  assert translate.main(['--workdir', workdir, '--input', src, '--output', src]) == 2
  assert src in capsys.readouterr().err
  # A single output that is the input itself.
  png = os.path.join(src, 'a.png')
  assert translate.main(['--workdir', workdir, '--input', png, '--output', png]) == 2
  assert 'overwrite the input image' in capsys.readouterr().err
  # One undecodable image.
  bad = os.path.join(src, 'c.png')
  assert translate.main(['--workdir', workdir, '--input', bad, '--output',
                         str(tmp_path / 'o')]) == 2
  assert bad in capsys.readouterr().err
  # No checkpoint.
  empty = tmp_path / 'empty_run'
  empty.mkdir()
  (empty / 'config.json').write_text(open(os.path.join(workdir, 'config.json')).read())
  assert translate.main(['--workdir', str(empty), '--input', png, '--output',
                         str(tmp_path / 'o')]) == 2
  assert str(empty) in capsys.readouterr().err
  # An output folder that is a file, or a symbolic link to nothing: named, nothing written.
  (tmp_path / 'a_file').write_text('mine')
  os.symlink(tmp_path / 'gone', tmp_path / 'link')
  assert translate.main(['--workdir', workdir, '--input', src, '--output',
                         str(tmp_path / 'a_file')]) == 2
  assert f'{tmp_path / "a_file"} is a file' in capsys.readouterr().err
  assert translate.main(['--workdir', workdir, '--input', png, '--output',
                         str(tmp_path / 'link' / 'y.png')]) == 2
  assert 'link is a symbolic link to' in capsys.readouterr().err
  assert (tmp_path / 'a_file').read_text() == 'mine' and not (tmp_path / 'gone').exists()
  # Nothing written (every image undecodable): the new folders it made are gone again.
  only_bad = tmp_path / 'only_bad'
  only_bad.mkdir()
  (only_bad / 'c.png').write_bytes(open(bad, 'rb').read())
  assert translate.main(['--workdir', workdir, '--input', str(only_bad), '--output',
                         str(tmp_path / 'new' / 'deeper')]) == 1
  assert 'c.png' in capsys.readouterr().err
  assert not (tmp_path / 'new').exists()


def test_output_names_never_collide(tmp_path):
  src = tmp_path / 'in'
  fx.save(str(src / 'p.png'), fx.texture(0, 8))
  fx.save(str(src / 'p.jpg'), fx.texture(1, 8))
  fx.save(str(src / 'q.jpg'), fx.texture(2, 8))
  pairs = translate.plan_outputs(str(src), str(tmp_path / 'out'))
  names = [os.path.basename(d) for _, d in pairs]
  assert names == ['p.jpg.png', 'p.png.png', 'q.png']
  # An output folder that already holds one of the inputs (here: the input folder's own
  # images given as an output path) is refused, naming the file.
  with pytest.raises(ValueError, match='p.png'):
    translate.plan_outputs(str(src / 'p.png'), str(src))
  with pytest.raises(FileNotFoundError, match='nothing_here'):
    translate.plan_outputs(str(tmp_path / 'nothing_here'), str(tmp_path / 'out'))


def test_help_and_misspelt_flags(capsys):
  with pytest.raises(SystemExit) as e:
    translate.main(['--help'])
  assert e.value.code == 0
  out = capsys.readouterr().out
  assert '--batch_size' in out and "(default: '8')" in out and '--workdir' in out
  with pytest.raises(SystemExit) as e:
    translate.main(['--workdir=w', '--input=i', '--output=o', '--batch_sise=3'])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert 'batch_sise' in err and 'Traceback' not in err
  with pytest.raises(SystemExit) as e:
    translate.main(['--input=i', '--output=o'])
  assert e.value.code == 2 and '--workdir' in capsys.readouterr().err
