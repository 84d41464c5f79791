"""CycleGAN (Zhu et al., ICCV 2017) with the PyTorch reference's defaults, horse2zebra.

Method: config.method = 'cyclegan' (p2p_jax/methods/cyclegan.py): G_A: A -> B and G_B:
B -> A, ResNet generators with 9 blocks (resnet_9blocks, 11,378,179 parameters each),
70x70 PatchGANs that see one image (D_A judges B, D_B judges A; 2,764,737 each), instance
norm, no dropout, LSGAN, cycle weights lambda_A = lambda_B = 10, identity weight 0.5, image
pools of 50, Adam 2e-4 (beta1 0.5), batch 1, load 286 -> crop 256 and flip, 100 epochs at
lr then 100 decaying linearly to 0 (as the reference's current train.py steps it).

Data: the reference's horse2zebra.zip (1,067 horses, 1,334 zebras; about 111 MB,
http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip) in config.data.source
or <data_dir>/downloads/manual, otherwise downloaded on first use. Any of the reference's
datasets by name: --config.data.dataset=monet2photo (apple2orange, summer2winter_yosemite,
cezanne2photo, ukiyoe2photo, vangogh2photo, iphone2dslr_flower, maps, cityscapes, facades);
your own trainA/ trainB/ testA/ testB/ folders: --config.data.dataset=unpaired_folders
--config.data.source=DIR. An epoch is max(|A|, |B|) steps: A in a shuffled order, a random
B for each.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/cyclegan.py --workdir=/tmp/cyclegan_h2z

Runtime: 200 epochs x 1,334 steps = 266,800 steps (batch 1); on the order of a day on one
GPU, as the reference's. Expected: horses striped as zebras and back, the paper's Figure 1;
validation reports the cycle L1 of testA and testB (the test split is unpaired, so there is
no L1 against a target).
"""

from p2p_jax import config_schema


def get_config():
  """CycleGAN as the reference's train.py --model cycle_gan, horse2zebra."""
  config = config_schema.get_config()
  config.method = 'cyclegan'
  config.model.generator = 'resnet_9blocks'
  config.model.norm = 'instance'
  config.model.dropout = False  # the reference's --no_dropout for CycleGAN
  config.model.d_layers = 3
  config.loss.gan_mode = 'lsgan'

  config.data.dataset = 'horse2zebra'
  config.data.direction = 'AtoB'
  config.data.train_split = 'train'
  config.data.eval_split = 'test'
  config.batch_size = 1
  config.num_epochs = 200
  config.optim.constant_epochs = 100
  config.optim.decay_epochs = 100
  config.num_eval_examples = 100
  return config
