"""Demo: pix2pixHD grey -> colour on the embedded Blue Marble tiles; trains on a laptop CPU.

Method pix2pixhd (p2p_jax/methods/pix2pixhd.py) in its official `label_nc 0` mode: the
input is an image (the grey tile), not a label map, and there is no instance map, so it
trains on the same embedded pairs as configs/demo.py (340 train + 16 test NASA tiles,
offline). Everything else is pix2pixHD's, shrunk to fit 2 CPU cores: a GlobalGenerator
with 16 base filters, 3 stride-2 convs and 3 residual blocks (its 512p model: 64, 4, 9),
D at two scales (70x70 PatchGANs with padding 2 at 128 and 64 px, 16 base filters), LSGAN
+ feature matching (lambda_feat 10), Adam 2e-4 / 0.5, pix2pixHD's learning-rate rule (25
epochs at lr, then lr / 10 less each epoch), 128 px crops of the 144 px training tiles
(no resampling, as configs/demo.py), batch 4 (the official batch is 1).

The VGG19 perceptual loss is off: its weights are torchvision's vgg19-dcbb9e9d.pth, which
p2p_jax never downloads. With the file (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth,
or torchvision's cache ~/.cache/torch/hub/checkpoints/, which is where it looks by
default): --config.pix2pixhd.vgg_loss=True [--config.pix2pixhd.vgg_weights=PATH] (reading
it needs torch; the step's arithmetic then grows from 4.1 to 51 GFLOP per image).

Command (from the repository root):
  python -m p2p_jax.main --config=configs/pix2pixhd_demo.py --workdir=/tmp/p2p_hd_demo
  python -m p2p_jax.evaluate --workdir=/tmp/p2p_hd_demo --split=test

Runtime: 20 epochs x 85 steps = 1,700 steps (6,800 images), as configs/demo.py: 6.5 min
on an idle 2-vCPU machine. Result: test L1 0.260, PSNR 16.7 (README "Results", which shows
its outputs: the layout right, under a pixel-grid texture that this objective without its
VGG term does not penalise; configs/pix2pixhd_demo_l1.py adds an L1 term).
"""

from p2p_jax import config_schema


def get_config():
  """Blue Marble grey -> colour with a small pix2pixHD, small enough for a CPU."""
  config = config_schema.get_config()
  config.method = 'pix2pixhd'
  config.model.generator = 'pix2pixhd_global'
  config.model.ngf = 16
  config.model.ndf = 16
  config.model.norm = 'instance'
  config.model.d_layers = 3
  config.loss.gan_mode = 'lsgan'

  config.pix2pixhd.label_nc = 0          # an image in, as the official label_nc 0
  config.pix2pixhd.instance_map = False  # no instance maps for photos
  config.pix2pixhd.n_downsample_global = 3
  config.pix2pixhd.n_blocks_global = 3
  config.pix2pixhd.num_D = 2
  config.pix2pixhd.feat_match = True
  config.pix2pixhd.vgg_loss = False      # see above: on only with torchvision's file

  config.data.dataset = 'blue_marble'
  config.model.in_channels = 1  # the grey photo (its luma), as configs/demo.py
  config.data.direction = 'AtoB'  # A = grey, B = colour.
  config.data.load_size = 144
  config.data.crop_size = 128
  config.data.eval_split = 'test'

  config.batch_size = 4
  config.num_epochs = 20
  config.optim.schedule = 'linear_decay_pix2pixhd'
  config.optim.constant_epochs = 10
  config.optim.decay_epochs = 10

  config.log_every_steps = 50
  config.sample_every_steps = 200
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 500
  return config
