"""Day -> night on webcam scenes: the paper's settings.

Data: Transient Attributes webcams, 17,823 train images; archive night2day.tar.gz (about
1.9 GB, http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/night2day.tar.gz) in
config.data.source or <data_dir>/downloads/manual, otherwise downloaded on first use.
In the archive A = night, B = day. The paper's task is day -> night (BtoA; the PyTorch
reference's pretrained 'day2night' model uses --direction BtoA as well); set
config.data.direction='AtoB' for night -> day.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/night2day.py --workdir=/tmp/p2p_night2day

Runtime: 17 epochs at batch 4 = 75,747 steps; a few hours on one GPU.
Expected: night versions of the scenes: dark skies, lit windows and street lights
(the paper shows samples; it reports no number for this dataset).
"""

from p2p_jax import config_schema


def get_config():
  """night2day day -> night, batch 4, 17 epochs (9 constant + 8 linear decay)."""
  config = config_schema.get_config()
  config.data.dataset = 'night2day'
  config.data.direction = 'BtoA'  # Day (B) -> night (A), the paper's direction.
  config.data.eval_split = 'val'
  config.batch_size = 4
  config.num_epochs = 17
  config.optim.constant_epochs = 9
  config.optim.decay_epochs = 8
  return config
