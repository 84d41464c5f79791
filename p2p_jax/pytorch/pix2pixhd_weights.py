"""pix2pixHD's weights (NVIDIA/pix2pixHD) in and out: state dicts <-> p2p_jax variables.

The official code saves `netG.state_dict()` (`latest_net_G.pth`: a GlobalGenerator or a
LocalEnhancer), `netD.state_dict()` (a MultiscaleDiscriminator) and, with --instance_feat /
--label_feat, `netE.state_dict()` (`latest_net_E.pth`: the feature Encoder). This module
maps them onto the parameters of p2p_jax/models/pix2pixhd.py, multiscale_d.py and
feature_encoder.py and back, the architecture read from the tensors (numpy only; files.py
reads and writes the files):

  GlobalGenerator   model.1 conv_in, model.<4+3i> down<i+1>, model.<b>.conv_block.1|5
                    block<k>/conv1|conv2, model.<u> up<i+1> (transposed), model.<last> conv_out
  LocalEnhancer     the same under model/ (no conv_out), model<n>_1.1|4 conv_in|down,
                    model<n>_2.<k>.conv_block.1|5, model<n>_2.<nb> up, model<N>_2.<nb+4> conv_out
  Encoder           as a GlobalGenerator with no blocks: model.1 conv_in, model.<4+3i>
                    down<i+1>, model.<4+3(n+i)> up<i+1>, model.<4+6n+1> conv_out
  MultiscaleD       scale<s>_layer<j>.0 (trained with feature matching), or layer<s>.<i>
                    (without: one Sequential per scale, convs at 0, 2, 5, 8, ...)

Every conv has a bias; instance norm has no tensors. Conv2d weight [O, I, kh, kw] <-> HWIO
[kh, kw, I, O]; ConvTranspose2d weight [I, O, kh, kw] <-> HWIO spatially flipped (p2p_jax
applies transposed-conv kernels unflipped, models/layers.py).
"""

import re

import numpy as np

from p2p_jax.pytorch.weights import StateDictError


def _fail(msg: str, source: str | None):
  raise StateDictError(f'{source}: {msg}' if source else msg)


def _clean(state_dict, source) -> dict:
  """Keys without DataParallel's 'module.' prefix, numpy values, order kept."""
  if not hasattr(state_dict, 'items') or not state_dict:
    _fail(f'expected a non-empty state_dict (name -> tensor), got {type(state_dict).__name__}',
          source)
  out = {}
  for key, value in state_dict.items():
    if hasattr(value, 'detach'):
      value = value.detach().cpu().numpy()
    # A copy: a live network's tensors share memory with its numpy views, and its
    # optimiser would otherwise change the converted arrays in place.
    out[key[len('module.'):] if key.startswith('module.') else key] = np.array(value)
  return out


def is_local_enhancer(state_dict) -> bool:
  """Whether a state dict is the official LocalEnhancer's (`model1_1.` keys)."""
  return any(k.startswith(('model1_1.', 'module.model1_1.')) for k in state_dict)


# ---------------------------------------------------------------- the key lists

def _conv(key, path, transpose=False):
  kind = 'convT' if transpose else 'conv'
  return [(key + '.weight', path + ('kernel',), kind), (key + '.bias', path + ('bias',), 'vec')]


def _global_entries(prefix, path, n_down, n_blocks, final=True):
  out = _conv(f'{prefix}1', path + ('conv_in',))
  for i in range(n_down):
    out += _conv(f'{prefix}{4 + 3 * i}', path + (f'down{i + 1}',))
  base = 4 + 3 * n_down
  for k in range(n_blocks):
    for idx, name in ((1, 'conv1'), (5, 'conv2')):
      out += _conv(f'{prefix}{base + k}.conv_block.{idx}', path + (f'block{k + 1}', name))
  base += n_blocks
  for i in range(n_down):
    out += _conv(f'{prefix}{base + 3 * i}', path + (f'up{i + 1}',), transpose=True)
  if final:
    out += _conv(f'{prefix}{base + 3 * n_down + 1}', path + ('conv_out',))
  return out


