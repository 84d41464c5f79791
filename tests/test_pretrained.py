"""--pretrained=NAME: the published generators from a cache folder, downloaded on first use
(from a local HTTP server here), failing at once offline with the URL and the path."""

import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from PIL import Image  # pylint: disable=g-import-not-at-top
from conftest import ROOT  # pylint: disable=g-import-not-at-top
from p2p_jax import (config_schema, convert, evaluate, translate,  # pylint: disable=g-import-not-at-top
                     workdirs)
from p2p_jax.pytorch import pretrained  # pylint: disable=g-import-not-at-top
import torch_reference as tr  # pylint: disable=g-import-not-at-top

NAME = 'pix2pix.facades_label2photo'  # both methods publish facades_label2photo
FILE = 'facades_label2photo'
# The published files are unet_256 with ngf 64 (218 MB); the tests publish a tiny U-Net and
# tell the module that this is what the reference publishes.
TINY_ARCH = dict(pretrained.ARCH, generator='unet_32', ngf=4)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


@pytest.fixture
def server(tmp_path, monkeypatch):
  """An HTTP server on 127.0.0.1 serving tmp_path/published as P2P_JAX_PRETRAINED_URL."""
  root = tmp_path / 'published'
  root.mkdir()
  httpd = http.server.ThreadingHTTPServer(
      ('127.0.0.1', 0), functools.partial(_QuietHandler, directory=str(root)))
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  monkeypatch.setenv(pretrained.URL_ENV, f'http://127.0.0.1:{httpd.server_address[1]}/models')
  monkeypatch.setattr(pretrained, 'ARCH', TINY_ARCH)
  yield root / 'models'
  httpd.shutdown()
  httpd.server_close()


def publish(folder, name=FILE, seed=0):
  folder.mkdir(exist_ok=True)
  net = tr.init_weights(tr.UnetGenerator(3, 3, 5, 4, 'batch'), seed)
  torch.save(net.state_dict(), folder / f'{name}.pth')
  return net


def an_image(tmp_path):
  path = tmp_path / 'labels.png'
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8)).save(path)
  return str(path)


def test_first_use_downloads_converts_once_and_then_works_offline(server, tmp_path, capsys):
  publish(server)
  cache, image = tmp_path / 'cache', an_image(tmp_path)
  args = ['--pretrained', NAME, '--pretrained_dir', str(cache), '--input', image, '--mode=eval']
  assert translate.main(args + ['--output', str(tmp_path / 'a.png')]) == 0
  # It says what it does as it does it (first use: about two minutes at full size).
  said = [line.split(' ', 2)[1] for line in capsys.readouterr().out.splitlines()
          if line.startswith('p2p_jax: ')]
  assert said == ['downloading', 'downloaded', 'converting', 'converted', NAME], said
  published = (server / f'{FILE}.pth').read_bytes()
  assert (cache / f'{FILE}.pth').read_bytes() == published  # where it always was
  assert sorted(os.listdir(cache)) == [FILE, f'{FILE}.pth']  # no partial files
  config = workdirs.load_config(str(cache / FILE))
  assert (config.data.dataset, config.data.direction, config.model.dropout_placement) == (
      'facades', 'BtoA', 'pytorch')
  os.remove(server / f'{FILE}.pth')  # the cache is used from now on
  assert translate.main(args + ['--output', str(tmp_path / 'b.png')]) == 0
  assert 'converting' not in capsys.readouterr().out
  assert np.array_equal(np.asarray(Image.open(tmp_path / 'a.png')),
                        np.asarray(Image.open(tmp_path / 'b.png')))


def test_offline_fails_at_once_with_the_url_and_the_path(monkeypatch, tmp_path, capsys):
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]  # closed again: nobody listens there
  monkeypatch.setenv(pretrained.URL_ENV, f'http://127.0.0.1:{port}/models')
  cache = tmp_path / 'cache'
  start = time.time()
  rc = translate.main(['--pretrained', 'pix2pix.sat2map', '--pretrained_dir', str(cache),
                       '--input', an_image(tmp_path), '--output', str(tmp_path / 'o.png')])
  took = time.time() - start
  err = capsys.readouterr().err.strip()
  assert rc == 2 and took < 5, (rc, took)
  assert f'http://127.0.0.1:{port}/models/sat2map.pth' in err, err
  assert str(cache / 'sat2map.pth') in err and '\n' not in err
  assert not cache.exists()


