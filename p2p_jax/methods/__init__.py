"""The training methods, one module each, and the registry `config.method` picks from.

  pix2pix.py    pix2pix (Isola et al. 2017): U-Net G, PatchGAN D on pairs (x, y)
  cyclegan.py   CycleGAN (Zhu et al. 2017): two ResNet Gs, two PatchGANs, image pools,
                unpaired data
  pix2pixhd.py  pix2pixHD (Wang et al. 2018): label maps -> photos, global generator and
                local enhancer, multi-scale D, feature matching, VGG19 loss

What a method provides, and the state convention shared code relies on: base.py.
"""

import importlib

from p2p_jax.methods.base import DATA_KINDS, DIRECTIONS, Method, Setup  # noqa: F401

# config.method -> the module that defines it (as `METHOD`); imported on first use.
METHODS = {
    'pix2pix': 'p2p_jax.methods.pix2pix',
    'cyclegan': 'p2p_jax.methods.cyclegan',
    'pix2pixhd': 'p2p_jax.methods.pix2pixhd',
}


def get(config_or_name) -> Method:
  """The method a config (its `method` field; 'pix2pix' when it has none) or a name names."""
  if isinstance(config_or_name, str):
    name = config_or_name
  else:
    name = config_or_name.get('method', 'pix2pix') if hasattr(config_or_name, 'get') else (
        config_or_name.method)
  if name not in METHODS:
    raise ValueError(f'config.method must be one of {list(METHODS)}, got {name!r}')
  return importlib.import_module(METHODS[name]).METHOD