def generator_entries(arch: dict) -> list[tuple[str, tuple, str]]:
  """(state_dict key, p2p_jax parameter path, kind) of every tensor, in the official
  order, for arch {'generator', 'n_downsample_global', 'n_blocks_global',
  'n_local_enhancers', 'n_blocks_local'}."""
  n_down, n_blocks = arch['n_downsample_global'], arch['n_blocks_global']
  if arch['generator'] == 'pix2pixhd_global':
    return _global_entries('model.', (), n_down, n_blocks)
  out = _global_entries('model.', ('model',), n_down, n_blocks, final=False)
  n_local, nb = arch['n_local_enhancers'], arch['n_blocks_local']
  for n in range(1, n_local + 1):
    out += _conv(f'model{n}_1.1', (f'model{n}_1', 'conv_in'))
    out += _conv(f'model{n}_1.4', (f'model{n}_1', 'down'))
    for k in range(nb):
      for idx, name in ((1, 'conv1'), (5, 'conv2')):
        out += _conv(f'model{n}_2.{k}.conv_block.{idx}', (f'model{n}_2', f'block{k + 1}', name))
    out += _conv(f'model{n}_2.{nb}', (f'model{n}_2', 'up'), transpose=True)
    if n == n_local:
      out += _conv(f'model{n}_2.{nb + 4}', (f'model{n}_2', 'conv_out'))
  return out


def discriminator_entries(num_d: int, n_layers: int, intermediate: bool = True):
  """As generator_entries for a MultiscaleDiscriminator; `intermediate`: the key layout
  of a D trained with feature matching (getIntermFeat), else one Sequential per scale."""
  out = []
  for s in range(num_d):
    for j in range(n_layers + 2):
      key = f'scale{s}_layer{j}.0' if intermediate else f'layer{s}.{max(3 * j - 1, 0)}'
      out += _conv(key, (f'scale{s}', f'layer{j}'))
  return out


# ---------------------------------------------------------------- tensors

def _to_flax(a, kind):
  a = np.asarray(a, np.float32)
  if kind == 'conv':
    return np.ascontiguousarray(a.transpose(2, 3, 1, 0))
  if kind == 'convT':
    return np.ascontiguousarray(np.flip(a, (2, 3)).transpose(2, 3, 0, 1))
  return a


def _from_flax(a, kind):
  a = np.asarray(a, np.float32)
  if kind == 'conv':
    return np.ascontiguousarray(a.transpose(3, 2, 0, 1))
  if kind == 'convT':
    return np.ascontiguousarray(np.flip(a.transpose(2, 3, 0, 1), (2, 3)))
  return a


def _import(sd, entries, what, source) -> dict:
  wanted = {key for key, _, _ in entries}
  for key in sd:
    if key not in wanted:
      _fail(f'unexpected key {key} for {what}', source)
  missing = [key for key, _, _ in entries if key not in sd]
  if missing:
    _fail(f'missing key {missing[0]} ({len(missing)} missing) for {what}', source)
  params = {}
  for key, path, kind in entries:
    node = params
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = _to_flax(sd[key], kind)
  return params


def _export(params, entries, what) -> dict:
  out = {}
  for key, path, kind in entries:
    node = params
    try:
      for part in path:
        node = node[part]
    except (KeyError, TypeError):
      raise StateDictError(f'{what}: parameter {"/".join(path)} is missing (needed for '
                           f'{key})') from None
    out[key] = _from_flax(node, kind)
  return out


# ---------------------------------------------------------------- generators

def _count(pattern, keys) -> int:
  return len({m.group(1) for k in keys for m in [re.match(pattern, k)] if m})


def generator_arch(state_dict, source: str | None = None) -> dict:
  """The architecture the tensors of an official generator imply: generator
  ('pix2pixhd_global' / 'pix2pixhd_local'), ngf, input_nc, output_nc,
  n_downsample_global, n_blocks_global, n_local_enhancers, n_blocks_local."""
  sd = _clean(state_dict, source)
  what = "pix2pixHD's generator"
  if 'model.1.weight' not in sd or np.ndim(sd['model.1.weight']) != 4:
    _fail(f'{next(iter(sd))} is not a key of {what} (its first conv, model.1.weight, is '
          'missing)', source)
  first = sd['model.1.weight']
  n_down = 0
  while f'model.{4 + 3 * n_down}.weight' in sd:
    n_down += 1
  n_blocks = _count(r'model\.(\d+)\.conv_block\.', sd)
  local = is_local_enhancer(sd)
  arch = dict(n_downsample_global=n_down, n_blocks_global=n_blocks, input_nc=first.shape[1],
              n_local_enhancers=0, n_blocks_local=0)
  if not local:
    last = f'model.{4 + 6 * n_down + n_blocks + 1}.weight'
    if last not in sd:
      # No blocks and a last conv one index after an even run of 3x3 convs: the layout of
      # the feature encoder (latest_net_E.pth), whose upsamplings continued the run.
      encoder = (not n_blocks and not n_down % 2
                 and f'model.{4 + 3 * n_down + 1}.weight' in sd)
      _fail(f'missing key {last} (the last conv) for {what}, a GlobalGenerator with '
            f'{n_down} downsamplings and {n_blocks} blocks'
            + (' (the feature encoder\'s layout: encoder_from_torch reads it)' if encoder
               else ''), source)
    return dict(arch, generator='pix2pixhd_global', ngf=int(first.shape[0]),
                output_nc=int(sd[last].shape[0]))
  n_local = _count(r'model(\d+)_1\.', sd)
  nb = _count(r'model1_2\.(\d+)\.conv_block\.', sd)
  last = f'model{n_local}_2.{nb + 4}.weight'
  if 'model1_1.1.weight' not in sd or last not in sd:
    _fail(f'missing key {last} (the last conv) for {what}, a LocalEnhancer with {n_local} '
          f'enhancers of {nb} blocks', source)
  return dict(arch, generator='pix2pixhd_local', n_local_enhancers=n_local, n_blocks_local=nb,
              ngf=int(sd[f'model{n_local}_1.1.weight'].shape[0]),
              output_nc=int(sd[last].shape[0]))