@pytest.mark.parametrize('tool', ['translate', 'evaluate', 'export', 'convert'])
def test_offline_the_command_fails_before_importing_jax(tool, tmp_path):
  """A `jax` that cannot be imported comes first on the path: the one line must come
  before any import of it (it used to take 18-21 s of imports)."""
  fake = tmp_path / 'fake' / 'jax'
  fake.mkdir(parents=True)
  (fake / '__init__.py').write_text('raise ImportError("jax was imported")\n')
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / 'fake'), ROOT]),
             P2P_JAX_PRETRAINED_URL=f'http://127.0.0.1:{port}/models', P2P_JAX_KEEP_MALLOC='1')
  result = subprocess.run([sys.executable, '-m', f'p2p_jax.{tool}', '--pretrained=pix2pix.sat2map',
                           f'--pretrained_dir={tmp_path / "cache"}', '--input=i.png',
                           '--output=o.png'], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
  assert result.returncode == 2, result.stderr
  assert result.stderr.startswith(f'p2p_jax.{tool}: error: pix2pix.sat2map: ') and (
      result.stderr.count('\n') == 1), result.stderr
  assert 'jax was imported' not in result.stderr + result.stdout


def test_a_failed_download_leaves_no_file(server, tmp_path, capsys):
  cache = tmp_path / 'cache'
  with pytest.raises(pretrained.PretrainedError, match='404'):
    pretrained.fetch('pix2pix.map2sat', str(cache))  # not published on this server
  assert os.listdir(cache) == []
  capsys.readouterr()


def test_a_file_of_another_architecture_is_named(server, tmp_path, monkeypatch):
  publish(server)
  monkeypatch.setattr(pretrained, 'ARCH', dict(TINY_ARCH, ngf=8))
  with pytest.raises(pretrained.PretrainedError, match=f'{FILE}.pth: holds a unet_32'):
    pretrained.workdir_for(NAME, str(tmp_path / 'cache'))
  assert not (tmp_path / 'cache' / FILE).exists()


def test_convert_into_a_workdir_and_flag_rules(server, tmp_path, capsys):
  publish(server)
  workdir = tmp_path / 'mine'
  assert convert.main(['--pretrained', NAME, '--pretrained_dir', str(tmp_path / 'cache'),
                       '--workdir', str(workdir)]) == 0
  assert workdirs.load_config(str(workdir)).data.direction == 'BtoA'
  capsys.readouterr()
  with pytest.raises(SystemExit) as e:
    evaluate.main(['--pretrained', NAME, '--workdir', str(workdir)])
  assert e.value.code == 2 and 'exactly one of' in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    translate.main(['--pretrained', 'horse2zebrа', '--input=i', '--output=o'])  # Cyrillic a
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count('\n') == 1, err
  assert 'unknown pretrained model' in err and 'pix2pix: facades_label2photo' in err
  assert 'cyclegan: apple2orange' in err and 'horse2zebra,' in err


def test_every_published_model_has_a_config(monkeypatch):
  monkeypatch.delenv(pretrained.URL_ENV, raising=False)
  monkeypatch.delenv(pretrained.URL_ENVS['cyclegan'], raising=False)
  assert [q.split('.')[0] for q in pretrained.MODELS].count('pix2pix') == 5
  assert [q.split('.')[0] for q in pretrained.MODELS].count('cyclegan') == 18
  for name, model in pretrained.MODELS.items():
    config = pretrained.config_for(name)
    config_schema.validate(config)
    assert config.method == model.method and config.data.direction == model.direction
    assert config.model.generator == model.generator
    folder = 'pix2pix/models-pytorch' if model.method == 'pix2pix' else (
        'cyclegan/pretrained_models')
    assert pretrained.url_for(name) == (
        f'http://efrosgans.eecs.berkeley.edu/{folder}/{model.name}.pth')


# ---------------------------------------------------------------- CycleGAN's 18


@pytest.fixture
def cyclegan_server(server, monkeypatch):
  """The server also publishes CycleGAN generators (a tiny ResNet stands for the published
  resnet_9blocks), under <server>/cyclegan/."""
  url = os.environ[pretrained.URL_ENV].replace('/models', '/cyclegan')
  monkeypatch.setenv(pretrained.URL_ENVS['cyclegan'], url)
  monkeypatch.setattr(pretrained, 'CYCLEGAN_ARCH', dict(pretrained.CYCLEGAN_ARCH,
                                                        generator='resnet_2blocks', ngf=4))
  folder = server.parent / 'cyclegan'
  folder.mkdir()
  return folder


def publish_cyclegan(folder, name, seed=0):
  net = tr.init_weights(tr.ResnetGenerator(3, 3, 4, 'instance_tracked', False, 2), seed)
  torch.save(net.state_dict(), folder / f'{name}.pth')  # with PyTorch 0.3's statistics
  return net


def test_a_published_cyclegan_g_translates_a_to_b_and_names_the_other_direction(
    cyclegan_server, tmp_path, capsys):
  net = publish_cyclegan(cyclegan_server, 'horse2zebra').eval()
  cache, image = tmp_path / 'cache', an_image(tmp_path)
  args = ['--pretrained', 'horse2zebra', '--pretrained_dir', str(cache), '--input', image,
          '--mode=eval']
  assert translate.main(args + ['--output', str(tmp_path / 'zebra.png')]) == 0
  assert sorted(os.listdir(cache / 'cyclegan')) == ['horse2zebra', 'horse2zebra.pth']
  config = workdirs.load_config(str(cache / 'cyclegan' / 'horse2zebra'))
  assert (config.method, config.model.generator, config.data.direction) == (
      'cyclegan', 'resnet_2blocks', 'AtoB')
  x = np.asarray(Image.open(image).convert('RGB'), np.float32)[None] / 127.5 - 1  # 40x48:
  with torch.no_grad():  # multiples of the ResNet's 4, translated as they are
    want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()[0].transpose(1, 2, 0)
  got = np.asarray(Image.open(tmp_path / 'zebra.png'), np.float32) / 127.5 - 1
  assert np.abs(got - want).max() <= 1.01 / 127.5  # 8-bit rounding
  capsys.readouterr()
  assert translate.main(args + ['--output', str(tmp_path / 'h.png'), '--direction=BtoA']) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'has no trained BtoA generator' in err, err
  assert 'for zebra -> horse use --pretrained=zebra2horse' in err
  assert not (tmp_path / 'h.png').exists()


def test_names_both_methods_publish_must_say_which(cyclegan_server, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    translate.main(['--pretrained', 'sat2map', '--input=i', '--output=o'])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count('\n') == 1
  assert ('sat2map is published for both methods: pass --pretrained=pix2pix.sat2map (aerial '
          'photo -> map, unet_256) or --pretrained=cyclegan.sat2map') in err
  publish_cyclegan(cyclegan_server, 'sat2map')
  workdir = tmp_path / 'mine'
  assert convert.main(['--pretrained', 'cyclegan.sat2map', '--pretrained_dir',
                       str(tmp_path / 'cache'), '--workdir', str(workdir)]) == 0
  config = workdirs.load_config(str(workdir))
  assert (config.method, config.data.dataset, config.data.direction,
          config.data.eval_split) == ('cyclegan', 'maps', 'AtoB', 'test')
  assert 'cyclegan.sat2map (aerial photo -> map; maps, AtoB)' in capsys.readouterr().out
  record = json.loads((workdir / workdirs.IMPORT_FILE).read_text())
  assert record['pretrained'] == 'cyclegan.sat2map' and record['networks']['G_B'] is None
  assert 'for map -> aerial photo use --pretrained=cyclegan.map2sat' in record['untrained'][
      'BtoA']


def test_evaluate_refuses_a_published_cyclegan_g_at_once(tmp_path, capsys):
  """One generator on an unpaired test split: nothing to score it with (no target, no
  G_B for the cycle L1); said before any download."""
  start = time.time()
  assert evaluate.main(['--pretrained', 'style_monet', '--pretrained_dir',
                        str(tmp_path / 'cache')]) == 2
  err = capsys.readouterr().err
  assert time.time() - start < 5 and err.count('\n') == 1
  assert ('cyclegan.style_monet is one generator (photo -> Monet painting) and the test '
          'split of monet2photo is unpaired') in err
  assert not (tmp_path / 'cache').exists()


def test_a_pix2pix_file_under_a_cyclegan_name_is_named(cyclegan_server, tmp_path):
  publish(cyclegan_server, 'zebra2horse')  # a U-Net where a CycleGAN G belongs
  with pytest.raises(pretrained.PretrainedError,
                     match='zebra2horse.pth: holds a unet_32 .* not the resnet_2blocks'):
    pretrained.workdir_for('zebra2horse', str(tmp_path / 'cache'))
  assert os.listdir(tmp_path / 'cache' / 'cyclegan') == ['zebra2horse.pth']
