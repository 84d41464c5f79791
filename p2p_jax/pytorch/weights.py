"""Weights of the PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix) in and out.

The reference saves `net.state_dict()` of its UnetGenerator and its NLayerDiscriminator /
PixelDiscriminator (`latest_net_G.pth`, `latest_net_D.pth`). This module maps such a state
dict (name -> numpy array) onto p2p_jax's flax variables {'params', 'batch_stats'} and back,
inferring the architecture from the tensors alone. Numpy only: reading and writing .pth
files (files.py) is the only part that needs torch.

Layouts: Conv2d weight [O, I, kh, kw] <-> HWIO kernel [kh, kw, I, O]. ConvTranspose2d
weight [I, O, kh, kw] <-> p2p_jax's transposed-conv kernel [kh, kw, I, O], spatially
flipped (p2p_jax applies it unflipped, as flax.linen.ConvTranspose; layers.py).
BatchNorm2d weight / bias / running_mean / running_var <-> params scale / bias and
batch_stats mean / var; num_batches_tracked is ignored on import and written on export
(the reference's momentum is fixed, so it never reads it).

Normalisation from the tensors: running statistics mean 'batch'. Without them, convs that
carry a bias mean 'instance' (InstanceNorm2d without affine has no tensors) or 'none' as
p2p_jax builds it (a bias on every conv): the tensors cannot tell these apart, so pass
norm='none' for the latter. Without norm tensors and without those biases the dict is the
reference's own 'none' (an identity in the norm's place, convs without bias); p2p_jax's
'none' has biases there, which import as zeros and must be zero to export.
"""

from typing import NamedTuple

import numpy as np

from p2p_jax.models import GENERATORS


class StateDictError(ValueError):
  """A state dict or file that does not fit; the message is one line naming the key / file."""


class _Entry(NamedTuple):
  key: str              # the reference's state_dict key
  collection: str       # 'params' or 'batch_stats'; '' for num_batches_tracked
  module: str           # p2p_jax module name
  name: str             # p2p_jax variable name
  kind: str             # 'conv', 'convT', 'vec' or 'count'
  shape: tuple          # the reference's tensor shape
  in_torch: bool = True  # False: a p2p_jax bias the reference's 'none' lacks (zero)


def _conv(key, module, shape, layout, bias='norm', transpose=False):
  """Entries of one conv. bias: True (always there) or 'norm' (there unless BatchNorm
  follows; the reference's 'none' lacks it where p2p_jax has one)."""
  kind = 'convT' if transpose else 'conv'
  entries = [_Entry(key + '.weight', 'params', module, 'kernel', kind, tuple(shape))]
  if bias is True or layout != 'batch':
    out = (shape[1] if transpose else shape[0],)
    in_torch = bias is True or layout == 'biased'
    entries.append(_Entry(key + '.bias', 'params', module, 'bias', 'vec', out, in_torch))
  return entries


def _norm(key, module, channels, layout):
  if layout != 'batch':
    return []
  c = (channels,)
  return [_Entry(key + '.weight', 'params', module, 'scale', 'vec', c),
          _Entry(key + '.bias', 'params', module, 'bias', 'vec', c),
          _Entry(key + '.running_mean', 'batch_stats', module, 'mean', 'vec', c),
          _Entry(key + '.running_var', 'batch_stats', module, 'var', 'vec', c),
          _Entry(key + '.num_batches_tracked', '', module, '', 'count', ())]


def _unet_prefix(level: int) -> str:
  """Key prefix of nesting level `level` (0 = outermost) of the reference's U-Net."""
  return 'model.model.' if level == 0 else 'model.model.1.' + 'model.3.' * (level - 1) + 'model.'


