"""Weights of the PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix) in and out.

The reference saves `net.state_dict()` of its generators (UnetGenerator, ResnetGenerator)
and discriminators (NLayerDiscriminator, PixelDiscriminator) as `latest_net_G.pth`,
`latest_net_D.pth` (pix2pix) or `latest_net_G_A.pth` ... `latest_net_D_B.pth` (CycleGAN).
This module maps such a state dict (name -> numpy array) onto p2p_jax's flax variables
{'params', 'batch_stats'} and back, inferring the architecture from the tensors alone:
the U-Net and the PatchGANs here, the ResNet in resnet_weights.py, what they share
(layouts, normalisation inference, old files' instance-norm statistics) in
state_dicts.py. `generator_from_torch` / `generator_to_torch` take either generator.
Numpy only: reading and writing .pth files (files.py) is the only part that needs torch.
"""

from p2p_jax.models import GENERATORS, RESNET_GENERATORS
from p2p_jax.pytorch import resnet_weights, state_dicts as sdl
from p2p_jax.pytorch.state_dicts import StateDictError  # noqa: F401  (this module's error)

_conv, _norm, _fail = sdl.conv, sdl.norm, sdl.fail

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


def unet_from_torch(state_dict, norm: str | None = None, source: str | None = None):
  """The reference's UnetGenerator weights as p2p_jax generator variables.

  Returns (variables, arch): variables {'params', 'batch_stats'} (numpy), arch the config
  `model` fields it implies (generator, ngf, in_channels, out_channels, norm,
  dropout_placement='pytorch'). norm: None infers it ('instance' when there are biases
  but no norm tensors; pass 'none' for a bias-carrying net without norm). source: a file
  name for the messages. Raises StateDictError naming the first key that does not fit.
  """
  sd, what = sdl.clean(state_dict, source), "the reference's UnetGenerator"
  ngf, cin = sdl.shape4(sd, 'model.model.0.weight', what, source)[:2]
  depth, p = 1, 'model.model.1.'
  while p + 'model.1.weight' in sd:
    depth, p = depth + 1, p + 'model.3.'
  name = f'unet_{2 ** depth}'
  if name not in GENERATORS:
    _fail(f'a U-Net with {depth} levels ({name}) is not one of p2p_jax\'s generators '
          f'(unet_32 .. unet_256)', source)
  cout = sdl.shape4(sd, 'model.model.3.weight', what, source)[1]
  layout = sdl.layout_of(sd, _unet_prefix(1) + '1.bias', norm, source)
  what = f'{what} {name}, ngf {ngf}, {layout} layout'
  variables = sdl.import_entries(sd, unet_entries(depth, ngf, cin, cout, layout), what, source)
  arch = dict(generator=name, ngf=int(ngf), in_channels=int(cin), out_channels=int(cout),
              norm=sdl.arch_norm(layout, norm), dropout_placement='pytorch')
  return variables, arch


def generator_from_torch(state_dict, norm: str | None = None, source: str | None = None):
  """Either of the reference's generators (UnetGenerator: `unet_from_torch`;
  ResnetGenerator: resnet_weights.resnet_from_torch), told apart by its keys; returns
  (variables, arch). A discriminator's or an unknown dict raises StateDictError naming
  what the file holds."""
  sd = sdl.clean(state_dict, source)
  kind = sdl.identify(sd)
  if kind == 'ResnetGenerator':
    return resnet_weights.resnet_from_torch(sd, norm, source)
  if kind == 'UnetGenerator' or kind is None:
    return unet_from_torch(sd, norm, source)
  _fail(f'{next(iter(sd))} is not a key of a generator (UnetGenerator, ResnetGenerator): '
        f'the file holds {sdl.describe(sd)}, not a generator', source)


def discriminator_from_torch(state_dict, norm: str | None = None, source: str | None = None):
  """The reference's NLayerDiscriminator / PixelDiscriminator weights as p2p_jax PatchGAN
  variables. Returns (variables, arch) with arch {ndf, d_layers, norm} (d_layers 0: the
  PixelGAN); D's input channels are variables['params']['conv1']['kernel'].shape[2].
  norm, source, errors: as `unet_from_torch`."""
  sd = sdl.clean(state_dict, source)
  pixel = 'net.0.weight' in sd
  what = "the reference's " + ('PixelDiscriminator' if pixel else 'NLayerDiscriminator')
  ndf, cin = sdl.shape4(sd, 'net.0.weight' if pixel else 'model.0.weight', what, source)[:2]
  n_layers = 0
  if not pixel:  # n_layers + 2 convs at model.0, 2, 5, 8, ...
    convs = sum(1 for k, v in sd.items()
                if k.startswith('model.') and k.endswith('.weight') and v.ndim == 4)
    n_layers = max(convs - 2, 1)
  layout = sdl.layout_of(sd, 'net.2.bias' if pixel else 'model.2.bias', norm, source)
  what = f'{what} with n_layers {n_layers}, ndf {ndf}, {layout} layout'
  variables = sdl.import_entries(sd, patchgan_entries(n_layers, ndf, cin, layout), what,
                                 source)
  return variables, dict(ndf=int(ndf), d_layers=n_layers, norm=sdl.arch_norm(layout, norm))


