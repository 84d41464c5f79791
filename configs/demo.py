"""Demo: grey -> colour on the embedded Blue Marble tiles; trains on a laptop CPU.

The dataset ships with the package (NASA Blue Marble photos of the Earth, public domain:
340 training tiles of 144 px and 16 test tiles of 128 px drawn at random by a fixed rule,
none overlapping a training tile; see p2p_jax/datasets/blue_marble/PROVENANCE.md), so this
runs offline, with nothing to download. Input: the photo in grey (1 channel, its luma);
target: the same photo in colour. Smaller than the paper's setup so that it fits a 2-core
CPU: U-Net-128 with 32 base filters (G about 1/16 of the paper's compute per image),
training tiles cropped at random to 128 (the jitter, without resampling), batch 4, 20
epochs (10 constant, 10 with linear decay).

One departure from the paper's G: its decoder upsamples by nearest-neighbour repetition and
a 3x3 conv (`model.upsample = 'resize_conv'`) instead of 4x4 transposed convs. It was chosen
on the earlier day -> night tiles, where the paper's transposed convs, a small dataset and a
short run gave every test tile the same lattice of bright dots at the same positions (README
"Results" shows it); it has not been measured against transposed convs on these tiles.
`--config.model.upsample=transposed` gives the paper's layer back.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/demo.py --workdir=/tmp/p2p_demo

Runtime: 20 epochs x 85 steps = 1,700 steps. Measured 10 min 38 s on an idle 2-vCPU Intel
Xeon (family 6 model 207), dataset preparation and compilation included.
Expected (that run, step 1700, seed 0; `python -m p2p_jax.evaluate --checkpoint=latest`):
test L1 / PSNR 0.164 / 18.6 dB in paper mode and 0.089 / 23.3 dB in eval mode, against
0.341 / 14.2 for the mean training target, 0.348 for the per-pixel median and 0.621 for an
all-black output (benchmarks/trivial_baselines.py); the grey input copied to the output
scores 0.168 / 19.2. In eval mode the output beats the best of black, mean and median on
each of the 16 test tiles (by 0.065 L1 on the narrowest); in paper mode on 15 (Yakutia's
taiga: 0.1717 against the median's 0.1715). Samples go from
grey to blue seas, green forests, white snow and brown plains; in paper mode (per-image
statistics) the three desert tiles of the Middle East (Egypt, Iran, Pakistan) come out
cyan and yellow-green, in eval mode beige (README "Results" shows all 16 tiles in both modes).
"""

from p2p_jax import config_schema


def get_config():
  """Blue Marble grey -> colour, small enough for a CPU."""
  config = config_schema.get_config()
  config.model.generator = 'unet_128'
  config.model.ngf = 32
  config.model.ndf = 32
  config.model.upsample = 'resize_conv'  # see above: no texture fixed to the pixel grid
  config.model.in_channels = 1  # the grey photo (its ITU-R 601 luma)

  config.data.dataset = 'blue_marble'
  config.data.direction = 'AtoB'  # A = grey, B = colour.
  # Training tiles are 144 px, test tiles 128, both at the photo's native resolution: the
  # random 128 crop is the jitter, with no resampling (load_size = the tiles' size).
  config.data.load_size = 144
  config.data.crop_size = 128
  config.data.eval_split = 'test'
  config.data.shuffle_buffer = 400  # Holds the whole train split: a full shuffle per epoch.

  config.batch_size = 4
  config.num_epochs = 20
  config.optim.constant_epochs = 10
  config.optim.decay_epochs = 10

  config.log_every_steps = 50
  config.sample_every_steps = 200
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 500
  return config
