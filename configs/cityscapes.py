"""Cityscapes, labels -> photo (paper Tables 1-2, Figure 6): the paper's settings.

Data: 2975 train / 500 val; archive cityscapes.tar.gz (about 100 MB,
http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/cityscapes.tar.gz) in config.data.source
or <data_dir>/downloads/manual, otherwise downloaded on first use. In the archive A is the
photo and B the label map, so labels -> photo is BtoA.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/cityscapes.py --workdir=/tmp/p2p_cityscapes

Runtime: 200 epochs x 2975 steps (batch 1) = 595,000 steps; a few hours to a day on one
GPU (far too long for a CPU).
Expected: the paper's L1+cGAN FCN-scores on val, per-pixel acc. / per-class acc. / class IoU
0.66 / 0.23 / 0.17 (ground truth photos score 0.80 / 0.26 / 0.21).
"""

from p2p_jax import config_schema


def get_config():
  """Cityscapes labels -> photo, batch 1, 200 epochs (100 + 100)."""
  config = config_schema.get_config()
  config.data.dataset = 'cityscapes'
  config.data.direction = 'BtoA'  # Labels (B) -> photo (A).
  config.data.eval_split = 'val'
  config.batch_size = 1
  config.num_epochs = 200
  config.optim.constant_epochs = 100
  config.optim.decay_epochs = 100
  return config
