"""Translating files: sizes kept, bad files skipped and named, inputs never overwritten."""

import os

import pytest
from PIL import Image

import data_fixtures as fx
from conftest import tiny_config
from p2p_jax import image_io, translate
from test_inference import make_workdir


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
  assert sorted(os.listdir(out)) == ['a.png', 'b.png']
  a, b = image_io.read_image(os.path.join(out, 'a.png')), image_io.read_image(
      os.path.join(out, 'b.png'))
  assert a.shape == (45, 37, 3) and b.shape == (50, 33, 3)
  meta = image_io.read_png_metadata(os.path.join(out, 'b.png'))
  assert meta['p2p_jax.mode'] == 'paper' and meta['p2p_jax.seed'] == '4'
  assert meta['p2p_jax.source'].endswith('b.jpg') and meta['p2p_jax.checkpoint_step'] == '7'
  assert meta['p2p_jax.input_channels'] == '1'


def test_single_file_to_a_png_path(workdir, tmp_path):
  src = fx.save(str(tmp_path / 'x.jpg'), fx.texture(3, 40))
  dst = str(tmp_path / 'sub' / 'y.png')
  assert translate.main(['--workdir', workdir, '--input', src, '--output', dst,
                         '--mode', 'eval']) == 0
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