def unet_entries(depth, ngf, cin, cout, layout, level=0):
  """The reference UnetGenerator's tensors in its state_dict order (each level's down conv,
  the inner levels, its up conv); layout 'batch', 'biased' or 'bare' (see above).

  Level L downsamples with p2p_jax's enc{L+1} and upsamples with dec{depth-L}.
  """
  w = [ngf * min(2 ** i, 8) for i in range(depth)]
  p, enc, dec = _unet_prefix(level), f'enc{level + 1}', f'dec{depth - level}'
  if level == depth - 1:  # innermost: no norm after the down conv (the 1x1 bottleneck)
    return (_conv(p + '1', enc, (w[-1], w[-2], 4, 4), layout)
            + _conv(p + '3', dec, (w[-1], w[-2], 4, 4), layout, transpose=True)
            + _norm(p + '4', dec + '_norm', w[-2], layout))
  inner = unet_entries(depth, ngf, cin, cout, layout, level + 1)
  if level == 0:
    return (_conv(p + '0', enc, (w[0], cin, 4, 4), layout) + inner
            + _conv(p + '3', dec, (2 * w[0], cout, 4, 4), layout, True, True))
  up = w[level - 1]
  return (_conv(p + '1', enc, (w[level], up, 4, 4), layout)
          + _norm(p + '2', enc + '_norm', w[level], layout) + inner
          + _conv(p + '5', dec, (2 * w[level], up, 4, 4), layout, transpose=True)
          + _norm(p + '6', dec + '_norm', up, layout))


def patchgan_entries(n_layers, ndf, cin, layout):
  """The reference NLayerDiscriminator's (n_layers >= 1) or PixelDiscriminator's tensors."""
  if n_layers == 0:
    return (_conv('net.0', 'conv1', (ndf, cin, 1, 1), layout, True)
            + _conv('net.2', 'conv2', (2 * ndf, ndf, 1, 1), layout)
            + _norm('net.3', 'conv2_norm', 2 * ndf, layout)
            + _conv('net.5', 'conv3', (1, 2 * ndf, 1, 1), layout))
  w = [ndf * min(2 ** n, 8) for n in range(n_layers + 1)]
  out = _conv('model.0', 'conv1', (ndf, cin, 4, 4), layout, True)
  for k in range(1, n_layers + 1):
    out += _conv(f'model.{3 * k - 1}', f'conv{k + 1}', (w[k], w[k - 1], 4, 4), layout)
    out += _norm(f'model.{3 * k}', f'conv{k + 1}_norm', w[k], layout)
  last = f'model.{3 * n_layers + 2}'
  return out + _conv(last, f'conv{n_layers + 2}', (1, w[-1], 4, 4), layout, True)


# ---------------------------------------------------------------- import


def _fail(msg: str, source: str | None):
  raise StateDictError(f'{source}: {msg}' if source else msg)


def _clean(state_dict, source) -> dict:
  """Keys without DataParallel's 'module.' prefix, values as numpy arrays, order kept."""
  if not hasattr(state_dict, 'items') or not state_dict:
    _fail(f'expected a non-empty state_dict (name -> tensor), got {type(state_dict).__name__}',
          source)
  out = {}  # insertion-ordered, as the state_dict
  for key, value in state_dict.items():
    if hasattr(value, 'detach'):  # a torch tensor
      value = value.detach().cpu().numpy()
    out[key[len('module.'):] if key.startswith('module.') else key] = np.asarray(value)
  return out


def _to_flax(a: np.ndarray, kind: str) -> np.ndarray:
  a = np.asarray(a, np.float32)
  if kind == 'conv':
    return np.ascontiguousarray(a.transpose(2, 3, 1, 0))
  if kind == 'convT':
    return np.ascontiguousarray(np.flip(a, (2, 3)).transpose(2, 3, 0, 1))
  return a


def _from_flax(a, kind: str) -> np.ndarray:
  a = np.asarray(a, np.float32)
  if kind == 'conv':
    return np.ascontiguousarray(a.transpose(3, 2, 0, 1))
  if kind == 'convT':
    return np.ascontiguousarray(np.flip(a.transpose(2, 3, 0, 1), (2, 3)))
  return a


def _import(sd, entries, what, source) -> dict:
  """{'params', 'batch_stats'} from `sd` laid out as `entries`; fails on the first misfit."""
  wanted = {e.key: e for e in entries if e.in_torch}
  for key, value in sd.items():
    e = wanted.get(key)
    if e is None:
      _fail(f'unexpected key {key} for {what}', source)
    if e.kind != 'count' and tuple(value.shape) != e.shape:
      _fail(f'{key} has shape {tuple(value.shape)}, expected {e.shape} for {what}', source)
  missing = [k for k, e in wanted.items() if e.kind != 'count' and k not in sd]
  if missing:
    _fail(f'missing key {missing[0]} ({len(missing)} missing) for {what}', source)
  variables = {'params': {}, 'batch_stats': {}}
  for e in entries:
    if e.kind != 'count':
      a = sd[e.key] if e.in_torch else np.zeros(e.shape, np.float32)
      variables[e.collection].setdefault(e.module, {})[e.name] = _to_flax(a, e.kind)
  return variables


