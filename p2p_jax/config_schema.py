"""The config of a pix2pix run: every field with its default (the paper's) and its meaning.

`get_config()` is the schema: every config file in `configs/` starts from it and changes
only what differs, so a key it does not have is a typo (`--config.optim.lr_decay=...`) and
is rejected by name. `validate` checks each value against the choices the modules that use
it define (`CHOICES`), once, where a run starts (`train.train_and_evaluate`).

Renamed keys (`RENAMED`) are moved when an older workdir's config.json is read, and named
with their new place when given by hand.
"""

import importlib.util
import os

import ml_collections

from p2p_jax import inference, input_pipeline, kernels, losses, networks, parallel, schedules
from p2p_jax.datasets import catalog
from p2p_jax.models import DROPOUT_PLACEMENTS, GENERATORS, layers


# config.num_train_steps that means "train config.num_epochs epochs".
USE_EPOCHS = -1


def get_config() -> ml_collections.ConfigDict:
  """The paper's configuration (U-Net-256 + 70x70 PatchGAN, L1 + cGAN, facades)."""
  config = ml_collections.ConfigDict()

  # Seed of everything random: init, dropout, data order, jitter. Same seed, same run.
  config.seed = 0

  # ---------------------------------------------------------------- model (architecture)
  config.model = ml_collections.ConfigDict()
  # Generator: 'unet_256' (8 downsamplings), 'unet_128' (7), or 'encoder_decoder_256' /
  # 'encoder_decoder_128' (the paper's no-skip ablation, Table 2).
  config.model.generator = 'unet_256'
  # Filters in the generator's first / discriminator's first conv layer (paper: 64).
  config.model.ngf = 64
  config.model.ndf = 64
  # Channels of the input image x and the output image y (1 for grayscale, 3 for RGB).
  config.model.in_channels = 3
  config.model.out_channels = 3
  # Normalisation in both networks: 'batch' (paper), 'instance' or 'none'.
  config.model.norm = 'batch'
  # Dropout 0.5 in the decoder is pix2pix's only noise source (there is no z).
  config.model.dropout = True
  # 'paper': first three decoder layers (paper, Lua code); 'pytorch': one layer further out,
  # as junyanz/pytorch-CycleGAN-and-pix2pix does.
  config.model.dropout_placement = 'paper'
  # How G's decoder doubles the resolution: 'transposed' (paper: 4x4 stride-2 transposed
  # convs) or 'resize_conv' (nearest-neighbour 2x, then a 3x3 conv: no texture fixed to
  # the pixel grid; other parameter shapes; models/layers.py).
  config.model.upsample = 'transposed'
  # PatchGAN depth: 0 = 1x1 PixelGAN, 1 = 16x16, 2 = 34x34, 3 = 70x70 (paper), 4 = 142, 5 = 286.
  config.model.d_layers = 3
  # Average BatchNorm statistics over all devices, so N devices x batch b normalise like one
  # device with batch N*b.
  config.model.sync_batch_stats = True

  # ---------------------------------------------------------------- compute (not the model)
  # How the networks are computed; a run may resume with other values.
  config.compute = ml_collections.ConfigDict()
  # 'float32', or 'bfloat16' for mixed precision (params and losses stay float32).
  config.compute.dtype = 'float32'
  # How convolutions are computed (p2p_jax/kernels): 'auto' (the fastest form for the
  # backend: per layer GEMM and Winograd forms on CPU, XLA's conv op on GPU/TPU), 'xla',
  # 'gemm', 'xla_gemmgrad', 'xla_convgrad', 'xla_adjoint', 'taps' or 'winograd'. Same
  # parameters, and the same results up to float rounding (benchmarks/README.md).
  config.compute.conv_impl = 'auto'
  # How the per-replica step is mapped over devices: 'pmap' (jax.pmap, the classic form)
  # or 'shard_map' (jax.jit over jax.shard_map); the step is the same code.
  config.compute.mapping = 'pmap'

  # ---------------------------------------------------------------- objective
  config.loss = ml_collections.ConfigDict()
  # 'vanilla' (BCE with logits, non-saturating G loss, paper) or 'lsgan' (least squares).
  config.loss.gan_mode = 'vanilla'
  # Weight of the adversarial term in G's loss; 0 gives the paper's "L1 only" ablation.
  config.loss.gan_weight = 1.0
  # True: D sees (x, y) (cGAN). False: D sees y only (the paper's unconditional "GAN").
  config.loss.conditional = True
  # Reconstruction term: 'l1' (paper) or 'l2'.
  config.loss.recon = 'l1'
  # lambda in G* = arg min max cGAN + lambda * L1 (paper: 100); 0 disables the term.
  config.loss.recon_weight = 100.0

  # ---------------------------------------------------------------- optimiser
  config.optim = ml_collections.ConfigDict()
  # Adam, as the paper: lr 2e-4, beta1 0.5, beta2 0.999, for both networks.
  config.optim.lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  # 'linear_decay': the PyTorch reference's 100 + 100 as its train.py runs it since mid-2020
  # (scheduler stepped at the start of each epoch): lr for `constant_epochs` - 1 epochs,
  # then `decay_epochs` + 1 linearly decaying ones, the last at lr 0.
  # 'linear_decay_epoch_end': stepped at the end of each epoch (the reference before
  # mid-2020, and p2p_jax before): lr for `constant_epochs`, the last epoch at lr / 101.
  # 'constant': lr for all epochs (Lua code). See p2p_jax/schedules.py.
  config.optim.schedule = 'linear_decay'
  config.optim.constant_epochs = 100
  config.optim.decay_epochs = 100

  # ---------------------------------------------------------------- data
  config.data = ml_collections.ConfigDict()
  # 'facades', 'cityscapes', 'maps', 'edges2shoes', 'edges2handbags', 'night2day' (official,
  # TFDS builder), 'blue_marble' (embedded, offline), 'aligned_folder' (your A|B images) or
  # 'paired_folders' (your A/ and B/ folders with matching file names).
  config.data.dataset = 'facades'
  # Official datasets: folder holding the downloaded archive (TFDS manual_dir); folder
  # datasets: the folder (or archive) itself. Empty: the default download folder.
  config.data.source = ''
  # Where TFDS keeps prepared datasets. Empty: ~/tensorflow_datasets.
  config.data.data_dir = ''
  # Official datasets only: when the archive is not in `source`, download it from the
  # official URL. False: fail at once with instructions (machines without internet, tests).
  config.data.download = True
  # 'AtoB' maps the left (A) half to the right (B) half; 'BtoA' the other way.
  config.data.direction = 'BtoA'
  # Jitter: resize to load_size, random crop to crop_size, random horizontal flip (train only).
  config.data.load_size = 286
  config.data.crop_size = 256
  config.data.flip = True
  # Resize method: 'bicubic' (PyTorch reference), 'bilinear', 'nearest' (TF tutorial), 'area'.
  config.data.resize_method = 'bicubic'
  # Splits for training and for periodic validation.
  config.data.train_split = 'train'
  config.data.eval_split = 'val'
  # What preparation does with an undecodable or malformed image: 'error' stops naming the
  # file; 'skip' leaves it out and reports how many were skipped.
  config.data.on_bad_file = 'error'
  # Shuffle buffer (examples). Larger = better mixing, more memory.
  config.data.shuffle_buffer = 1000

  # ---------------------------------------------------------------- training
  # Global batch size (summed over all devices and hosts). Paper: 1 for facades.
  config.batch_size = 1
  # Length of training in epochs of the train split, unless `num_train_steps` is a number of
  # steps (> 0); its default USE_EPOCHS (-1) says "use num_epochs". 0 is refused (it would
  # train nothing, and used to train num_epochs without a word).
  config.num_epochs = 200
  config.num_train_steps = USE_EPOCHS

  # ---------------------------------------------------------------- logging, checkpoints
  # Every how many steps: losses are logged, samples written, validation run, a checkpoint
  # saved.
  config.log_every_steps = 100
  config.sample_every_steps = 1000
  config.eval_every_steps = 2000
  # Validation examples per evaluation (-1: the whole split).
  config.num_eval_examples = -1
  config.checkpoint_every_steps = 2000
  # Newest checkpoints kept (the best by validation L1 is kept as well).
  config.keep_checkpoints = 3
  # Weights & Biases project to log to as well (scalars, samples, config); '' for none.
  # Needs `pip install wandb`; WANDB_MODE=offline logs without an account.
  config.wandb_project = ''

  # ---------------------------------------------------------------- inference
  # 'paper': dropout on and BatchNorm with test-batch statistics (as the paper);
  # 'eval': running averages and no dropout.
  config.inference_mode = 'paper'

  # ---------------------------------------------------------------- multi-host
  # Call jax.distributed.initialize() at start-up (TPU pod slices, multi-node GPU).
  config.distributed = False
  return config


