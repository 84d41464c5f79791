"""Demo: day -> night on the embedded Blue Marble tiles; trains on a laptop CPU.

The dataset ships with the package (139 train + 8 test NASA tiles, public domain; see
p2p_jax/datasets/blue_marble/PROVENANCE.md), so this runs offline, with nothing to download.
Smaller than the paper's setup so that it fits a 2-core CPU: U-Net-128 with 32 base filters
(G about 1/16 of the paper's compute per image), tiles resized to 143 and cropped to 128
(the paper's 286 -> 256 jitter at half scale), batch 4, 50 epochs.

One departure from the paper's G: its decoder upsamples by nearest-neighbour repetition and
a 3x3 conv (`model.upsample = 'resize_conv'`) instead of 4x4 transposed convs. With the
paper's transposed convs, this small dataset and this short run, G learns a texture tied
to the pixel grid: every test tile gets the same lattice of bright dots at the same
positions (eval L1 0.100 but visibly broken; README "Results" shows both). The resize
conv cannot put texture at fixed positions, so the lights have to come from the input.
`--config.model.upsample=transposed` gives the paper's layer back.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/demo.py --workdir=/tmp/p2p_demo

Runtime: 50 epochs x 34 steps = 1,700 steps; 11.5 minutes measured on 2 vCPUs (AMD EPYC
Zen 3) after a fresh install, 13 img/s (preparing the dataset takes seconds, compiling 30 s).
Expected: samples that go from uniform darkness to a dark Earth whose city lights sit where
the day view has coasts, river valleys and cities (Europe, Japan, the Nile are lit; deserts,
forests and ice are dark), different on every tile. Test tiles are held-out places (Japan,
Italy, Florida, ...). Test L1 / PSNR about 0.122 / 19.8 dB in paper mode and 0.097 / 21.3
dB in eval mode, against 0.180 / 17.4 for an all-black output and 0.194 / 18.2 for the mean
training target (benchmarks/trivial_baselines.py).
"""

from p2p_jax import config_schema


def get_config():
  """Blue Marble day -> night, small enough for a CPU."""
  config = config_schema.get_config()
  config.model.generator = 'unet_128'
  config.model.ngf = 32
  config.model.ndf = 32
  config.model.upsample = 'resize_conv'  # see above: no texture fixed to the pixel grid

  config.data.dataset = 'blue_marble'
  config.data.direction = 'AtoB'  # A = day, B = night.
  config.data.load_size = 143
  config.data.crop_size = 128
  config.data.eval_split = 'test'
  config.data.shuffle_buffer = 200  # Holds the whole train split: a full shuffle per epoch.

  config.batch_size = 4
  config.num_epochs = 50
  config.optim.constant_epochs = 25
  config.optim.decay_epochs = 25

  config.log_every_steps = 50
  config.sample_every_steps = 200
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 500
  return config
