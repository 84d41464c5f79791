"""Config checking: typos and bad values are rejected by name, before anything runs."""

import glob
import json
import os
import subprocess
import sys

import jax
import pytest

from conftest import ROOT, tiny_config
from p2p_jax import config_schema, train, workdirs


CONFIG_FILES = sorted(p for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                      if not p.endswith('__init__.py'))


def test_config_files_exist():
  names = {os.path.basename(p) for p in CONFIG_FILES}
  assert {'default.py', 'tiny.py', 'facades.py'} <= names


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_every_config_file_loads_and_validates(path):
  config_schema.validate(config_schema.load_file(path))


def test_configs_default_is_the_packaged_schema():
  default = config_schema.load_file(os.path.join(ROOT, 'configs', 'default.py'))
  assert default.to_dict() == config_schema.get_config().to_dict()


def test_every_field_of_the_schema_has_a_comment():
  """Each config field is assigned under a comment that says what it means."""
  import inspect  # pylint: disable=import-outside-toplevel
  lines = [l.strip() for l in inspect.getsource(config_schema.get_config).splitlines()]
  undocumented = []
  for i, line in enumerate(lines):
    if line.startswith('config.') and 'ConfigDict()' not in line:
      j = i - 1  # the nearest line above that is not a field assignment is a comment
      while j >= 0 and lines[j].startswith('config.'):
        j -= 1
      if j < 0 or not lines[j].startswith('#'):
        undocumented.append(line)
  assert not undocumented, undocumented


@pytest.mark.parametrize('where', ['model', 'optim', None])
def test_unknown_key_is_rejected_by_name(where):
  config = tiny_config()
  if where is None:
    config.optimm = config.optim.to_dict()     # a typo of a whole block
    name = r'.*optimm\.lr'
  else:
    config[where].foo = 3
    name = f'{where}.foo'
  with pytest.raises(ValueError, match=f'unknown config keys: {name}'):
    config_schema.validate(config)


def test_missing_key_is_rejected_by_name():
  config = tiny_config()
  del config.data['flip']
  with pytest.raises(ValueError, match=r'missing config keys: data\.flip'):
    config_schema.validate(config)


BAD_VALUES = [
    ('model.generator', 'unet_512', 'model.generator'),
    ('model.norm', 'layer', 'model.norm'),
    ('model.upsample', 'bilinear', 'model.upsample'),
    ('model.ngf', 0, 'model.ngf'),
    ('model.d_layers', 9, 'model.d_layers'),
    ('data.direction', 'AtoC', 'data.direction'),
    ('data.crop_size', 16, r'data.crop_size \(16\) must be a multiple of 32'),   # unet_32
    ('data.load_size', 16, r'data.load_size \(16\) must be >= config.data.crop_size'),
    ('loss.gan_mode', 'wgan', 'loss.gan_mode'),
    ('loss.recon_weight', -1.0, 'loss.recon_weight'),
    ('optim.schedule', 'cosine', 'optim.schedule'),
    ('optim.lr', 0.0, 'optim.lr'),
    ('optim.b1', 1.0, 'optim.b1'),
    ('batch_size', 0, 'batch_size'),
    ('compute.mapping', 'pjit', 'compute.mapping'),
    ('compute.conv_impl', 'fastest', 'compute.conv_impl'),
    ('compute.dtype', 'float16', 'compute.dtype'),
    ('data.dataset', 'facade', 'data.dataset'),
    ('data.resize_method', 'lanczos9', 'data.resize_method'),
    ('data.on_bad_file', 'x', 'data.on_bad_file'),
    ('data.workers', -2, r'data.workers must be >= 0, or -1'),
    ('data.prefetch', 0, 'data.prefetch'),
    ('data.resized_cache', 2, r'data.resized_cache must be -1 \(auto\), 0 or 1'),
    ('model.in_channels', 2, 'model.in_channels must be 1 or 3'),
    ('inference_mode', 'test', 'inference_mode'),
    ('keep_checkpoints', 0, 'keep_checkpoints'),
]


