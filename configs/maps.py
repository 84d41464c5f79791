"""Maps, aerial photo -> map (paper Table 4): the paper's settings.

Data: 1096 train / 1098 val, 600x600 per half; archive maps.tar.gz (about 250 MB,
http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/maps.tar.gz) in config.data.source or
<data_dir>/downloads/manual, otherwise downloaded on first use. A = aerial photo, B = map;
set config.data.direction='BtoA' for map -> aerial.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/maps.py --workdir=/tmp/p2p_maps

Runtime: 200 epochs x 1096 steps (batch 1) = 219,200 steps; a few hours on one GPU.
Expected: clean map renderings of roads, water and parks; in the paper's perceptual study
(Table 4) L1+cGAN photo -> map outputs were taken for real 6.1% +- 1.3% of the time
(map -> photo: 18.9% +- 2.5%).
"""

from p2p_jax import config_schema


def get_config():
  """Maps aerial -> map, batch 1, 200 epochs (100 + 100)."""
  config = config_schema.get_config()
  config.data.dataset = 'maps'
  config.data.direction = 'AtoB'  # Aerial photo (A) -> map (B).
  config.data.eval_split = 'val'
  config.batch_size = 1
  config.num_epochs = 200
  config.optim.constant_epochs = 100
  config.optim.decay_epochs = 100
  return config
