"""A reference run's .pth files: which networks, which method, into and out of a workdir.

The reference saves `<epoch>_net_<name>.pth` into its `checkpoints/<experiment>/` folder
(models/base_model.py: `latest` and every saved epoch): pix2pix's G and D, CycleGAN's G_A,
G_B, D_A and D_B; its test-time folders of published models hold a lone G
(`latest_net_G.pth`). NVIDIA/pix2pixHD saves the same way: G and D, and E (the
instance-wise feature encoder, netE) when trained with --instance_feat / --label_feat.
Here a run's files are given by role:

  'G'    pix2pix's (pix2pixHD's) G, or CycleGAN's G_A (A -> B)
  'D'    pix2pix's (pix2pixHD's) D, or CycleGAN's D_A (judges B)
  'G_B'  CycleGAN's G_B (B -> A)
  'D_B'  CycleGAN's D_B (judges A)
  'E'    pix2pixHD's feature encoder (latest_net_E.pth)

`method_of` says which method they are (unless told), `import_run` writes them into a
workdir (workdir.py for pix2pix, cyclegan_workdir.py for CycleGAN, pix2pixhd_workdir.py for
pix2pixHD), `export_run` writes a workdir's networks back as files or as a reference
checkpoint folder.
"""

import contextlib
import os

from p2p_jax import config_schema, networks, stopping, workdirs
from p2p_jax.pytorch import (cyclegan_workdir, files, pix2pixhd_weights, pix2pixhd_workdir,
                             state_dicts as sdl, workdir as workdir_lib)

ROLES = ('G', 'D', 'G_B', 'D_B', 'E')
CYCLEGAN_ONLY = ('G_B', 'D_B')
PIX2PIXHD_ONLY = ('E',)
# role -> the network's name in each method (the reference's file names).
NAMES = {'pix2pix': {'G': 'G', 'D': 'D'},
         'cyclegan': {'G': 'G_A', 'D': 'D_A', 'G_B': 'G_B', 'D_B': 'D_B'},
         'pix2pixhd': {'G': 'G', 'D': 'D', 'E': 'E'}}


def file_name(name: str, epoch: str = 'latest') -> str:
  """The reference's file of network `name` ('G', 'G_A', ...): <epoch>_net_<name>.pth."""
  return f'{epoch}_net_{name}.pth'


def folder_files(folder: str, epoch: str = 'latest') -> dict:
  """{role: path} of the reference's checkpoint folder: CycleGAN's four files when
  <epoch>_net_G_A.pth is there, else pix2pix's G (and D), or pix2pixHD's G (D, E); each D
  and E only if present."""
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'{folder}: no such folder')
  for method in ('cyclegan', 'pix2pixhd'):  # pix2pixHD's names: pix2pix's, and E
    paths = {role: os.path.join(folder, file_name(name, epoch))
             for role, name in NAMES[method].items()}
    if os.path.isfile(paths['G']):
      return {r: p for r, p in paths.items() if r == 'G' or os.path.isfile(p)}
  raise FileNotFoundError(
      f'{folder} holds neither {file_name("G_A", epoch)} (CycleGAN) nor '
      f'{file_name("G", epoch)} (pix2pix): not a checkpoint folder of the reference')


