"""The VGG19 weights of pix2pixHD's perceptual loss, read from torchvision's own file.

pix2pixHD builds its loss network with `torchvision.models.vgg19(pretrained=True)`, which
downloads https://download.pytorch.org/models/vgg19-dcbb9e9d.pth into torchvision's cache,
$TORCH_HOME/hub/checkpoints/ (TORCH_HOME defaults to $XDG_CACHE_HOME/torch, i.e.
~/.cache/torch). p2p_jax never downloads it and never makes weights up: it reads that file
where a user has it (config.pix2pixhd.vgg_weights; '' means torchvision's cache path),
checks the 13 convs the loss uses (p2p_jax/models/vgg19.py) and stops before the first
step, naming the path and the URL, when the file is missing and the VGG term is on.
Reading a .pth needs torch (the CPU build is enough).
"""

import os

import numpy as np

from p2p_jax.models import vgg19
from p2p_jax.pytorch import files
from p2p_jax.pytorch.weights import StateDictError

URL = 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth'
FILE_NAME = 'vgg19-dcbb9e9d.pth'


def torchvision_cache_path() -> str:
  """Where torchvision keeps vgg19-dcbb9e9d.pth: $TORCH_HOME/hub/checkpoints/ (TORCH_HOME
  defaults to $XDG_CACHE_HOME/torch, XDG_CACHE_HOME to ~/.cache)."""
  torch_home = os.environ.get('TORCH_HOME') or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'),
      'torch')
  return os.path.join(torch_home, 'hub', 'checkpoints', FILE_NAME)


def resolve(path: str) -> str:
  """The file config.pix2pixhd.vgg_weights names ('' -> torchvision's cache path)."""
  return os.path.abspath(os.path.expanduser(path)) if path else torchvision_cache_path()


def check_exists(path: str) -> str:
  """The resolved path; FileNotFoundError (one line: the path, the URL and what to do)
  when there is no file there."""
  resolved = resolve(path)
  if not os.path.isfile(resolved):
    raise FileNotFoundError(
        f'config.pix2pixhd.vgg_weights: no VGG19 weights at {resolved} (the VGG loss is on); '
        f'put torchvision\'s {FILE_NAME} there (download it from {URL}, or run '
        '`python -c "import torchvision; torchvision.models.vgg19(weights=\'DEFAULT\')"` '
        'where there is internet), set config.pix2pixhd.vgg_weights to where you have it, '
        'or turn the term off with config.pix2pixhd.vgg_loss=False')
  return resolved


def check(state_dict: dict, source: str = '') -> dict:
  """The convs the loss uses, checked against torchvision's VGG19 shapes; raises
  StateDictError naming the first key that is missing or has another shape."""
  where = f'{source}: ' if source else ''
  for key, shape in vgg19.weight_shapes().items():
    if key not in state_dict:
      raise StateDictError(f'{where}missing {key}: not torchvision\'s VGG19 features '
                           f'({FILE_NAME})')
    if tuple(np.shape(state_dict[key])) != shape:
      raise StateDictError(f'{where}{key} has shape {tuple(np.shape(state_dict[key]))}, '
                           f'torchvision\'s VGG19 has {shape}')
  if 'features.34.weight' not in state_dict:  # VGG19's 16th conv; VGG16 stops at 28
    raise StateDictError(f'{where}has no features.34.weight: not a VGG19 (VGG16?); '
                         f'pix2pixHD uses torchvision\'s {FILE_NAME}')
  return {k: np.asarray(state_dict[k], np.float32) for k in vgg19.weight_shapes()}


def load(path: str) -> dict:
  """The loss's kernels ({conv index: (HWIO kernel, bias)}, numpy) from the torchvision
  file at `path` ('' -> torchvision's cache path)."""
  resolved = check_exists(path)
  return vgg19.to_kernels(check(files.read_pth(resolved), resolved))
