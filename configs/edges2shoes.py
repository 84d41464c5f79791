"""edges2shoes: HED edges -> photo: the paper's settings.

Data: UT Zappos50K, about 50k train images, 200 val; archive edges2shoes.tar.gz
(about 2.2 GB, http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/edges2shoes.tar.gz) in
config.data.source or <data_dir>/downloads/manual, otherwise downloaded on first use.
A = edges, B = photo.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/edges2shoes.py --workdir=/tmp/p2p_edges2shoes

Runtime: 15 epochs at batch 4 = about 187,000 steps; hours on one GPU. Preparing the dataset
(decoding every image once) takes a while the first time.
Expected: photo-like products whose outline follows the sketch, with plausible colours and
materials (the paper shows samples; it reports no number for this dataset).
"""

from p2p_jax import config_schema


def get_config():
  """edges2shoes edges -> photo, batch 4, 15 epochs (8 constant + 7 linear decay)."""
  config = config_schema.get_config()
  config.data.dataset = 'edges2shoes'
  config.data.direction = 'AtoB'  # Edges (A) -> photo (B).
  config.data.eval_split = 'val'
  config.batch_size = 4
  config.num_epochs = 15
  config.optim.constant_epochs = 8
  config.optim.decay_epochs = 7
  return config