# ------------------------------------------------------------------ checking

# Allowed values, each list defined by the module that uses the field.
CHOICES = {
    'model.generator': tuple(GENERATORS),
    'model.norm': layers.NORMS,
    'model.dropout_placement': tuple(DROPOUT_PLACEMENTS),
    'model.upsample': tuple(layers.UPSAMPLERS),
    'compute.dtype': tuple(networks.DTYPES),
    'compute.conv_impl': kernels.IMPLS,
    'compute.mapping': parallel.MAPPINGS,
    'loss.gan_mode': losses.GAN_MODES,
    'loss.recon': losses.RECON_LOSSES,
    'optim.schedule': schedules.SCHEDULES,
    'data.dataset': catalog.DATASETS,
    'data.direction': input_pipeline.DIRECTIONS,
    'data.resize_method': input_pipeline.RESIZE_METHODS,
    'data.on_bad_file': catalog.BAD_FILE_POLICIES,
    'inference_mode': inference.MODES,
}
_POSITIVE = ('model.ngf', 'model.ndf', 'model.in_channels', 'model.out_channels',
             'optim.lr', 'data.load_size', 'data.crop_size', 'batch_size',
             'log_every_steps', 'sample_every_steps', 'eval_every_steps',
             'checkpoint_every_steps', 'keep_checkpoints')
