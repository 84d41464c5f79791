"""CycleGAN demo: grey -> colour on the embedded Blue Marble tiles, read unpaired; a CPU run.

The same tiles as configs/demo.py (pix2pix), but CycleGAN never sees a pair: the grey
sides (A) and the colour sides (B) of the training tiles are shuffled independently
(`data.pairs_as_unpaired`), so G_A has to learn colour from the colour tiles' statistics and
the cycle grey -> colour -> grey, not from matching examples. The test tiles keep their
pairs, so the outputs are scored against the real colours, beside pix2pix's and the trivial
baselines (README "Results").

Smaller than the reference's CycleGAN so that it fits a 2-core CPU: resnet_6blocks with 16
base filters (the reference's 6-block G at a quarter of its width), 70x70 PatchGANs with 32
base filters, 128 px crops of the 144 px training tiles (no resampling), batch 1 as the
reference. Both domains are three-channel images (the grey tiles as stored, R = G = B), so
the reference's identity term applies (G_A(B) ~ B, weight 5): it starts G_A near the
identity, which keeps the grey input's structure while D_A asks for colour. The rest is
the reference's: cycle weights 10, LSGAN, pools of 50, Adam 2e-4 / 0.5.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/cyclegan_demo.py --workdir=/tmp/cyclegan_demo
  python -m p2p_jax.evaluate --workdir=/tmp/cyclegan_demo --checkpoint=latest

Runtime and result: see README "Results" (measured there, with the command above).
"""

from p2p_jax import config_schema


def get_config():
  """CycleGAN on Blue Marble grey | colour, unpaired, small enough for a CPU."""
  config = config_schema.get_config()
  config.method = 'cyclegan'
  config.model.generator = 'resnet_6blocks'
  config.model.ngf = 16
  config.model.ndf = 32
  config.model.norm = 'instance'
  config.model.dropout = False  # the reference's --no_dropout for CycleGAN
  config.model.in_channels = 3  # A: the grey photo, as the tiles store it (R = G = B)
  config.model.out_channels = 3  # B: the colour photo
  config.loss.gan_mode = 'lsgan'
  config.cyclegan.lambda_identity = 0.5  # the reference's: G_A(B) ~ B keeps colours

  config.data.dataset = 'blue_marble'
  config.data.pairs_as_unpaired = True
  config.data.direction = 'AtoB'  # A = grey, B = colour
  config.data.load_size = 144
  config.data.crop_size = 128
  config.data.eval_split = 'test'

  config.batch_size = 1
  config.num_epochs = 6
  config.optim.constant_epochs = 3
  config.optim.decay_epochs = 3

  config.log_every_steps = 100
  config.sample_every_steps = 500
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
