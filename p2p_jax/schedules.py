"""Learning-rate schedules of the two official pix2pix codes.

'constant': the Lua code keeps lr fixed for all 200 epochs.
'linear_decay': the PyTorch reference keeps lr fixed for `constant_epochs` (100) and then
decays it linearly over `decay_epochs` (100); with epochs as the unit it steps once per
epoch exactly as that code (factor 1 - max(0, e + 1 - constant) / (decay + 1) in epoch e,
0-based), with steps as the unit it decays every step and reaches 0.
"""

import jax.numpy as jnp
import optax

SCHEDULES = ('constant', 'linear_decay')


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

  def per_epoch(step):
    epoch = step // steps_per_epoch
    factor = 1.0 - jnp.maximum(0, epoch + 1 - constant) / (decay + 1.0)
    return lr * jnp.maximum(factor, 0.0)
  return per_epoch