def generator_from_torch(state_dict, source: str | None = None) -> tuple[dict, dict]:
  """(params, arch) of an official GlobalGenerator or LocalEnhancer state dict; raises
  StateDictError naming the first key that does not fit."""
  arch = generator_arch(state_dict, source)
  sd = _clean(state_dict, source)
  entries = generator_entries(arch)
  what = f"pix2pixHD's {arch['generator']} generator (ngf {arch['ngf']})"
  for key, path, kind in entries:
    if key in sd and np.ndim(sd[key]) != (1 if kind == 'vec' else 4):
      _fail(f'{key} has shape {sd[key].shape} for {what}', source)
  return _import(sd, entries, what, source), arch


def generator_to_torch(params, arch: dict) -> dict:
  """p2p_jax generator parameters -> the official state dict (its key names and order),
  which its GlobalGenerator / LocalEnhancer load with load_state_dict(strict=True)."""
  return _export(params, generator_entries(arch), f"pix2pixHD's {arch['generator']}")


# ---------------------------------------------------------------- the feature encoder

_ENCODER = "pix2pixHD's feature encoder (netE)"


def encoder_entries(arch: dict) -> list[tuple[str, tuple, str]]:
  """As generator_entries for the official Encoder of arch {'n_downsample_E', ...}: its
  layer list is a GlobalGenerator's with no residual blocks, and so are its keys and
  FeatureEncoder's parameter names (conv_in, down<i>, up<i>, conv_out at the top level)."""
  return _global_entries('model.', (), arch['n_downsample_E'], 0)


def encoder_arch(state_dict, source: str | None = None) -> dict:
  """{'input_nc', 'feat_num', 'nef', 'n_downsample_E'} of an official Encoder state dict.

  generator_arch cannot read one: it counts the keys model.4, model.7, ... (a 3x3 layer
  every 3 indices: conv, norm, ReLU) as downsamplings, and without residual blocks in
  between the transposed convs continue that run, so an Encoder with n downsamplings
  reads as a GlobalGenerator with 2n. Here the run holds both halves: 2n layers, then the
  last 7x7 conv 4 indices after the last of them (norm, ReLU, ReflectionPad2d, conv).
  """
  sd = _clean(state_dict, source)
  for key in sd:
    if not re.fullmatch(r'model\.\d+\.(weight|bias)', key):
      # A generator's file has residual blocks (model.<b>.conv_block.) or, a LocalEnhancer,
      # model1_1. keys; an Encoder trained with batch norm has running statistics.
      hint = (' (a generator\'s, latest_net_G.pth?)' if 'conv_block' in key or
              key.startswith('model1_') else '')
      _fail(f'unexpected key {key} for {_ENCODER}{hint}', source)
  if np.ndim(sd.get('model.1.weight')) != 4:
    _fail(f'missing key model.1.weight (the first conv) for {_ENCODER}', source)
  run = 0
  while f'model.{4 + 3 * run}.weight' in sd:
    run += 1
  n_down, last = run // 2, f'model.{4 + 3 * run + 1}.weight'
  if run % 2 or np.ndim(sd.get(last)) != 4:
    _fail(f'missing key {last} (the last conv) for {_ENCODER}, after {run} 3x3 layers at '
          'model.4, model.7, ... (n_downsample_E down, as many up)', source)
  first = sd['model.1.weight']
  return dict(input_nc=int(first.shape[1]), feat_num=int(sd[last].shape[0]),
              nef=int(first.shape[0]), n_downsample_E=n_down)