def method_of(state_dicts: dict, sources: dict, method: str | None = None,
              config_method: str | None = None) -> str:
  """'pix2pix', 'cyclegan' or 'pix2pixhd' for {role: state dict}: `method` if given; else
  what the files are (pix2pixHD when G is the official LocalEnhancer, an E is given or the
  config is a pix2pixhd one, whose GlobalGenerator keys the reference's do not tell apart;
  CycleGAN when a G_B or D_B is given or G is a ResnetGenerator; pix2pix otherwise), which
  must then agree with `config_method` (a --config's) if given. Raises StateDictError (one
  line) for a D given as G, or files and config that disagree."""
  back = [r for r in CYCLEGAN_ONLY if r in state_dicts]
  hd_only = [r for r in PIX2PIXHD_ONLY if r in state_dicts]
  if method == 'pix2pixhd' or (not method and (
      config_method == 'pix2pixhd' or hd_only or
      pix2pixhd_weights.is_local_enhancer(state_dicts['G']))):
    if back:
      raise ValueError(f'{", ".join(sources.get(r, r) for r in back)}: G_B / D_B are '
                       "CycleGAN's networks; pix2pixHD has one G, one D (and an E)")
    if config_method and config_method != 'pix2pixhd':
      what = ("pix2pixHD's feature encoder (netE)" if hd_only
              else "pix2pixHD's LocalEnhancer")
      raise sdl.StateDictError(
          f'{sources.get(hd_only[0] if hd_only else "G", "G")} holds {what}, but --config is '
          f'a {config_method} config: give a pix2pixhd config (configs/pix2pixhd_*.py)')
    return 'pix2pixhd'
  if hd_only:
    raise ValueError(f'{sources.get("E", "E")}: E is pix2pixHD\'s feature encoder; {method} '
                     'has none')
  g = sdl.clean(state_dicts['G'], sources.get('G'))
  kind = sdl.identify(g)
  if kind in sdl.DISCRIMINATOR_KINDS:
    sdl.fail(f'holds {sdl.describe(g)}, not a generator: give it as --from_pytorch_d (and '
             'the generator as --from_pytorch)', sources.get('G'))
  if method == 'pix2pix' and back:
    raise ValueError(f'{", ".join(sources.get(r, r) for r in back)}: G_B / D_B are '
                     "CycleGAN's networks; pix2pix has one G and one D")
  if method:
    return method
  if back:
    says, why = 'cyclegan', f'{sources.get(back[0], back[0])} is given ({back[0]})'
  elif kind == 'ResnetGenerator':
    says, why = 'cyclegan', f'{sources.get("G", "G")} holds {sdl.describe(g)}'
  else:
    says, why = 'pix2pix', f'{sources.get("G", "G")} holds {sdl.describe(g)}'
  if config_method and config_method != says:
    raise sdl.StateDictError(
        f'{why}, but --config is a {config_method} config: pass --method={config_method} to '
        f'convert the files as {config_method} anyway, or a {says} config')
  return says


def import_run(paths: dict, workdir: str, *, method: str | None = None, config=None,
               direction: str | None = None, norm: str | None = None,
               seed: int | None = None, record: dict | None = None,
               untrained_hint: str = '') -> dict:
  """Writes the .pth files {role: path} into a new `workdir` (see the module docstring).

  method: None infers it (`method_of`, checked against `config`'s if a config is given);
  config: the non-model fields (default: the method's reference defaults); direction:
  config.data.direction (which side of the data is domain A / the input); norm, seed:
  see workdir.import_weights. Every file is read and checked before anything is written.
  Returns the importer's summary with 'method' added.
  """
  unknown = set(paths) - set(ROLES)
  if unknown or 'G' not in paths:
    raise ValueError(f'roles must include G and be among {ROLES}, got {sorted(paths)}')
  sources = {role: os.fspath(p) for role, p in paths.items() if p}
  state_dicts = {role: files.read_pth(p) for role, p in sources.items()}
  method = method_of(state_dicts, sources, method, config.method if config else None)
  if method == 'pix2pixhd':  # its config comes from the files (and --config, if given)
    summary = pix2pixhd_workdir.import_weights(
        state_dicts['G'], workdir, d_state_dict=state_dicts.get('D'),
        e_state_dict=state_dicts.get('E'), config=config, seed=seed, g_source=sources['G'],
        d_source=sources.get('D'), e_source=sources.get('E'))
    return {**summary, 'method': method}
  if config is None:
    config = (cyclegan_workdir.reference_config() if method == 'cyclegan'
              else config_schema.get_config())
  if direction:
    config = config.copy_and_resolve_references()
    config.data.direction = direction
  if method == 'pix2pix':
    summary = workdir_lib.import_weights(
        state_dicts['G'], workdir, d_state_dict=state_dicts.get('D'), config=config,
        norm=norm, seed=seed, g_source=sources['G'], d_source=sources.get('D'), record=record)
  else:
    names = NAMES['cyclegan']
    summary = cyclegan_workdir.import_weights(
        {names[r]: sd for r, sd in state_dicts.items()}, workdir, config=config, norm=norm,
        seed=seed, sources={names[r]: p for r, p in sources.items()}, record=record,
        untrained_hint=untrained_hint)
  return {**summary, 'method': method}


