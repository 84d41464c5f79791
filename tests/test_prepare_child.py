"""Preparing a dataset keeps TensorFlow out of the trainer's process.

Where TensorFlow is installed, TFDS imports it while preparing (its archive extractor, its
shuffler spilling to disk): `prepare` then runs in a child process (p2p_jax/datasets/
child_process.py), and archives are extracted by p2p_jax itself, so that even in-process
preparation of an archive does not need TensorFlow. Each case runs in a fresh Python
process, since the test session itself may have imported TensorFlow (the export tests).
"""

import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from p2p_jax.datasets import sources

_SCRIPT = r'''
import json, os, sys
from p2p_jax import config_schema, input_pipeline
from p2p_jax.datasets import pix2pix_aligned
config = config_schema.get_config()
config.data.dataset = 'aligned_folder'
config.data.source, config.data.data_dir = sys.argv[1], sys.argv[2]
try:
  n = input_pipeline.num_examples(config.data, 'train')
  batch = next(input_pipeline.numpy_batches(config.data, 'train', batch_size=2, train=True,
                                            seed=0))
  result = {'examples': n, 'batch': list(batch['input'].shape)}
except pix2pix_aligned.DataError as e:
  result = {'error': str(e)}
result['tensorflow'] = 'tensorflow' in sys.modules
print('RESULT ' + json.dumps(result), flush=True)
'''


def _pairs(folder, n=4, size=16, bad=False):
  os.makedirs(folder / 'train')
  rng = np.random.default_rng(0)
  for i in range(n):
    Image.fromarray(rng.integers(0, 255, (size, 2 * size, 3), np.uint8)).save(
        folder / 'train' / f'{i}.png')
  if bad:
    (folder / 'train' / 'zz.jpg').write_bytes(b'not an image')
  return folder


def _tar(folder, path):
  with tarfile.open(path, 'w:gz') as archive:
    archive.add(folder, arcname=folder.name)
  return path


def _prepare(source, data_dir, *, in_process: bool):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  env['P2P_JAX_PREPARE_IN_PROCESS'] = '1' if in_process else '0'
  out = subprocess.run([sys.executable, '-c', _SCRIPT, str(source), str(data_dir)], cwd=ROOT,
                       env=env, capture_output=True, text=True, check=True, timeout=300)
  line = next(l for l in out.stdout.splitlines() if l.startswith('RESULT '))
  return json.loads(line[len('RESULT '):]), out.stdout + out.stderr


@pytest.mark.skipif(not __import__('importlib').util.find_spec('tensorflow'),
                    reason='TensorFlow is not installed: nothing to keep out')
def test_an_archive_is_prepared_without_tensorflow_in_the_trainer(tmp_path):
  archive = _tar(_pairs(tmp_path / 'pairs'), tmp_path / 'pairs.tar.gz')
  result, output = _prepare(archive, tmp_path / 'tfds', in_process=False)
  assert result == {'examples': 4, 'batch': [2, 256, 256, 3], 'tensorflow': False}, output
  assert output.count('p2p_jax: preparing ') == 1 and 'oneDNN' not in output, output
  # Prepared already: the next run only reads, in its own process.
  result, output = _prepare(archive, tmp_path / 'tfds', in_process=False)
  assert result['tensorflow'] is False and 'preparing' not in output
  # Extracted by p2p_jax, not TFDS: in-process preparation needs no TensorFlow either.
  result, _ = _prepare(archive, tmp_path / 'tfds2', in_process=True)
  assert result == {'examples': 4, 'batch': [2, 256, 256, 3], 'tensorflow': False}


def test_an_error_in_the_child_comes_back_as_one_line(tmp_path):
  source = _pairs(tmp_path / 'pairs', bad=True)
  in_child, output = _prepare(source, tmp_path / 'tfds', in_process=False)
  in_process, _ = _prepare(source, tmp_path / 'tfds2', in_process=True)
  assert in_child == in_process, output
  assert in_child['error'].startswith(f'{source}/train/zz.jpg: cannot decode image')
  assert 'Traceback' not in output, output


def test_archive_members_outside_their_folder_are_refused(tmp_path):
  path = tmp_path / 'evil.tar'
  with tarfile.open(path, 'w') as archive:
    data = b'x'
    info = tarfile.TarInfo('../escaped.txt')
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))
  (tmp_path / 'into').mkdir()
  with pytest.raises(sources.DataError, match=r'evil.tar: cannot extract the archive'):
    sources.extract_archive(str(path), str(tmp_path / 'into'))
  assert not (tmp_path / 'escaped.txt').exists()