def _layout(sd, bias_key, norm, source) -> str:
  """'batch', 'biased' or 'bare' from the tensors and the caller's norm (None: infer)."""
  if norm not in (None, 'batch', 'instance', 'none'):
    _fail(f"norm must be 'batch', 'instance', 'none' or None, got {norm!r}", source)
  stats = any(k.endswith('.running_mean') for k in sd)
  if norm == 'batch' or (norm is None and stats):
    return 'batch'
  return 'biased' if bias_key in sd or norm == 'instance' else 'bare'


def _shape4(sd, key, what, source):
  if key not in sd:
    _fail(f'{next(iter(sd))} is not a key of {what} (its first tensor {key} is missing)',
          source)
  if sd[key].ndim != 4:
    _fail(f'{key} has shape {sd[key].shape}, expected a 4-d conv weight for {what}', source)
  return sd[key].shape


def generator_from_torch(state_dict, norm: str | None = None, source: str | None = None):
  """The reference's UnetGenerator weights as p2p_jax generator variables.

  Returns (variables, arch): variables {'params', 'batch_stats'} (numpy), arch the config
  `model` fields it implies (generator, ngf, in_channels, out_channels, norm,
  dropout_placement='pytorch'). norm: None infers it ('instance' when there are biases
  but no norm tensors; pass 'none' for a bias-carrying net without norm). source: a file
  name for the messages. Raises StateDictError naming the first key that does not fit.
  """
  sd, what = _clean(state_dict, source), "the reference's UnetGenerator"
  ngf, cin = _shape4(sd, 'model.model.0.weight', what, source)[:2]
  depth, p = 1, 'model.model.1.'
  while p + 'model.1.weight' in sd:
    depth, p = depth + 1, p + 'model.3.'
  name = f'unet_{2 ** depth}'
  if name not in GENERATORS:
    _fail(f'a U-Net with {depth} levels ({name}) is not one of p2p_jax\'s generators '
          f'(unet_32 .. unet_256)', source)
  cout = _shape4(sd, 'model.model.3.weight', what, source)[1]
  layout = _layout(sd, _unet_prefix(1) + '1.bias', norm, source)
  what = f'{what} {name}, ngf {ngf}, {layout} layout'
  variables = _import(sd, unet_entries(depth, ngf, cin, cout, layout), what, source)
  arch = dict(generator=name, ngf=int(ngf), in_channels=int(cin), out_channels=int(cout),
              norm=_arch_norm(layout, norm), dropout_placement='pytorch')
  return variables, arch


def _arch_norm(layout, norm):
  return {'batch': 'batch', 'bare': 'none'}.get(layout, norm or 'instance')


def discriminator_from_torch(state_dict, norm: str | None = None, source: str | None = None):
  """The reference's NLayerDiscriminator / PixelDiscriminator weights as p2p_jax PatchGAN
  variables. Returns (variables, arch) with arch {ndf, d_layers, norm} (d_layers 0: the
  PixelGAN); D's input channels are variables['params']['conv1']['kernel'].shape[2].
  norm, source, errors: as `generator_from_torch`."""
  sd = _clean(state_dict, source)
  pixel = 'net.0.weight' in sd
  what = "the reference's " + ('PixelDiscriminator' if pixel else 'NLayerDiscriminator')
  ndf, cin = _shape4(sd, 'net.0.weight' if pixel else 'model.0.weight', what, source)[:2]
  n_layers = 0
  if not pixel:  # n_layers + 2 convs at model.0, 2, 5, 8, ...
    convs = sum(1 for k, v in sd.items()
                if k.startswith('model.') and k.endswith('.weight') and v.ndim == 4)
    n_layers = max(convs - 2, 1)
  layout = _layout(sd, 'net.2.bias' if pixel else 'model.2.bias', norm, source)
  what = f'{what} with n_layers {n_layers}, ndf {ndf}, {layout} layout'
  variables = _import(sd, patchgan_entries(n_layers, ndf, cin, layout), what, source)
  return variables, dict(ndf=int(ndf), d_layers=n_layers, norm=_arch_norm(layout, norm))


