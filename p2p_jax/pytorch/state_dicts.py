"""What every network's conversion shares: the entry list, tensor layouts, reading a dict.

A network's state_dict is described by a list of `Entry`s (one per tensor, in the
reference's order), each naming the p2p_jax variable it maps onto. `import_entries` and
`export_entries` walk such a list; weights.py (U-Net, PatchGAN) and resnet_weights.py
(ResNet) only say what the list is for an architecture. Numpy only.

Layouts: Conv2d weight [O, I, kh, kw] <-> HWIO kernel [kh, kw, I, O]. ConvTranspose2d
weight [I, O, kh, kw] <-> p2p_jax's transposed-conv kernel [kh, kw, I, O], spatially
flipped (p2p_jax applies it unflipped, as flax.linen.ConvTranspose; models/layers.py).
BatchNorm2d weight / bias / running_mean / running_var <-> params scale / bias and
batch_stats mean / var; num_batches_tracked is ignored on import and written on export
(the reference's momentum is fixed, so it never reads it).

Normalisation layouts ('batch', 'biased', 'bare'): running statistics next to a weight
mean BatchNorm ('batch'). Without norm tensors, convs that carry a bias mean 'instance'
(InstanceNorm2d without affine has no tensors) or 'none' as p2p_jax builds it (a bias on
every conv): the tensors cannot tell these apart ('biased'; pass norm='none' for the
latter). Without norm tensors and without those biases the dict is the reference's own
'none' ('bare': an identity in the norm's place, convs without bias); p2p_jax's 'none' has
biases there, which import as zeros and must be zero to export.

Files saved by PyTorch before 0.4 also hold InstanceNorm's `running_mean` / `running_var`
(and later ones `num_batches_tracked`) although the networks never use them; the reference
deletes them on load (its issues #262 and #529), and so does `clean`: statistics without a
`weight` beside them are an instance norm's (the reference's BatchNorm is always affine).
"""

import re
from typing import NamedTuple

import numpy as np


class StateDictError(ValueError):
  """A state dict or file that does not fit; the message is one line naming the key / file."""


class Entry(NamedTuple):
  key: str              # the reference's state_dict key
  collection: str       # 'params' or 'batch_stats'; '' for num_batches_tracked
  module: str           # p2p_jax module path, '/' between nested modules ('block1/conv2')
  name: str             # p2p_jax variable name
  kind: str             # 'conv', 'convT', 'vec' or 'count'
  shape: tuple          # the reference's tensor shape
  in_torch: bool = True  # False: a p2p_jax bias the reference's 'none' lacks (zero)


def conv(key, module, shape, layout, bias='norm', transpose=False):
  """Entries of one conv. bias: True (always there) or 'norm' (there unless BatchNorm
  follows; the reference's 'none' lacks it where p2p_jax has one)."""
  kind = 'convT' if transpose else 'conv'
  entries = [Entry(key + '.weight', 'params', module, 'kernel', kind, tuple(shape))]
  if bias is True or layout != 'batch':
    out = (shape[1] if transpose else shape[0],)
    in_torch = bias is True or layout == 'biased'
    entries.append(Entry(key + '.bias', 'params', module, 'bias', 'vec', out, in_torch))
  return entries


def norm(key, module, channels, layout):
  """Entries of a norm layer: BatchNorm's five tensors, or none."""
  if layout != 'batch':
    return []
  c = (channels,)
  return [Entry(key + '.weight', 'params', module, 'scale', 'vec', c),
          Entry(key + '.bias', 'params', module, 'bias', 'vec', c),
          Entry(key + '.running_mean', 'batch_stats', module, 'mean', 'vec', c),
          Entry(key + '.running_var', 'batch_stats', module, 'var', 'vec', c),
          Entry(key + '.num_batches_tracked', '', module, '', 'count', ())]


def fail(msg: str, source: str | None):
  raise StateDictError(f'{source}: {msg}' if source else msg)


_STATS = ('.running_mean', '.running_var', '.num_batches_tracked')


def clean(state_dict, source) -> dict:
  """Keys without DataParallel's 'module.' prefix, values as numpy arrays, order kept, an
  instance norm's running statistics (old files) dropped."""
  if not hasattr(state_dict, 'items') or not state_dict:
    fail(f'expected a non-empty state_dict (name -> tensor), got {type(state_dict).__name__}',
         source)
  out = {}  # insertion-ordered, as the state_dict
  for key, value in state_dict.items():
    if not isinstance(key, str):
      fail(f'expected a state_dict with string keys, got key {key!r}', source)
    if hasattr(value, 'detach'):  # a torch tensor
      value = value.detach().cpu().numpy()
    out[key[len('module.'):] if key.startswith('module.') else key] = np.asarray(value)
  return {k: v for k, v in out.items()
          if not (k.endswith(_STATS) and k.rsplit('.', 1)[0] + '.weight' not in out)}


