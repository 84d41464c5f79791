"""--pretrained=NAME: the published generators from a cache folder, downloaded on first use
(from a local HTTP server here), failing at once offline with the URL and the path."""

import functools
import http.server
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
from p2p_jax import convert, evaluate, translate, workdirs  # pylint: disable=g-import-not-at-top
from p2p_jax.pytorch import pretrained  # pylint: disable=g-import-not-at-top
import torch_reference as tr  # pylint: disable=g-import-not-at-top

NAME = 'facades_label2photo'
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


def publish(folder, name=NAME, seed=0):
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
  published = (server / f'{NAME}.pth').read_bytes()
  assert (cache / f'{NAME}.pth').read_bytes() == published
  assert sorted(os.listdir(cache)) == [NAME, f'{NAME}.pth']  # no partial files
  config = workdirs.load_config(str(cache / NAME))
  assert (config.data.dataset, config.data.direction, config.model.dropout_placement) == (
      'facades', 'BtoA', 'pytorch')
  os.remove(server / f'{NAME}.pth')  # the cache is used from now on
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
  rc = translate.main(['--pretrained', 'sat2map', '--pretrained_dir', str(cache),
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
  result = subprocess.run([sys.executable, '-m', f'p2p_jax.{tool}', '--pretrained=sat2map',
                           f'--pretrained_dir={tmp_path / "cache"}', '--input=i.png',
                           '--output=o.png'], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
  assert result.returncode == 2, result.stderr
  assert result.stderr.startswith(f'p2p_jax.{tool}: error: sat2map: ') and (
      result.stderr.count('\n') == 1), result.stderr
  assert 'jax was imported' not in result.stderr + result.stdout


def test_a_failed_download_leaves_no_file(server, tmp_path, capsys):
  cache = tmp_path / 'cache'
  with pytest.raises(pretrained.PretrainedError, match='404'):
    pretrained.fetch('map2sat', str(cache))  # not published on this server
  assert os.listdir(cache) == []
  capsys.readouterr()


def test_a_file_of_another_architecture_is_named(server, tmp_path, monkeypatch):
  publish(server)
  monkeypatch.setattr(pretrained, 'ARCH', dict(TINY_ARCH, ngf=8))
  with pytest.raises(pretrained.PretrainedError, match=f'{NAME}.pth: holds a unet_32'):
    pretrained.workdir_for(NAME, str(tmp_path / 'cache'))
  assert not (tmp_path / 'cache' / NAME).exists()


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
    translate.main(['--pretrained', 'horse2zebra', '--input=i', '--output=o'])
  assert e.value.code == 2 and 'facades_label2photo' in capsys.readouterr().err


def test_every_published_model_has_a_config(monkeypatch):
  monkeypatch.delenv(pretrained.URL_ENV, raising=False)
  for name, model in pretrained.MODELS.items():
    config = pretrained.config_for(name)
    assert config.data.direction == model.direction and config.model.generator == 'unet_256'
    assert pretrained.url_for(name).endswith(f'/models-pytorch/{name}.pth')
