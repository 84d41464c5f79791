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
reference. A is one channel (the grey photo's luma) and B three, so the identity term,
which feeds B to G_A, is off (the reference refuses identity with unequal channels too);
cycle weights 10 and the LSGAN objective, pools of 50, Adam 2e-4 / 0.5 as the reference.

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
  config.model.in_channels = 1  # A: the grey photo (its luma)
  config.model.out_channels = 3  # B: the colour photo
  config.loss.gan_mode = 'lsgan'
  config.cyclegan.lambda_identity = 0.0  # A and B differ in channels (see above)

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