_NON_NEGATIVE = ('loss.gan_weight', 'loss.recon_weight')

# Old key -> new key. Configs saved before a rename are moved on load (`migrate`).
RENAMED = {
    'model.dtype': 'compute.dtype',
    'model.conv_impl': 'compute.conv_impl',
    'parallel': 'compute.mapping',
}


def flatten(config, prefix: str = '') -> dict:
  """{'model.ngf': 64, ...} of a nested ConfigDict or dict."""
  out = {}
  for key, value in config.items():
    path = f'{prefix}{key}'
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(flatten(value, path + '.'))
    else:
      out[path] = value
  return out


def describe_unknown(key: str) -> str:
  """`key` with its new name when it was renamed."""
  return f'{key} (now {RENAMED[key]})' if key in RENAMED else key


def validate(config) -> None:
  """Raises ValueError naming every unknown or missing key, or the first invalid value."""
  flat, ref = flatten(config), flatten(get_config())
  unknown = sorted(set(flat) - set(ref))
  if unknown:
    raise ValueError(f'unknown config keys: {", ".join(map(describe_unknown, unknown))} '
                     '(not in p2p_jax/config_schema.py; check the spelling)')
  missing = sorted(set(ref) - set(flat))
  if missing:
    # The trainer reads every field: fail here, not with an AttributeError mid-run.
    raise ValueError(f'missing config keys: {", ".join(missing)} (start from '
                     'p2p_jax.config_schema.get_config() and change fields)')
  for path, choices in CHOICES.items():
    if flat[path] not in choices:
      raise ValueError(f'config.{path} must be one of {list(choices)}, got {flat[path]!r}')
  for path in _POSITIVE:
    if not flat[path] > 0:
      raise ValueError(f'config.{path} must be > 0, got {flat[path]!r}')
  for path in _NON_NEGATIVE:
    if flat[path] < 0:
      raise ValueError(f'config.{path} must be >= 0, got {flat[path]!r}')
  if flat['loss.gan_weight'] == 0 and flat['loss.recon_weight'] == 0:
    raise ValueError('config.loss.gan_weight and config.loss.recon_weight are both 0: '
                     'nothing to train')
  for path in ('optim.b1', 'optim.b2'):
    if not 0 <= flat[path] < 1:
      raise ValueError(f'config.{path} must be in [0, 1), got {flat[path]!r}')
  if flat['num_train_steps'] <= 0 and flat['num_train_steps'] != USE_EPOCHS:
    raise ValueError(f'config.num_train_steps must be a number of steps > 0, or '
                     f'{USE_EPOCHS} to train config.num_epochs ({flat["num_epochs"]}) epochs; '
                     f'got {flat["num_train_steps"]}')
  if flat['num_train_steps'] <= 0 and flat['num_epochs'] <= 0:
    raise ValueError(f'config.num_train_steps ({flat["num_train_steps"]}) or config.num_epochs '
                     f'({flat["num_epochs"]}) must be > 0: nothing to train')
  if not 0 <= flat['model.d_layers'] <= 8:
    raise ValueError(f'config.model.d_layers must be in 0..8, got {flat["model.d_layers"]}')
  if flat['data.load_size'] < flat['data.crop_size']:
    raise ValueError(f'config.data.load_size ({flat["data.load_size"]}) must be >= '
                     f'config.data.crop_size ({flat["data.crop_size"]})')
  side = 2 ** GENERATORS[flat['model.generator']][0]
  if flat['data.crop_size'] % side:
    raise ValueError(f'config.data.crop_size ({flat["data.crop_size"]}) must be a multiple '
                     f'of {side} for model.generator={flat["model.generator"]!r}')
  for path in ('model.in_channels', 'model.out_channels'):
    if flat[path] not in (1, 3):
      raise ValueError(f'config.{path} must be 1 or 3, got {flat[path]!r}')


