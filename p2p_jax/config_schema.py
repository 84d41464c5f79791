"""The config of a run: every field with its default (pix2pix as the paper) and its meaning.

`get_config()` is the schema: every config file in `configs/` starts from it and changes
only what differs, so a key it does not have is a typo (`--config.optim.lr_decay=...`) and
is rejected by name. `validate` checks each value against the choices the modules that use
it define (`CHOICES`), once, where a run starts (`train.train_and_evaluate`).

Renamed keys (`RENAMED`) are moved when an older workdir's config.json is read, and named
with their new place when given by hand.
"""

import importlib.util
import os

import ml_collections

from p2p_jax import (inference, input_pipeline, kernels, losses, methods, networks, parallel,
                     schedules)
from p2p_jax.datasets import catalog
from p2p_jax.models import DROPOUT_PLACEMENTS, layers


# config.num_train_steps that means "train config.num_epochs epochs".
USE_EPOCHS = -1


def get_config() -> ml_collections.ConfigDict:
  """The paper's configuration (U-Net-256 + 70x70 PatchGAN, L1 + cGAN, facades)."""
  config = ml_collections.ConfigDict()

  # Seed of everything random: init, dropout, data order, jitter. Same seed, same run.
  config.seed = 0
  # What is trained (p2p_jax/methods): 'pix2pix' (paired data; U-Net G + PatchGAN D on
  # (x, y); this file's defaults are its paper's), 'cyclegan' (unpaired data; two
  # generators and two discriminators; configs/cyclegan.py sets the reference's choices)
  # or 'pix2pixhd' (label maps -> photos; configs/pix2pixhd_*.py).
  config.method = 'pix2pix'

  # ---------------------------------------------------------------- model (architecture)
  config.model = ml_collections.ConfigDict()
  # Generator: 'unet_256' (8 downsamplings), 'unet_128' (7), 'encoder_decoder_256' /
  # 'encoder_decoder_128' (the paper's no-skip ablation, Table 2), or CycleGAN's
  # 'resnet_9blocks' / 'resnet_6blocks' (models/resnet.py).
  config.model.generator = 'unet_256'
  # Filters in the generator's first / discriminator's first conv layer (paper: 64).
  config.model.ngf = 64
  config.model.ndf = 64
  # Channels of the input image x and the output image y (1 for grayscale, 3 for RGB).
  config.model.in_channels = 3
  config.model.out_channels = 3
  # Normalisation in both networks: 'batch' (paper), 'instance' or 'none'.
  config.model.norm = 'batch'
  # Dropout 0.5 in the decoder is pix2pix's only noise source (there is no z).
  config.model.dropout = True
  # 'paper': first three decoder layers (paper, Lua code); 'pytorch': one layer further out,
  # as junyanz/pytorch-CycleGAN-and-pix2pix does.
  config.model.dropout_placement = 'paper'
  # How G's decoder doubles the resolution: 'transposed' (paper: 4x4 stride-2 transposed
  # convs) or 'resize_conv' (nearest-neighbour 2x, then a 3x3 conv: no texture fixed to
  # the pixel grid; other parameter shapes; models/layers.py).
  config.model.upsample = 'transposed'
  # PatchGAN depth: 0 = 1x1 PixelGAN, 1 = 16x16, 2 = 34x34, 3 = 70x70 (paper), 4 = 142, 5 = 286.
  config.model.d_layers = 3
  # Average BatchNorm statistics over all devices, so N devices x batch b normalise like one
  # device with batch N*b.
  config.model.sync_batch_stats = True

  # ---------------------------------------------------------------- compute (not the model)
  # How the networks are computed; a run may resume with other values.
  config.compute = ml_collections.ConfigDict()
  # 'float32', or 'bfloat16' for mixed precision (params and losses stay float32).
  config.compute.dtype = 'float32'
  # How convolutions are computed (p2p_jax/kernels): 'auto' (the fastest form for the
  # backend: per layer GEMM and Winograd forms on CPU, XLA's conv op on GPU/TPU), 'xla',
  # 'gemm', 'xla_gemmgrad', 'xla_convgrad', 'xla_adjoint', 'taps' or 'winograd'. Same
  # parameters, and the same results up to float rounding (benchmarks/README.md).
  config.compute.conv_impl = 'auto'
  # How the per-replica step is mapped over devices: 'pmap' (jax.pmap, the classic form)
  # or 'shard_map' (jax.jit over jax.shard_map); the step is the same code.
  config.compute.mapping = 'pmap'
  # Spatial partitioning: how many devices share each image, splitting its height between
  # them (XLA exchanges every convolution's halo rows and the partial sums of instance
  # norm and the losses); for images whose step does not fit one device's memory, e.g.
  # pix2pixHD at 2048x1024. 1: off. Needs mapping 'shard_map'; must divide each process's
  # devices and the crop height; the batch is then split over devices / spatial replicas.
  # Any method's step (the step's code does not change; parallel.py). Validation and
  # translation still run each image on one device. Results equal the unsplit step's up to
  # float rounding (tests/test_spatial.py); see README, pix2pixHD, Scale.
  config.compute.spatial = 1

  # ---------------------------------------------------------------- objective
  config.loss = ml_collections.ConfigDict()
  # 'vanilla' (BCE with logits, non-saturating G loss, paper) or 'lsgan' (least squares).
  config.loss.gan_mode = 'vanilla'
  # Weight of the adversarial term in G's loss; 0 gives the paper's "L1 only" ablation.
  config.loss.gan_weight = 1.0
  # True: D sees (x, y) (cGAN). False: D sees y only (the paper's unconditional "GAN").
  config.loss.conditional = True
  # Reconstruction term: 'l1' (paper) or 'l2'.
  config.loss.recon = 'l1'
  # lambda in G* = arg min max cGAN + lambda * L1 (paper: 100); 0 disables the term.
  config.loss.recon_weight = 100.0

  # ---------------------------------------------------------------- CycleGAN's objective
  # Used when method = 'cyclegan' (the reference's defaults; Zhu et al. 2017, Section 4).
  config.cyclegan = ml_collections.ConfigDict()
  # Weights of the cycle-consistency L1 terms: A -> B -> A (lambda_a) and B -> A -> B.
  config.cyclegan.lambda_a = 10.0
  config.cyclegan.lambda_b = 10.0
  # Identity term ||G_A(b) - b|| + ||G_B(a) - a||, weighted by this fraction of the lambda
  # of the image's domain (0.5: weight 5); 0 turns it off. Needs in_channels == out_channels.
  config.cyclegan.lambda_identity = 0.5
  # The discriminators learn from a pool of this many earlier fakes (Shrivastava et al.
  # 2017): once full, each new fake replaces a random stored one half of the time, and D
  # sees the stored one instead. 0: D sees only the newest fakes.
  config.cyclegan.pool_size = 50

  # ---------------------------------------------------------------- pix2pixHD
  # Used when method = 'pix2pixhd' (Wang et al. 2018; NVIDIA/pix2pixHD's options, whose
  # names these keep; configs/pix2pixhd_*.py). The generator is model.generator
  # 'pix2pixhd_global' (--netG global) or 'pix2pixhd_local' (--netG local) with model.ngf;
  # D has num_D scales of model.d_layers (n_layers_D) layers and model.ndf filters; the GAN
  # loss is loss.gan_mode ('lsgan', or 'vanilla' for --no_lsgan); model.norm 'instance'.
  config.pix2pixhd = ml_collections.ConfigDict()
  # Label classes: the generator sees a one-hot map of label_nc channels (Cityscapes' 35
  # label ids); 0: the input is an image of model.in_channels channels (the official
  # label_nc 0 mode, e.g. day -> night photos).
  config.pix2pixhd.label_nc = 35
  # Add the instance boundary map (1 where a pixel's instance id differs from a
  # 4-neighbour's) as one more input channel (the official default; --no_instance: False).
  config.pix2pixhd.instance_map = True
  # The global generator: stride-2 convs and residual blocks (its n_downsample_global 4,
  # n_blocks_global 9); the local enhancers: how many, and their residual blocks (1, 3).
  config.pix2pixhd.n_downsample_global = 4
  config.pix2pixhd.n_blocks_global = 9
  config.pix2pixhd.n_local_enhancers = 1
  config.pix2pixhd.n_blocks_local = 3
  # Discriminators at 1, 1/2, 1/4, ... of the resolution (2; 3 for the 1024p recipe).
  config.pix2pixhd.num_D = 2
  # Weight of both feature-matching terms (D's features and VGG19's).
  config.pix2pixhd.lambda_feat = 10.0
  # D's feature-matching loss (--no_ganFeat_loss: False).
  config.pix2pixhd.feat_match = True
  # VGG19 perceptual loss (--no_vgg_loss: False); its weights are read from vgg_weights.
  config.pix2pixhd.vgg_loss = True
  # torchvision's vgg19-dcbb9e9d.pth (never downloaded by p2p_jax: from
  # https://download.pytorch.org/models/vgg19-dcbb9e9d.pth). '': torchvision's cache,
  # $TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth (~/.cache/torch/hub/checkpoints/...).
  config.pix2pixhd.vgg_weights = ''
  # Weight of an L1 term |G(x) - y| in G's loss, pix2pix's (its lambda: 100). Not in the
  # official objective, so 0 (off) but for configs/pix2pixhd_demo_l1.py: without the VGG
  # loss nothing else ties each output pixel to its target.
  config.pix2pixhd.lambda_l1 = 0.0
  # Coarse to fine (model.generator 'pix2pixhd_local'): a workdir of a finished
  # 'pix2pixhd_global' run (ngf twice this run's), whose generator becomes the local
  # enhancer's global part and whose D scales are copied by name, at step 0 of a new run;
  # then for niter_fix_global epochs only the local enhancer trains, after which
  # everything does, with a fresh Adam (the official --load_pretrain, --niter_fix_global).
  config.pix2pixhd.load_pretrain = ''
  config.pix2pixhd.niter_fix_global = 0
  # Recompute the residual blocks' activations in the backward pass instead of keeping
  # them (nn.remat): less memory at 2048x1024, more compute; same results and parameters.
  config.pix2pixhd.remat = False
  # The instance-wise feature encoder E (models/feature_encoder.py): G also sees feat_num
  # channels of E(photo) averaged over each instance (instance_feat, --instance_feat; needs
  # instance_map) or each label class (label_feat, --label_feat; needs label_nc > 0); E
  # learns with G. Not implemented: --load_features (precomputed feature maps).
  config.pix2pixhd.instance_feat = False
  config.pix2pixhd.label_feat = False
  # E's output channels (--feat_num 3), first-layer filters (--nef 16) and stride-2 convs
  # (--n_downsample_E 4).
  config.pix2pixhd.feat_num = 3
  config.pix2pixhd.nef = 16
  config.pix2pixhd.n_downsample_E = 4
  # Inference with the feature encoder. '': validation and evaluate encode the photo of each
  # label map (the official test.py --use_encoded_image), and translate draws each
  # instance's features from k-means clusters of the training set's (the official test.py's
  # default), WORKDIR/features_clustered_010.npz, written by python -m
  # p2p_jax.encode_features --workdir=WORKDIR. A path: features from that clusters file
  # for every inference, evaluate included.
  config.pix2pixhd.cluster_path = ''

  # ---------------------------------------------------------------- optimiser
  config.optim = ml_collections.ConfigDict()
  # Adam, as the paper: lr 2e-4, beta1 0.5, beta2 0.999, for both networks.
  config.optim.lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  # 'linear_decay': the PyTorch reference's 100 + 100 as its train.py runs it since mid-2020
  # (scheduler stepped at the start of each epoch): lr for `constant_epochs` - 1 epochs,
  # then `decay_epochs` + 1 linearly decaying ones, the last at lr 0.
  # 'linear_decay_epoch_end': stepped at the end of each epoch (the reference before
  # mid-2020, and p2p_jax before): lr for `constant_epochs`, the last epoch at lr / 101.
  # 'linear_decay_pix2pixhd': pix2pixHD's (niter = constant_epochs, niter_decay =
  # decay_epochs): lr for constant + 1 epochs, then lr / decay less each epoch.
  # 'constant': lr for all epochs (Lua code). See p2p_jax/schedules.py.
  config.optim.schedule = 'linear_decay'
  config.optim.constant_epochs = 100
  config.optim.decay_epochs = 100

  # ---------------------------------------------------------------- data
  config.data = ml_collections.ConfigDict()
  # 'facades', 'cityscapes', 'maps', 'edges2shoes', 'edges2handbags', 'night2day' (official,
  # TFDS builder), 'blue_marble' (embedded, offline), 'aligned_folder' (your A|B images) or
  # 'paired_folders' (your A/ and B/ folders with matching file names); CycleGAN's
  # unpaired ones (README) and 'unpaired_folders'; for pix2pixHD's label maps 'cityscapes'
  # (gtFine label and instance ids + leftImg8bit photos, from your downloaded zips) and
  # 'label_folders' (the official train_label/ train_inst/ train_img/, or with label_nc 0
  # train_A/ train_B/; p2p_jax/datasets/labelled.py).
  config.data.dataset = 'facades'
  # Official datasets: folder holding the downloaded archive (TFDS manual_dir; for
  # pix2pixHD's cityscapes, the folder holding gtFine_trainvaltest.zip and
  # leftImg8bit_trainvaltest.zip); folder datasets: the folder (or archive) itself. Empty:
  # the default download folder (<data_dir>/downloads/manual).
  config.data.source = ''
  # Where TFDS keeps prepared datasets. Empty: ~/tensorflow_datasets.
  config.data.data_dir = ''
  # Official datasets only: when the archive is not in `source`, download it from the
  # official URL. False: fail at once with instructions (machines without internet, tests).
  config.data.download = True
  # 'AtoB' maps the left (A) half to the right (B) half; 'BtoA' the other way.
  config.data.direction = 'BtoA'
  # Jitter: resize to load_size, random crop to crop_size, random horizontal flip (train only).
  config.data.load_size = 286
  config.data.crop_size = 256
  config.data.flip = True
  # How load_size and crop_size apply (pix2pixHD's --resize_or_crop; other methods use
  # only the first): 'resize_and_crop' (load_size x load_size, a crop_size window),
  # 'scale_width' (width load_size, aspect kept, no crop; pix2pixHD's default),
  # 'scale_width_and_crop' (that, then a crop_size window), 'crop' (a crop_size window of
  # the stored size), 'none' (the stored size, rounded to the generator's multiple). The
  # same window and flip for label, instance map and photo. Without a crop the step is
  # compiled ahead for crop_size x load_size (height x width: 512 x 1024 for Cityscapes at
  # scale_width 1024); other sizes compile at their first batch.
  config.data.resize_or_crop = 'resize_and_crop'
  # Resize method: 'bicubic' (PyTorch reference), 'bilinear', 'nearest' (TF tutorial), 'area'.
  config.data.resize_method = 'bicubic'
  # Splits for training and for periodic validation.
  config.data.train_split = 'train'
  config.data.eval_split = 'val'
  # What preparation does with an undecodable or malformed image: 'error' stops naming the
  # file; 'skip' leaves it out and reports how many were skipped.
  config.data.on_bad_file = 'error'
  # CycleGAN on a paired dataset (the official pix2pix ones, blue_marble, your aligned or
  # paired folders): read its A and B sides as two unpaired domains, each shuffled on its
  # own, so no pair is ever seen in training (validation still scores against the pairs).
  # Off, a paired dataset given to CycleGAN is refused (usually the wrong dataset or method).
  config.data.pairs_as_unpaired = False
  # Unused: every epoch is a full shuffle (a tf.data setting of earlier versions, kept so
  # that configs and workdirs that set it still load).
  config.data.shuffle_buffer = 1000
  # Worker processes preparing training batches (Grain); 0: threads of the trainer's own
  # process; -1: what suits the host (none when training on the CPU, whose cores the step
  # needs; the cores minus one, at most 32, with a GPU or TPU). See README, Input pipeline.
  config.data.workers = -1
  # Training batches kept ready in the trainer's process, beyond those the workers hold.
  config.data.prefetch = 2
  # Resize the train split to load_size once and keep it as raw arrays beside the prepared
  # data (the same batches for ~7x less CPU per image; N x load_size^2 x 6 bytes: 196 MB
  # for facades at 286): 1 always, 0 never, -1 when the pipeline uses worker processes (by
  # default only with a GPU or TPU) and it takes at most 16 GB. Paired data with
  # resize_and_crop only (not pix2pixHD's labelled data).
  config.data.resized_cache = -1

  # ---------------------------------------------------------------- training
  # Global batch size (summed over all devices and hosts). Paper: 1 for facades.
  config.batch_size = 1
  # Length of training in epochs of the train split, unless `num_train_steps` is a number of
  # steps (> 0); its default USE_EPOCHS (-1) says "use num_epochs". 0 is refused (it would
  # train nothing, and used to train num_epochs without a word).
  config.num_epochs = 200
  config.num_train_steps = USE_EPOCHS

  # ---------------------------------------------------------------- logging, checkpoints
  # Every how many steps: losses are logged, samples written, validation run, a checkpoint
  # saved.
  config.log_every_steps = 100
  config.sample_every_steps = 1000
  config.eval_every_steps = 2000
  # Validation examples per evaluation (-1: the whole split).
  config.num_eval_examples = -1
  config.checkpoint_every_steps = 2000
  # Newest checkpoints kept (the best by validation L1 is kept as well).
  config.keep_checkpoints = 3
  # Weights & Biases project to log to as well (scalars, samples, config); '' for none.
  # Needs `pip install wandb`; WANDB_MODE=offline logs without an account.
  config.wandb_project = ''

  # ---------------------------------------------------------------- inference
  # 'paper': dropout on and BatchNorm with test-batch statistics (as the paper);
  # 'eval': running averages and no dropout.
  config.inference_mode = 'paper'

  # ---------------------------------------------------------------- multi-host
  # Call jax.distributed.initialize() at start-up (TPU pod slices, multi-node GPU).
  config.distributed = False
  return config


