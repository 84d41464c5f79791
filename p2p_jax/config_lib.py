"""Config checking and the config file of a workdir.

Every config is `configs/default.py` with some values changed, so the default's tree of keys
is the schema: a key the default does not have is a typo (`--config.optim.lr_decay=...`),
rejected with its name. `validate` also checks each value against what the code accepts.
"""

import json
import os

import ml_collections

from p2p_jax import losses, schedules
from p2p_jax.models import factory

CONFIG_FILE = 'config.json'

_CHOICES = {
    'model.generator': tuple(sorted(factory.GENERATORS)),
    'model.norm': ('batch', 'instance', 'none'),
    'model.dropout_placement': ('paper', 'pytorch'),
    'model.dtype': tuple(sorted(factory.DTYPES)),
    'loss.gan_mode': losses.GAN_MODES,
    'loss.recon': losses.RECON_LOSSES,
    'optim.schedule': schedules.SCHEDULES,
    'data.direction': ('AtoB', 'BtoA'),
    'data.resize_method': ('bicubic', 'bilinear', 'nearest', 'area'),
    'data.on_bad_file': ('error', 'skip'),
    'parallel': ('pmap', 'shard_map'),
    'inference_mode': ('paper', 'eval'),
}
_POSITIVE = ('model.ngf', 'model.ndf', 'model.in_channels', 'model.out_channels',
             'optim.lr', 'data.load_size', 'data.crop_size', 'batch_size',
             'log_every_steps', 'sample_every_steps', 'eval_every_steps',
             'checkpoint_every_steps', 'keep_checkpoints')


def _flatten(cfg, prefix=''):
  out = {}
  for key, value in cfg.items():
    path = f'{prefix}{key}'
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(_flatten(value, path + '.'))
    else:
      out[path] = value
  return out


def validate(config, reference=None) -> None:
  """Raises ValueError naming every unknown or missing key, or the first invalid value.

  reference: the schema (default: configs/default.py's get_config()).
  """
  if reference is None:
    reference = default_config()
  flat, ref = _flatten(config), _flatten(reference)
  unknown = sorted(set(flat) - set(ref))
  if unknown:
    raise ValueError(f'unknown config keys: {", ".join(unknown)} (not in configs/default.py; '
                     'check the spelling)')
  missing = sorted(set(ref) - set(flat))
  if missing:
    # The trainer reads every field: fail here, not with an AttributeError mid-run.
    raise ValueError(f'missing config keys: {", ".join(missing)} (start from '
                     'configs/default.py\'s get_config() and change fields)')
  for path, choices in _CHOICES.items():
    if path in flat and flat[path] not in choices:
      raise ValueError(f'config.{path} must be one of {list(choices)}, got {flat[path]!r}')
  for path in _POSITIVE:
    if path in flat and not flat[path] > 0:
      raise ValueError(f'config.{path} must be > 0, got {flat[path]!r}')
  for path in ('optim.b1', 'optim.b2'):
    if path in flat and not 0 <= flat[path] < 1:
      raise ValueError(f'config.{path} must be in [0, 1), got {flat[path]!r}')
  if flat.get('num_train_steps', 1) <= 0 and flat.get('num_epochs', 1) <= 0:
    raise ValueError(f'config.num_train_steps ({flat["num_train_steps"]}) or config.num_epochs '
                     f'({flat["num_epochs"]}) must be > 0: nothing to train')
  if 'model.d_layers' in flat and not 0 <= flat['model.d_layers'] <= 8:
    raise ValueError(f'config.model.d_layers must be in 0..8, got {flat["model.d_layers"]}')
  if 'data.crop_size' in flat and flat['data.load_size'] < flat['data.crop_size']:
    raise ValueError(f'config.data.load_size ({flat["data.load_size"]}) must be >= '
                     f'config.data.crop_size ({flat["data.crop_size"]})')
  if 'data.crop_size' in flat and 'model.generator' in flat:
    side = 2 ** factory.GENERATORS[flat['model.generator']][0]
    if flat['data.crop_size'] % side:
      raise ValueError(f'config.data.crop_size ({flat["data.crop_size"]}) must be a multiple '
                       f'of {side} for model.generator={flat["model.generator"]!r}')
  losses.validate(config.loss)


def default_config() -> ml_collections.ConfigDict:
  """configs/default.py's get_config(), loaded from the repository or the installed package."""
  from p2p_jax import _default_config  # pylint: disable=import-outside-toplevel
  return _default_config.get_config()


def save_config(config, workdir: str) -> str:
  """Writes the run's config as JSON into `workdir` (so inference can rebuild the model)."""
  path = os.path.join(workdir, CONFIG_FILE)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(tmp, path)
  return path


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with; raises FileNotFoundError naming the file."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: {workdir!r} is not a p2p_jax workdir '
                            '(train into it with python -m p2p_jax.main first)')
  with open(path) as f:
    data = json.load(f)
  config = default_config()
  config.update(ml_collections.ConfigDict(data))
  return config
