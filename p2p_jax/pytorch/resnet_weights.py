"""The reference's ResnetGenerator (CycleGAN's G) state dicts <-> p2p_jax ResnetGenerator.

The reference (models/networks.py) builds one nn.Sequential `model`, so its keys are
`model.<index>.<tensor>`; with n residual blocks and its two downsamplings:

  index   reference layer                               p2p_jax module
  0, 1, 2   ReflectionPad2d(3), Conv2d 7x7, norm          conv_in, conv_in_norm
  4, 5      Conv2d 3x3 stride 2, norm                     down1, down1_norm
  7, 8      Conv2d 3x3 stride 2, norm                     down2, down2_norm
  10 + i    ResnetBlock: conv_block.1, .2 (conv, norm)    block{i+1}/conv1, conv1_norm
                        conv_block.5, .6 (conv, norm)     block{i+1}/conv2, conv2_norm
            (with dropout, Dropout sits at conv_block.4 and the second conv at .6, its
            norm at .7)
  10 + n, 11 + n   ConvTranspose2d 3x3 s2 op1, norm       up1, up1_norm
  13 + n, 14 + n   ConvTranspose2d 3x3 s2 op1, norm       up2, up2_norm
  17 + n    Conv2d 7x7 (always with bias), then Tanh      conv_out

(ReLUs, paddings and Tanh hold no tensors.) resnet_9blocks: model.1 ... model.26;
resnet_6blocks: ... model.23. The number of blocks, ngf, the channels, the normalisation
(state_dicts.py) and dropout are read off the tensors; convs carry a bias unless BatchNorm
follows, as the reference's `use_bias` rule.
"""

import re

from p2p_jax.models import RESNET_GENERATORS
from p2p_jax.pytorch import state_dicts as sdl

_conv, _norm = sdl.conv, sdl.norm
N_DOWNSAMPLING = 2  # the reference's (fixed)
FIRST_BLOCK = 10    # index of the first ResnetBlock in the Sequential


def resnet_entries(n_blocks: int, ngf: int, cin: int, cout: int, layout: str,
                   dropout: bool = False) -> list:
  """The reference ResnetGenerator's tensors in its state_dict order; layout 'batch',
  'biased' or 'bare' (state_dicts.py)."""
  entries = (_conv('model.1', 'conv_in', (ngf, cin, 7, 7), layout)
             + _norm('model.2', 'conv_in_norm', ngf, layout))
  width = ngf
  for i in range(N_DOWNSAMPLING):  # model.4, model.7
    key = f'model.{4 + 3 * i}'
    entries += (_conv(key, f'down{i + 1}', (2 * width, width, 3, 3), layout)
                + _norm(f'model.{5 + 3 * i}', f'down{i + 1}_norm', 2 * width, layout))
    width *= 2
  second = 6 if dropout else 5
  for i in range(n_blocks):
    p, m = f'model.{FIRST_BLOCK + i}.conv_block.', f'block{i + 1}/'
    entries += (_conv(p + '1', m + 'conv1', (width, width, 3, 3), layout)
                + _norm(p + '2', m + 'conv1_norm', width, layout)
                + _conv(p + str(second), m + 'conv2', (width, width, 3, 3), layout)
                + _norm(p + str(second + 1), m + 'conv2_norm', width, layout))
  index = FIRST_BLOCK + n_blocks
  for i in range(N_DOWNSAMPLING):  # model.{10+n}, model.{13+n}
    entries += (_conv(f'model.{index}', f'up{i + 1}', (width, width // 2, 3, 3), layout,
                      transpose=True)
                + _norm(f'model.{index + 1}', f'up{i + 1}_norm', width // 2, layout))
    index, width = index + 3, width // 2
  return entries + _conv(f'model.{index + 1}', 'conv_out', (cout, ngf, 7, 7), layout, True)


def _blocks(sd, source) -> list[int]:
  indices = sorted({int(m.group(1)) for k in sd
                    if (m := re.match(r'model\.(\d+)\.conv_block\.', k))})
  if indices != list(range(FIRST_BLOCK, FIRST_BLOCK + len(indices))):
    sdl.fail(f'residual blocks at model.{", model.".join(map(str, indices)) or "(none)"}: '
             f"the reference's ResnetGenerator has them at model.{FIRST_BLOCK}, "
             f'model.{FIRST_BLOCK + 1}, ... in a row', source)
  return indices


def resnet_from_torch(state_dict, norm: str | None = None, source: str | None = None):
  """The reference's ResnetGenerator weights as p2p_jax ResnetGenerator variables.

  Returns (variables, arch): variables {'params', 'batch_stats'} (numpy), arch the config
  `model` fields it implies (generator, ngf, in_channels, out_channels, norm, dropout).
  norm: None infers it (see state_dicts.py); source: a file name for the messages. Raises
  StateDictError naming the first key that does not fit.
  """
  sd, what = sdl.clean(state_dict, source), "the reference's ResnetGenerator"
  ngf, cin = sdl.shape4(sd, 'model.1.weight', what, source)[:2]
  n_blocks = len(_blocks(sd, source))
  names = [k for k, v in RESNET_GENERATORS.items() if v == n_blocks]
  if not names:
    sdl.fail(f'a ResnetGenerator with {n_blocks} residual blocks is not one of p2p_jax\'s '
             f'generators ({", ".join(RESNET_GENERATORS)})', source)
  second = sd.get(f'model.{FIRST_BLOCK}.conv_block.6.weight')
  dropout = second is not None and second.ndim == 4  # else .6 is the norm after conv .5
  cout = sdl.shape4(sd, f'model.{FIRST_BLOCK + n_blocks + 7}.weight', what, source)[0]
  layout = sdl.layout_of(sd, 'model.1.bias', norm, source)
  what = (f'{what} {names[0]}, ngf {ngf}, {layout} layout'
          + (', dropout' if dropout else ''))
  entries = resnet_entries(n_blocks, int(ngf), int(cin), int(cout), layout, dropout)
  variables = sdl.import_entries(sd, entries, what, source)
  arch = dict(generator=names[0], ngf=int(ngf), in_channels=int(cin), out_channels=int(cout),
              norm=sdl.arch_norm(layout, norm), dropout=bool(dropout))
  return variables, arch


def resnet_to_torch(variables, model_config, in_channels: int, out_channels: int,
                    num_batches_tracked: int = 0) -> dict:
  """p2p_jax ResnetGenerator variables -> the reference ResnetGenerator's state_dict
  (numpy, its keys and order; dropout from model_config.dropout moves each block's second
  conv as the reference's does). model_config: the config's `model` block."""
  name = model_config['generator']
  entries = resnet_entries(RESNET_GENERATORS[name], model_config['ngf'], in_channels,
                           out_channels, sdl.export_layout(model_config['norm']),
                           bool(model_config['dropout']))
  return sdl.export_entries(variables, entries, name, num_batches_tracked)
