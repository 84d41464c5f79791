"""An official pix2pixHD model as a p2p_jax workdir, and back to .pth files.

Import (`import_weights`, `import_files`): the official latest_net_G.pth (a GlobalGenerator
or a LocalEnhancer, e.g. the published label2city_1024p: --netG local --ngf 32), and
optionally its latest_net_D.pth, become a workdir as p2p_jax's trainer would have left it
at step 0 of method 'pix2pixhd': config.json (the given config, e.g.
configs/pix2pixhd_cityscapes_1024p.py, or the schema's defaults, with the generator and D
the tensors imply) and a checkpoint of the full state (D from the seed when not given,
fresh Adam). `translate` and `evaluate` then translate label maps with it, and
`python -m p2p_jax.main` fine-tunes it. Which labels and whether an instance map go in
cannot be read from the tensors (the first conv takes label_nc + 1 channels either way):
they come from the config (label_nc 35 and instance_map on by default, the published
model's), and must add up to the first conv's input channels.

A model trained with the instance-wise feature encoder (--instance_feat / --label_feat)
has a third file, latest_net_E.pth (netE, the official Encoder), and a G whose first conv
takes feat_num more channels (E's features). Given E (its state dict), the import sets
config.pix2pixhd.instance_feat (label_feat instead when the config says so) and feat_num,
nef and n_downsample_E as E's tensors imply, and puts E beside G in the state (g.params
= {'G', 'E'}, one Adam over both, as the official optimizer_G). A G with feat_num extra
channels and no E, or a config with the encoder on and no E, is refused: p2p_jax has no
other source of features (--load_features, precomputed feature maps, is not implemented).
`evaluate` then translates with the features of the dataset's photos, and `translate`
with features drawn from the clusters `python -m p2p_jax.encode_features` makes with E.

Export (`export_weights`, `export_files`): a workdir's G (and D, and E when it has the
feature encoder) as state dicts in the official key layout, which its LocalEnhancer /
GlobalGenerator (MultiscaleDiscriminator, Encoder) load with load_state_dict(strict=True).
"""

import os

import jax
import numpy as np

from p2p_jax import checkpointing, config_schema, networks, state as state_lib, workdirs
from p2p_jax.methods import pix2pixhd
from p2p_jax.pytorch import files, pix2pixhd_weights as hw
from p2p_jax.pytorch.weights import StateDictError
from p2p_jax.pytorch.workdir import check_target, import_record, write


def e_file_for(g_source: str | None) -> str:
  """Where the official code would have saved netE beside G: <epoch>_net_E.pth in G's
  folder (latest_net_E.pth when G's name does not say its epoch)."""
  name = os.path.basename(g_source or '')
  epoch = name[:-len('_net_G.pth')] if name.endswith('_net_G.pth') else 'latest'
  return os.path.join(os.path.dirname(g_source or ''), f'{epoch}_net_E.pth')


_E_WHAT = ("netE, the instance-wise feature encoder the official --instance_feat / "
           "--label_feat train")
_E_HOW = 'import the checkpoint folder that holds it, or give it as --from_pytorch_e'


def _set_features(config, arch: dict, e_arch: dict | None, source, e_source) -> None:
  """The feature encoder's fields of `config` from E's tensors (or refusals)."""
  hd = config.pix2pixhd
  if e_arch is None:
    if networks.uses_features(config):
      which = 'label_feat' if hd.label_feat else 'instance_feat'
      raise StateDictError(
          f'{source or "the generator"}: config.pix2pixhd.{which} is on, but no '
          f'{os.path.basename(e_file_for(source))} ({_E_WHAT}) is given: {_E_HOW}')
    return
  if e_arch['input_nc'] != arch['output_nc']:
    raise StateDictError(
        f'{e_source or "the feature encoder"}: its first conv takes {e_arch["input_nc"]} '
        f'channels, but it encodes the photo, of which G makes {arch["output_nc"]}: not the '
        f'encoder of this G')
  hd.update(feat_num=e_arch['feat_num'], nef=e_arch['nef'],
            n_downsample_E=e_arch['n_downsample_E'])
  if not hd.label_feat:
    hd.instance_feat = True


