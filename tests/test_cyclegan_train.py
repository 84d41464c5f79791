"""CycleGAN through the shared trainer: what a run writes, exact resume through signals
(pools and sampler included), the reliability guards, and bad combinations refused.

Tiny ResNet generators (resnet_2blocks, 4 filters) at 32 px, batch 4, synthetic unpaired
batches whose batch i depends only on (seed, i); like tests/test_train.py's runs, every
run builds the same programs, so the session's compilation cache compiles them once.
"""

import os

import jax
import numpy as np
import pytest

from conftest import tiny_config
from p2p_jax import config_schema, train, workdirs
from test_train import assert_bit_equal, steps_on_disk

BATCH = 4
SIZE = 32
ONE_DEVICE = jax.devices()[:1]


def make_config(**top):
  """Tiny CycleGAN, batch 4, 4 steps; validates, samples and saves every 2 steps."""
  config = tiny_config('resnet_2blocks')
  config.method = 'cyclegan'
  config.model.norm = 'instance'
  config.model.dropout = False
  config.loss.gan_mode = 'lsgan'
  config.cyclegan.pool_size = 3      # fills in the first step, swaps after
  config.batch_size = BATCH
  config.num_train_steps = 4
  config.optim.schedule = 'constant'
  config.log_every_steps = config.sample_every_steps = config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.keep_checkpoints = 2
  config.num_eval_examples = BATCH
  for key, value in top.items():
    config[key] = value
  return config


def unpaired(seed=0, nan_batch=None):
  """train_batches(start): independent A and B images; batch i is a function of (seed, i)."""
  def batches(start):
    i = start
    while True:
      rng = np.random.default_rng([seed, i])
      a = rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
      b = np.tanh(2 * rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3))).astype(np.float32)
      if i == nan_batch:
        a[:] = np.nan
      yield {'input': a, 'target': b}
      i += 1
  return batches


def eval_batches():
  return iter([next(unpaired(seed=1000)(0))])