def from_torch(g_state_dict, d_state_dict=None, norm: str | None = None,
               g_source: str | None = None, d_source: str | None = None):
  """pix2pix's two networks: (g_variables, d_variables or None, arch) with arch the config
  `model` fields of both; checks that they share the norm and that D sees x and y (in +
  out channels)."""
  g, arch = generator_from_torch(g_state_dict, norm, g_source)
  if d_state_dict is None:
    return g, None, arch
  d, d_arch = discriminator_from_torch(d_state_dict, norm, d_source)  # checked below
  cin = d['params']['conv1']['kernel'].shape[2]
  if cin != arch['in_channels'] + arch['out_channels']:
    one_image = ' (a D of one image, as CycleGAN\'s D_A / D_B)' if cin in (
        arch['in_channels'], arch['out_channels']) else ''
    _fail(f"D's first conv takes {cin} channels{one_image}, but pix2pix's D sees x and G(x): "
          f"{arch['in_channels']} + {arch['out_channels']}", d_source)
  if d_arch['norm'] != arch['norm']:
    _fail(f"D uses norm {d_arch['norm']!r}, G {arch['norm']!r}; p2p_jax's model.norm is "
          'shared', d_source)
  return g, d, {**arch, **d_arch}


# ---------------------------------------------------------------- export


def _get(cfg, field):
  return cfg[field]  # ConfigDict and dict alike


def generator_to_torch(variables, model_config, num_batches_tracked: int = 0, *,
                       in_channels: int | None = None,
                       out_channels: int | None = None) -> dict:
  """p2p_jax generator variables -> the reference generator's state_dict (numpy, the
  reference's key names and order, num_batches_tracked included for BatchNorm, so that
  load_state_dict(strict=True) takes it): a UnetGenerator's, or a ResnetGenerator's for
  the resnet_* generators. model_config: the config's `model` block; in_channels,
  out_channels: instead of its own (CycleGAN's G_B maps back)."""
  name = _get(model_config, 'generator')
  cin = _get(model_config, 'in_channels') if in_channels is None else in_channels
  cout = _get(model_config, 'out_channels') if out_channels is None else out_channels
  if name in RESNET_GENERATORS:
    return resnet_weights.resnet_to_torch(variables, model_config, cin, cout,
                                          num_batches_tracked)
  depth, skips = GENERATORS.get(name, (None, False))
  if not skips:
    raise StateDictError(f'generator {name!r} has no counterpart in the reference '
                         '(only the unet_* U-Nets and the resnet_* ResNets do)')
  upsample = model_config.get('upsample', 'transposed')
  if upsample != 'transposed':
    raise StateDictError(f"model.upsample={upsample!r} has no counterpart in the reference "
                         "(its decoder uses 4x4 transposed convs: model.upsample='transposed')")
  layout = sdl.export_layout(_get(model_config, 'norm'))
  entries = unet_entries(depth, _get(model_config, 'ngf'), cin, cout, layout)
  return sdl.export_entries(variables, entries, name, num_batches_tracked)


def discriminator_to_torch(variables, model_config, num_batches_tracked: int = 0) -> dict:
  """p2p_jax PatchGAN variables -> the reference NLayerDiscriminator's state_dict
  (PixelDiscriminator's for d_layers 0); as `generator_to_torch`. D's input channels come
  from the variables (pix2pix: in + out; CycleGAN: one image)."""
  layout = sdl.export_layout(_get(model_config, 'norm'))
  try:
    cin = variables['params']['conv1']['kernel'].shape[2]
  except (KeyError, TypeError):
    raise StateDictError('discriminator: variable params/conv1/kernel is missing') from None
  n_layers = _get(model_config, 'd_layers')
  entries = patchgan_entries(n_layers, _get(model_config, 'ndf'), cin, layout)
  return sdl.export_entries(variables, entries, f'PatchGAN d_layers={n_layers}',
                            num_batches_tracked)
