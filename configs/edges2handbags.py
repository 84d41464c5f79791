"""edges2handbags: HED edges -> photo: the paper's settings.

Data: Amazon handbags (iGAN), about 137k train images, 200 val; archive edges2handbags.tar.gz
(about 8.6 GB, http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/edges2handbags.tar.gz) in
config.data.source or <data_dir>/downloads/manual, otherwise downloaded on first use.
A = edges, B = photo.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/edges2handbags.py --workdir=/tmp/p2p_edges2handbags

Runtime: 15 epochs at batch 4 = about 514,000 steps; hours on one GPU. Preparing the dataset
(decoding every image once) takes a while the first time.
Expected: photo-like products whose outline follows the sketch, with plausible colours and
materials (the paper shows samples; it reports no number for this dataset).
"""

from p2p_jax import config_schema


def get_config():
  """edges2handbags edges -> photo, batch 4, 15 epochs (8 constant + 7 linear decay)."""
  config = config_schema.get_config()
  config.data.dataset = 'edges2handbags'
  config.data.direction = 'AtoB'  # Edges (A) -> photo (B).
  config.data.eval_split = 'val'
  config.batch_size = 4
  config.num_epochs = 15
  config.optim.constant_epochs = 8
  config.optim.decay_epochs = 7
  return config