# ------------------------------------------------------------------ paths

# Fields that name files or folders.
PATH_FIELDS = ('data.source', 'data.data_dir')


def with_absolute_paths(config) -> ml_collections.ConfigDict:
  """A copy of `config` whose PATH_FIELDS are absolute (relative to the current folder, ~
  expanded; '' and URLs as given), so that the run's config.json names the same data when
  evaluate or a resumed run starts from another folder."""
  config = config.copy_and_resolve_references()
  for path in PATH_FIELDS:
    block, key = path.split('.')
    value = config[block][key]
    if value and '://' not in value:
      config[block][key] = os.path.abspath(os.path.expanduser(value))
  return config


# ------------------------------------------------------------------ loading

def migrate(data: dict) -> dict:
  """A nested dict of a saved config with renamed keys moved to their new places."""
  for old, new in RENAMED.items():
    *old_path, old_key = old.split('.')
    parent = data
    for part in old_path:
      parent = parent.get(part) if isinstance(parent, dict) else None
    if not isinstance(parent, dict) or old_key not in parent:
      continue
    value = parent.pop(old_key)
    *new_path, new_key = new.split('.')
    target = data
    for part in new_path:
      target = target.setdefault(part, {})
    target.setdefault(new_key, value)
  return data


def from_dict(data: dict) -> ml_collections.ConfigDict:
  """A config from saved values: the schema's defaults, overridden by `data` (migrated)."""
  config = get_config()
  config.update(ml_collections.ConfigDict(migrate(data)))
  return config


def load_file(path: str) -> ml_collections.ConfigDict:
  """get_config() of a config file, e.g. 'configs/demo.py' (what --config=... loads)."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise FileNotFoundError(f'config file {path} not found')
  spec = importlib.util.spec_from_file_location(
      f'p2p_jax_config_{os.path.splitext(os.path.basename(path))[0]}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