def from_torch(g_state_dict, d_state_dict=None, norm: str | None = None,
               g_source: str | None = None, d_source: str | None = None):
  """Both networks: (g_variables, d_variables or None, arch) with arch the config `model`
  fields of both; checks that they share the norm and that D sees x and y (in + out)."""
  g, arch = generator_from_torch(g_state_dict, norm, g_source)
  if d_state_dict is None:
    return g, None, arch
  d, d_arch = discriminator_from_torch(d_state_dict, norm or arch['norm'], d_source)
  cin = d['params']['conv1']['kernel'].shape[2]
  if cin != arch['in_channels'] + arch['out_channels']:
    _fail(f"D's first conv takes {cin} channels, but pix2pix's D sees x and G(x): "
          f"{arch['in_channels']} + {arch['out_channels']}", d_source)
  if d_arch['norm'] != arch['norm']:
    _fail(f"D uses norm {d_arch['norm']!r}, G {arch['norm']!r}; p2p_jax's model.norm is "
          'shared', d_source)
  return g, d, {**arch, **d_arch}


# ---------------------------------------------------------------- export


def _export(variables, entries, what, num_batches_tracked) -> dict:
  out = {}
  for e in entries:
    if e.kind == 'count':
      out[e.key] = np.array(num_batches_tracked, np.int64)
      continue
    try:
      a = variables[e.collection][e.module][e.name]
    except (KeyError, TypeError):
      raise StateDictError(f'{what}: variable {e.collection}/{e.module}/{e.name} is missing '
                           f'(needed for {e.key})') from None
    a = _from_flax(a, e.kind)
    if a.shape != e.shape:
      raise StateDictError(f'{what}: {e.collection}/{e.module}/{e.name} gives {e.key} shape '
                           f'{a.shape}, expected {e.shape}')
    if not e.in_torch:
      if np.any(a != 0):
        raise StateDictError(f"{what}: {e.module}/bias is not zero, but the reference's "
                             "norm='none' convs have no bias; not exportable")
      continue
    out[e.key] = a
  return out


def _get(cfg, field):
  return cfg[field]  # ConfigDict and dict alike


def generator_to_torch(variables, model_config, num_batches_tracked: int = 0) -> dict:
  """p2p_jax generator variables -> the reference UnetGenerator's state_dict (numpy, the
  reference's key names and order, num_batches_tracked included for BatchNorm, so that
  load_state_dict(strict=True) takes it). model_config: the config's `model` block."""
  name = _get(model_config, 'generator')
  depth, skips = GENERATORS.get(name, (None, False))
  if not skips:
    raise StateDictError(f'generator {name!r} has no counterpart in the reference '
                         '(only the unet_* U-Nets do)')
  upsample = model_config.get('upsample', 'transposed')
  if upsample != 'transposed':
    raise StateDictError(f"model.upsample={upsample!r} has no counterpart in the reference "
                         "(its decoder uses 4x4 transposed convs: model.upsample='transposed')")
  layout = {'batch': 'batch', 'instance': 'biased'}.get(_get(model_config, 'norm'), 'bare')
  entries = unet_entries(depth, _get(model_config, 'ngf'), _get(model_config, 'in_channels'),
                         _get(model_config, 'out_channels'), layout)
  return _export(variables, entries, name, num_batches_tracked)


def discriminator_to_torch(variables, model_config, num_batches_tracked: int = 0) -> dict:
  """p2p_jax PatchGAN variables -> the reference NLayerDiscriminator's state_dict
  (PixelDiscriminator's for d_layers 0); as `generator_to_torch`."""
  layout = {'batch': 'batch', 'instance': 'biased'}.get(_get(model_config, 'norm'), 'bare')
  try:
    cin = variables['params']['conv1']['kernel'].shape[2]
  except (KeyError, TypeError):
    raise StateDictError('discriminator: variable params/conv1/kernel is missing') from None
  n_layers = _get(model_config, 'd_layers')
  entries = patchgan_entries(n_layers, _get(model_config, 'ndf'), cin, layout)
  return _export(variables, entries, f'PatchGAN d_layers={n_layers}', num_batches_tracked)