# ------------------------------------------------------------------ checking

# Allowed values, each list defined by the module that uses the field.
CHOICES = {
    'method': tuple(methods.METHODS),
    'model.generator': networks.GENERATOR_NAMES,
    'model.norm': layers.NORMS,
    'model.dropout_placement': tuple(DROPOUT_PLACEMENTS),
    'model.upsample': tuple(layers.UPSAMPLERS),
    'compute.dtype': tuple(networks.DTYPES),
    'compute.conv_impl': kernels.IMPLS,
    'compute.mapping': parallel.MAPPINGS,
    'loss.gan_mode': losses.GAN_MODES,
    'loss.recon': losses.RECON_LOSSES,
    'optim.schedule': schedules.SCHEDULES,
    'data.dataset': catalog.DATASETS,
    'data.direction': input_pipeline.DIRECTIONS,
    'data.resize_method': input_pipeline.RESIZE_METHODS,
    'data.resize_or_crop': input_pipeline.RESIZE_OR_CROP,
    'data.on_bad_file': catalog.BAD_FILE_POLICIES,
    'inference_mode': inference.MODES,
}
_POSITIVE = ('model.ngf', 'model.ndf', 'model.in_channels', 'model.out_channels',
             'optim.lr', 'data.load_size', 'data.crop_size', 'data.prefetch', 'batch_size',
             'log_every_steps', 'sample_every_steps', 'eval_every_steps',
             'checkpoint_every_steps', 'keep_checkpoints', 'pix2pixhd.feat_num',
             'pix2pixhd.nef')
