"""Tiny config for tests and smoke runs: 32 px U-Net and 2-layer D, 4 filters, a few steps.

Command:
  python -m p2p_jax.main --config=configs/tiny.py --workdir=/tmp/p2p_tiny
Runtime: under a minute on a CPU (mostly compilation). Expected: a checkpoint at step 4 and
sample PNGs; the images themselves are noise at this size and length.
"""

from p2p_jax import config_schema


def get_config():
  """The embedded Blue Marble data at 32 px with the smallest networks."""
  config = config_schema.get_config()
  config.model.generator = 'unet_32'
  config.model.ngf = 4
  config.model.ndf = 4
  config.model.d_layers = 2
  config.data.dataset = 'blue_marble'
  config.data.direction = 'AtoB'
  config.data.load_size = 36
  config.data.crop_size = 32
  config.data.eval_split = 'test'
  config.data.shuffle_buffer = 64
  # One worker process (the default on a CPU is none): smoke runs and the kill-and-resume
  # test exercise the workers.
  config.data.workers = 1
  config.batch_size = 2
  config.num_train_steps = 4
  config.optim.schedule = 'constant'
  config.log_every_steps = 2
  config.sample_every_steps = 2
  config.eval_every_steps = 2
  config.num_eval_examples = 4
  config.checkpoint_every_steps = 2
  config.keep_checkpoints = 2
  return config
