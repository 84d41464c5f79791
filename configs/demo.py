"""Demo: day -> night on the embedded Blue Marble tiles; trains on a laptop CPU.

The dataset ships with the package (139 train + 8 test NASA tiles, public domain; see
p2p_jax/datasets/blue_marble/PROVENANCE.md), so this runs offline, with nothing to download.
Smaller than the paper's setup so that it fits a 2-core CPU: U-Net-128 with 32 base filters
(G about 1/16 of the paper's compute per image), tiles resized to 143 and cropped to 128
(the paper's 286 -> 256 jitter at half scale), batch 4.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/demo.py --workdir=/tmp/p2p_demo

Runtime: 30 epochs x 34 steps = about 1,000 steps; roughly 10 minutes on 2 CPU cores
(preparing the dataset takes a few seconds the first time).
Expected: samples that go from uniform darkness to a dark Earth whose city lights sit where
the day view has coasts, river valleys and cities (Europe, Japan, the Nile are lit; deserts,
forests and ice are dark). Test tiles are held-out places (Japan, Italy, Florida, ...).
"""

from p2p_jax import config_schema


def get_config():
  """Blue Marble day -> night, small enough for a CPU."""
  config = config_schema.get_config()
  config.model.generator = 'unet_128'
  config.model.ngf = 32
  config.model.ndf = 32

  config.data.dataset = 'blue_marble'
  config.data.direction = 'AtoB'  # A = day, B = night.
  config.data.load_size = 143
  config.data.crop_size = 128
  config.data.eval_split = 'test'
  config.data.shuffle_buffer = 200  # Holds the whole train split: a full shuffle per epoch.

  config.batch_size = 4
  config.num_epochs = 30
  config.optim.constant_epochs = 15
  config.optim.decay_epochs = 15

  config.log_every_steps = 50
  config.sample_every_steps = 200
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 500
  return config