def identify(sd: dict) -> str | None:
  """Which of the reference's networks a (cleaned) state dict is, from its first keys:
  'UnetGenerator', 'ResnetGenerator', 'NLayerDiscriminator', 'PixelDiscriminator' or
  None."""
  weight = lambda k: sd[k] if k in sd and np.ndim(sd[k]) == 4 else None
  if weight('model.model.0.weight') is not None:
    return 'UnetGenerator'
  first = weight('model.1.weight')
  if (first is not None and first.shape[2:] == (7, 7)) or any(
      re.match(r'model\.\d+\.conv_block\.', k) for k in sd):
    return 'ResnetGenerator'
  first = weight('model.0.weight')
  if first is not None and first.shape[2:] == (4, 4):
    return 'NLayerDiscriminator'
  if weight('net.0.weight') is not None:
    return 'PixelDiscriminator'
  return None


GENERATOR_KINDS = {'UnetGenerator': "pix2pix's generator",
                   'ResnetGenerator': "CycleGAN's generator"}
DISCRIMINATOR_KINDS = {'NLayerDiscriminator': 'the PatchGAN discriminator',
                       'PixelDiscriminator': 'the 1x1 PixelGAN discriminator'}


def describe(sd: dict) -> str:
  """'the reference's ResnetGenerator (CycleGAN's generator)', ... for messages."""
  kind = identify(sd)
  if kind is None:
    return 'none of the reference\'s networks'
  what = {**GENERATOR_KINDS, **DISCRIMINATOR_KINDS}[kind]
  return f"the reference's {kind} ({what})"


def shape4(sd, key, what, source):
  """The shape of 4-d tensor `key`; a missing first tensor names what the file holds."""
  if key not in sd:
    fail(f'{next(iter(sd))} is not a key of {what}: the file holds {describe(sd)}', source)
  if sd[key].ndim != 4:
    fail(f'{key} has shape {sd[key].shape}, expected a 4-d conv weight for {what}', source)
  return sd[key].shape


def layout_of(sd, bias_key, norm_name, source) -> str:
  """'batch', 'biased' or 'bare' from the (cleaned) tensors and the caller's norm (None:
  infer); bias_key: a conv bias that exists unless the layout is 'batch' or 'bare'."""
  if norm_name not in (None, 'batch', 'instance', 'none'):
    fail(f"norm must be 'batch', 'instance', 'none' or None, got {norm_name!r}", source)
  stats = any(k.endswith('.running_mean') for k in sd)  # instance norm's are gone (clean)
  if norm_name == 'batch' or (norm_name is None and stats):
    return 'batch'
  return 'biased' if bias_key in sd or norm_name == 'instance' else 'bare'


def arch_norm(layout, norm_name):
  """config.model.norm of a layout (a 'biased' one is instance norm unless told)."""
  return {'batch': 'batch', 'bare': 'none'}.get(layout, norm_name or 'instance')


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


def import_entries(sd, entries, what, source) -> dict:
  """{'params', 'batch_stats'} from `sd` laid out as `entries`; fails on the first misfit."""
  wanted = {e.key: e for e in entries if e.in_torch}
  for key, value in sd.items():
    e = wanted.get(key)
    if e is None:
      fail(f'unexpected key {key} for {what}', source)
    if e.kind != 'count' and tuple(value.shape) != e.shape:
      fail(f'{key} has shape {tuple(value.shape)}, expected {e.shape} for {what}', source)
  missing = [k for k, e in wanted.items() if e.kind != 'count' and k not in sd]
  if missing:
    fail(f'missing key {missing[0]} ({len(missing)} missing) for {what}', source)
  variables = {'params': {}, 'batch_stats': {}}
  for e in entries:
    if e.kind != 'count':
      a = sd[e.key] if e.in_torch else np.zeros(e.shape, np.float32)
      node = variables[e.collection]
      for part in e.module.split('/'):
        node = node.setdefault(part, {})
      node[e.name] = _to_flax(a, e.kind)
  return variables


def export_entries(variables, entries, what, num_batches_tracked) -> dict:
  """The state_dict (numpy, the entries' keys and order) of p2p_jax `variables`."""
  out = {}
  for e in entries:
    if e.kind == 'count':
      out[e.key] = np.array(num_batches_tracked, np.int64)
      continue
    try:
      a = variables[e.collection]
      for part in e.module.split('/') + [e.name]:
        a = a[part]
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


def export_layout(norm_name: str) -> str:
  """The layout p2p_jax's config.model.norm exports as."""
  return {'batch': 'batch', 'instance': 'biased'}.get(norm_name, 'bare')
