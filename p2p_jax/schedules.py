"""Learning-rate schedules of the two official pix2pix codes.

'constant': the Lua code keeps lr fixed for all 200 epochs.
'linear_decay' (default): the PyTorch reference's 100 + 100 as its train.py runs it since
mid-2020: LambdaLR with factor 1 - max(0, k + 1 - constant) / (decay + 1) after k scheduler
steps, stepped at the START of every epoch (`model.update_learning_rate()` before the
epoch's iterations). Epoch e (0-based) therefore runs at factor
1 - max(0, e + 2 - constant) / (decay + 1): the first constant - 1 epochs at lr, then
decay + 1 decaying ones, the last of them at lr 0.
'linear_decay_epoch_end': the same LambdaLR stepped at the END of every epoch, as the
reference's train.py did until mid-2020 (the commit 032e884 era) and p2p_jax did before:
factor 1 - max(0, e + 1 - constant) / (decay + 1), constant epochs at lr, the last at
lr / (decay + 1). Both are tested epoch by epoch against torch's LambdaLR
(tests/test_schedules.py).
pix2pixHD's train.py steps its own rule (Pix2PixHDModel.update_learning_rate), which neither
of those is: at the end of each epoch e > niter (1-based) it lowers lr by lr / niter_decay,
so 'linear_decay_pix2pixhd' runs epoch e (0-based) at factor
1 - max(0, e - constant) / decay: constant + 1 epochs at lr, the last at lr / decay.
With steps as the unit (optim.constant_steps / decay_steps) both decay every step to 0.
"""

import jax.numpy as jnp
import optax

SCHEDULES = ('constant', 'linear_decay', 'linear_decay_epoch_end', 'linear_decay_pix2pixhd')

# How many scheduler steps the reference has taken when epoch e (0-based) runs: e + 1 when
# it steps at the start of each epoch, e when at the end.
_STEPS_BEFORE_EPOCH = {'linear_decay': 1, 'linear_decay_epoch_end': 0}


def create_schedule(optim_config, steps_per_epoch: int) -> optax.Schedule:
  """Returns step -> learning rate for the `optim` config block.

  Uses optim.constant_steps / optim.decay_steps when they are > 0 (steps as the unit),
  otherwise optim.constant_epochs / optim.decay_epochs with `steps_per_epoch`.
  """
  lr = optim_config.lr
  if optim_config.schedule == 'constant':
    return optax.constant_schedule(lr)
  if optim_config.get('constant_steps', -1) > 0 or optim_config.get('decay_steps', -1) > 0:
    constant = max(optim_config.get('constant_steps', 0), 0)
    decay = max(optim_config.get('decay_steps', 0), 1)

    def per_step(step):
      return lr * jnp.clip(1.0 - jnp.maximum(0, step - constant) / decay, 0.0, 1.0)
    return per_step
  if steps_per_epoch < 1:
    raise ValueError(f'steps_per_epoch must be >= 1, got {steps_per_epoch}')
  constant, decay = optim_config.constant_epochs, optim_config.decay_epochs
  if optim_config.schedule == 'linear_decay_pix2pixhd':
    def hd_per_epoch(step):
      # lr - k * lr / niter_decay after k updates; the k-th comes at the end of epoch
      # niter + k (1-based), so epoch e (0-based) has had max(0, e - niter) of them.
      e = step // steps_per_epoch
      return lr * jnp.maximum(1.0 - jnp.maximum(0, e - constant) / max(decay, 1), 0.0)
    return hd_per_epoch
  shift = _STEPS_BEFORE_EPOCH[optim_config.schedule]

  def per_epoch(step):
    # The reference's lambda_rule(k) with k scheduler steps taken (epoch_count 1).
    k = step // steps_per_epoch + shift
    factor = 1.0 - jnp.maximum(0, k + 1 - constant) / (decay + 1.0)
    return lr * jnp.maximum(factor, 0.0)
  return per_epoch
