"""pix2pixHD, Cityscapes labels -> photos at 1024x512: the official label2city_512p recipe.

As NVIDIA/pix2pixHD's scripts/train_512p.sh (`python train.py --name label2city_512p`,
its options' defaults): GlobalGenerator (ngf 64, 4 stride-2 convs, 9 residual blocks;
182,546,755 parameters with 35 labels + the instance edge map), D at 2 scales (70x70
PatchGANs, ndf 64, 3 layers, padding 2), LSGAN + feature matching + VGG19 (lambda_feat
10), instance norm, Adam 2e-4 / 0.5, batch 1, 100 epochs at lr then 100 with lr / 100
less each epoch; images scaled to width 1024 (scale_width), flipped at random.

Data: Cityscapes' gtFine label ids and instance ids and leftImg8bit photos (registration
required, https://www.cityscapes-dataset.com/downloads/; never downloaded by p2p_jax).
Put gtFine_trainvaltest.zip (241 MB) and leftImg8bit_trainvaltest.zip (11 GB), or their
extracted gtFine/ and leftImg8bit/ folders, into ~/tensorflow_datasets/downloads/manual/
or give their folder as --config.data.source; the first run prepares train (2,975) and
val (500) once (p2p_jax/datasets/labelled.py; a folder laid out as pix2pixHD's
datasets/cityscapes/, train_label/ train_inst/ train_img/, works too). Label and instance
maps are resized nearest-neighbour and never normalised, photos bicubic; one flip for all.
VGG19: torchvision's vgg19-dcbb9e9d.pth (https://download.pytorch.org/models/
vgg19-dcbb9e9d.pth) at ~/.cache/torch/hub/checkpoints/ or --config.pix2pixhd.vgg_weights.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/pix2pixhd_cityscapes_512p.py \
      --workdir=/tmp/label2city_512p
With the instance-wise feature encoder (the official --instance_feat; README,
"Instance-wise features"): add --config.pix2pixhd.instance_feat=True (E: 788,803
parameters; G then takes 39 channels).

Runtime: 200 epochs x 2,975 steps = 595,000 steps at batch 1, 1024x512. Not measured on a
GPU yet; an estimate from arithmetic: 5.17 TFLOP per step with the VGG term
(benchmarks/pix2pixhd_flops.py), 3.1e18 in all, at the model TFLOP/s pix2pix's step reached
on one H100 (63 float32, 128 bfloat16: benchmarks/README.md, GPU) gives ~14 hours at
float32, ~7 with --config.compute.dtype=bfloat16; a GPU that keeps pix2pixHD's larger convs
busier is faster. Measure it with benchmarks/pix2pixhd_gpu.sh.
"""

from p2p_jax import config_schema


def get_config():
  """label2city_512p: GlobalGenerator, 2 scales, 100 + 100 epochs at 1024x512."""
  config = config_schema.get_config()
  config.method = 'pix2pixhd'
  config.model.generator = 'pix2pixhd_global'
  config.model.ngf = 64
  config.model.ndf = 64
  config.model.norm = 'instance'
  config.model.d_layers = 3
  config.loss.gan_mode = 'lsgan'

  config.pix2pixhd.label_nc = 35
  config.pix2pixhd.instance_map = True
  config.pix2pixhd.n_downsample_global = 4
  config.pix2pixhd.n_blocks_global = 9
  config.pix2pixhd.num_D = 2
  config.pix2pixhd.feat_match = True
  config.pix2pixhd.vgg_loss = True

  config.data.dataset = 'cityscapes'  # gtFine + leftImg8bit (see above)
  config.data.resize_or_crop = 'scale_width'  # the official default: no crop
  config.data.load_size = 1024        # --loadSize: 1024 wide (2048x1024 -> 1024x512)
  config.data.crop_size = 512         # no crop: the height the step is compiled for
  config.data.resize_method = 'bicubic'  # photos; label maps are resized nearest
  config.data.train_split = 'train'
  config.data.eval_split = 'val'

  config.batch_size = 1
  config.num_epochs = 200
  config.optim.schedule = 'linear_decay_pix2pixhd'
  config.optim.constant_epochs = 100   # --niter
  config.optim.decay_epochs = 100      # --niter_decay
  config.num_eval_examples = 100
  return config