_NON_NEGATIVE = ('loss.gan_weight', 'loss.recon_weight', 'cyclegan.lambda_a',
                 'cyclegan.lambda_b', 'cyclegan.lambda_identity', 'cyclegan.pool_size',
                 'pix2pixhd.label_nc', 'pix2pixhd.n_blocks_global',
                 'pix2pixhd.n_local_enhancers', 'pix2pixhd.n_blocks_local',
                 'pix2pixhd.lambda_feat', 'pix2pixhd.lambda_l1',
                 'pix2pixhd.niter_fix_global', 'pix2pixhd.n_downsample_E')

# Old key -> new key. Configs saved before a rename are moved on load (`migrate`).
RENAMED = {
    'model.dtype': 'compute.dtype',
    'model.conv_impl': 'compute.conv_impl',
    'parallel': 'compute.mapping',
}


def flatten(config, prefix: str = '') -> dict:
  """{'model.ngf': 64, ...} of a nested ConfigDict or dict."""
  out = {}
  for key, value in config.items():
    path = f'{prefix}{key}'
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(flatten(value, path + '.'))
    else:
      out[path] = value
  return out


def describe_unknown(key: str) -> str:
  """`key` with its new name when it was renamed."""
  return f'{key} (now {RENAMED[key]})' if key in RENAMED else key