def _config_for(arch: dict, d_arch: dict | None, config=None, seed: int | None = None,
                source: str | None = None, e_arch: dict | None = None,
                e_source: str | None = None):
  """`config` (default: the schema's, method pix2pixhd) with the networks the tensors
  imply; StateDictError when its inputs (and E's features) do not add up to the first
  conv's channels."""
  if config is None:
    config = config_schema.get_config()
    config.model.update(norm='instance', d_layers=3)
    config.loss.gan_mode = 'lsgan'
    config.optim.schedule = 'linear_decay_pix2pixhd'
  config = config.copy_and_resolve_references()
  config.method = 'pix2pixhd'
  config.model.update(generator=arch['generator'], ngf=arch['ngf'],
                      out_channels=arch['output_nc'], norm='instance')
  hd = config.pix2pixhd
  hd.update(n_downsample_global=arch['n_downsample_global'],
            n_blocks_global=arch['n_blocks_global'])
  if arch['generator'] == 'pix2pixhd_local':
    hd.update(n_local_enhancers=arch['n_local_enhancers'],
              n_blocks_local=arch['n_blocks_local'])
  _set_features(config, arch, e_arch, source, e_source)
  features = networks.uses_features(config)
  if not hd.label_nc:
    config.model.in_channels = arch['input_nc'] - (1 if hd.instance_map else 0) - (
        hd.feat_num if features else 0)
  if networks.hd_generator_channels(config) != arch['input_nc']:
    labels = networks.hd_input_channels(config)
    extra = arch['input_nc'] - labels
    if not features and extra == hd.feat_num:
      raise StateDictError(
          f'{source or "the generator"}: its first conv takes {arch["input_nc"]} channels, '
          f'{labels} of the label map and {extra} features: it was trained with the feature '
          f'encoder, but no {os.path.basename(e_file_for(source))} ({_E_WHAT}) is given: '
          f'{_E_HOW}')
    encoder = f' + feat_num {hd.feat_num} (E\'s features)' if features else ''
    raise StateDictError(
        f'{source or "the generator"}: its first conv takes {arch["input_nc"]} channels, but '
        f'config.pix2pixhd.label_nc {hd.label_nc} + instance_map {hd.instance_map}{encoder} '
        f'give {networks.hd_generator_channels(config)}; pass the config it was trained with')
  if d_arch is not None:
    config.model.update(ndf=d_arch['ndf'], d_layers=d_arch['n_layers_D'])
    hd.update(num_D=d_arch['num_D'], feat_match=d_arch['intermediate'])
    # D sees the encoded input and the image, not E's features (the official netD_input_nc).
    want = networks.hd_input_channels(config) + arch['output_nc']
    if d_arch['input_nc'] != want:
      raise StateDictError(f"D's first conv takes {d_arch['input_nc']} channels, but D sees "
                           f'the input and the image: {want}')
  if seed is not None:
    config.seed = seed
  # Fine-tuning reads the VGG19 weights; a conversion does not need them.
  config_schema.validate(config)
  return config


def build_state(config, g_params, d_params=None, e_params=None):
  """The step-0 state of method pix2pixhd with G (and D, and the feature encoder E)
  replaced; StateDictError when their shapes differ from what the config builds. Without
  `e_params` a feature model keeps the E initialised from the seed."""
  setup = pix2pixhd.METHOD.setup(config, 1, axis_name='batch')
  abstract = jax.eval_shape(setup.init)
  if e_params is not None and 'E' not in abstract.g.params:
    raise StateDictError('feature encoder: the config builds none (config.pix2pixhd.'
                         'instance_feat / label_feat are off)')
  for name, given, want in (('generator', g_params, abstract.g.params['G']),
                            ('discriminator', d_params, abstract.d.params['D']),
                            ('feature encoder', e_params, abstract.g.params.get('E'))):
    if given is None:
      continue
    have = jax.tree.map(np.shape, given)
    expected = jax.tree.map(lambda a: tuple(a.shape), want)
    if have != expected:
      raise StateDictError(f'{name}: the tensors do not fit the networks the config builds')
  state = jax.jit(setup.init)()
  tx = pix2pixhd.create_optimizer(config)
  g = {'G': g_params}
  if 'E' in state.g.params:
    g['E'] = state.g.params['E'] if e_params is None else e_params
  state = state.replace(g=state.g.replace(params=g, opt_state=tx.init(g)))
  if d_params is not None:
    d = {'D': d_params}
    state = state.replace(d=state.d.replace(params=d, opt_state=tx.init(d)))
  return state