def _encoder_shapes(arch) -> dict:
  """The official Encoder's tensor shapes (torch layouts) for arch."""
  nef, n = arch['nef'], arch['n_downsample_E']
  weights = {1: (nef, arch['input_nc'], 7, 7), 4 + 6 * n + 1: (arch['feat_num'], nef, 7, 7)}
  for i in range(n):
    # Conv2d [out, in], nef 2^i -> nef 2^(i+1); ConvTranspose2d [in, out], back down.
    weights[4 + 3 * i] = (nef * 2 ** (i + 1), nef * 2 ** i, 3, 3)
    weights[4 + 3 * (n + i)] = (nef * 2 ** (n - i), nef * 2 ** (n - i - 1), 3, 3)
  shapes = {}
  for index, shape in weights.items():
    transposed = 4 + 3 * n <= index < 4 + 6 * n
    shapes[f'model.{index}.weight'] = shape
    shapes[f'model.{index}.bias'] = (shape[1] if transposed else shape[0],)
  return shapes


def encoder_from_torch(state_dict, source: str | None = None) -> tuple[dict, dict]:
  """(params, arch) of an official Encoder state dict (latest_net_E.pth): params are
  FeatureEncoder's (models/feature_encoder.py), arch as encoder_arch. Raises
  StateDictError naming the source and the first key that does not fit."""
  arch = encoder_arch(state_dict, source)
  sd = _clean(state_dict, source)
  what = f"{_ENCODER} (nef {arch['nef']}, {arch['n_downsample_E']} downsamplings)"
  # Shapes checked here, not left to the first forward: the widths must double and halve
  # as the official layer list makes them, or the file is another network's.
  for key, shape in _encoder_shapes(arch).items():
    if key in sd and tuple(np.shape(sd[key])) != shape:
      _fail(f'{key} has shape {tuple(np.shape(sd[key]))}, expected {shape} for {what}',
            source)
  return _import(sd, encoder_entries(arch), what, source), arch


def encoder_to_torch(params, arch: dict) -> dict:
  """FeatureEncoder parameters -> the official Encoder's state dict (its key names and
  order), which the official models/networks.py Encoder loads with
  load_state_dict(strict=True)."""
  return _export(params, encoder_entries(arch), _ENCODER)


def discriminator_arch(state_dict, source: str | None = None) -> dict:
  """{'num_D', 'n_layers_D', 'ndf', 'input_nc', 'intermediate'} of an official
  MultiscaleDiscriminator state dict."""
  sd = _clean(state_dict, source)
  intermediate = 'scale0_layer0.0.weight' in sd
  first = sd.get('scale0_layer0.0.weight' if intermediate else 'layer0.0.weight')
  if first is None or np.ndim(first) != 4:
    _fail(f'{next(iter(sd))} is not a key of pix2pixHD\'s MultiscaleDiscriminator '
          '(scale0_layer0.0.weight or layer0.0.weight is missing)', source)
  if intermediate:
    num_d = _count(r'scale(\d+)_layer', sd)
    n_layers = _count(r'scale0_layer(\d+)\.', sd) - 2
  else:
    num_d = _count(r'layer(\d+)\.', sd)
    n_layers = _count(r'layer0\.(\d+)\.weight', sd) - 2
  return dict(num_D=num_d, n_layers_D=n_layers, ndf=int(first.shape[0]),
              input_nc=int(first.shape[1]), intermediate=intermediate)


def discriminator_from_torch(state_dict, source: str | None = None) -> tuple[dict, dict]:
  """(params, arch) of an official MultiscaleDiscriminator state dict."""
  arch = discriminator_arch(state_dict, source)
  entries = discriminator_entries(arch['num_D'], arch['n_layers_D'], arch['intermediate'])
  what = f"pix2pixHD's MultiscaleDiscriminator ({arch['num_D']} scales)"
  return _import(_clean(state_dict, source), entries, what, source), arch


def discriminator_to_torch(params, num_d: int, n_layers: int,
                           intermediate: bool = True) -> dict:
  """p2p_jax MultiscaleDiscriminator parameters -> the official state dict (the
  feature-matching layout unless `intermediate` is False)."""
  return _export(params, discriminator_entries(num_d, n_layers, intermediate),
                 "pix2pixHD's MultiscaleDiscriminator")