def validate(config) -> None:
  """Raises ValueError naming every unknown or missing key, or the first invalid value."""
  flat, ref = flatten(config), flatten(get_config())
  unknown = sorted(set(flat) - set(ref))
  if unknown:
    raise ValueError(f'unknown config keys: {", ".join(map(describe_unknown, unknown))} '
                     '(not in p2p_jax/config_schema.py; check the spelling)')
  missing = sorted(set(ref) - set(flat))
  if missing:
    # The trainer reads every field: fail here, not with an AttributeError mid-run.
    raise ValueError(f'missing config keys: {", ".join(missing)} (start from '
                     'p2p_jax.config_schema.get_config() and change fields)')
  for path, choices in CHOICES.items():
    if flat[path] not in choices:
      raise ValueError(f'config.{path} must be one of {list(choices)}, got {flat[path]!r}')
  for path in _POSITIVE:
    if not flat[path] > 0:
      raise ValueError(f'config.{path} must be > 0, got {flat[path]!r}')
  for path in _NON_NEGATIVE:
    if flat[path] < 0:
      raise ValueError(f'config.{path} must be >= 0, got {flat[path]!r}')
  if flat['loss.gan_weight'] == 0 and flat['loss.recon_weight'] == 0:
    raise ValueError('config.loss.gan_weight and config.loss.recon_weight are both 0: '
                     'nothing to train')
  for path in ('optim.b1', 'optim.b2'):
    if not 0 <= flat[path] < 1:
      raise ValueError(f'config.{path} must be in [0, 1), got {flat[path]!r}')
  if flat['num_train_steps'] <= 0 and flat['num_train_steps'] != USE_EPOCHS:
    raise ValueError(f'config.num_train_steps must be a number of steps > 0, or '
                     f'{USE_EPOCHS} to train config.num_epochs ({flat["num_epochs"]}) epochs; '
                     f'got {flat["num_train_steps"]}')
  if flat['num_train_steps'] <= 0 and flat['num_epochs'] <= 0:
    raise ValueError(f'config.num_train_steps ({flat["num_train_steps"]}) or config.num_epochs '
                     f'({flat["num_epochs"]}) must be > 0: nothing to train')
  if flat['data.resized_cache'] not in (-1, 0, 1):
    raise ValueError(f'config.data.resized_cache must be -1 (auto), 0 or 1, got '
                     f'{flat["data.resized_cache"]!r}')
  if not isinstance(flat['compute.spatial'], int) or flat['compute.spatial'] < 1:
    raise ValueError(f'config.compute.spatial must be an integer >= 1 (devices per image), '
                     f'got {flat["compute.spatial"]!r}')
  if flat['compute.spatial'] > 1 and flat['compute.mapping'] != 'shard_map':
    raise ValueError(f"config.compute.spatial ({flat['compute.spatial']}) needs "
                     f"config.compute.mapping 'shard_map' (jax.pmap cannot split an image), "
                     f"got {flat['compute.mapping']!r}")
  if flat['compute.spatial'] > 1 and flat['data.crop_size'] % flat['compute.spatial']:
    raise ValueError(f"config.compute.spatial ({flat['compute.spatial']}) must divide "
                     f"config.data.crop_size ({flat['data.crop_size']}), the image height")
  if flat['data.workers'] < -1:
    raise ValueError(f'config.data.workers must be >= 0, or -1 for the default, got '
                     f'{flat["data.workers"]!r}')
  if not 0 <= flat['model.d_layers'] <= 8:
    raise ValueError(f'config.model.d_layers must be in 0..8, got {flat["model.d_layers"]}')
  if flat['data.load_size'] < flat['data.crop_size']:
    raise ValueError(f'config.data.load_size ({flat["data.load_size"]}) must be >= '
                     f'config.data.crop_size ({flat["data.crop_size"]})')
  side = networks.size_multiple(flat['model.generator'], config)
  if flat['data.crop_size'] % side:
    raise ValueError(f'config.data.crop_size ({flat["data.crop_size"]}) must be a multiple '
                     f'of {side} for model.generator={flat["model.generator"]!r}')
  for path in ('model.in_channels', 'model.out_channels'):
    if flat[path] not in (1, 3):
      raise ValueError(f'config.{path} must be 1 or 3, got {flat[path]!r}')
  methods.get(flat['method']).validate(config)
  _check_method_data(flat, config)