def _pix2pixhd_weights(workdir: str, which, names: tuple) -> tuple[int, dict]:
  """(step, {name: state dict}) of a pix2pixhd workdir, as the other methods' readers."""
  step, g, d, e = pix2pixhd_workdir.export_weights(workdir, which, discriminator='D' in names)
  return step, {'G': g, 'D': d, 'E': e}


def _untrained(workdir: str, step: int, name: str) -> str | None:
  """Why generator `name` of checkpoint `step` is no model (workdirs' import record)."""
  direction = {'G_B': 'BtoA'}.get(name, 'AtoB')
  if name.startswith('D'):
    return None
  try:
    workdirs.check_generator_trained(workdir, step, direction)
  except ValueError as e:
    return str(e)
  return None


def export_run(workdir: str, outputs, *, which='latest', overwrite: bool = False,
               epoch: str = 'latest') -> dict:
  """Writes a workdir's networks as the reference's .pth files.

  outputs: {role: path} (e.g. {'G': 'g.pth'}: the generator only), or a folder (str) to
  receive every network of the method as the reference names them (<epoch>_net_G_A.pth,
  ...; a generator that was initialised from the seed and never trained is left out,
  with the reason in 'skipped'; pix2pixHD's E only when the workdir has the feature
  encoder). Existing files are refused unless `overwrite`; all is checked before anything
  is written. Returns {'step', 'written': {name: path}, 'skipped': {name: why}}.
  """
  config = workdirs.load_config(workdir)
  method = config.method
  names = NAMES.get(method)
  if names is None:
    raise ValueError(f'{workdir} holds a {method} run; export to PyTorch knows '
                     f'{" and ".join(NAMES)}')
  if method == 'pix2pixhd' and not networks.uses_features(config):
    names = {r: n for r, n in names.items() if r not in PIX2PIXHD_ONLY}
  folder = outputs if isinstance(outputs, str) else None
  if folder:
    stopping.check_folder(folder)
    outputs = {r: os.path.join(folder, file_name(n, epoch)) for r, n in names.items()}
  wrong = [r for r in outputs if r not in names]
  if wrong:
    why = (' without the feature encoder (config.pix2pixhd.instance_feat / label_feat off)'
           if method == 'pix2pixhd' and wrong[0] in PIX2PIXHD_ONLY else '')
    raise ValueError(f'{workdir} holds a {method} run{why}, which has no {wrong[0]} network '
                     f'(it has {", ".join(names.values())})')
  targets = {names[r]: os.path.abspath(p) for r, p in outputs.items() if p}
  if len(set(targets.values())) < len(targets):
    raise ValueError(f'two networks would be written to the same file: {targets}')
  read = {'pix2pix': workdir_lib.export_weights, 'cyclegan': cyclegan_workdir.export_weights,
          'pix2pixhd': _pix2pixhd_weights}[method]
  step, state_dicts = read(workdir, which, tuple(targets))
  skipped = {}
  for name in list(targets):
    why = _untrained(workdir, step, name)
    if why and not folder:
      raise ValueError(why)
    if why:
      skipped[name] = why
      del targets[name]
  for path in targets.values():
    if os.path.exists(path) and not overwrite:
      raise ValueError(f'{path} exists; pass --overwrite to replace it')
  made = stopping.missing_folders(folder) if folder else ()
  # Folders made here go again unless every file is written (an error, a stop request).
  with (stopping.temporary(folder, keep_on_success=True, made=made) if made
        else contextlib.nullcontext()):
    if folder:
      os.makedirs(folder, exist_ok=True)
    files.write_pths({path: state_dicts[name] for name, path in targets.items()})
  return {'step': step, 'written': targets, 'skipped': skipped}
