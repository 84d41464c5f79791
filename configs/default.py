"""Paper defaults for pix2pix (Isola et al., CVPR 2017): U-Net-256 + 70x70 PatchGAN, L1 + cGAN.

Every config starts from these defaults and changes only what differs. The fields, each
with its meaning, are defined in p2p_jax/config_schema.py (the package's config schema).

Command (needs the dataset named in `config.data.dataset`; see README):
  python -m p2p_jax.main --config=configs/default.py --workdir=/tmp/p2p_facades

Runtime: 200 epochs of facades (400 images, batch 1) = 80k steps; about 2 h on one GPU.
Expected: samples comparable to the paper's Figure 14 (labels -> facade).
"""

from p2p_jax import config_schema


def get_config():
  """Returns the paper's default configuration."""
  return config_schema.get_config()
