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

Export (`export_weights`, `export_files`): a workdir's G (and D) as state dicts in the
official key layout, which its LocalEnhancer / GlobalGenerator (MultiscaleDiscriminator)
load with load_state_dict(strict=True).
"""

import os

import jax
import numpy as np

from p2p_jax import checkpointing, config_schema, networks, state as state_lib, workdirs
from p2p_jax.methods import pix2pixhd
from p2p_jax.pytorch import files, pix2pixhd_weights as hw
from p2p_jax.pytorch.weights import StateDictError
from p2p_jax.pytorch.workdir import check_target, import_record, write


def _config_for(arch: dict, d_arch: dict | None, config=None, seed: int | None = None,
                source: str | None = None):
  """`config` (default: the schema's, method pix2pixhd) with the networks the tensors
  imply; StateDictError when its inputs do not add up to the first conv's channels."""
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
  if not hd.label_nc:
    config.model.in_channels = arch['input_nc'] - (1 if hd.instance_map else 0)
  if networks.hd_input_channels(config) != arch['input_nc']:
    raise StateDictError(
        f'{source or "the generator"}: its first conv takes {arch["input_nc"]} channels, but '
        f'config.pix2pixhd.label_nc {hd.label_nc} + instance_map {hd.instance_map} give '
        f'{networks.hd_input_channels(config)}; pass the config it was trained with')
  if d_arch is not None:
    config.model.update(ndf=d_arch['ndf'], d_layers=d_arch['n_layers_D'])
    hd.update(num_D=d_arch['num_D'], feat_match=d_arch['intermediate'])
    want = arch['input_nc'] + arch['output_nc']
    if d_arch['input_nc'] != want:
      raise StateDictError(f"D's first conv takes {d_arch['input_nc']} channels, but D sees "
                           f'the input and the image: {want}')
  if seed is not None:
    config.seed = seed
  # Fine-tuning reads the VGG19 weights; a conversion does not need them.
  config_schema.validate(config)
  return config


def build_state(config, g_params, d_params=None):
  """The step-0 state of method pix2pixhd with G (and D) replaced; StateDictError when
  their shapes differ from what the config builds."""
  setup = pix2pixhd.METHOD.setup(config, 1, axis_name='batch')
  abstract = jax.eval_shape(setup.init)
  for name, given, want in (('generator', g_params, abstract.g.params['G']),
                            ('discriminator', d_params, abstract.d.params['D'])):
    if given is None:
      continue
    have = jax.tree.map(np.shape, given)
    expected = jax.tree.map(lambda a: tuple(a.shape), want)
    if have != expected:
      raise StateDictError(f'{name}: the tensors do not fit the networks the config builds')
  state = jax.jit(setup.init)()
  tx = pix2pixhd.create_optimizer(config)
  g = {'G': g_params}
  state = state.replace(g=state.g.replace(params=g, opt_state=tx.init(g)))
  if d_params is not None:
    d = {'D': d_params}
    state = state.replace(d=state.d.replace(params=d, opt_state=tx.init(d)))
  return state


def import_weights(g_state_dict, workdir: str, *, d_state_dict=None, config=None,
                   seed: int | None = None, g_source: str | None = None,
                   d_source: str | None = None) -> dict:
  """Writes the official G (and D) into `workdir` as a pix2pixhd run at step 0; returns a
  summary (config, arch, d_converted, g_params). Nothing is written for input that does
  not fit (StateDictError / ValueError, one line naming the file and key)."""
  g, arch = hw.generator_from_torch(g_state_dict, g_source)
  d = d_arch = None
  if d_state_dict is not None:
    d, d_arch = hw.discriminator_from_torch(d_state_dict, d_source)
  config = _config_for(arch, d_arch, config, seed, g_source)
  check_target(config, workdir)
  state = build_state(config, g, d)
  write(config, state, workdir, import_record('pix2pixhd', {'G': g_source, 'D': d_source},
                                             config.seed))
  summary_arch = dict(generator=arch['generator'], ngf=arch['ngf'],
                      in_channels=arch['input_nc'], out_channels=arch['output_nc'],
                      norm='instance')
  return {'config': config, 'arch': summary_arch, 'd_converted': d is not None,
          'g_params': state_lib.param_count(state.g.params)}


def import_files(g_path: str, workdir: str, *, d_path: str | None = None, **kwargs) -> dict:
  """`import_weights` of .pth files."""
  g_sd = files.read_pth(g_path)
  d_sd = files.read_pth(d_path) if d_path else None
  return import_weights(g_sd, workdir, d_state_dict=d_sd, g_source=g_path, d_source=d_path,
                        **kwargs)


def arch_of(config) -> dict:
  """The generator_entries arch of a pix2pixhd config."""
  hd = config.pix2pixhd
  return dict(generator=config.model.generator, n_downsample_global=hd.n_downsample_global,
              n_blocks_global=hd.n_blocks_global, n_local_enhancers=hd.n_local_enhancers,
              n_blocks_local=hd.n_blocks_local)


def export_weights(workdir: str, which='latest', *, discriminator: bool = False):
  """(step, G state dict, D state dict or None) of a pix2pixhd workdir's checkpoint, in
  the official key layout (D: the feature-matching layout if it trained with it)."""
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
  return step, g_sd, d_sd


def export_files(workdir: str, g_path: str, *, d_path: str | None = None, which='latest',
                 overwrite: bool = False) -> int:
  """Writes a checkpoint's G (and D) as .pth files; returns the step. Existing outputs are
  refused unless `overwrite`, before anything is written."""
  if d_path and os.path.abspath(d_path) == os.path.abspath(g_path):
    raise ValueError(f'G and D would both be written to {g_path}')
  for path in (g_path, d_path):
    if path and os.path.exists(path) and not overwrite:
      raise ValueError(f'{path} exists; pass --overwrite to replace it')
  step, g_sd, d_sd = export_weights(workdir, which, discriminator=bool(d_path))
  files.write_pth(g_path, g_sd)
  if d_path:
    files.write_pth(d_path, d_sd)
  return step
