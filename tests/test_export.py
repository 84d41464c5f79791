"""The SavedModel computes what JAX computes, in TensorFlow, for both modes."""

import json
import os
import shutil
from unittest import mock

import jax
import numpy as np
import pytest

from conftest import tiny_config
from p2p_jax import export, workdirs
from test_inference import make_workdir, unet64

tf = pytest.importorskip('tensorflow')


def _images(n, h, w, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, h, w, 3)).astype(np.float32)


def test_eval_mode_export_from_a_workdir_matches_jax(tmp_path, monkeypatch):
  config = tiny_config('unet_32', width=2)
  workdir, _ = make_workdir(tmp_path / 'run', config, 32)
  out_dir = str(tmp_path / 'saved')
  monkeypatch.chdir(tmp_path)   # paths relative to the current folder
  assert export.main(['--workdir', 'run', '--out_dir', 'saved']) == 0

  model = tf.saved_model.load(out_dir)
  meta = json.loads(model.metadata.numpy())
  assert meta['mode'] == 'eval' and meta['checkpoint_step'] == 7
  assert json.load(open(os.path.join(out_dir, export.METADATA_FILE))) == meta
  jax_model = workdirs.load_generator(workdir, mode='eval', devices=jax.devices()[:1])
  # Batch and spatial sizes other than the traced ones (polymorphic shapes).
  for x in (_images(3, 32, 64), _images(1, 96, 32, seed=1)):
    np.testing.assert_allclose(model.generate(tf.constant(x)).numpy(), jax_model.apply(x),
                               atol=1e-4)
  served = model.signatures['serving_default'](images=tf.constant(x))['output']
  np.testing.assert_allclose(served.numpy(), jax_model.apply(x), atol=1e-4)


def test_an_export_replaces_an_earlier_one_whole_and_refuses_other_folders(tmp_path):
  config, variables, _, _ = unet64()
  out = tmp_path / 'saved'
  export.export_saved_model(config, variables, str(out), 'eval', platforms=('cpu',))
  (out / 'variables' / 'stale.data').write_text('from an older export')
  export.export_saved_model(config, variables, str(out), 'paper', platforms=('cpu',))
  assert json.load(open(out / export.METADATA_FILE))['mode'] == 'paper'
  assert not (out / 'variables' / 'stale.data').exists()  # the export replaced as a whole
  assert sorted(os.listdir(tmp_path)) == ['saved']  # no .partial or .replaced folder left
  # Through a symlink: its target is replaced, the link stays a link.
  os.symlink(out, tmp_path / 'link')
  export.export_saved_model(config, variables, str(tmp_path / 'link'), 'eval',
                            platforms=('cpu',))
  assert os.path.islink(tmp_path / 'link')
  assert json.load(open(out / export.METADATA_FILE))['mode'] == 'eval'
  assert sorted(os.listdir(tmp_path)) == ['link', 'saved']
  # A folder holding anything an export does not write (a workdir with an old export in
  # it, TF Serving's assets.extra) is refused before any work, untouched.
  mine = tmp_path / 'mine'
  shutil.copytree(out, mine)
  (mine / 'config.json').write_text('{}')
  before = sorted(os.listdir(mine))
  with pytest.raises(ValueError, match=r'holds config.json, not written by p2p_jax.export'):
    export.export_saved_model(config, variables, str(mine), 'eval', platforms=('cpu',))
  assert sorted(os.listdir(mine)) == before
  # New folders for an export that fails in TensorFlow's save are not left behind, empty.
  full = OSError(28, 'No space left on device')
  with mock.patch.object(tf.saved_model, 'save', side_effect=full):
    with pytest.raises(OSError, match='No space'):
      export.export_saved_model(config, variables, str(tmp_path / 'new' / 'deeper'), 'eval',
                                platforms=('cpu',))
  assert not (tmp_path / 'new').exists()


def test_paper_mode_export_takes_a_seed_and_matches_jax(tmp_path):
  config, variables, jax_model, _ = unet64()  # has dropout
  out_dir = export.export_saved_model(config, variables, str(tmp_path / 'paper'), 'paper',
                                      platforms=('cpu',))
  model = tf.saved_model.load(out_dir)
  assert json.loads(model.metadata.numpy())['mode'] == 'paper'
  x = _images(2, 64, 64)
  y5 = model.generate(tf.constant(x), tf.constant(5)).numpy()
  np.testing.assert_allclose(y5, jax_model.apply(x, seed=5), atol=1e-4)
  assert np.abs(y5 - model.generate(tf.constant(x), tf.constant(6)).numpy()).max() > 1e-2


def test_bad_image_size_is_rejected(tmp_path):
  config = tiny_config('unet_32', width=2)
  with pytest.raises(ValueError, match='multiple of 32'):
    export.export_saved_model(config, {}, str(tmp_path / 'x'), image_size=48)


def test_tensorflow_is_kept_off_gpus_and_tpus(monkeypatch):
  """The export is the only TensorFlow user; it must leave accelerators to JAX."""
  hidden = []
  monkeypatch.setattr(tf.config, 'set_visible_devices',
                      lambda devices, kind: hidden.append((list(devices), kind)))
  assert export._tensorflow() is tf  # pylint: disable=protected-access
  assert ([], 'GPU') in hidden and ([], 'TPU') in hidden
