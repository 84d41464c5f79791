"""The learning-rate schedules, epoch by epoch, against PyTorch's LambdaLR driven as the
reference drives it (junyanz/pytorch-CycleGAN-and-pix2pix: models/networks.py get_scheduler,
models/base_model.py update_learning_rate, train.py's epoch loop)."""

import warnings

import numpy as np
import pytest

from p2p_jax import config_schema, schedules


def reference_lrs(lr, constant, decay, step_at_start):
  """The lr each epoch (1-based, epoch_count 1) runs at in the reference's train.py.

  step_at_start False: update_learning_rate() after the epoch's iterations (train.py up to
  2019, the pinned commit's era); True: before them (train.py since mid-2020)."""
  torch = pytest.importorskip('torch')
  param = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.Adam([param], lr=lr)
  rule = lambda epoch: 1.0 - max(0, epoch + 1 - constant) / float(decay + 1)
  scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=rule)
  lrs = []
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # "lr_scheduler.step() before optimizer.step()"
    for _ in range(1, constant + decay + 1):
      if step_at_start:
        scheduler.step()
      lrs.append(opt.param_groups[0]['lr'])
      param.grad = torch.ones(1)
      opt.step()  # the epoch's iterations
      if not step_at_start:
        scheduler.step()
  return np.array(lrs)


def p2p_lrs(schedule, lr, constant, decay, steps_per_epoch=3):
  """The lr of every step of each epoch; checks it is constant within the epoch."""
  config = config_schema.get_config()
  config.optim.update(schedule=schedule, lr=lr, constant_epochs=constant, decay_epochs=decay)
  config_schema.validate(config)
  fn = schedules.create_schedule(config.optim, steps_per_epoch)
  epochs = constant + decay
  n = epochs * steps_per_epoch
  # broadcast: optax's constant schedule returns one value for any step array.
  steps = np.broadcast_to(np.asarray(fn(np.arange(n))), (n,)).reshape(epochs, steps_per_epoch)
  assert np.all(steps == steps[:, :1])
  return steps[:, 0]


@pytest.mark.parametrize('constant,decay', [(100, 100), (3, 4), (0, 5)])
@pytest.mark.parametrize('schedule,at_start', [('linear_decay', True),
                                               ('linear_decay_epoch_end', False)])
def test_epochs_run_at_the_reference_lr(schedule, at_start, constant, decay):
  want = reference_lrs(2e-4, constant, decay, at_start)
  got = p2p_lrs(schedule, 2e-4, constant, decay)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_what_the_two_drives_do_with_100_plus_100_epochs():
  end, start = reference_lrs(1.0, 100, 100, False), reference_lrs(1.0, 100, 100, True)
  # Stepped at the end: epochs 1-100 at lr, then 1 - k / 101; the last at lr / 101.
  assert np.all(end[:100] == 1.0) and end[100] == pytest.approx(100 / 101)
  assert end[-1] == pytest.approx(1 / 101)
  # Stepped at the start: epochs 1-99 at lr; epoch 100 already decayed; the last at 0.
  assert np.all(start[:99] == 1.0) and start[99] == pytest.approx(100 / 101)
  assert start[-1] == 0.0
  np.testing.assert_allclose(start[:-1], end[1:])


def test_the_default_is_the_current_reference_and_constant_stays_constant():
  config = config_schema.get_config()
  assert config.optim.schedule == 'linear_decay'
  lrs = p2p_lrs('linear_decay', 1.0, 100, 100)
  assert np.all(lrs[:99] == 1.0) and lrs[99] == pytest.approx(100 / 101) and lrs[-1] == 0.0
  np.testing.assert_allclose(p2p_lrs('constant', 2e-4, 100, 100), 2e-4, rtol=1e-7)


@pytest.mark.parametrize('niter,niter_decay', [(100, 100), (50, 50), (3, 4), (0, 5)])
def test_pix2pixhd_schedule_is_its_train_py(niter, niter_decay):
  """NVIDIA/pix2pixHD's train.py: after each epoch e > niter (1-based) Pix2PixHDModel.
  update_learning_rate() lowers lr by lr / niter_decay."""
  lr, want, current = 2e-4, [], 2e-4
  for epoch in range(1, niter + niter_decay + 1):
    want.append(current)          # the epoch runs at the current lr
    if epoch > niter:
      current -= lr / niter_decay
  got = p2p_lrs('linear_decay_pix2pixhd', lr, niter, niter_decay)
  # float32: 1 - 99 / 100 is exact only to float32's rounding of the factor (~1e-7 of lr)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7 * lr)
  assert got[-1] == pytest.approx(lr / niter_decay, rel=1e-4)
