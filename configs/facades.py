"""Facades, labels -> photo (paper section 4, Figure 14): the paper's settings.

Data: CMP Facades, 400 train / 100 val / 106 test; archive facades.tar.gz (about 30 MB,
http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz) in config.data.source
or <data_dir>/downloads/manual, otherwise downloaded on first use. A = photo, B = labels.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/facades.py --workdir=/tmp/p2p_facades

Runtime: 200 epochs x 400 steps (batch 1) = 80,000 steps; about 37 h on a 2-core CPU at
0.6 img/s, and on the order of an hour or two on one GPU.
Expected: photo-like facades whose windows, doors and balconies follow the label map, as
in the paper's Figure 14 (the paper reports no number for this dataset).
"""

from p2p_jax import config_schema


def get_config():
  """Facades labels -> photo, batch 1, 200 epochs (100 constant + 100 linear decay)."""
  config = config_schema.get_config()
  config.data.dataset = 'facades'
  config.data.direction = 'BtoA'  # Labels (B) -> photo (A), as the PyTorch reference.
  config.data.eval_split = 'val'
  config.batch_size = 1
  config.num_epochs = 200
  config.optim.constant_epochs = 100
  config.optim.decay_epochs = 100
  return config