def import_weights(g_state_dict, workdir: str, *, d_state_dict=None, e_state_dict=None,
                   config=None, seed: int | None = None, g_source: str | None = None,
                   d_source: str | None = None, e_source: str | None = None) -> dict:
  """Writes the official G (and D, and the feature encoder E) into `workdir` as a
  pix2pixhd run at step 0; returns a summary (config, arch, d_converted, e_converted,
  g_params, e_params: G's and E's parameter counts). Nothing is written for input that
  does not fit (StateDictError / ValueError, one line naming the file and key)."""
  g, arch = hw.generator_from_torch(g_state_dict, g_source)
  d = d_arch = e = e_arch = None
  if d_state_dict is not None:
    d, d_arch = hw.discriminator_from_torch(d_state_dict, d_source)
  if e_state_dict is not None:
    e, e_arch = hw.encoder_from_torch(e_state_dict, e_source)
  config = _config_for(arch, d_arch, config, seed, g_source, e_arch, e_source)
  check_target(config, workdir)
  state = build_state(config, g, d, e)
  sources = {'G': g_source, 'D': d_source, **({'E': e_source} if e is not None else {})}
  write(config, state, workdir, import_record('pix2pixhd', sources, config.seed))
  summary_arch = dict(generator=arch['generator'], ngf=arch['ngf'],
                      in_channels=arch['input_nc'], out_channels=arch['output_nc'],
                      norm='instance')
  return {'config': config, 'arch': summary_arch, 'd_converted': d is not None,
          'e_converted': e is not None, 'g_params': state_lib.param_count(state.g.params['G']),
          'e_params': state_lib.param_count(state.g.params.get('E', {}))}


def import_files(g_path: str, workdir: str, *, d_path: str | None = None,
                 e_path: str | None = None, **kwargs) -> dict:
  """`import_weights` of .pth files."""
  g_sd = files.read_pth(g_path)
  d_sd = files.read_pth(d_path) if d_path else None
  e_sd = files.read_pth(e_path) if e_path else None
  return import_weights(g_sd, workdir, d_state_dict=d_sd, e_state_dict=e_sd, g_source=g_path,
                        d_source=d_path, e_source=e_path, **kwargs)


def arch_of(config) -> dict:
  """The generator_entries arch of a pix2pixhd config."""
  hd = config.pix2pixhd
  return dict(generator=config.model.generator, n_downsample_global=hd.n_downsample_global,
              n_blocks_global=hd.n_blocks_global, n_local_enhancers=hd.n_local_enhancers,
              n_blocks_local=hd.n_blocks_local)


def encoder_arch_of(config) -> dict:
  """The encoder_entries arch of a pix2pixhd config with the feature encoder."""
  hd = config.pix2pixhd
  return dict(input_nc=config.model.out_channels, feat_num=hd.feat_num, nef=hd.nef,
              n_downsample_E=hd.n_downsample_E)


def export_weights(workdir: str, which='latest', *, discriminator: bool = False):
  """(step, G state dict, D state dict or None, E state dict or None) of a pix2pixhd
  workdir's checkpoint, in the official key layout (D: the feature-matching layout if it
  trained with it; E: the official Encoder's, when the workdir has the feature encoder)."""
  config = workdirs.load_config(workdir)
  if config.method != 'pix2pixhd':
    raise ValueError(f'{workdir} holds a {config.method} run, not pix2pixhd')
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir), read_only=True) as ckpt:
    step, g = ckpt.restore_generator(which)
    d = ckpt.restore_generator(step, network='d')[1] if discriminator else None
  g_sd = hw.generator_to_torch(g['params']['G'], arch_of(config))
  d_sd = None if d is None else hw.discriminator_to_torch(
      d['params']['D'], config.pix2pixhd.num_D, config.model.d_layers,
      intermediate=config.pix2pixhd.feat_match)
  e_sd = (hw.encoder_to_torch(g['params']['E'], encoder_arch_of(config))
          if networks.uses_features(config) else None)
  return step, g_sd, d_sd, e_sd


def export_files(workdir: str, g_path: str, *, d_path: str | None = None,
                 e_path: str | None = None, which='latest', overwrite: bool = False) -> int:
  """Writes a checkpoint's G (and D, and E) as .pth files; returns the step. Existing
  outputs are refused unless `overwrite`, before anything is written; so is `e_path` for
  a workdir without the feature encoder."""
  paths = [os.path.abspath(p) for p in (g_path, d_path, e_path) if p]
  if len(set(paths)) < len(paths):
    raise ValueError(f'two networks would be written to the same file: {paths}')
  for path in (g_path, d_path, e_path):
    if path and os.path.exists(path) and not overwrite:
      raise ValueError(f'{path} exists; pass --overwrite to replace it')
  step, g_sd, d_sd, e_sd = export_weights(workdir, which, discriminator=bool(d_path))
  if e_path and e_sd is None:
    raise ValueError(f'{workdir} has no feature encoder E (config.pix2pixhd.instance_feat / '
                     'label_feat are off)')
  files.write_pths({p: sd for p, sd in ((g_path, g_sd), (d_path, d_sd), (e_path, e_sd)) if p})
  return step
