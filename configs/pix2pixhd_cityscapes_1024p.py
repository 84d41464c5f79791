"""pix2pixHD, Cityscapes labels -> photos at 2048x1024: the official label2city_1024p.

As NVIDIA/pix2pixHD's scripts/train_1024p_24G.sh (`--netG local --ngf 32 --num_D 3
--load_pretrain checkpoints/label2city_512p/ --niter 50 --niter_decay 50
--niter_fix_global 10 --resize_or_crop none`): a LocalEnhancer (ngf 32: the 512p
GlobalGenerator at half resolution, refined by a full-resolution local network; 182,857,059
parameters), D at 3 scales, started from a finished configs/pix2pixhd_cityscapes_512p.py
run (its generator becomes the global part; its D's two scales become the two coarser
ones), the local enhancer alone for 10 epochs, then everything with a fresh Adam; 50 + 50
epochs at 2048x1024, batch 1. This is also the architecture of the published
label2city_1024p generator.

Data: as the 512p config (Cityscapes' zips in the manual dir or --config.data.source), at
full size (--resize_or_crop none: 2048x1024 as they are).

The published generator (latest_net_G.pth of label2city_1024p, a Google Drive download
linked from the official README) as a p2p_jax workdir that translates label maps:
  python -m p2p_jax.convert --from_pytorch=checkpoints/label2city_1024p/latest_net_G.pth \
      --config=configs/pix2pixhd_cityscapes_1024p.py --workdir=/tmp/label2city_1024p
  python -m p2p_jax.translate --workdir=/tmp/label2city_1024p \
      --input=datasets/cityscapes/test_label/ --output=/tmp/label2city_1024p/test
(each *_gtFine_labelIds.png with its *_gtFine_instanceIds.png from test_inst/ beside
test_label/; D is initialised from the seed, none is published.)

Command (from the repository root), after the 512p run:
  python -m p2p_jax.main --config=configs/pix2pixhd_cityscapes_1024p.py \
      --config.pix2pixhd.load_pretrain=/tmp/label2city_512p --workdir=/tmp/label2city_1024p

Runtime: 100 epochs x 2,975 steps = 297,500 steps at 2048x1024. Not measured on a GPU yet;
an estimate from arithmetic: 13.5 TFLOP per step with the VGG term at most (the first 10
epochs skip the global part's gradients; benchmarks/pix2pixhd_flops.py), 4.0e18 in all, at
the model TFLOP/s pix2pix's step reached on one H100 (63 float32, 128 bfloat16:
benchmarks/README.md, GPU) gives ~18 hours at float32, ~9 with bfloat16, after the 512p
run; the input pipeline then keeps 1-2 worker cores busy (about 0.2 s of CPU per example).
Measure it with benchmarks/pix2pixhd_gpu.sh. The official README asks for 24 GB of GPU
memory at float32 for this. The step's compiled memory per device with
the VGG term (benchmarks/pix2pixhd_memory.py --target=h100_sxm: XLA's GPU compiler for an
H100, compile only, not yet run on one): 13.5 GiB at float32, 7.0 GiB with
--config.compute.dtype=bfloat16 --config.pix2pixhd.remat=True, and with each image split
over 2 or 4 devices (--config.compute.mapping=shard_map --config.compute.spatial=2 or 4)
4.8 / 3.5 GiB (README, pix2pixHD, Scale).
"""

from p2p_jax import config_schema


def get_config():
  """label2city_1024p: LocalEnhancer (ngf 32), 3 scales, coarse to fine, 50 + 50 epochs."""
  config = config_schema.get_config()
  config.method = 'pix2pixhd'
  config.model.generator = 'pix2pixhd_local'
  config.model.ngf = 32
  config.model.ndf = 64
  config.model.norm = 'instance'
  config.model.d_layers = 3
  config.loss.gan_mode = 'lsgan'

  config.pix2pixhd.label_nc = 35
  config.pix2pixhd.instance_map = True
  config.pix2pixhd.n_downsample_global = 4
  config.pix2pixhd.n_blocks_global = 9
  config.pix2pixhd.n_local_enhancers = 1
  config.pix2pixhd.n_blocks_local = 3
  config.pix2pixhd.num_D = 3
  config.pix2pixhd.feat_match = True
  config.pix2pixhd.vgg_loss = True
  config.pix2pixhd.niter_fix_global = 10
  config.pix2pixhd.load_pretrain = ''  # the 512p workdir; see the command above

  config.data.dataset = 'cityscapes'  # gtFine + leftImg8bit (see the 512p config)
  config.data.resize_or_crop = 'none'  # 2048x1024 as they are
  config.data.load_size = 2048        # no resize: the width the step is compiled for
  config.data.crop_size = 1024        # no crop: the height
  config.data.flip = True
  config.data.train_split = 'train'
  config.data.eval_split = 'val'

  config.batch_size = 1
  config.num_epochs = 100
  config.optim.schedule = 'linear_decay_pix2pixhd'
  config.optim.constant_epochs = 50
  config.optim.decay_epochs = 50
  config.num_eval_examples = 100
  return config