@pytest.mark.parametrize('field, value, message', BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_invalid_value_is_rejected_naming_the_field(field, value, message):
  config = tiny_config()
  block, _, key = field.rpartition('.')
  (config[block] if block else config)[key] = value
  with pytest.raises(ValueError, match=message):
    config_schema.validate(config)


def test_nothing_to_train_is_rejected():
  config = tiny_config()
  config.num_train_steps, config.num_epochs = -1, 0
  with pytest.raises(ValueError, match=r'num_train_steps \(-1\) or config\.num_epochs \(0\)'):
    config_schema.validate(config)


@pytest.mark.parametrize('steps', [0, -2])
def test_num_train_steps_is_steps_or_use_epochs(steps):
  """0 used to mean 'use num_epochs' (200 epochs) without a word."""
  config = tiny_config()
  assert config.num_train_steps == config_schema.USE_EPOCHS == -1
  config_schema.validate(config)                # the default: num_epochs
  config.num_train_steps = steps
  with pytest.raises(ValueError, match=rf'config.num_train_steps must be a number of steps > 0, '
                     rf'or -1 to train config.num_epochs \(200\) epochs; got {steps}'):
    config_schema.validate(config)


@pytest.mark.skipif(jax.device_count() < 3, reason='needs several (fake) devices')
def test_batch_not_divisible_by_devices_fails_before_touching_the_workdir(tmp_path):
  config = tiny_config()
  config.batch_size = 4
  workdir = tmp_path / 'run'
  with pytest.raises(ValueError, match=r'batch_size 4 must be divisible .* \(3\)'):
    train.train_and_evaluate(config, str(workdir), devices=jax.devices()[:3],
                             num_train_examples=8)
  assert not workdir.exists()


def test_workdir_config_round_trip(tmp_path):
  config = tiny_config()
  config.model.ngf = 6
  config.data.source = '/some/where'
  workdirs.save_config(config, str(tmp_path))
  assert workdirs.load_config(str(tmp_path)).to_dict() == config.to_dict()
  with pytest.raises(FileNotFoundError, match=f'{tmp_path}/missing/config.json'):
    workdirs.load_config(str(tmp_path / 'missing'))


def test_a_config_saved_before_the_compute_block_loads_with_its_values(tmp_path):
  """Workdirs written before model.dtype, model.conv_impl and parallel moved to the
  `compute` block load with their values in the new places."""
  old = tiny_config().to_dict()
  del old['compute']
  old['model'].update(dtype='bfloat16', conv_impl='gemm')
  old['parallel'] = 'shard_map'
  (tmp_path / 'config.json').write_text(json.dumps(old))
  config = workdirs.load_config(str(tmp_path))
  config_schema.validate(config)
  assert (config.compute.dtype, config.compute.conv_impl, config.compute.mapping) == (
      'bfloat16', 'gemm', 'shard_map')


def test_a_renamed_key_is_named_with_its_new_place():
  config = tiny_config()
  config.model.conv_impl = 'gemm'
  with pytest.raises(ValueError, match=r'model\.conv_impl \(now compute\.conv_impl\)'):
    config_schema.validate(config)


def _cli(*args, cwd):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'p2p_jax.main', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize('override, message', [
    ('--config.model.ngff=3', "bad config override --config.model.ngff: the config has no "
     "field 'model.ngff'; did you mean --config.model.ngf?"),
    ('--config.modell.ngf=3', "--config.modell.ngf: the config has no field 'modell.ngf'; "
     'did you mean --config.model.ngf?'),
    ('--config.model.norm=batchnorm', "config.model.norm must be one of"),
    ('--config.model.dtype=bfloat16', 'renamed: model.dtype (now compute.dtype); use '
     '--config.compute.dtype'),
])
def test_cli_rejects_a_bad_override_by_name(tmp_path, override, message):
  workdir = tmp_path / 'run'
  result = _cli('--config=configs/tiny.py', f'--workdir={workdir}', override, cwd=ROOT)
  assert result.returncode != 0
  assert message in result.stderr, result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  assert len([l for l in result.stderr.splitlines() if 'p2p_jax' in l]) == 1, result.stderr
  assert not workdir.exists()


def test_cli_names_a_missing_config_file_in_one_line(tmp_path):
  result = _cli('--config=configs/nope.py', f'--workdir={tmp_path / "run"}', cwd=ROOT)
  assert result.returncode != 0
  assert result.stderr.strip() == (f'p2p_jax: config file {ROOT}/configs/nope.py not found '
                                   '(--config)'), result.stderr