def run(config, workdir, *, data=None, **kwargs):
  kwargs.setdefault('eval_batches', eval_batches)
  kwargs.setdefault('devices', ONE_DEVICE)
  return train.train_and_evaluate(config, str(workdir), train_batches=data or unpaired(),
                                  num_train_examples=64, **kwargs)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted 4-step CycleGAN run: (workdir, final state)."""
  workdir = tmp_path_factory.mktemp('cyclegan_reference')
  return str(workdir), run(make_config(), workdir)


def test_a_run_writes_checkpoints_with_pools_samples_and_scores(reference, capsys):
  workdir, state = reference
  assert int(state.step) == 4 and steps_on_disk(workdir) == [2, 4]
  # Both pools filled (3 slots, 4 fakes per step) with images in the generators' range.
  for pool in state.pools.values():
    assert int(pool.count) == 3
    assert 0 < float(np.abs(np.asarray(pool.images)).max()) <= 1
  assert sorted(os.listdir(os.path.join(workdir, 'samples'))) == [
      'step_0000002.png', 'step_0000004.png']
  scalars = open(os.path.join(workdir, 'scalars.jsonl')).read()
  for name in ('val_l1', 'val_cycle_l1_A', 'val_cycle_l1_B', 'cycle_A', 'idt_B', 'D_A'):
    assert f'"{name}"' in scalars, name
  saved = workdirs.load_config(workdir)
  assert saved.method == 'cyclegan'
  # G_A and G_B both translate, each from its own weights.
  x = next(eval_batches())['input']
  g_ab = workdirs.load_generator(workdir, mode='eval', devices=ONE_DEVICE)
  g_ba = workdirs.load_generator(workdir, mode='eval', direction='BtoA', devices=ONE_DEVICE)
  assert g_ab.metadata['p2p_jax.direction'] == 'AtoB'
  assert not np.allclose(g_ab.apply(x), g_ba.apply(x))


def test_stops_and_resume_match_an_uninterrupted_run(tmp_path, reference, capsys):
  import signal  # pylint: disable=import-outside-toplevel

  def send(signum, at_step):
    def hook(step):
      if step == at_step:
        os.kill(os.getpid(), signum)
    return hook

  state = run(make_config(), tmp_path, step_hook=send(signal.SIGTERM, 1))
  assert int(state.step) == 1 and steps_on_disk(tmp_path) == [1]
  state = run(make_config(), tmp_path, step_hook=send(signal.SIGINT, 3))
  assert int(state.step) == 3
  state = run(make_config(), tmp_path)
  assert int(state.step) == 4
  assert_bit_equal(state, reference[1])   # pools, their draws and the data stream resumed


def test_nonfinite_losses_stop_before_a_save(tmp_path):
  with pytest.raises(train.NonFiniteError, match=r'non-finite .* at step 3'):
    run(make_config(), tmp_path, data=unpaired(nan_batch=2))
  assert steps_on_disk(tmp_path) == [2]


def test_a_cyclegan_workdir_refuses_pix2pix_and_another_architecture(tmp_path, reference):
  pix2pix = tiny_config()
  with pytest.raises(ValueError, match=r'holds a cyclegan run, not pix2pix'):
    train.train_and_evaluate(pix2pix, reference[0], devices=ONE_DEVICE)
  wider = make_config()
  wider.model.ngf = 8
  with pytest.raises(ValueError, match=r'another architecture \(model.ngf: 4 in the workdir'):
    run(wider, reference[0])


@pytest.mark.parametrize('change, message', [
    (dict(dataset='night2day'), r"'night2day' is paired, but cyclegan trains on unpaired "
     r'domains; set config.data.pairs_as_unpaired=True'),
    (dict(method='pix2pix', dataset='horse2zebra'), r"'horse2zebra' is unpaired .* but "
     r'pix2pix trains on aligned pairs'),
    (dict(pool_size=-1), r'config.cyclegan.pool_size must be >= 0, got -1'),
])
def test_bad_combinations_are_one_line_before_any_work(tmp_path, change, message):
  config = make_config()
  config.data.dataset = change.get('dataset', 'blue_marble')
  config.method = change.get('method', 'cyclegan')
  if 'pool_size' in change:
    config.cyclegan.pool_size = change['pool_size']
  with pytest.raises(ValueError, match=message):
    config_schema.validate(config)
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')


def test_grey_a_and_colour_b_train_validate_and_sample(tmp_path):
  """A with one channel and B with three (grey -> colour, as configs/cyclegan_demo.py):
  G_A 1 -> 3, G_B 3 -> 1, the D of each domain on its own channels, and the sample grid
  holding A's grey rows beside B's colour ones."""
  config = make_config(num_train_steps=2)
  config.model.in_channels, config.model.out_channels = 1, 3
  config.cyclegan.lambda_identity = 0.0

  def grey_a(start):
    for batch in unpaired()(start):
      yield {'input': batch['input'][..., :1], 'target': batch['target']}

  def evals():
    return iter([next(grey_a(0))])

  outcome = run(config, tmp_path, data=grey_a, eval_batches=evals)
  assert outcome.step == 2
  samples = os.listdir(tmp_path / workdirs.SAMPLES)
  assert [f for f in samples if f.endswith('.png')] == ['step_0000002.png']
  state = outcome.state if hasattr(outcome, "state") else outcome
  kernels = {name: [leaf.shape for leaf in jax.tree_util.tree_leaves(state.g.params[name])
                    if leaf.ndim == 4] for name in ('G_A', 'G_B')}
  reads = {name: {k[2] for k in shapes} for name, shapes in kernels.items()}
  writes = {name: {k[3] for k in shapes} for name, shapes in kernels.items()}
  assert 1 in reads['G_A'] and 1 not in reads['G_B']      # G_A reads grey, G_B colour
  assert 1 in writes['G_B'] and 1 not in writes['G_A']    # G_B writes grey, G_A colour