def _check_method_data(flat: dict, config) -> None:
  """A dataset of the kind the method trains on: pairs for pix2pix; unpaired domains, or
  pairs read unpaired on request, for CycleGAN. (pix2pixHD's label maps come from a
  labelled dataset: the input pipeline says so when it is asked for them, since a run
  given its own batches needs none.)"""
  method, dataset = flat['method'], flat['data.dataset']
  kind = methods.get(method).data_kind_for(config)
  if method != 'pix2pixhd':
    if dataset == catalog.LABEL_FOLDERS:
      raise ValueError(f"config.data.dataset 'label_folders' is pix2pixHD's layout (label "
                       f'maps and photos), but method is {method!r}; use method pix2pixhd '
                       '(configs/pix2pixhd_*.py) or paired_folders')
    if flat['data.resize_or_crop'] != 'resize_and_crop':
      raise ValueError(f"config.data.resize_or_crop {flat['data.resize_or_crop']!r} is for "
                       f"method pix2pixhd; {method} resizes and crops ('resize_and_crop')")
  unpaired = catalog.is_unpaired(dataset, kind)
  if kind == 'paired' and unpaired:
    raise ValueError(f'config.data.dataset {dataset!r} is unpaired (trainA/ trainB/), but '
                     f'{method} trains on aligned pairs; use method cyclegan '
                     '(--config=configs/cyclegan.py) or a paired dataset')
  if kind == 'unpaired' and not unpaired and not flat['data.pairs_as_unpaired']:
    raise ValueError(f'config.data.dataset {dataset!r} is paired, but {method} trains on '
                     'unpaired domains; set config.data.pairs_as_unpaired=True to read its '
                     'two sides as unpaired domains, or use an unpaired dataset')


