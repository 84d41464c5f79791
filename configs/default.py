"""Paper defaults for pix2pix (Isola et al., CVPR 2017): U-Net-256 + 70x70 PatchGAN, L1 + cGAN.

Every other config starts from this one and changes only what differs.

Command (needs the dataset named in `config.data.dataset`; see README):
  python -m p2p_jax.main --config=configs/default.py --workdir=/tmp/p2p_facades

Runtime: 200 epochs of facades (400 images, batch 1) = 80k steps; about 2 h on one GPU.
Expected: samples comparable to the paper's Figure 14 (labels -> facade).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the paper's default configuration."""
  config = ml_collections.ConfigDict()

  # Seed of everything random: init, dropout, data order, jitter. Same seed, same run.
  config.seed = 0

  # ---------------------------------------------------------------- model
  config.model = ml_collections.ConfigDict()
  # Generator: 'unet_256' (8 downsamplings), 'unet_128' (7), or 'encoder_decoder_256' /
  # 'encoder_decoder_128' (the paper's no-skip ablation, Table 2).
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
  # PatchGAN depth: 0 = 1x1 PixelGAN, 1 = 16x16, 2 = 34x34, 3 = 70x70 (paper), 4 = 142, 5 = 286.
  config.model.d_layers = 3
  # Average BatchNorm statistics over all devices, so N devices x batch b normalise like one
  # device with batch N*b.
  config.model.sync_batch_stats = True
  # Compute dtype: 'float32', or 'bfloat16' for mixed precision (params and losses stay f32).
  config.model.dtype = 'float32'
  # How convolutions are computed: 'auto' (the fastest form for the backend: per layer
  # GEMM and Winograd forms on CPU, XLA's conv op on GPU/TPU), 'xla', 'gemm', 'xla_gemmgrad',
  # 'xla_convgrad', 'xla_adjoint', 'taps' or 'winograd'. Same parameters, and the same
  # results up to float rounding (benchmarks/README.md).
  config.model.conv_impl = 'auto'

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

  # ---------------------------------------------------------------- optimiser
  config.optim = ml_collections.ConfigDict()
  # Adam, as the paper: lr 2e-4, beta1 0.5, beta2 0.999, for both networks.
  config.optim.lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  # 'linear_decay': constant for `constant_epochs`, then linear to 0 over `decay_epochs`
  # (PyTorch reference, 100 + 100). 'constant': constant for all epochs (Lua code).
  config.optim.schedule = 'linear_decay'
  config.optim.constant_epochs = 100
  config.optim.decay_epochs = 100

  # ---------------------------------------------------------------- data
  config.data = ml_collections.ConfigDict()
  # 'facades', 'cityscapes', 'maps', 'edges2shoes', 'edges2handbags', 'night2day' (official,
  # TFDS builder), 'blue_marble' (embedded, offline), 'aligned_folder' (your A|B images) or
  # 'paired_folders' (your A/ and B/ folders with matching file names).
  config.data.dataset = 'facades'
  # Official datasets: folder holding the downloaded archive (TFDS manual_dir); folder
  # datasets: the folder (or archive) itself. Empty: the default download folder.
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
  # Resize method: 'bicubic' (PyTorch reference), 'bilinear', 'nearest' (TF tutorial), 'area'.
  config.data.resize_method = 'bicubic'
  # Splits for training and for periodic validation.
  config.data.train_split = 'train'
  config.data.eval_split = 'val'
  # What preparation does with an undecodable or malformed image: 'error' stops naming the
  # file; 'skip' leaves it out and reports how many were skipped.
  config.data.on_bad_file = 'error'
  # Shuffle buffer (examples). Larger = better mixing, more memory.
  config.data.shuffle_buffer = 1000

  # ---------------------------------------------------------------- training
  # Global batch size (summed over all devices and hosts). Paper: 1 for facades.
  config.batch_size = 1
  # Length of training in epochs of the train split; `num_train_steps` > 0 overrides it.
  config.num_epochs = 200
  config.num_train_steps = -1
  # 'pmap' (jax.pmap, the classic form) or 'shard_map' (jax.jit over jax.shard_map);
  # the per-replica step is the same code.
  config.parallel = 'pmap'

  # ---------------------------------------------------------------- logging, checkpoints
  config.log_every_steps = 100
  config.sample_every_steps = 1000
  config.eval_every_steps = 2000
  # Validation examples per evaluation (-1: the whole split).
  config.num_eval_examples = -1
  config.checkpoint_every_steps = 2000
  # Newest checkpoints kept (the best by validation L1 is kept as well).
  config.keep_checkpoints = 3

  # ---------------------------------------------------------------- inference
  # 'paper': dropout on and BatchNorm with test-batch statistics (as the paper);
  # 'eval': running averages and no dropout.
  config.inference_mode = 'paper'

  # ---------------------------------------------------------------- multi-host
  # Call jax.distributed.initialize() at start-up (TPU pod slices, multi-node GPU).
  config.distributed = False
  return config