# ------------------------------------------------------------------ paths

# Fields that name files or folders.
PATH_FIELDS = ('data.source', 'data.data_dir', 'pix2pixhd.vgg_weights',
               'pix2pixhd.load_pretrain', 'pix2pixhd.cluster_path')


def with_absolute_paths(config) -> ml_collections.ConfigDict:
  """A copy of `config` whose PATH_FIELDS are absolute (relative to the current folder, ~
  expanded; '' and URLs as given), so that the run's config.json names the same data when
  evaluate or a resumed run starts from another folder."""
  config = config.copy_and_resolve_references()
  for path in PATH_FIELDS:
    block, key = path.split('.')
    value = config[block][key]
    if value and '://' not in value:
      config[block][key] = os.path.abspath(os.path.expanduser(value))
  return config


# ------------------------------------------------------------------ loading

def migrate(data: dict) -> dict:
  """A nested dict of a saved config with renamed keys moved to their new places."""
  for old, new in RENAMED.items():
    *old_path, old_key = old.split('.')
    parent = data
    for part in old_path:
      parent = parent.get(part) if isinstance(parent, dict) else None
    if not isinstance(parent, dict) or old_key not in parent:
      continue
    value = parent.pop(old_key)
    *new_path, new_key = new.split('.')
    target = data
    for part in new_path:
      target = target.setdefault(part, {})
    target.setdefault(new_key, value)
  return data


def from_dict(data: dict) -> ml_collections.ConfigDict:
  """A config from saved values: the schema's defaults, overridden by `data` (migrated)."""
  config = get_config()
  config.update(ml_collections.ConfigDict(migrate(data)))
  return config


def load_file(path: str) -> ml_collections.ConfigDict:
  """get_config() of a config file, e.g. 'configs/demo.py' (what --config=... loads)."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise FileNotFoundError(f'config file {path} not found')
  spec = importlib.util.spec_from_file_location(
      f'p2p_jax_config_{os.path.splitext(os.path.basename(path))[0]}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
